"""Data: readers (LM-BFF folders, Hub datasets, CSV/JSONL) and LM-BFF-exact k-shot splits.

Every reader returns examples with the same columns::

    text_a: str, text_b: str | None, label: str (class label) or float (regression),
    label_id: int (class index; regression: the score as float), row: "file:line" for errors

The k-shot generator reproduces LM-BFF's ``tools/generate_k_shot_data.py`` byte for byte
(PROTOCOL §3): legacy numpy ``RandomState`` shuffle of the raw lines, buckets in order of
first appearance, first K of each bucket = train, next K = dev, GLUE files keep their
header, and header-less GLUE files (CoLA) are shuffled in place across the seeds in the
order 100, 13, 21, 42, 87.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .tasks import MtftError, TaskError, TaskSpec, get_task

logger = logging.getLogger(__name__)

SEEDS = (13, 21, 42, 87, 100)


def default_data_dir() -> str:
    """$MTFT_NLP_DATA_DIR, else ``../shared/data`` (relative to the working directory)."""
    return os.environ.get("MTFT_NLP_DATA_DIR") or os.path.join("..", "shared", "data")

LMBFF_SEED_ORDER = (100, 13, 21, 42, 87)
DEFAULT_K = 16


class DataError(MtftError):
    """Data that cannot be used: the message names the file, row or class."""


def data_dir_hint() -> str:
    return "pass --data_dir or set MTFT_NLP_DATA_DIR"


def check_k(k) -> int:
    """``--k`` (examples per class) must be a positive integer."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise DataError(f"--k must be a positive number of examples per class, got {k!r}")
    return int(k)


def check_seed(seed) -> int:
    """A split seed is an integer in [0, 2**32 - 1] (numpy's RandomState range)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise DataError(f"--seed must be an integer between 0 and {2**32 - 1} (it picks the k-shot split), got {seed!r}")
    return int(seed)


def _decode_error(path, exc: UnicodeDecodeError) -> DataError:
    return DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})")


# --------------------------------------------------------------------------- raw records


def _read_tsv_lines(path: Path) -> List[str]:
    try:
        with open(path, encoding="utf-8") as f:  # universal newlines, as LM-BFF's open(..., "r")
            return f.readlines()
    except FileNotFoundError:
        raise DataError(f"data file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise _decode_error(path, exc) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})") from None


def _read_csv_frame(path: Path, keep_default_na: bool = True):
    import pandas as pd

    try:
        return pd.read_csv(path, header=None, keep_default_na=keep_default_na)
    except FileNotFoundError:
        raise DataError(f"data file not found: {path}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: malformed CSV ({' '.join(str(exc).split())})") from None
    except UnicodeDecodeError as exc:
        raise _decode_error(path, exc) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})") from None
    except ValueError as exc:  # anything else pandas refuses
        raise DataError(f"{path}: malformed CSV ({' '.join(str(exc).split())})") from None


def _split_header(task: TaskSpec, lines: List[str]) -> Tuple[List[str], List[str]]:
    if task.lmbff.header:
        return lines[0:1], lines[1:]
    return [], lines  # the list itself: LM-BFF shuffled it in place (see LmbffSource.cumulative_shuffle)


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


def _check_label(task: TaskSpec, value, where: str):
    if task.is_regression:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise DataError(f"{where}: label {value!r} is not a number (task {task.name} is a regression task)") from None
        if math.isnan(v):
            raise DataError(f"{where}: label is missing")
        return v
    s = str(value)
    if s not in task.labels:
        raise DataError(f"{where}: label {s!r} is not one of task {task.name}'s labels {task.labels}")
    return s


def _parse_tsv_line(task: TaskSpec, line: str, where: str) -> Optional[Dict]:
    src = task.lmbff
    fields = line.rstrip("\r\n").split("\t")
    need = max(src.text_a, src.text_b if src.text_b is not None else 0, src.label if src.label >= 0 else 0) + 1
    if len(fields) < need or (src.label < 0 and len(fields) < 2):
        if src.skip_malformed:
            return None
        raise DataError(f"{where}: expected at least {need} tab-separated columns, found {len(fields)}")
    label = _check_label(task, fields[src.label], where)
    return _example(task, fields[src.text_a], fields[src.text_b] if src.text_b is not None else None, label, where)


def _example(task: TaskSpec, text_a, text_b, label, where: str) -> Dict:
    label_id = float(label) if task.is_regression else task.labels.index(label)
    return {"text_a": _text(text_a), "text_b": None if text_b is None else _text(text_b), "label": label,
            "label_id": label_id, "row": where}


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def parse_records(task: TaskSpec, records: Sequence, source: str, first_row: int = 1) -> List[Dict]:
    """Parse raw TSV lines or CSV rows of an LM-BFF file into examples (the one parser)."""
    task = get_task(task)
    src = task.lmbff
    out = []
    for i, rec in enumerate(records):
        where = f"{source}:{i + first_row}"
        if src.format == "tsv":
            ex = _parse_tsv_line(task, rec, where)
        else:
            rec = list(rec)
            need = max(src.text_a, src.text_b or 0, src.label) + 1
            if len(rec) < need:
                raise DataError(f"{where}: expected at least {need} columns, found {len(rec)}")
            label = _check_label(task, rec[src.label], where)
            ex = _example(task, rec[src.text_a], rec[src.text_b] if src.text_b is not None else None, label, where)
        if ex is not None:
            out.append(ex)
    return out


def read_lmbff_file(task: TaskSpec | str, path: str | os.PathLike) -> List[Dict]:
    """Examples of one LM-BFF file (original or k-shot), validated row by row."""
    task = get_task(task)
    path = Path(path)
    if task.lmbff is None:
        raise TaskError(f"task {task.name} has no LM-BFF source in its task file")
    if task.lmbff.format == "tsv":
        lines = _read_tsv_lines(path)
        header, body = _split_header(task, lines)
        return parse_records(task, body, str(path), first_row=len(header) + 1)
    frame = _read_csv_frame(path, keep_default_na=False)
    return parse_records(task, frame.values.tolist(), str(path))


# --------------------------------------------------------------------------- k-shot splits


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
            self._train_lines = _read_tsv_lines(train_path)
        else:
            self._train_frame = _read_csv_frame(train_path)
        self.train_path = train_path

    # raw test files: written as LM-BFF does (a byte copy for GLUE, a pandas round trip for CSV)
    def test_files(self) -> Dict[str, object]:
        out = {}
        for orig, name in self.task.lmbff.test.items():
            p = self.dir / orig
            if not p.exists():
                logger.warning("task %s: %s not found, no k-shot %s is written", self.task.name, p, name)
                continue
            out[name] = _read_tsv_lines(p) if self.task.lmbff.format == "tsv" else _read_csv_frame(p)
        return out

    def _shuffled(self, seed: int):
        src = self.task.lmbff
        if src.format == "tsv":
            header, body = _split_header(self.task, list(self._train_lines))
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
                raise DataError(f"{self.train_path}: a row has too few columns or an unreadable label: {str(rec)[:80]!r}") from None
            if not self.task.is_regression and str(label) not in self.task.labels:
                if self.task.lmbff.skip_malformed:
                    continue
                raise DataError(f"{self.train_path}: label {label!r} is not one of task {self.task.name}'s labels {self.task.labels}")
            buckets.setdefault(label, []).append(rec)
        _check_bucket_sizes(buckets, self.k, str(self.train_path))
        _check_classes(self.task, buckets, str(self.train_path))
        train = [r for recs in buckets.values() for r in recs[: self.k]]
        dev = [r for recs in buckets.values() for r in recs[self.k : 2 * self.k]]
        return {"header": header, "train": train, "dev": dev}

    def write(self, seed: int, output_dir: str | os.PathLike) -> Path:
        """Write ``<output_dir>/<DIR>/<K>-<seed>/`` (LM-BFF names); all or nothing."""
        src = self.task.lmbff
        parts = self.split(seed)
        tests = self.test_files()
        final = Path(output_dir) / src.dir / f"{self.k}-{seed}"
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.k}-{seed}.", dir=final.parent))
        try:
            if src.format == "tsv":
                _write_lines(tmp / src.train, parts["header"] + parts["train"])
                _write_lines(tmp / src.dev_name, parts["header"] + parts["dev"])
                for name, lines in tests.items():
                    _write_lines(tmp / name, lines)
            else:
                import pandas as pd

                pd.DataFrame(parts["train"]).to_csv(tmp / "train.csv", header=False, index=False)
                pd.DataFrame(parts["dev"]).to_csv(tmp / "dev.csv", header=False, index=False)
                for name, frame in tests.items():
                    frame.to_csv(tmp / name, header=False, index=False)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final


def _write_lines(path: Path, lines: Iterable[str]):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line)


def write_splits(tasks: Sequence[str], original_dir, output_dir, seeds: Sequence[int] = SEEDS, k: int = DEFAULT_K) -> List[Path]:
    """``mtft-nlp splits``: every task x seed, seeds in LM-BFF's order. Validates each task before writing it."""
    written = []
    order = sorted(seeds, key=lambda s: (LMBFF_SEED_ORDER.index(s) if s in LMBFF_SEED_ORDER else len(LMBFF_SEED_ORDER), s))
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


def _records_to_examples(task: TaskSpec, records, header, source: str) -> List[Dict]:
    return parse_records(task, records, source, first_row=len(header) + 1)


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


def load_kshot(task: TaskSpec | str, data_dir: str | os.PathLike, seed: int, k: int = DEFAULT_K,
               splits: Sequence[str] = ("train", "dev", "test"), max_test_examples: Optional[int] = None) -> Dict[str, List[Dict]]:
    """The k-shot train/dev (and whole test) examples of a task.

    ``data_dir`` is either an LM-BFF split folder holding the task's train/dev/test files
    (used as is), or a root holding ``original/`` (or the ``original/`` folder itself),
    from which the split for ``seed`` is made in memory, identical to ``mtft-nlp splits``.
    """
    task = get_task(task)
    k, seed = check_k(k), check_seed(seed)
    out: Dict[str, List[Dict]] = {}
    if is_split_dir(data_dir, task):
        p = Path(data_dir)
        files = {"train": task.lmbff.train, "dev": task.lmbff.dev_name, "test": task.lmbff.test_name}
        for s in splits:
            out[s] = read_lmbff_file(task, p / files[s])
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
        splitter = KShotSplitter(task, original, k)
        if "train" in splits or "dev" in splits:
            parts = splitter.split(seed)
            src = f"{splitter.train_path}[k-shot seed {seed}]"
            for s in ("train", "dev"):
                if s in splits:
                    out[s] = _records_to_examples(task, parts[s], [], f"{src}/{s}")
        if "test" in splits:
            orig = [o for o, name in task.lmbff.test.items() if name == task.lmbff.test_name]
            if not orig or not (splitter.dir / orig[0]).exists():
                raise DataError(f"task {task.name}: no test file ({orig[0] if orig else task.lmbff.test_name}) in {splitter.dir}")
            out["test"] = read_lmbff_file(task, splitter.dir / orig[0])
    if "test" in out:
        out["test"] = cap_examples(out["test"], max_test_examples)
    check_examples(task, out, str(data_dir))
    return out


def _check_classes(task: TaskSpec, buckets: Dict, where: str):
    """Every class of the task must be present (regression: both halves of the score range)."""
    if task.is_regression:
        if len(buckets) < 2:
            raise DataError(f"{where}: every score falls on one side of {task.regression['bucket_threshold']}; "
                            f"task {task.name} needs examples of both halves")
        return
    missing = [lab for lab in task.labels if lab not in {str(b) for b in buckets}]
    if missing:
        raise DataError(f"{where}: no examples of class {', '.join(map(repr, missing))}; task {task.name} has "
                        f"{task.num_labels} classes {task.labels}")


def _empty(text) -> bool:
    return text is None or not str(text).strip()


def check_examples(task: TaskSpec, parts: Dict[str, List[Dict]], source: str) -> None:
    """The loaded splits must be usable: none empty, every class in train, texts not (all) empty.

    A split whose every example has an empty text is an error; some empty texts are a warning with the count.
    """
    two = task.num_sentences == 2
    for name, exs in parts.items():
        if not exs:
            raise DataError(f"{source}: the {name} set has no examples")
        empty = [ex for ex in exs if _empty(ex["text_a"]) or (two and ex.get("text_b") is not None and _empty(ex["text_b"]))]
        if len(empty) == len(exs):
            raise DataError(f"{source}: every example of the {name} set has an empty text (first: {exs[0]['row']}); "
                            "check the text column (--text_a_column / --text_b_column)")
        if empty:
            logger.warning("%s: %d of %d %s examples have an empty text (first: %s)", source, len(empty), len(exs), name,
                           empty[0]["row"])
    if "train" in parts:
        buckets: Dict[object, list] = {}
        for ex in parts["train"]:
            buckets.setdefault(task.label_index(ex["label"]) if task.is_regression else ex["label"], []).append(ex)
        _check_classes(task, buckets, f"{source} (train set)")


def _check_bucket_sizes(buckets: Dict, k: int, where: str):
    short = [f"class {label!r} has {len(recs)}" for label, recs in sorted(buckets.items(), key=lambda x: str(x[0]))
             if len(recs) < 2 * k]
    if short:
        raise DataError(f"{where}: {', '.join(short)} examples, fewer than the {2 * k} needed per class for "
                        f"K={k} train + dev")


def sample_kshot(examples: List[Dict], task: TaskSpec, seed: int, k: int = DEFAULT_K,
                 source: Optional[str] = None) -> Dict[str, List[Dict]]:
    """LM-BFF's sampling rule over already-parsed examples (Hub and CSV/JSONL sources)."""
    k, seed = check_k(k), check_seed(seed)
    rows = list(examples)
    np.random.RandomState(seed).shuffle(rows)
    buckets: Dict[object, list] = {}
    for ex in rows:
        key = task.label_index(ex["label"]) if task.is_regression else ex["label"]
        buckets.setdefault(key, []).append(ex)
    _check_classes(task, buckets, source or f"task {task.name}")
    _check_bucket_sizes(buckets, k, source or f"task {task.name}")
    return {"train": [r for b in buckets.values() for r in b[:k]], "dev": [r for b in buckets.values() for r in b[k : 2 * k]]}


def load_hub(task: TaskSpec | str, seed: int, k: int = DEFAULT_K, dataset_name: Optional[str] = None,
             dataset_config: Optional[str] = None, max_test_examples: Optional[int] = None) -> Dict[str, List[Dict]]:
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
    text_a, text_b, label_col = (hub.text_a, hub.text_b, hub.label) if hub else ("text_a", "text_b", "label")
    label_map = {str(k2): v for k2, v in (hub.label_map or {}).items()} if hub else {}

    def convert(split) -> List[Dict]:
        out = []
        for i, row in enumerate(ds[split]):
            where = f"{path}[{split}]:{i}"
            raw = row[label_col]
            if not task.is_regression:
                if int(raw) < 0 if isinstance(raw, (int, np.integer)) else False:
                    continue  # unlabelled rows (GLUE test splits use -1)
                raw = label_map.get(str(raw), raw)
            label = _check_label(task, raw, where)
            out.append(_example(task, row[text_a], row[text_b] if text_b else None, label, where))
        return out

    train_split = hub.train_split if hub else "train"
    test_split = hub.test_split if hub else "test"
    parts = sample_kshot(convert(train_split), task, seed, k, source=f"{path}[{train_split}]")
    parts["test"] = cap_examples(convert(test_split), max_test_examples)
    check_examples(task, parts, str(path))
    return parts


def read_rows_numbered(path: str | os.PathLike) -> List[Tuple[int, Dict]]:
    """``(file line, row)`` pairs of a JSON Lines (.jsonl/.json) or a CSV/TSV file with a header.

    Line numbers are the file's own (1-based, the header is line 1), as editors show them; every
    problem (missing file, bytes that are not UTF-8, a line that is not a JSON object, malformed
    CSV) is a :class:`DataError` naming the file and line.
    """
    import json

    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file not found: {p}" if not p.exists() else f"{p} is not a file")
    rows: List[Tuple[int, Dict]] = []
    try:
        with open(p, encoding="utf-8", newline="") as f:
            if p.suffix in (".jsonl", ".json"):
                for i, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except (json.JSONDecodeError, RecursionError) as exc:
                        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
                        raise DataError(f"{p}:{i}: not valid JSON ({msg})") from None
                    if not isinstance(obj, dict):
                        raise DataError(f"{p}:{i}: expected a JSON object ({{\"text_a\": ..., \"label\": ...}}), "
                                        f"got {type(obj).__name__}")
                    rows.append((i, obj))
                return rows
            reader = csv.reader(f, delimiter="\t" if p.suffix == ".tsv" else ",")
            header = None
            start = 1
            for fields in reader:
                if header is None:
                    if not fields:
                        start = reader.line_num + 1
                        continue
                    header = fields
                    if len(set(header)) != len(header):
                        raise DataError(f"{p}:{reader.line_num}: duplicate column names in the header {header}")
                    start = reader.line_num + 1
                    continue
                line = start
                start = reader.line_num + 1
                if not fields:
                    continue
                if len(fields) > len(header):
                    raise DataError(f"{p}:{line}: {len(fields)} fields but the header has {len(header)} columns")
                rows.append((line, dict(zip(header, fields + [None] * (len(header) - len(fields))))))
            return rows
    except UnicodeDecodeError as exc:
        raise _decode_error(p, exc) from None
    except csv.Error as exc:
        raise DataError(f"{p}:{start}: malformed CSV ({exc})") from None
    except OSError as exc:
        raise DataError(f"{p}: cannot be read ({exc.strerror})") from None


def read_rows(path: str | os.PathLike) -> List[Dict]:
    """Rows of a JSON Lines (.jsonl/.json) or a CSV/TSV file with a header, as dicts; errors name the line."""
    return [row for _, row in read_rows_numbered(path)]


def load_files(task: TaskSpec | str, seed: int, k: int = DEFAULT_K, train_file: Optional[str] = None,
               validation_file: Optional[str] = None, test_file: Optional[str] = None,
               text_a_column: str = "text_a", text_b_column: Optional[str] = None, label_column: str = "label",
               max_test_examples: Optional[int] = None) -> Dict[str, List[Dict]]:
    """Examples from CSV (with header) or JSON Lines files and a column mapping.

    With a validation file the train/validation files are used as is (already k-shot);
    without one, the k-shot train and dev sets are sampled from the train file.
    """
    task = get_task(task)
    k, seed = check_k(k), check_seed(seed)

    def read(path) -> List[Dict]:
        p = Path(path)
        out = []
        for line, row in read_rows_numbered(p):
            where = f"{p}:{line}"
            for col in (text_a_column, label_column) + ((text_b_column,) if text_b_column else ()):
                if col not in row:
                    raise DataError(f"{where}: no column {col!r} (columns: {', '.join(map(str, row))})")
            label = _check_label(task, row[label_column], where)
            out.append(_example(task, row[text_a_column], row[text_b_column] if text_b_column else None, label, where))
        if not out:
            raise DataError(f"{p}: no examples (the file is empty or holds only a header)")
        return out

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


# --------------------------------------------------------------------------- leakage checks


def normalize_text(text: Optional[str]) -> str:
    """Lower case, whitespace runs collapsed to one space, stripped (for overlap checks)."""
    return " ".join(str(text or "").split()).lower()


def _fields(example: Dict) -> List[str]:
    """The example's non-empty text_a / text_b."""
    return [str(example[f]) for f in ("text_a", "text_b") if example.get(f) is not None and str(example[f]).strip()]


def text_overlap(target_examples: Sequence[Dict], source_examples: Sequence[Dict], max_examples: int = 5) -> Dict:
    """Source examples whose text_a or text_b also occurs (as text_a or text_b) among the target examples.

    Returns ``{"n_examples", "exact", "normalized", "indices", "examples"}``: the number of
    source examples, how many share a text exactly, how many after :func:`normalize_text`
    (a superset of the exact ones), the indices of the latter, and the first
    ``max_examples`` of them as ``{"row", "text"}``. Used by the multitask stage's leakage
    guard and by task selection.
    """
    exact = {t for ex in target_examples for t in _fields(ex)}
    norm = {normalize_text(t) for t in exact}
    n_exact, indices, shown = 0, [], []
    for i, ex in enumerate(source_examples):
        fields = _fields(ex)
        n_exact += any(t in exact for t in fields)
        hit = next((t for t in fields if normalize_text(t) in norm), None)
        if hit is not None:
            indices.append(i)
            if len(shown) < max_examples:
                shown.append({"row": ex.get("row"), "text": hit})
    return {"n_examples": len(source_examples), "exact": int(n_exact), "normalized": len(indices), "indices": indices,
            "examples": shown}
