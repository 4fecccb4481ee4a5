"""The source pool: the few-shot data of the tasks a target learns from, used by the multitask stage and by task
selection alike.

    load -> de-duplicate -> exclude the target's task family -> overlap guard with the target's test set

* **load, de-duplicate** (:func:`pooled_train`): a task's k-shot train examples of one split seed, or pooled over
  the five (in the order 13, 21, 42, 87, 100), an example kept the first time its (text_a, text_b, label) appears.
  Pooled train sets of other seeds can contain the held-out dev examples of the stage's own seed; those are left
  out and counted.
* **family exclusion** (:func:`in_family`): the target and the tasks sharing its k-shot data (MNLI and MNLI-mm)
  are never sources; ``leave_one_out`` (:mod:`mtft_nlp.tasks`) is the default pool without them.
* **overlap guard** (:func:`load_target_test`, :func:`overlap_guard`): source examples that share a text with the
  target's test set (:func:`~mtft_nlp.data.overlap.text_overlap`, after whitespace and case normalisation) are
  reported and, unless allowed, removed.

:func:`load_sources` runs the whole pool for the multitask stage (:class:`SourceData` per source); task selection
embeds :func:`pooled_train` and reports the overlap of each candidate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

from ..tasks import MtftError, TaskSpec, get_task, leave_one_out, task_family
from .kshot import DEFAULT_K, SEEDS, load_kshot
from .overlap import text_overlap
from .readers import DataError

__all__ = [
    "split_seeds",
    "pooled_train",
    "in_family",
    "leave_one_out",
    "load_target_test",
    "overlap_guard",
    "SourceData",
    "load_sources",
]

logger = logging.getLogger(__name__)


def split_seeds(split_seed: int, pool_seeds: bool = False) -> List[int]:
    """The split seeds a source's train set is drawn from: ``split_seed``, or the five seeds when pooling."""
    return list(SEEDS) if pool_seeds else [split_seed]


def _train_split(task: TaskSpec, data_dir, seed: int, k: int) -> List[Dict]:
    try:
        return load_kshot(task, data_dir, seed, k, splits=("train",))["train"]
    except MtftError as exc:
        raise DataError(f"cannot load the k-shot train data of task {task.name} (seed {seed}, K {k}): {exc}") from None


def pooled_train(
    task: TaskSpec | str, data_dir, seeds: Iterable[int], k: int = DEFAULT_K, held_out: Optional[Set[Tuple]] = None
) -> Tuple[List[Dict], int]:
    """``(examples, n_held_out)``: the task's k-shot train examples of ``seeds`` in that order, de-duplicated by
    (text_a, text_b, label) (the first occurrence kept). Examples whose (text_a, text_b) is in ``held_out`` are
    left out; ``n_held_out`` counts them (repeats included). A split that cannot be loaded is a
    :class:`DataError` naming the task, the seed and K."""
    task = get_task(task)
    held_out = held_out or set()
    out: List[Dict] = []
    seen = set()
    n_held_out = 0
    for s in seeds:
        for ex in _train_split(task, data_dir, s, k):
            key = (ex["text_a"], ex["text_b"], str(ex["label"]))
            if key[:2] in held_out:
                n_held_out += 1
            elif key not in seen:
                seen.add(key)
                out.append(ex)
    return out, n_held_out


def in_family(names: Sequence[str], target: TaskSpec | str) -> List[str]:
    """Those of ``names`` (in order) that are ``target`` or share its k-shot data: never a source for it."""
    family = task_family(target)
    return [n for n in names if task_family(n) == family]


def load_target_test(target: TaskSpec, data_dir, seed: int, k: int = DEFAULT_K) -> Tuple[Optional[List[Dict]], str]:
    """``(test examples, "")`` of the target, or ``(None, note)`` when they cannot be loaded (then the overlap
    is not checked; the note says so and is logged as a warning)."""
    try:
        return load_kshot(target, data_dir, seed, k, splits=("test",))["test"], ""
    except MtftError as exc:
        note = f"target test set not available, text overlap not checked ({exc})"
        logger.warning("target %s: %s", target.name, note)
        return None, note


def overlap_guard(
    target_test: Sequence[Dict],
    examples: List[Dict],
    allow_overlap: bool = False,
    source: str = "source",
    target: str = "the target",
) -> Tuple[List[Dict], Dict]:
    """``(kept examples, overlap report)``: the examples sharing a text with ``target_test`` are removed (kept with
    ``allow_overlap``); the report is :func:`text_overlap`'s without the indices."""
    overlap = text_overlap(target_test, examples)
    if overlap["normalized"]:
        logger.warning(
            "source %s: %d of %d train examples share text with %s's test set (%d exact)%s",
            source,
            overlap["normalized"],
            len(examples),
            target,
            overlap["exact"],
            "" if allow_overlap else "; excluded",
        )
        if not allow_overlap:
            drop = set(overlap["indices"])
            examples = [ex for i, ex in enumerate(examples) if i not in drop]
    return examples, {k: v for k, v in overlap.items() if k != "indices"}


@dataclass
class SourceData:
    """One source task of the multitask stage: its train examples (after the pool's steps), its held-out dev set,
    the overlap report against the target's test set (``None`` without a target) and the number of pooled train
    examples left out because they are in the dev set."""

    task: TaskSpec
    train: List[Dict]
    dev: List[Dict]
    overlap: Optional[Dict[str, object]]
    dev_excluded: int = 0  # pooled train examples left out because they are in the held-out dev split


def load_sources(args, names: Sequence[str], target: Optional[TaskSpec]) -> List[SourceData]:
    """The multitask stage's sources (``args``: ``data_dir``, ``source_seed``, ``source_k``, ``pool_seeds``,
    ``allow_overlap``, as in ``MultitaskArguments``). The dev split of ``source_seed`` is the held-out set the stage
    is scored on; pooled train sets of other seeds can contain its examples, which are left out of training."""
    seeds = split_seeds(args.source_seed, args.pool_seeds)
    target_dir = getattr(args, "target_data_dir", None) or args.data_dir
    target_test = load_target_test(target, target_dir, args.source_seed)[0] if target is not None else None
    out = []
    for name in names:
        task = get_task(name)
        dev = load_kshot(task, args.data_dir, args.source_seed, args.source_k, splits=("dev",))["dev"]
        held_out = {(ex["text_a"], ex["text_b"]) for ex in dev} if args.pool_seeds else None
        train, n_held_out = pooled_train(task, args.data_dir, seeds, args.source_k, held_out)
        if n_held_out:
            logger.info(
                "source %s: %d pooled train examples are in the seed-%d dev split; left out of training",
                task.name,
                n_held_out,
                args.source_seed,
            )
        overlap = None
        if target_test is not None:
            train, overlap = overlap_guard(target_test, train, args.allow_overlap, task.name, target.name)
        if not train:
            raise MtftError(f"source {task.name}: no training examples left after removing overlap with the target")
        out.append(SourceData(task, train, dev, overlap, n_held_out))
    return out
