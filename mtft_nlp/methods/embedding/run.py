"""The embedding-based method's runs: zero-shot from class descriptions, adaptation of a linear head on the frozen
encoder, and finetuning of encoder and head together (rows ``embed-zero-shot``, ``embed-adapt``, ``embed-ft``,
and their ``mt-*`` forms when the encoder comes from a multitask stage).

The paper's Table 2 rows: *Adaptation* is ``embed-adapt`` (a linear head fitted on the k-shot train split with
phi frozen: logistic regression or class prototypes interpolated with the description embeddings, chosen on
dev), *Standard FT* is ``embed-ft`` (phi and a head initialised from the description embeddings, trained with
the HF ``Trainer``, the best dev weights kept by :class:`~mtft_nlp.training.callbacks.BestDevCallback`), *Ours* is the
same after the multitask stage (``mtft-nlp multitask --method embedding``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from transformers import Trainer, set_seed

from ...data.run_inputs import load_task_data, multitask_summary, resolve_prompt
from ...io import RESULTS_FILE, check_output_dir, write_predictions
from ...metrics import compute_metrics
from ...models import multitask_metadata, resolve_model_name
from ...records import result_line, run_record, write_run_record
from ...rows import row_for_start
from ...tasks import MtftError, TaskSpec, get_task
from ...training.callbacks import BestDevCallback, HeadRefitCallback
from ...training.features import FeatureDataset
from ...training.trainer import FewShotTrainer, PresampledTrainer, build_trainer, make_compute_metrics
from ..base import StageParts
from .arguments import EMBEDDING_DEFAULTS, EmbeddingArguments
from .contrastive import BalancedBatches, uses_contrastive
from .modeling import (
    ClassHead,
    EmbeddingCollator,
    EmbeddingForClassification,
    build_embedding_features,
    class_descriptions,
    description_batch,
    encode_texts,
    load_sentence_encoder,
    pooling_of,
)

logger = logging.getLogger(__name__)

__all__ = [
    "EmbeddingArguments",
    "EMBEDDING_DEFAULTS",
    "run_embedding_experiment",
    "fit_adaptation_head",
    "embedding_stage",
    "embedding_optimizer",
]

LOGREG_C = (0.1, 1.0, 10.0, 100.0)
PROTOTYPE_ALPHA = (0.0, 0.25, 0.5, 0.75, 1.0)


def _text_key(examples: Sequence[Dict]) -> str:
    h = hashlib.sha256()
    for ex in examples:
        h.update(repr((ex["text_a"], ex["text_b"])).encode())
    return h.hexdigest()


_FROZEN_CACHE: Dict[Tuple[str, str, str], torch.Tensor] = {}


def frozen_embeddings(model_path: str, encoder, task: TaskSpec, examples: Sequence[Dict]) -> torch.Tensor:
    """Embeddings of ``examples`` by the *unchanged* encoder loaded from ``model_path``, cached in memory for the
    process (zero-shot and adaptation runs of several seeds share the test set's)."""
    key = (model_path, task.name, _text_key(examples))
    if key not in _FROZEN_CACHE:
        if len(_FROZEN_CACHE) > 64:
            _FROZEN_CACHE.clear()
        _FROZEN_CACHE[key] = encode_examples(encoder, task, examples)
    return _FROZEN_CACHE[key]


def encode_examples(encoder, task: TaskSpec, examples: Sequence[Dict]) -> torch.Tensor:
    """Unit-norm embeddings of examples (a sentence pair as the tokenizer's pair) by ``encoder`` as it is now."""
    b = [ex["text_b"] for ex in examples]
    return encode_texts(
        encoder, [ex["text_a"] for ex in examples], b if any(x is not None for x in b) else None, task=task
    )


def _labels(examples: Sequence[Dict]) -> np.ndarray:
    return np.array([int(ex["label_id"]) for ex in examples])


def _score(task: TaskSpec, logits: torch.Tensor, examples: Sequence[Dict]) -> Dict[str, float]:
    return compute_metrics(task.metric, logits.argmax(-1).numpy(), _labels(examples))


def fit_adaptation_head(
    task: TaskSpec,
    z_train: torch.Tensor,
    y_train: np.ndarray,
    z_dev: torch.Tensor,
    dev: Sequence[Dict],
    description_emb: torch.Tensor,
    scale: float = 20.0,
) -> Tuple[ClassHead, str, List[Dict]]:
    """The paper's *Adaptation*: a linear head on frozen embeddings, chosen on dev among logistic regression
    (C in :data:`LOGREG_C`) and class prototypes ``normalize(a * mean_c(train) + (1 - a) * description_c)``
    (a in :data:`PROTOTYPE_ALPHA`; a = 0 is zero-shot). Returns (head, its description, every candidate's dev
    score). Ties keep the earlier candidate (prototypes first, then increasing C)."""
    from sklearn.linear_model import LogisticRegression

    n_cls = description_emb.shape[0]
    means = torch.stack([z_train[torch.as_tensor(y_train == c)].mean(0) for c in range(n_cls)])
    desc = torch.nn.functional.normalize(description_emb.float(), dim=-1)
    candidates: List[Tuple[str, ClassHead]] = []
    for a in PROTOTYPE_ALPHA:
        w = torch.nn.functional.normalize(a * torch.nn.functional.normalize(means, dim=-1) + (1 - a) * desc, dim=-1)
        candidates.append((f"prototypes alpha={a}", ClassHead(w, None, scale)))
    for c in LOGREG_C:
        clf = LogisticRegression(C=c, max_iter=2000).fit(z_train.numpy(), y_train)
        coef, bias = (
            torch.as_tensor(clf.coef_, dtype=torch.float32),
            torch.as_tensor(clf.intercept_, dtype=torch.float32),
        )
        if n_cls == 2:  # sklearn's binary model: one row for class 1
            coef, bias = torch.cat([torch.zeros_like(coef), coef]), torch.cat([torch.zeros_like(bias), bias])
        full_w = torch.zeros((n_cls, coef.shape[1]))
        full_b = torch.full((n_cls,), -1e4)  # a class absent from train is never predicted
        full_w[torch.as_tensor(clf.classes_)] = coef
        full_b[torch.as_tensor(clf.classes_)] = bias
        candidates.append((f"logistic regression C={c}", ClassHead(full_w, full_b, 1.0)))
    scored, best = [], None
    for name, head in candidates:
        with torch.no_grad():
            s = float(_score(task, head(z_dev), dev)["score"])
        scored.append({"head": name, "dev_score": s})
        if best is None or s > best[0]:
            best = (s, name, head)
    return best[2], best[1], scored


def embedding_optimizer(model: EmbeddingForClassification, training_args, head_lr: float):
    """The optimizer ``--optim`` names (the Trainer's own choice and keyword arguments: fused AdamW by default, with
    ``--adam_beta1/2``, ``--adam_epsilon`` and ``--weight_decay``) over two groups, the encoder at
    ``--learning_rate`` and the heads at ``head_lr``; handed to ``Trainer(optimizers=...)``, which builds the
    learning-rate schedule over both groups."""
    groups = [
        {"params": [p for p in model.encoder.parameters() if p.requires_grad], "lr": training_args.learning_rate},
        {"params": list(model.heads.parameters()), "lr": head_lr},
    ]
    try:
        cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(training_args, model)
        kwargs = {**kwargs, "lr": training_args.learning_rate, "weight_decay": training_args.weight_decay}
        return cls(groups, **kwargs)
    except (ImportError, TypeError, ValueError, RuntimeError) as e:
        raise MtftError(
            f"--optim {getattr(training_args.optim, 'value', training_args.optim)} cannot optimise the embedding "
            f"method's encoder and head groups: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from None


def contrastive_train_set(features: List[Dict], training_args, task_probs=None, tasks_per_step: int = 1):
    """The class-balanced stream of a contrastive run: ``max_steps`` optimizer steps of every process and
    accumulation step, each ``per_device_train_batch_size`` block holding every class (read in order)."""
    blocks = training_args.max_steps * max(1, training_args.world_size) * training_args.gradient_accumulation_steps
    per_task = features if task_probs is not None else [features]
    return BalancedBatches(
        per_task,
        task_probs if task_probs is not None else [1.0],
        blocks,
        training_args.per_device_train_batch_size,
        training_args.seed,
        tasks_per_step,
    )


def _refit_head(task: TaskSpec, prep: Dict, scale: float):
    """``refit(model)``: the head fitted on the model's current embeddings as ``embed-adapt`` fits it (logistic
    regression or description-interpolated prototypes, chosen on dev), copied into the model's head; returns the
    chosen candidate's name."""
    data = prep["data"]
    y_train = _labels(data["train"])

    def refit(model) -> str:
        z_train = encode_examples(model.encoder, task, data["train"])
        z_dev = encode_examples(model.encoder, task, data["dev"])
        desc = encode_texts(model.encoder, prep["descriptions"])
        head, chosen, _ = fit_adaptation_head(task, z_train, y_train, z_dev, data["dev"], desc, scale)
        target = model.heads[0]
        with torch.no_grad():
            target.weight.copy_(head.weight)
            target.bias.copy_(head.bias)
            target.scale.fill_(float(head.scale))
        return chosen

    return refit


def _finetune(model, task, prep, training_args, emb_args):
    collate = EmbeddingCollator(model.encoder.tokenizer.pad_token_id)
    feats = {k: build_embedding_features(model.encoder, task, v) for k, v in prep["data"].items()}
    contrastive = uses_contrastive(emb_args.objective)
    train = contrastive_train_set(feats["train"], training_args) if contrastive else FeatureDataset(feats["train"])
    dev, test = (FeatureDataset(feats[k], sort_by_length=True) for k in ("dev", "test"))
    best = BestDevCallback(patience=training_args.early_stopping_patience)
    callbacks = [best]
    refit = None
    if emb_args.head_mode == "refit":
        refit = HeadRefitCallback(_refit_head(task, prep, emb_args.head_scale))
        callbacks.insert(0, refit)  # the head is fitted before the evaluation that BestDevCallback scores
    optimizer = embedding_optimizer(model, training_args, emb_args.head_learning_rate)
    trainer = build_trainer(
        model,
        training_args,
        train,
        dev,
        collate,
        make_compute_metrics(task),
        callbacks,
        optimizer,
        trainer_class=PresampledTrainer if contrastive else FewShotTrainer,
    )
    t0 = time.perf_counter()
    if not training_args.resume_from_checkpoint:
        if refit is not None:
            refit.fit(model, 0)
        trainer.evaluate()  # step 0 (the head from the descriptions, or refit): best on dev includes not moving
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    train_seconds = time.perf_counter() - t0
    if best.best_score is None:  # no evaluation happened: score the final weights
        if refit is not None:
            refit.fit(model, trainer.state.global_step)
        best.on_evaluate(training_args, trainer.state, None, trainer.evaluate(), model)
    t0 = time.perf_counter()
    out = trainer.predict(test, metric_key_prefix="test")
    logits = torch.as_tensor(out.predictions)
    logits = torch.stack(test.unsort(list(logits)))
    info = {
        "dev_score": float(best.best_score),
        "test_logits": logits,
        "best_step": best.best_step,
        "dev_history": best.history,
        "train_seconds": train_seconds,
        "eval_seconds": time.perf_counter() - t0,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    if refit is not None:
        info["adaptation_head"] = refit.chosen.get(best.best_step)
        info["refit_heads"] = {str(k): v for k, v in refit.chosen.items()}
    return info


def prepare_run(model_args, args, seed: int) -> Dict:
    """Task, prompt, descriptions and data: everything that can fail on bad input, before the model loads."""
    if not args.task_name and not args.task_file:
        raise MtftError("--task_name (or --task_file) is required")
    task = get_task(args.task_file or args.task_name)
    if task.is_regression:
        raise MtftError(
            f"task {task.name} is a regression task; the embedding method classifies (use --method prompt)"
        )
    prompt = resolve_prompt(task, args)
    descriptions = class_descriptions(task, prompt)
    data = load_task_data(task, args, seed)
    return {"task": task, "prompt": prompt, "descriptions": descriptions, "data": data}


def _kind(args, emb_args) -> str:
    return "embed-zero-shot" if args.zero_shot else "embed-adapt" if emb_args.frozen_encoder else "embed-ft"


def run_embedding_experiment(model_args, args, training_args, emb_args: Optional[EmbeddingArguments] = None) -> Dict:
    """One embedding-method run (zero-shot, adaptation or finetuning); writes ``results.json`` last, on success."""
    emb_args = emb_args or EmbeddingArguments()
    check_output_dir(training_args.output_dir)
    prep = prepare_run(model_args, args, training_args.seed)
    kind = _kind(args, emb_args)
    if kind == "embed-ft" and training_args.max_steps == 0:
        raise MtftError(
            "--max_steps 0 trains nothing: use --zero_shot (or --frozen_encoder) to evaluate without finetuning"
        )
    n_classes = len(prep["task"].labels)
    if (
        kind == "embed-ft"
        and uses_contrastive(emb_args.objective)
        and training_args.per_device_train_batch_size < n_classes
    ):
        raise MtftError(
            f"--per_device_train_batch_size {training_args.per_device_train_batch_size} is smaller than the "
            f"{n_classes} classes of task {prep['task'].name}: --objective {emb_args.objective} needs every class "
            "in every batch"
        )
    set_seed(training_args.seed)
    encoder = load_sentence_encoder(
        model_args.model_name_or_path,
        trust_remote_code=model_args.trust_remote_code,
        allow_pickle=getattr(model_args, "allow_pickle", False),
    )
    model, dev_score, test_logits, info = _adapt(
        kind, prep, encoder, resolve_model_name(model_args.model_name_or_path), training_args, emb_args
    )
    record = _record(kind, prep, encoder, dev_score, test_logits, info, model_args, args, training_args, emb_args)
    out = Path(training_args.output_dir)
    if training_args.process_index == 0:
        if args.save_predictions:
            _write_predictions(out, prep["task"], test_logits)
        if args.save_model and kind != "embed-zero-shot":
            from .classifier import save_embedding_classifier

            save_embedding_classifier(model, prep["task"], prep["prompt"], prep["descriptions"], out / "best", record)
        write_run_record(out / RESULTS_FILE, record)
    logger.info(result_line(record))
    return record


def _adapt(kind: str, prep: Dict, encoder, model_path: str, training_args, emb_args):
    """(model, dev score, test logits, what to record) of a zero-shot, adaptation or finetuning run."""
    task, data = prep["task"], prep["data"]
    desc_emb = encode_texts(encoder, prep["descriptions"])
    head = ClassHead.from_descriptions(desc_emb, emb_args.head_scale)
    if kind == "embed-ft":
        anchors = [description_batch(encoder, prep["descriptions"])] if emb_args.description_anchors else None
        model = EmbeddingForClassification(
            encoder,
            [head],
            objective=emb_args.objective,
            temperature=emb_args.contrastive_temperature,
            ce_weight=emb_args.ce_weight,
            description_features=anchors,
            encode_chunks=emb_args.encode_chunks,
        )
        info = _finetune(model, task, prep, training_args, emb_args)
        return model, info.pop("dev_score"), info.pop("test_logits"), info
    info: Dict = {"best_step": None, "dev_history": [], "train_seconds": 0.0, "trainable_parameters": 0}
    t0 = time.perf_counter()
    z = {k: frozen_embeddings(model_path, encoder, task, v) for k, v in data.items()}
    if kind == "embed-adapt":
        head, chosen, scored = fit_adaptation_head(
            task, z["train"], _labels(data["train"]), z["dev"], data["dev"], desc_emb, emb_args.head_scale
        )
        info.update(
            adaptation_head=chosen,
            adaptation_candidates=scored,
            trainable_parameters=sum(p.numel() for p in head.parameters()),
        )
    with torch.no_grad():
        dev_score = float(_score(task, head(z["dev"]), data["dev"])["score"])
        test_logits = head(z["test"])
    info["eval_seconds"] = time.perf_counter() - t0
    return EmbeddingForClassification(encoder, [head]), dev_score, test_logits, info


def _record(kind, prep, encoder, dev_score, test_logits, info, model_args, args, training_args, emb_args) -> Dict:
    task, data, name = prep["task"], prep["data"], model_args.model_name_or_path
    trains = kind == "embed-ft"
    return run_record(
        task=task,
        row=args.row or row_for_start(kind, multitask_metadata(name)),
        method="embedding",
        multitask=multitask_summary(name),
        seed=training_args.seed,
        k=args.k,
        dev_score=dev_score,
        test_metrics=_score(task, test_logits, data["test"]),
        zero_shot=kind == "embed-zero-shot",
        model=name,
        prompt=prep["prompt"],
        sizes=(len(data["train"]), len(data["dev"]), len(data["test"])),
        arguments={"model": model_args, "prompt": args, "embedding": emb_args, "training": training_args},
        pooling=pooling_of(encoder),
        descriptions=prep["descriptions"],
        learning_rate=training_args.learning_rate if trains else None,
        head_learning_rate=emb_args.head_learning_rate if trains else None,
        objective=emb_args.objective if trains else None,
        contrastive_temperature=emb_args.contrastive_temperature
        if trains and uses_contrastive(emb_args.objective)
        else None,
        head_mode=emb_args.head_mode if trains else None,
        train_batch_size=training_args.per_device_train_batch_size * max(1, training_args.world_size),
        max_steps=training_args.max_steps if trains else 0,
        world_size=training_args.world_size,
        **info,
    )


def _write_predictions(out: Path, task: TaskSpec, logits: torch.Tensor):
    write_predictions(out, [task.labels[int(i)] for i in logits.argmax(-1).tolist()])


def embedding_stage(model_args, sources, args, seed: int, head_learning_rate: float = 1e-3, head_scale: float = 20.0):
    """The embedding method's multitask stage (the paper's objective): a shared encoder phi with one linear head per
    source task, each initialised from that source's class descriptions, trained with ``args.objective`` (the heads'
    cross-entropy, the supervised contrastive loss over the sources' classes, or both); saved as a plain
    sentence-transformers folder (the heads are not kept for the target). ``args``: the stage's
    :class:`~mtft_nlp.training.arguments.MultitaskArguments`."""
    from ...templates import load_prompt

    eval_tasks, objective = args.eval_tasks, args.objective
    set_seed(seed)
    encoder = load_sentence_encoder(
        model_args.model_name_or_path,
        trust_remote_code=model_args.trust_remote_code,
        allow_pickle=getattr(model_args, "allow_pickle", False),
    )
    heads, train_feats, dev_sets = [], [], {}
    for tid, src in enumerate(sources):
        desc = class_descriptions(src.task, load_prompt(src.task))
        heads.append(ClassHead.from_descriptions(encode_texts(encoder, desc), head_scale))
        train_feats.append(build_embedding_features(encoder, src.task, src.train, task_id=tid))
        if not eval_tasks or tid < eval_tasks:
            dev_sets[src.task.name] = FeatureDataset(
                build_embedding_features(encoder, src.task, src.dev, task_id=tid), sort_by_length=True
            )
    model = EmbeddingForClassification(
        encoder,
        heads,
        objective=objective,
        temperature=args.contrastive_temperature,
        ce_weight=args.ce_weight,
        negatives_across_tasks=args.negatives_across_tasks,
        encode_chunks=args.encode_chunks,
    )
    contrastive = uses_contrastive(objective)
    record = {"encode_chunks": args.encode_chunks}
    if contrastive:
        record.update(
            contrastive_temperature=args.contrastive_temperature,
            ce_weight=args.ce_weight if objective == "supcon+ce" else None,
            tasks_per_step=args.tasks_per_step,
            negatives_across_tasks=args.negatives_across_tasks,
        )

    def dataset(probs, training_args):  # every step: --tasks_per_step sources, each with every class present
        return contrastive_train_set(train_feats, training_args, probs, args.tasks_per_step)

    def save(out: Path):
        encoder.save(str(out))

    def optimizer(training_args):
        return embedding_optimizer(model, training_args, head_learning_rate)

    return StageParts(
        model,
        encoder.tokenizer,
        EmbeddingCollator(encoder.tokenizer.pad_token_id),
        train_feats,
        dev_sets,
        save,
        make_optimizer=optimizer,
        make_dataset=dataset if contrastive else None,
        record=record,
    )
