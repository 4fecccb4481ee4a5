"""Data: the k-shot splits (LM-BFF-exact) and loading a task's train/dev/test examples.

The examples come from LM-BFF folders, Hub datasets or CSV/JSONL files; the file readers, parsers and
input checks live in :mod:`mtft_nlp.data.readers` and the text-overlap check in :mod:`mtft_nlp.data.overlap`.
Every loader returns examples with the same columns::

    text_a: str, text_b: str | None, label: str (class label) or float (regression),
    label_id: int (class index; regression: the score as float), row: "file:line" for errors

The k-shot generator reproduces LM-BFF's ``tools/generate_k_shot_data.py`` byte for byte
(PROTOCOL §3): legacy numpy ``RandomState`` shuffle of the raw lines, buckets in order of
first appearance, first K of each bucket = train, next K = dev, GLUE files keep their
header, and header-less GLUE files (CoLA) are shuffled in place across the seeds in the
order 100, 13, 21, 42, 87.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from ..tasks import TaskError, TaskSpec, get_task
from .readers import (
    DataError,
    check_bucket_sizes,
    check_classes,
    check_examples,
    check_k,
    check_label,
    check_seed,
    data_dir_hint,
    make_example,
    parse_records,
    read_csv_frame,
    read_examples,
    read_lmbff_file,
    read_tsv_lines,
    split_header,
)

__all__ = ["SEEDS", "LMBFF_SEED_ORDER", "DEFAULT_K", "default_data_dir", "KShotSplitter", "write_splits"]
__all__ += ["resolve_original_dir", "is_split_dir", "cap_examples", "load_kshot", "sample_kshot", "load_hub"]
__all__ += ["load_files", "to_dataset", "load_kshot_dataset"]

logger = logging.getLogger(__name__)

SEEDS = (13, 21, 42, 87, 100)
LMBFF_SEED_ORDER = (100, 13, 21, 42, 87)
DEFAULT_K = 16


def default_data_dir() -> str:
    """$MTFT_NLP_DATA_DIR, else ``../shared/data`` (relative to the working directory)."""
    return os.environ.get("MTFT_NLP_DATA_DIR") or os.path.join("..", "shared", "data")


# --------------------------------------------------------------------------- k-shot splits


def _bucket_label(task: TaskSpec, record) -> object:
    """LM-BFF's ``get_label``: the value a raw line or CSV row is bucketed by."""
    src = task.lmbff
    if src.format == "tsv":
        fields = record.strip().split("\t")
        value = fields[src.label]
    else:
        value = record[src.label]
    if task.is_regression:
        return 0 if float(value) < task.regression["bucket_threshold"] else 1
    return value


class KShotSplitter:
    """LM-BFF's k-shot generator for one task over one ``original/`` folder.

    ``split(seed)`` returns the raw records of train/dev (and the test files), exactly as
    LM-BFF writes them; ``write(seed, out_dir)`` writes them with LM-BFF's file names.
    """

    def __init__(self, task: TaskSpec | str, original_dir: str | os.PathLike, k: int = DEFAULT_K):
        self.task = get_task(task)
        k = check_k(k)
        if self.task.split_of:
            self.task = get_task(self.task.split_of)
        if self.task.lmbff is None:
            raise TaskError(f"task {self.task.name} has no LM-BFF source in its task file")
        self.k = k
        self.dir = Path(original_dir) / self.task.lmbff.dir
        if not self.dir.is_dir():
            raise DataError(f"task {self.task.name}: folder {self.dir} not found ({data_dir_hint()})")
        src = self.task.lmbff
        train_path = self.dir / src.train
        if src.format == "tsv":
            self._train_lines = read_tsv_lines(train_path)
        else:
            self._train_frame = read_csv_frame(train_path)
        self.train_path = train_path

    # raw test files: written as LM-BFF does (a byte copy for GLUE, a pandas round trip for CSV)
    def test_files(self) -> Dict[str, object]:
        out = {}
        for orig, name in self.task.lmbff.test.items():
            p = self.dir / orig
            if not p.exists():
                logger.warning("task %s: %s not found, no k-shot %s is written", self.task.name, p, name)
                continue
            out[name] = read_tsv_lines(p) if self.task.lmbff.format == "tsv" else read_csv_frame(p)
        return out

    def _shuffled(self, seed: int):
        src = self.task.lmbff
        if src.format == "tsv":
            header, body = split_header(self.task, list(self._train_lines))
            replay = [seed]
            if src.cumulative_shuffle and seed in LMBFF_SEED_ORDER:
                replay = list(LMBFF_SEED_ORDER[: LMBFF_SEED_ORDER.index(seed) + 1])
            for s in replay:
                np.random.RandomState(s).shuffle(body)
            return header, body
        rows = self._train_frame.values.tolist()
        np.random.RandomState(seed).shuffle(rows)
        return [], rows

    def split(self, seed: int) -> Dict[str, object]:
        """{"header", "train", "dev"} raw records for ``seed`` (LM-BFF's bucketing)."""
        header, body = self._shuffled(check_seed(seed))
        buckets: Dict[object, list] = {}
        for rec in body:
            try:
                label = _bucket_label(self.task, rec)
            except (IndexError, ValueError, TypeError):
                if self.task.lmbff.skip_malformed:
                    continue
                raise DataError(
                    f"{self.train_path}: a row has too few columns or an unreadable label: {str(rec)[:80]!r}"
                ) from None
            if not self.task.is_regression and str(label) not in self.task.labels:
                if self.task.lmbff.skip_malformed:
                    continue
                raise DataError(
                    f"{self.train_path}: label {label!r} is not one of task {self.task.name}'s labels "
                    f"{self.task.labels}"
                )
            buckets.setdefault(label, []).append(rec)
        check_bucket_sizes(buckets, self.k, str(self.train_path))
        check_classes(self.task, buckets, str(self.train_path))
        train = [r for recs in buckets.values() for r in recs[: self.k]]
        dev = [r for recs in buckets.values() for r in recs[self.k : 2 * self.k]]
        return {"header": header, "train": train, "dev": dev}

    def write(self, seed: int, output_dir: str | os.PathLike) -> Path:
        """Write ``<output_dir>/<DIR>/<K>-<seed>/`` (LM-BFF names); all or nothing."""
        parts = self.split(seed)
        tests = self.test_files()
        final = Path(output_dir) / self.task.lmbff.dir / f"{self.k}-{seed}"
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.k}-{seed}.", dir=final.parent))
        try:
            self._write_files(tmp, parts, tests)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final

    def _write_files(self, folder: Path, parts: Dict[str, object], tests: Dict[str, object]) -> None:
        src = self.task.lmbff
        if src.format == "tsv":
            _write_lines(folder / src.train, parts["header"] + parts["train"])
            _write_lines(folder / src.dev_name, parts["header"] + parts["dev"])
            for name, lines in tests.items():
                _write_lines(folder / name, lines)
            return
        import pandas as pd

        pd.DataFrame(parts["train"]).to_csv(folder / "train.csv", header=False, index=False)
        pd.DataFrame(parts["dev"]).to_csv(folder / "dev.csv", header=False, index=False)
        for name, frame in tests.items():
            frame.to_csv(folder / name, header=False, index=False)


def _write_lines(path: Path, lines: Iterable[str]):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line)


def write_splits(
    tasks: Sequence[str], original_dir, output_dir, seeds: Sequence[int] = SEEDS, k: int = DEFAULT_K
) -> List[Path]:
    """``mtft-nlp splits``: every task x seed, seeds in LM-BFF's order. Validates each task before writing it."""
    written = []
    order = sorted(
        seeds, key=lambda s: (LMBFF_SEED_ORDER.index(s) if s in LMBFF_SEED_ORDER else len(LMBFF_SEED_ORDER), s)
    )
    done = set()
    for name in tasks:
        task = get_task(name)
        base = get_task(task.split_of) if task.split_of else task
        if base.name in done:
            continue
        done.add(base.name)
        splitter = KShotSplitter(base, original_dir, k)
        for s in order:
            splitter.split(s)  # validate every seed before writing any
        for s in order:
            written.append(splitter.write(s, output_dir))
    return written


# --------------------------------------------------------------------------- loading a task's data


def resolve_original_dir(data_dir: str | os.PathLike, task: TaskSpec) -> Optional[Path]:
    """``data_dir`` may be a root holding ``original/`` or the ``original/`` folder itself."""
    data_dir = Path(data_dir)
    for cand in (data_dir / "original", data_dir):
        if task.lmbff and (cand / task.lmbff.dir).is_dir():
            return cand
    return None


def is_split_dir(path: str | os.PathLike, task: TaskSpec) -> bool:
    p = Path(path)
    return task.lmbff is not None and (p / task.lmbff.train).is_file() and (p / task.lmbff.dev_name).is_file()


def cap_examples(examples: List[Dict], max_n: Optional[int], seed: int = 0) -> List[Dict]:
    """A fixed random subset of at most ``max_n`` examples (same subset for every split seed)."""
    if not max_n or len(examples) <= max_n:
        return examples
    idx = np.sort(np.random.RandomState(seed).permutation(len(examples))[:max_n])
    return [examples[i] for i in idx]


def _load_split_dir(task: TaskSpec, folder: Path, splits: Sequence[str]) -> Dict[str, List[Dict]]:
    """The splits of an LM-BFF k-shot folder, read as they are."""
    files = {"train": task.lmbff.train, "dev": task.lmbff.dev_name, "test": task.lmbff.test_name}
    return {s: read_lmbff_file(task, folder / files[s]) for s in splits}


def _load_from_original(
    task: TaskSpec, original: Path, seed: int, k: int, splits: Sequence[str]
) -> Dict[str, List[Dict]]:
    """The k-shot split for ``seed`` made in memory from ``original/`` (as ``mtft-nlp splits`` writes it)."""
    out: Dict[str, List[Dict]] = {}
    splitter = KShotSplitter(task, original, k)
    if "train" in splits or "dev" in splits:
        parts = splitter.split(seed)
        src = f"{splitter.train_path}[k-shot seed {seed}]"
        for s in ("train", "dev"):
            if s in splits:
                out[s] = parse_records(task, parts[s], f"{src}/{s}")
    if "test" in splits:
        orig = [o for o, name in task.lmbff.test.items() if name == task.lmbff.test_name]
        if not orig or not (splitter.dir / orig[0]).exists():
            raise DataError(
                f"task {task.name}: no test file ({orig[0] if orig else task.lmbff.test_name}) in {splitter.dir}"
            )
        out["test"] = read_lmbff_file(task, splitter.dir / orig[0])
    return out


def load_kshot(
    task: TaskSpec | str,
    data_dir: str | os.PathLike,
    seed: int,
    k: int = DEFAULT_K,
    splits: Sequence[str] = ("train", "dev", "test"),
    max_test_examples: Optional[int] = None,
) -> Dict[str, List[Dict]]:
    """The k-shot train/dev (and whole test) examples of a task.

    ``data_dir`` is either an LM-BFF split folder holding the task's train/dev/test files
    (used as is), or a root holding ``original/`` (or the ``original/`` folder itself),
    from which the split for ``seed`` is made in memory, identical to ``mtft-nlp splits``.
    """
    task = get_task(task)
    k, seed = check_k(k), check_seed(seed)
    if is_split_dir(data_dir, task):
        out = _load_split_dir(task, Path(data_dir), splits)
    else:
        original = resolve_original_dir(data_dir, task)
        if original is None:
            kshot = Path(data_dir) / "k-shot" / (task.lmbff.dir if task.lmbff else task.name) / f"{k}-{seed}"
            if task.lmbff is not None and is_split_dir(kshot, task):
                return load_kshot(task, kshot, seed, k, splits, max_test_examples)
            raise DataError(
                f"task {task.name}: {data_dir} holds neither an LM-BFF split (train/dev files) nor "
                f"original/{task.lmbff.dir if task.lmbff else task.name}/; {data_dir_hint()} "
                "(or use --train_file/--test_file)"
            )
        out = _load_from_original(task, original, seed, k, splits)
    if "test" in out:
        out["test"] = cap_examples(out["test"], max_test_examples)
    check_examples(task, out, str(data_dir))
    return out


def sample_kshot(
    examples: List[Dict], task: TaskSpec, seed: int, k: int = DEFAULT_K, source: Optional[str] = None
) -> Dict[str, List[Dict]]:
    """LM-BFF's sampling rule over already-parsed examples (Hub and CSV/JSONL sources)."""
    k, seed = check_k(k), check_seed(seed)
    rows = list(examples)
    np.random.RandomState(seed).shuffle(rows)
    buckets: Dict[object, list] = {}
    for ex in rows:
        key = task.label_index(ex["label"]) if task.is_regression else ex["label"]
        buckets.setdefault(key, []).append(ex)
    check_classes(task, buckets, source or f"task {task.name}")
    check_bucket_sizes(buckets, k, source or f"task {task.name}")
    return {
        "train": [r for b in buckets.values() for r in b[:k]],
        "dev": [r for b in buckets.values() for r in b[k : 2 * k]],
    }


def _hub_examples(task: TaskSpec, ds, path: str, split: str, columns, label_map: Dict) -> List[Dict]:
    """The labelled rows of one split of a Hub dataset as examples (``columns``: text_a, text_b, label)."""
    text_a, text_b, label_col = columns
    out = []
    for i, row in enumerate(ds[split]):
        where = f"{path}[{split}]:{i}"
        raw = row[label_col]
        if not task.is_regression:
            if int(raw) < 0 if isinstance(raw, (int, np.integer)) else False:
                continue  # unlabelled rows (GLUE test splits use -1)
            raw = label_map.get(str(raw), raw)
        label = check_label(task, raw, where)
        out.append(make_example(task, row[text_a], row[text_b] if text_b else None, label, where))
    return out


def load_hub(
    task: TaskSpec | str,
    seed: int,
    k: int = DEFAULT_K,
    dataset_name: Optional[str] = None,
    dataset_config: Optional[str] = None,
    max_test_examples: Optional[int] = None,
) -> Dict[str, List[Dict]]:
    """k-shot split of the task's Hub dataset (``load_dataset``), or of a ``save_to_disk`` copy."""
    task = get_task(task)
    k, seed = check_k(k), check_seed(seed)
    hub = task.hub
    if hub is None and dataset_name is None:
        raise TaskError(f"task {task.name} has no 'hub' source; pass --dataset_name")
    import datasets

    path = dataset_name or hub.path
    if Path(path).is_dir() and (Path(path) / "dataset_dict.json").exists():
        ds = datasets.load_from_disk(path)
    else:
        ds = datasets.load_dataset(path, dataset_config or (hub.name if hub else None))
    columns = (hub.text_a, hub.text_b, hub.label) if hub else ("text_a", "text_b", "label")
    label_map = {str(k2): v for k2, v in (hub.label_map or {}).items()} if hub else {}
    train_split = hub.train_split if hub else "train"
    test_split = hub.test_split if hub else "test"
    train = _hub_examples(task, ds, path, train_split, columns, label_map)
    parts = sample_kshot(train, task, seed, k, source=f"{path}[{train_split}]")
    parts["test"] = cap_examples(_hub_examples(task, ds, path, test_split, columns, label_map), max_test_examples)
    check_examples(task, parts, str(path))
    return parts


def load_files(
    task: TaskSpec | str,
    seed: int,
    k: int = DEFAULT_K,
    train_file: Optional[str] = None,
    validation_file: Optional[str] = None,
    test_file: Optional[str] = None,
    text_a_column: str = "text_a",
    text_b_column: Optional[str] = None,
    label_column: str = "label",
    max_test_examples: Optional[int] = None,
) -> Dict[str, List[Dict]]:
    """Examples from CSV (with header) or JSON Lines files and a column mapping.

    With a validation file the train/validation files are used as is (already k-shot);
    without one, the k-shot train and dev sets are sampled from the train file.
    """
    task = get_task(task)
    k, seed = check_k(k), check_seed(seed)

    def read(path) -> List[Dict]:
        return read_examples(task, path, text_a_column, text_b_column, label_column)

    if train_file is None or test_file is None:
        raise DataError("--train_file and --test_file are both needed when reading CSV/JSONL files")
    if validation_file:
        parts = {"train": read(train_file), "dev": read(validation_file)}
    else:
        parts = sample_kshot(read(train_file), task, seed, k, source=str(train_file))
    parts["test"] = cap_examples(read(test_file), max_test_examples)
    check_examples(task, parts, str(train_file))
    return parts


def to_dataset(examples: List[Dict]):
    """A ``datasets.Dataset`` of examples (text_a, text_b, label, label_id)."""
    import datasets

    cols = {c: [ex[c] for ex in examples] for c in ("text_a", "text_b", "label", "label_id")}
    cols["label"] = [str(x) for x in cols["label"]]
    return datasets.Dataset.from_dict(cols)


def load_kshot_dataset(task, data_dir, seed: int, k: int = DEFAULT_K):
    """The k-shot split as a ``datasets.DatasetDict`` with train/dev/test."""
    import datasets

    parts = load_kshot(task, data_dir, seed, k)
    return datasets.DatasetDict({name: to_dataset(exs) for name, exs in parts.items()})
