"""Reading and checking inputs: LM-BFF files, CSV/TSV/JSON Lines rows, labels, and the checks of options and splits.

Every reader returns examples with the same columns::

    text_a: str, text_b: str | None, label: str (class label) or float (regression),
    label_id: int (class index; regression: the score as float), row: "file:line" for errors

Every problem is a :class:`DataError` naming the file, the row or the class.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..tasks import MtftError, TaskError, TaskSpec, get_task

__all__ = [
    "DataError",
    "data_dir_hint",
    "check_k",
    "check_seed",
    "check_label",
    "check_classes",
    "check_bucket_sizes",
    "check_examples",
    "read_tsv_lines",
    "read_csv_frame",
    "split_header",
    "make_example",
    "parse_records",
    "read_lmbff_file",
    "read_rows_numbered",
    "read_rows",
    "read_examples",
]

# the name of the module these checks came from: the warnings keep their logger name (benchmark logs, filters)
logger = logging.getLogger("mtft_nlp.data.kshot")


class DataError(MtftError):
    """Data that cannot be used: the message names the file, row or class."""


def data_dir_hint() -> str:
    return "pass --data_dir or set MTFT_NLP_DATA_DIR"


# --------------------------------------------------------------------------- option checks


def check_k(k) -> int:
    """``--k`` (examples per class) must be a positive integer."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise DataError(f"--k must be a positive number of examples per class, got {k!r}")
    return int(k)


def check_seed(seed) -> int:
    """A split seed is an integer in [0, 2**32 - 1] (numpy's RandomState range)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise DataError(
            f"--seed must be an integer between 0 and {2**32 - 1} (it picks the k-shot split), got {seed!r}"
        )
    return int(seed)


def _decode_error(path, exc: UnicodeDecodeError) -> DataError:
    return DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})")


# --------------------------------------------------------------------------- raw records of LM-BFF files


def read_tsv_lines(path: Path) -> List[str]:
    """The raw lines of a TSV file (newlines kept), as LM-BFF reads them."""
    try:
        with open(path, encoding="utf-8") as f:  # universal newlines, as LM-BFF's open(..., "r")
            return f.readlines()
    except FileNotFoundError:
        raise DataError(f"data file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise _decode_error(path, exc) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})") from None


def read_csv_frame(path: Path, keep_default_na: bool = True):
    """A header-less CSV file as a pandas DataFrame, as LM-BFF reads it."""
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


def split_header(task: TaskSpec, lines: List[str]) -> Tuple[List[str], List[str]]:
    """(header lines, body lines) of a TSV file of ``task``."""
    if task.lmbff.header:
        return lines[0:1], lines[1:]
    return [], lines  # the list itself: LM-BFF shuffled it in place (see LmbffSource.cumulative_shuffle)


# --------------------------------------------------------------------------- examples


def check_label(task: TaskSpec, value, where: str):
    """The label as the task knows it (a class label string, or a float score); else a :class:`DataError`."""
    if task.is_regression:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise DataError(
                f"{where}: label {value!r} is not a number (task {task.name} is a regression task)"
            ) from None
        if math.isnan(v):
            raise DataError(f"{where}: label is missing")
        return v
    s = str(value)
    if s not in task.labels:
        raise DataError(f"{where}: label {s!r} is not one of task {task.name}'s labels {task.labels}")
    return s


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def make_example(task: TaskSpec, text_a, text_b, label, where: str) -> Dict:
    """One example (text_a, text_b, label, label_id, row) of an already checked label."""
    label_id = float(label) if task.is_regression else task.labels.index(label)
    return {
        "text_a": _text(text_a),
        "text_b": None if text_b is None else _text(text_b),
        "label": label,
        "label_id": label_id,
        "row": where,
    }


def _parse_tsv_line(task: TaskSpec, line: str, where: str) -> Optional[Dict]:
    src = task.lmbff
    fields = line.rstrip("\r\n").split("\t")
    need = max(src.text_a, src.text_b if src.text_b is not None else 0, src.label if src.label >= 0 else 0) + 1
    if len(fields) < need or (src.label < 0 and len(fields) < 2):
        if src.skip_malformed:
            return None
        raise DataError(f"{where}: expected at least {need} tab-separated columns, found {len(fields)}")
    label = check_label(task, fields[src.label], where)
    return make_example(task, fields[src.text_a], fields[src.text_b] if src.text_b is not None else None, label, where)


def _parse_csv_row(task: TaskSpec, rec, where: str) -> Dict:
    src = task.lmbff
    rec = list(rec)
    need = max(src.text_a, src.text_b or 0, src.label) + 1
    if len(rec) < need:
        raise DataError(f"{where}: expected at least {need} columns, found {len(rec)}")
    label = check_label(task, rec[src.label], where)
    return make_example(task, rec[src.text_a], rec[src.text_b] if src.text_b is not None else None, label, where)


def parse_records(task: TaskSpec, records: Sequence, source: str, first_row: int = 1) -> List[Dict]:
    """Parse raw TSV lines or CSV rows of an LM-BFF file into examples (the one parser)."""
    task = get_task(task)
    parse = _parse_tsv_line if task.lmbff.format == "tsv" else _parse_csv_row
    out = []
    for i, rec in enumerate(records):
        ex = parse(task, rec, f"{source}:{i + first_row}")
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
        lines = read_tsv_lines(path)
        header, body = split_header(task, lines)
        return parse_records(task, body, str(path), first_row=len(header) + 1)
    frame = read_csv_frame(path, keep_default_na=False)
    return parse_records(task, frame.values.tolist(), str(path))


# --------------------------------------------------------------------------- rows of CSV/TSV/JSON Lines files


def _jsonl_rows(p: Path, f) -> List[Tuple[int, Dict]]:
    rows = []
    for i, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as exc:
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
            raise DataError(f"{p}:{i}: not valid JSON ({msg})") from None
        if not isinstance(obj, dict):
            raise DataError(
                f'{p}:{i}: expected a JSON object ({{"text_a": ..., "label": ...}}), got {type(obj).__name__}'
            )
        rows.append((i, obj))
    return rows


class _CsvRows:
    """The rows of a CSV/TSV file with a header, numbered by the file line each starts on; ``line`` is the
    line being read (for the message of a malformed row)."""

    def __init__(self, p: Path):
        self.p, self.line = p, 1

    def read(self, f) -> List[Tuple[int, Dict]]:
        p = self.p
        reader = csv.reader(f, delimiter="\t" if p.suffix == ".tsv" else ",")
        header, rows = None, []
        for fields in reader:
            line, self.line = self.line, reader.line_num + 1
            if not fields:
                continue
            if header is None:
                header = fields
                if len(set(header)) != len(header):
                    raise DataError(f"{p}:{reader.line_num}: duplicate column names in the header {header}")
                continue
            if len(fields) > len(header):
                raise DataError(f"{p}:{line}: {len(fields)} fields but the header has {len(header)} columns")
            rows.append((line, dict(zip(header, fields + [None] * (len(header) - len(fields))))))
        return rows


def read_rows_numbered(path: str | os.PathLike) -> List[Tuple[int, Dict]]:
    """``(file line, row)`` pairs of a JSON Lines (.jsonl/.json) or a CSV/TSV file with a header.

    Line numbers are the file's own (1-based, the header is line 1), as editors show them; every
    problem (missing file, bytes that are not UTF-8, a line that is not a JSON object, malformed
    CSV) is a :class:`DataError` naming the file and line.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file not found: {p}" if not p.exists() else f"{p} is not a file")
    csv_rows = _CsvRows(p)
    try:
        with open(p, encoding="utf-8", newline="") as f:
            if p.suffix in (".jsonl", ".json"):
                return _jsonl_rows(p, f)
            return csv_rows.read(f)
    except UnicodeDecodeError as exc:
        raise _decode_error(p, exc) from None
    except csv.Error as exc:
        raise DataError(f"{p}:{csv_rows.line}: malformed CSV ({exc})") from None
    except OSError as exc:
        raise DataError(f"{p}: cannot be read ({exc.strerror})") from None


def read_rows(path: str | os.PathLike) -> List[Dict]:
    """Rows of a JSON Lines (.jsonl/.json) or a CSV/TSV file with a header, as dicts; errors name the line."""
    return [row for _, row in read_rows_numbered(path)]


def read_examples(
    task: TaskSpec,
    path,
    text_a_column: str = "text_a",
    text_b_column: Optional[str] = None,
    label_column: str = "label",
) -> List[Dict]:
    """Examples of a CSV (with header) or JSON Lines file through a column mapping; an empty file is an error."""
    p = Path(path)
    out = []
    for line, row in read_rows_numbered(p):
        where = f"{p}:{line}"
        for col in (text_a_column, label_column) + ((text_b_column,) if text_b_column else ()):
            if col not in row:
                raise DataError(f"{where}: no column {col!r} (columns: {', '.join(map(str, row))})")
        label = check_label(task, row[label_column], where)
        out.append(make_example(task, row[text_a_column], row[text_b_column] if text_b_column else None, label, where))
    if not out:
        raise DataError(f"{p}: no examples (the file is empty or holds only a header)")
    return out


# --------------------------------------------------------------------------- checks of splits


def check_classes(task: TaskSpec, buckets: Dict, where: str):
    """Every class of the task must be present (regression: both halves of the score range)."""
    if task.is_regression:
        if len(buckets) < 2:
            raise DataError(
                f"{where}: every score falls on one side of {task.regression['bucket_threshold']}; "
                f"task {task.name} needs examples of both halves"
            )
        return
    missing = [lab for lab in task.labels if lab not in {str(b) for b in buckets}]
    if missing:
        raise DataError(
            f"{where}: no examples of class {', '.join(map(repr, missing))}; task {task.name} has "
            f"{task.num_labels} classes {task.labels}"
        )


def check_bucket_sizes(buckets: Dict, k: int, where: str):
    """Every class bucket must hold 2K examples (K train + K dev)."""
    short = [
        f"class {label!r} has {len(recs)}"
        for label, recs in sorted(buckets.items(), key=lambda x: str(x[0]))
        if len(recs) < 2 * k
    ]
    if short:
        raise DataError(
            f"{where}: {', '.join(short)} examples, fewer than the {2 * k} needed per class for K={k} train + dev"
        )


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
        empty = [
            ex for ex in exs if _empty(ex["text_a"]) or (two and ex.get("text_b") is not None and _empty(ex["text_b"]))
        ]
        if len(empty) == len(exs):
            raise DataError(
                f"{source}: every example of the {name} set has an empty text (first: {exs[0]['row']}); "
                "check the text column (--text_a_column / --text_b_column)"
            )
        if empty:
            logger.warning(
                "%s: %d of %d %s examples have an empty text (first: %s)",
                source,
                len(empty),
                len(exs),
                name,
                empty[0]["row"],
            )
    if "train" in parts:
        buckets: Dict[object, list] = {}
        for ex in parts["train"]:
            buckets.setdefault(task.label_index(ex["label"]) if task.is_regression else ex["label"], []).append(ex)
        check_classes(task, buckets, f"{source} (train set)")
