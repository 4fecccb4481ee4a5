"""``results.json``: schema, atomic writes, and aggregation into the paper's mean (std) tables.

A run's ``results.json`` holds at least ``task``, ``row``, ``seed``, ``metric``,
``dev_score``, ``test_score`` (fractions; Matthews/Pearson in [-1, 1]), ``zero_shot``,
``model``, ``prompt``, ``args``, ``env``, ``train_seconds``, ``eval_seconds``.
Tables report mean and population std (ddof 0) of ``test_score`` x 100 over the seeds.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from .. import rows as _rows  # row order and long names: from the methods registered when asked for
from ..io import RESULTS_FILE
from ..metrics import METRIC_NAMES
from ..records import RecordError, RunRecord

# the fields every results.json has (records.RunRecord's schema)
REQUIRED_KEYS = ("task", "row", "seed", "metric", "dev_score", "test_score", "zero_shot", "model", "prompt")


def find_results(root: str | os.PathLike) -> List[Dict]:
    """Every valid ``results.json`` below ``root`` (unreadable or incomplete files are skipped)."""
    out = []
    for p in sorted(Path(root).rglob(RESULTS_FILE)):
        try:
            with open(p, encoding="utf-8") as f:
                r = json.load(f)
        except (OSError, json.JSONDecodeError):
            continue
        try:
            RunRecord.from_dict(r, str(p))
        except RecordError:  # incomplete or not a run's results: not a cell of any table
            continue
        r["_path"] = str(p)
        out.append(r)
    return out


def aggregate(results: Iterable[Dict]) -> List[Dict]:
    """Mean and population std (ddof 0) of test_score x 100 per (task, row)."""
    groups: Dict[tuple, List[Dict]] = {}
    for r in results:
        groups.setdefault((r["task"], r["row"]), []).append(r)
    rows = []
    for (task, row), rs in groups.items():
        scores = [100.0 * float(r["test_score"]) for r in rs]
        mean = sum(scores) / len(scores)
        std = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
        rows.append(
            {
                "task": task,
                "row": row,
                "metric": rs[0]["metric"],
                "mean": mean,
                "std": std,
                "n": len(scores),
                "seeds": sorted(r.get("seed") for r in rs),
            }
        )
    return sorted(rows, key=lambda a: (row_sort_key(a["row"]), a["task"]))


def row_sort_key(row: str):
    order = _rows.ROW_ORDER
    return (order.index(row) if row in order else len(order), row)


def task_order(tasks: Iterable[str]) -> List[str]:
    """The paper's column order, then any other task alphabetically."""
    tasks = list(dict.fromkeys(tasks))
    return [t for t in PAPER_TASK_ORDER if t in tasks] + sorted(t for t in tasks if t not in PAPER_TASK_ORDER)


PAPER_TASK_ORDER = (
    "SST-2",
    "SST-5",
    "MR",
    "CR",
    "MPQA",
    "Subj",
    "TREC",
    "CoLA",
    "MNLI",
    "MNLI-mm",
    "SNLI",
    "QNLI",
    "RTE",
    "MRPC",
    "QQP",
    "STS-B",
)


def _cell(a: Optional[Dict], bold: bool = False, latex: bool = False) -> str:
    if a is None:
        return "-"
    text = f"{a['mean']:.1f}" if a["n"] == 1 else f"{a['mean']:.1f} ({a['std']:.1f})"
    if bold:
        text = f"\\textbf{{{text}}}" if latex else f"**{text}**"
    return text


def format_table(agg: List[Dict], fmt: str = "markdown", titles: bool = False) -> str:
    """Tasks as columns, rows (methods) as rows, mean (std) x 100; best mean per column in bold."""
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["task", "row", "metric", "mean", "std", "n"])
        for a in agg:
            w.writerow([a["task"], a["row"], a["metric"], f"{a['mean']:.4f}", f"{a['std']:.4f}", a["n"]])
        return buf.getvalue()
    tasks = task_order(a["task"] for a in agg)
    rows = sorted({a["row"] for a in agg}, key=row_sort_key)
    cell = {(a["task"], a["row"]): a for a in agg}
    best = {}
    for t in tasks:
        present = [cell[(t, r)] for r in rows if (t, r) in cell]
        if len(present) > 1:
            best[t] = max(a["mean"] for a in present)
    metric = {t: METRIC_NAMES.get(next(a["metric"] for a in agg if a["task"] == t), "") for t in tasks}
    head = [f"{t} ({metric[t]})" if metric[t] != "accuracy" else t for t in tasks]
    row_titles = _rows.ROW_TITLES
    name = (lambda r: row_titles.get(r, r)) if titles else (lambda r: r)
    body = []
    for r in rows:
        body.append(
            [name(r)]
            + [
                _cell(
                    cell.get((t, r)),
                    t in best and (t, r) in cell and cell[(t, r)]["mean"] == best[t],
                    latex=fmt == "latex",
                )
                for t in tasks
            ]
        )
    if fmt == "latex":
        lines = [
            "\\begin{tabular}{l" + "c" * len(tasks) + "}",
            "\\toprule",
            " & ".join(["Row"] + [h.replace("_", "\\_") for h in head]) + " \\\\",
            "\\midrule",
        ]
        lines += [" & ".join(b) + " \\\\" for b in body]
        lines += ["\\bottomrule", "\\end{tabular}"]
        return "\n".join(lines) + "\n"
    if fmt != "markdown":
        raise ValueError(f"unknown table format {fmt!r} (markdown, latex, csv)")
    lines = ["| row | " + " | ".join(head) + " |", "|---|" + "---|" * len(tasks)]
    lines += ["| " + " | ".join(b) + " |" for b in body]
    return "\n".join(lines) + "\n"
