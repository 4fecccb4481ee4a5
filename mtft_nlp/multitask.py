"""The multitask finetuning stage (PROTOCOL §5): finetune the masked LM on a collection of
few-shot tasks before adapting it to the target.

Every example is rendered with its own task's prompt and scored over its own label words
(the same :class:`PromptEncoder` / :func:`build_features` / :class:`PromptForMaskedLM`
path as single-task runs), so one batch mixes tasks with different numbers of classes.
The reference sampler is the default: each optimizer step sees ``examples_per_step`` (10)
examples, each from a task drawn uniformly with replacement.

    mtft-nlp multitask --target rte --sources all --output_dir runs/mt-rte
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from torch.utils.data import Dataset

from .data.kshot import DEFAULT_K
from .data.sources import in_family, load_sources
from .io import STAGE_FILE, atomic_write_json, check_output_dir, environment
from .methods import all_methods, get_method, resolve_method
from .metrics import accuracy
from .models import check_model_folder, resolve_model_name
from .records import write_stage_record
from .tasks import MtftError, get_task, leave_one_out
from .training.arguments import SAMPLERS, ModelArguments, MultitaskArguments, MultitaskTrainingArguments
from .training.callbacks import MultitaskMetricsCallback
from .training.trainer import MultitaskTrainer, build_trainer

logger = logging.getLogger(__name__)

__all__ = [
    "run_multitask",
    "resolve_sources",
    "MixedTaskDataset",
    "sampling_probs",
]


def resolve_sources(
    target: Optional[str],
    sources: Sequence[str],
    data_dir=None,
    split_seed: int = 42,
    k_shot: int = DEFAULT_K,
    pool_seeds: bool = False,
    model_name_or_path: Optional[str] = None,
) -> Dict[str, object]:
    """``{"sources": [...], "origin": "all" | "selected" | "list" | <selection file>, "selection": {...},
    "target": name or None, "selection_result": dict or None}``.

    ``["selected"]`` runs task selection (Algorithm 1, ``select_tasks``' defaults) for ``target`` on the
    sources' data (``data_dir``, ``split_seed``, ``k_shot``, ``pool_seeds``). A selection file supplies the
    target when ``target`` is None (so that the leakage guard still runs)."""
    lowered = [str(s).lower() for s in sources]
    result = None
    if len(sources) == 1 and str(sources[0]).endswith(".json"):
        out, origin, selection, target = _sources_from_file(Path(sources[0]), target, split_seed, k_shot, pool_seeds)
    elif lowered == ["all"]:
        if not target:
            raise MtftError("--sources all needs --target (leave-one-out)")
        out = leave_one_out(get_task(target))
        origin, selection = "all", None
    elif lowered == ["selected"]:
        if not target:
            raise MtftError("--sources selected needs --target (the task to select sources for)")
        out, selection, result = _sources_by_selection(
            target, data_dir, split_seed, k_shot, pool_seeds, model_name_or_path
        )
        origin = "selected"
    else:
        out = [get_task(s).name for s in sources]
        origin, selection = "list", None
    target_task = get_task(target) if target else None
    clash = in_family(out, target_task) if target_task else []
    if clash:
        raise MtftError(f"sources {clash} are the target {target_task.name} or its variants")
    regression = [s for s in out if get_task(s).is_regression]
    if regression:
        raise MtftError(f"sources {regression} are regression tasks; the multitask stage uses classification tasks")
    if not out:
        raise MtftError("no source tasks")
    return {
        "sources": list(dict.fromkeys(out)),
        "origin": origin,
        "selection": selection,
        "target": target_task.name if target_task else None,
        "selection_result": result,
    }


def _sources_from_file(path: Path, target, split_seed, k_shot, pool_seeds):
    """(sources, origin, selection summary, target) from a selection JSON written by ``mtft-nlp select``."""
    try:
        sel = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MtftError(f"selection file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise MtftError(f"selection file {path} is not valid JSON: {exc}") from None
    if not isinstance(sel, dict):
        raise MtftError(f"selection file {path} is not a JSON object")
    names = sel.get("selected")
    if not isinstance(names, list) or not names:
        raise MtftError(f"selection file {path} has no non-empty 'selected' list")
    if target and sel.get("target") and get_task(sel["target"]).name != get_task(target).name:
        raise MtftError(f"selection file {path} was made for target {sel['target']}, not {get_task(target).name}")
    if not target and sel.get("target"):
        target = sel["target"]
        logger.info("target %s taken from the selection file %s", get_task(target).name, path)
    made_on = (sel.get("split_seed"), sel.get("k_shot"))
    wanted = ("pooled" if pool_seeds else split_seed, k_shot)
    if None not in made_on and tuple(made_on) != wanted:
        logger.warning(
            "selection file %s was computed on split seed %s, K %s; this stage trains on split seed %s, K %s",
            path,
            *made_on,
            *wanted,
        )
    selection = {k: sel.get(k) for k in ("method", "encoder", "target") if k in sel}
    return [get_task(n).name for n in names], str(path), selection, target


def _sources_by_selection(target, data_dir, split_seed, k_shot, pool_seeds, model_name_or_path):
    """(sources, selection summary, selection record) of task selection (``select_tasks``' defaults) for ``target``."""
    from .selection.select import select_tasks

    result = select_tasks(
        target,
        data_dir=data_dir,
        split_seed=split_seed,
        k_shot=k_shot,
        pool_seeds=pool_seeds,
        model_name_or_path=model_name_or_path,
    )
    logger.warning(
        "task selection for %s (Algorithm 1, encoder %s): %s",
        result.target,
        result.encoder,
        ", ".join(result.selected),
    )
    summary = {"method": result.method, "encoder": result.encoder, "target": result.target}
    return list(result.selected), summary, result.to_dict()


class MixedTaskDataset(Dataset):
    """``total`` examples drawn task-first: each slot picks a task from ``probs`` (with
    replacement), then the next example of that task's own shuffled, cycling order.

    The whole sequence is fixed by ``seed``, so a resumed run sees the same examples, and
    consecutive slots form each optimizer step's mixed-task batch.
    """

    def __init__(self, task_features: Sequence[Sequence[Dict]], probs: Sequence[float], total: int, seed: int):
        rng = np.random.RandomState(seed)
        self.task_features = task_features
        self.task_ids = rng.choice(len(task_features), size=total, p=np.asarray(probs) / np.sum(probs))
        cursors = [0] * len(task_features)
        orders = [rng.permutation(len(f)) for f in task_features]
        self.items = []
        for t in self.task_ids:
            if cursors[t] == len(orders[t]):
                orders[t], cursors[t] = rng.permutation(len(task_features[t])), 0
            self.items.append((int(t), int(orders[t][cursors[t]])))
            cursors[t] += 1

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        t, j = self.items[i]
        return self.task_features[t][j]


def sampling_probs(sizes: Sequence[int], sampler: str, temperature: float = 2.0) -> List[float]:
    sizes = np.asarray(sizes, dtype=np.float64)
    if sampler == "uniform":
        p = np.ones_like(sizes)
    elif sampler == "proportional":
        p = sizes
    elif sampler == "temperature":
        p = sizes ** (1.0 / temperature)
    else:
        raise MtftError(f"unknown sampler {sampler!r}; choose from {SAMPLERS}")
    return list(p / p.sum())


def task_accuracy_metrics(eval_pred):
    logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
    return {"acc": accuracy(np.asarray(logits).argmax(-1), eval_pred.label_ids)}


def run_multitask(
    model_args: ModelArguments, args: MultitaskArguments, training_args: MultitaskTrainingArguments
) -> Dict:
    """Finetune on the sources; save the model (an HF masked-LM folder for the prompt method, a
    sentence-transformers folder for the embedding method) plus ``multitask_config.json``."""
    check_output_dir(training_args.output_dir)
    check_model_folder(model_args.model_name_or_path)
    method = get_method(resolve_method(model_args.method, model_args.model_name_or_path))
    if method.stage_section is None:
        raise MtftError(f"--method {method.name} has no multitask stage")
    if args.objective not in method.stage_objectives:
        owners = [m.name for m in all_methods() if args.objective in m.stage_objectives] or ["no"]
        raise MtftError(
            f"--objective {args.objective} is the {' or '.join(owners)} method's; the {method.name} method's stage "
            f"trains with {', '.join(method.stage_objectives)}"
        )
    defaults = {f.name: f.default for f in dataclasses.fields(args)}
    for m in all_methods():
        for name in m.stage_options:
            if name not in method.stage_options and getattr(args, name) != defaults[name]:
                raise MtftError(
                    f"--{name} is read by the {m.name} method's stage only; this stage is the {method.name} method's"
                )
    resolved = resolve_sources(
        args.target,
        args.sources,
        args.data_dir,
        args.source_seed,
        args.source_k,
        args.pool_seeds,
        model_args.model_name_or_path,
    )
    target = get_task(resolved["target"]) if resolved["target"] else None
    _set_batch_size(args, training_args)
    sources = load_sources(args, resolved["sources"], target)
    stage = method.multitask_stage(model_args, sources, args, training_args.seed)
    probs = sampling_probs([len(f) for f in stage.train_features], args.sampler, args.temperature)
    if stage.make_dataset is not None:  # the method's own stream (e.g. class-balanced contrastive batches)
        dataset = stage.make_dataset(probs, training_args)
    else:
        dataset = MixedTaskDataset(
            stage.train_features, probs, training_args.max_steps * args.examples_per_step, training_args.seed
        )
    logger.info(
        "multitask stage (%s method, %s): %d sources %s, %s sampler, %d steps x %d examples",
        method.name,
        args.objective,
        len(sources),
        [s.task.name for s in sources],
        args.sampler,
        training_args.max_steps,
        args.examples_per_step,
    )
    trainer, callback = _stage_trainer(stage, dataset, training_args)
    before = _dev_summary(trainer, stage.dev_sets)
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    train_seconds = time.perf_counter() - t0
    after = _dev_summary(trainer, stage.dev_sets)
    counts = np.bincount(dataset.task_ids, minlength=len(sources))
    meta = _stage_metadata(target, sources, probs, counts, resolved, method.name, model_args, args, training_args)
    meta.update(stage.record)
    meta.update(
        dev_before=before,
        dev_after=after,
        train_seconds=train_seconds,
        dev_history={str(k): v for k, v in callback.history.items()},
    )
    if trainer.is_world_process_zero():
        _save_stage(stage, resolved, meta, Path(training_args.output_dir))
    logger.info(
        "multitask stage done in %.0fs: mean source dev loss %.4f -> %.4f",
        train_seconds,
        before.get("mean", {}).get("loss", float("nan")),
        after.get("mean", {}).get("loss", float("nan")),
    )
    return meta


def _set_batch_size(args: MultitaskArguments, training_args: MultitaskTrainingArguments) -> None:
    """Per-device batch from ``--examples_per_step`` over processes and accumulation steps."""
    world = max(1, training_args.world_size)
    per_step = world * training_args.gradient_accumulation_steps
    if args.examples_per_step % per_step:
        raise MtftError(
            f"--examples_per_step {args.examples_per_step} is not divisible by processes x accumulation "
            f"steps ({world} x {training_args.gradient_accumulation_steps})"
        )
    training_args.per_device_train_batch_size = args.examples_per_step // per_step


def _stage_trainer(stage, dataset, training_args):
    callback = MultitaskMetricsCallback(list(stage.dev_sets))
    optimizer = stage.make_optimizer(training_args) if stage.make_optimizer else None
    trainer = build_trainer(
        stage.model,
        training_args,
        dataset,
        stage.dev_sets or None,
        stage.collator,
        task_accuracy_metrics,
        [callback],
        optimizer,
        stage.tokenizer,
        MultitaskTrainer,
    )
    return trainer, callback


def _save_stage(stage, resolved: Dict, meta: Dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    stage.save(out)
    if resolved["selection_result"] is not None:  # --sources selected: the evidence for the choice
        atomic_write_json(out / "selection.json", resolved["selection_result"])
    write_stage_record(out / STAGE_FILE, meta)  # last: its presence marks a finished stage


def _stage_metadata(target, sources, probs, counts, resolved, method, model_args, args, training_args) -> Dict:
    """What ``multitask_config.json`` records besides the dev metrics (records.StageRecord checks it)."""
    return {
        "target": target.name if target else None,
        "sources": [
            {
                "task": s.task.name,
                "n_train": len(s.train),
                "n_dev": len(s.dev),
                "sampling_prob": float(p),
                "examples_drawn": int(c),
                "overlap_with_target_test": s.overlap,
                **({"excluded_in_dev": s.dev_excluded} if args.pool_seeds else {}),
            }
            for s, p, c in zip(sources, probs, counts)
        ],
        "sources_origin": resolved["origin"],
        "selection": resolved["selection"],
        "sampler": args.sampler,
        "temperature": args.temperature if args.sampler == "temperature" else None,
        "examples_per_step": args.examples_per_step,
        "max_steps": training_args.max_steps,
        "learning_rate": training_args.learning_rate,
        "seed": training_args.seed,
        "split_seed": "pooled" if args.pool_seeds else args.source_seed,
        "k": args.source_k,
        "allow_overlap": args.allow_overlap,
        "method": method,
        "objective": args.objective,
        "base_model": model_args.model_name_or_path,
        "base_model_path": resolve_model_name(model_args.model_name_or_path),
        "world_size": max(1, training_args.world_size),
        "env": environment(),
    }


def _dev_summary(trainer, dev_sets) -> Dict[str, Dict[str, float]]:
    out = {}
    for name, ds in dev_sets.items():
        m = trainer.evaluate(eval_dataset=ds, metric_key_prefix=f"dev_{name}")
        out[name] = {"loss": float(m[f"dev_{name}_loss"]), "acc": float(m[f"dev_{name}_acc"])}
    if out:
        out["mean"] = {
            "loss": float(np.mean([v["loss"] for v in out.values()])),
            "acc": float(np.mean([v["acc"] for v in out.values()])),
        }
    return out
