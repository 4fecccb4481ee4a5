"""The prompt-based method's runs (LM-BFF): zero-shot evaluation and prompt-based finetuning of a masked LM.

:func:`run_prompt_experiment`: task and prompt resolved once -> data -> features -> model -> the Trainer of
:func:`~mtft_nlp.training.trainer.build_trainer` -> ``results.json`` (written atomically, last). The argument
dataclasses are :mod:`mtft_nlp.training.arguments`'s, the Trainer and callbacks :mod:`mtft_nlp.training`'s.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from transformers import set_seed

from ...data.readers import check_k, check_seed
from ...data.run_inputs import load_task_data, multitask_summary, resolve_prompt
from ...io import RESULTS_FILE, check_output_dir, write_predictions
from ...models import is_default_model, multitask_metadata, resolve_model_name
from ...records import result_line, run_record, write_run_record
from ...rows import row_for_start
from ...tasks import MtftError, TaskSpec, get_task
from ...templates import Prompt, PromptEncoder
from ...training.arguments import (
    LMBFF_GRID,
    PAPER_BATCH,
    PAPER_LR,
    FewShotTrainingArguments,
    ModelArguments,
    TaskArguments,
)
from ...training.callbacks import BestDevCallback
from ...training.features import FeatureDataset
from ...training.trainer import build_trainer, make_compute_metrics, peak_memory_mb
from .features import PromptCollator, build_features
from .modeling import PromptForMaskedLM, apply_lora, load_masked_lm, predictions_from_logits

__all__ = [
    "run_prompt_experiment",
    "train_and_evaluate",
    "prepare",
    "PreparedRun",
    "load_model",
    "load_tokenizer_checked",
    "save_prompt_model",
]


logger = logging.getLogger(__name__)


def _config_kwargs(model_args: ModelArguments) -> Dict:
    kwargs = {}
    if model_args.config_overrides:
        for item in model_args.config_overrides.split(","):
            if "=" not in item:
                raise MtftError(f"--config_overrides: expected key=value, got {item!r}")
            k, v = item.split("=", 1)
            try:
                kwargs[k.strip()] = json.loads(v)
            except json.JSONDecodeError:
                kwargs[k.strip()] = v
    if model_args.trust_remote_code:
        kwargs["trust_remote_code"] = True
    return kwargs


def load_model(model_args: ModelArguments):
    """The masked LM of ``model_args``, with LoRA adapters when ``--use_lora``."""
    mlm, _ = load_masked_lm(
        model_args.model_name_or_path,
        model_args.head_init,
        allow_pickle=getattr(model_args, "allow_pickle", False),
        **_config_kwargs(model_args),
    )
    if model_args.use_lora:
        mlm = apply_lora(
            mlm,
            model_args.lora_r,
            model_args.lora_alpha,
            model_args.lora_dropout,
            model_args.lora_target_modules,
            model_args.lora_modules_to_save,
        )
        trainable = sum(p.numel() for p in mlm.parameters() if p.requires_grad)
        total = sum(p.numel() for p in mlm.parameters())
        logger.info("LoRA: %d of %d parameters trainable (%.2f%%)", trainable, total, 100 * trainable / total)
    return mlm


@dataclass
class PreparedRun:
    task: TaskSpec
    prompt: Prompt
    tokenizer: object
    encoder: PromptEncoder
    train: FeatureDataset
    dev: FeatureDataset
    test: FeatureDataset


def load_tokenizer_checked(model_args: ModelArguments):
    """The tokenizer of ``--model_name_or_path``; a missing or broken model folder is an :class:`MtftError`."""
    from transformers import AutoConfig, AutoTokenizer

    from .modeling import check_weights_format

    name = model_args.model_name_or_path
    path = resolve_model_name(name)
    local = os.path.exists(path) or path.startswith((".", "/", "~")) or path.count("/") > 1
    if local and not os.path.isdir(path):
        raise MtftError(
            f"--model_name_or_path {name}: folder not found"
            if not os.path.exists(path)
            else f"--model_name_or_path {name}: not a folder"
        )
    check_weights_format(path, getattr(model_args, "allow_pickle", False))
    try:
        if (
            local
            and not os.path.isfile(os.path.join(path, "config.json"))
            and not os.path.isfile(os.path.join(path, "adapter_config.json"))
        ):
            raise MtftError(f"--model_name_or_path {name}: no config.json in the folder (not a HF model folder)")
        if local and os.path.isfile(os.path.join(path, "config.json")):
            AutoConfig.from_pretrained(path, trust_remote_code=model_args.trust_remote_code)
        return AutoTokenizer.from_pretrained(path, trust_remote_code=model_args.trust_remote_code)
    except MtftError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = " ".join(str(exc).split())[:300]
        where = "the folder" if local else "the Hub (it is not a local folder; no network, or no such repo?)"
        raise MtftError(f"--model_name_or_path {name}: cannot load the model from {where}: {first}") from None


def prepare(model_args: ModelArguments, args: TaskArguments, seed: int, tokenizer=None) -> PreparedRun:
    """Everything that can fail on bad input, before a model is loaded or a file is written."""
    if not args.task_name and not args.task_file:
        raise MtftError("--task_name (or --task_file) is required")
    task = get_task(args.task_file or args.task_name)
    check_k(args.k)
    check_seed(seed)
    overrides = {
        k: v
        for k, v in (
            ("max_seq_length", args.max_seq_length),
            ("first_sent_limit", args.first_sent_limit),
            ("other_sent_limit", args.other_sent_limit),
        )
        if v is not None
    }
    if any(v < 1 for v in overrides.values()):
        raise MtftError(f"length limits must be positive: {overrides}")
    if overrides:  # carried by the task, so that the saved classifier records them
        task = dataclasses.replace(task, **overrides)
    prompt = resolve_prompt(task, args)
    if tokenizer is None:
        tokenizer = load_tokenizer_checked(model_args)
    encoder = PromptEncoder(task, prompt, tokenizer)
    data = load_task_data(task, args, seed)
    feats = {name: build_features(encoder, exs) for name, exs in data.items()}
    return PreparedRun(
        task,
        prompt,
        tokenizer,
        encoder,
        FeatureDataset(feats["train"]),
        FeatureDataset(feats["dev"], sort_by_length=True),
        FeatureDataset(feats["test"], sort_by_length=True),
    )


def train_and_evaluate(
    model_args: ModelArguments,
    args: TaskArguments,
    training_args: FewShotTrainingArguments,
    prep: PreparedRun,
    callbacks=None,
) -> Dict:
    """One zero-shot evaluation or one prompt-based finetuning run; returns the result record."""
    task = prep.task
    set_seed(training_args.seed)  # the seed also fixes any freshly initialised head weights
    mlm = load_model(model_args)
    model = PromptForMaskedLM(mlm)
    best = BestDevCallback(patience=training_args.early_stopping_patience)
    trainer = build_trainer(
        model,
        training_args,
        prep.train if not args.zero_shot else None,
        prep.dev,
        PromptCollator(prep.tokenizer.pad_token_id),
        make_compute_metrics(task),
        [best] + list(callbacks or []),
    )
    train_seconds = 0.0
    if not args.zero_shot:
        t0 = time.perf_counter()
        trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        train_seconds = time.perf_counter() - t0
        if best.best_score is None:  # no evaluation happened (eval_strategy 'no'): score the final weights
            best.on_evaluate(training_args, trainer.state, None, trainer.evaluate(), model)
    t0 = time.perf_counter()
    if args.zero_shot:
        dev_out = trainer.predict(prep.dev, metric_key_prefix="dev")
        dev_score = float(dev_out.metrics["dev_score"])
    else:
        dev_score = float(best.best_score)
    test_out = trainer.predict(prep.test, metric_key_prefix="test")
    eval_seconds = time.perf_counter() - t0
    timing = {"train_seconds": train_seconds, "eval_seconds": eval_seconds}
    record = _prompt_record(model_args, args, training_args, prep, model, best, test_out, timing, dev_score)
    logits = test_out.predictions[0] if isinstance(test_out.predictions, tuple) else test_out.predictions
    return {"record": record, "trainer": trainer, "model": model, "test_logits": logits}


def _prompt_record(
    model_args, args, training_args, prep: PreparedRun, model, best, test_out, timing: Dict, dev_score: float
) -> Dict:
    """The results record of one prompt-method run (records.RunRecord's fields first)."""
    test_metrics = {k[len("test_") :]: v for k, v in test_out.metrics.items() if k.startswith("test_")}
    task, eval_seconds = prep.task, timing["eval_seconds"]
    kept = ("score", "acc", "f1", "mcc", "pearson", "spearman")
    return run_record(
        task=task,
        row=args.row
        or row_for_start("zero-shot" if args.zero_shot else "pbft", multitask_metadata(model_args.model_name_or_path)),
        method="prompt",
        multitask=multitask_summary(model_args.model_name_or_path),
        seed=training_args.seed,
        k=args.k,
        dev_score=dev_score,
        test_metrics={k: v for k, v in test_metrics.items() if k in kept},
        zero_shot=args.zero_shot,
        model=model_args.model_name_or_path,
        prompt=prep.prompt,
        sizes=(len(prep.train), len(prep.dev), len(prep.test)),
        arguments={"model": model_args, "prompt": args, "training": training_args},
        best_step=best.best_step,
        dev_history=best.history,
        learning_rate=training_args.learning_rate,
        train_batch_size=training_args.per_device_train_batch_size * max(1, training_args.world_size),
        max_steps=training_args.max_steps,
        world_size=training_args.world_size,
        **timing,
        test_examples_per_second=len(prep.test) / max(test_out.metrics.get("test_runtime", eval_seconds), 1e-9),
        peak_memory_mb=peak_memory_mb(),
        trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
    )


def save_prompt_model(
    model: PromptForMaskedLM,
    tokenizer,
    task: TaskSpec,
    prompt: Prompt,
    out_dir: Path,
    record: Dict,
    merge_lora: bool = False,
):
    """The best-dev model as a :class:`~.classifier.PromptClassifier` artifact (weights, tokenizer, prompt, card)."""
    from .classifier import save_prompt_classifier

    if merge_lora and hasattr(model.mlm, "merge_and_unload"):
        model = PromptForMaskedLM(model.mlm.merge_and_unload())
    extra = {
        k: record.get(k)
        for k in (
            "seed",
            "k",
            "max_steps",
            "learning_rate",
            "train_batch_size",
            "multitask",
            "embedded_default_model",
            "env",
        )
    }
    extra["base_model"] = record.get("model")
    extra["scores"] = {"dev": record["dev_score"], "test": record["test_score"]}
    return save_prompt_classifier(model, tokenizer, task, prompt, out_dir, extra)


def run_prompt_experiment(
    model_args: ModelArguments, args: TaskArguments, training_args: FewShotTrainingArguments
) -> Dict:
    """The whole single-task run; writes ``<output_dir>/results.json`` last, only on success."""
    push_repo = _check_run_options(args, training_args)
    prep = prepare(model_args, args, training_args.seed)
    logger.info(
        "task %s, prompt %r, example: %s",
        prep.task.name,
        prep.prompt.template,
        prep.tokenizer.decode(prep.train[0]["input_ids"]) if len(prep.train) else "-",
    )
    if is_default_model(model_args.model_name_or_path):
        logger.warning(
            "Prompt-based method on the embedded all-MiniLM-L6-v2: it has no pretrained MLM head, so "
            "zero-shot prompting is at chance; the embedding method (--method embedding, the default for "
            "this model) suits it (see README)."
        )
    best_run = _best_of_grid(model_args, args, training_args, prep)
    record = best_run["record"]
    if best_run["trainer"].is_world_process_zero():
        _write_outputs(best_run, prep, record, model_args, args, training_args, push_repo)
    logger.info(result_line(record))
    return record


def _check_run_options(args: TaskArguments, training_args: FewShotTrainingArguments) -> Optional[str]:
    """Option checks before anything loads; applies --paper_hparams; returns the Hub repo to push to (if any)."""
    check_output_dir(training_args.output_dir)
    if training_args.max_steps == 0 and not args.zero_shot:
        raise MtftError("--max_steps 0 would train nothing: use --zero_shot to evaluate the prompt without training")
    if args.paper_hparams:
        training_args.learning_rate, training_args.per_device_train_batch_size = PAPER_LR, PAPER_BATCH
    # --push_to_hub uploads the best-dev classifier folder at the end (not Trainer checkpoints)
    push_repo = training_args.hub_model_id if training_args.push_to_hub else None
    if training_args.push_to_hub:
        if not push_repo:
            raise MtftError("--push_to_hub needs --hub_model_id user/name")
        if args.zero_shot or not args.save_model:
            raise MtftError("--push_to_hub uploads the trained model: not with --zero_shot or --save_model false")
        training_args.push_to_hub = False
    return push_repo


def _best_of_grid(model_args, args, training_args, prep: PreparedRun) -> Dict:
    """One run, or LM-BFF's grid (--lmbff_grid) with the best dev score kept."""
    configs = [(training_args.learning_rate, training_args.per_device_train_batch_size)]
    if args.lmbff_grid and not args.zero_shot:
        configs = LMBFF_GRID
    best_run, grid = None, []
    for lr, bs in configs:
        targs = (
            dataclasses.replace(training_args, learning_rate=lr, per_device_train_batch_size=bs)
            if len(configs) > 1
            else training_args
        )
        run = train_and_evaluate(model_args, args, targs, prep)
        grid.append(
            {
                "learning_rate": lr,
                "batch_size": bs,
                "dev_score": run["record"]["dev_score"],
                "test_score": run["record"]["test_score"],
                "train_seconds": run["record"]["train_seconds"],
            }
        )
        if best_run is None or run["record"]["dev_score"] > best_run["record"]["dev_score"]:
            best_run = run
        else:
            del run
    if len(grid) > 1:
        best_run["record"]["grid"] = grid
        best_run["record"]["train_seconds"] = sum(g["train_seconds"] for g in grid)
    return best_run


def _write_outputs(
    best_run: Dict, prep: PreparedRun, record: Dict, model_args, args, training_args, push_repo: Optional[str]
) -> None:
    """Predictions, the model, then results.json (last), then the Hub upload."""
    out = Path(training_args.output_dir)
    task = prep.task
    if args.save_predictions:
        rng = (task.regression["low"], task.regression["high"]) if task.is_regression else (0, 1)
        preds = prep.test.unsort(list(predictions_from_logits(best_run["test_logits"], task.is_regression, *rng)))
        write_predictions(out, [float(p) if task.is_regression else task.labels[int(p)] for p in preds])
    if args.save_model and not args.zero_shot:
        save_prompt_model(
            best_run["model"],
            prep.tokenizer,
            task,
            prep.prompt,
            out / "best",
            record,
            merge_lora=model_args.lora_merge,
        )
    write_run_record(out / RESULTS_FILE, record)
    if push_repo:
        from ...hub import push_folder

        url = push_folder(
            out / "best", push_repo, private=bool(training_args.hub_private_repo), token=training_args.hub_token
        )
        logger.info("pushed %s to %s", out / "best", url)
