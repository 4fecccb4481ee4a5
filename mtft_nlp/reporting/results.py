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
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from ..metrics import METRIC_NAMES
from ..records import RecordError, RunRecord
from ..rows import ROW_ORDER, ROW_TITLES  # row order and long names live in rows.py

# the fields every results.json has (records.RunRecord's schema)
REQUIRED_KEYS = ("task", "row", "seed", "metric", "dev_score", "test_score", "zero_shot", "model", "prompt")


def _umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mkstemp_like_open(path: Path):
    """A temporary file next to ``path`` with the mode ``open()`` would give it (0666 minus the umask),
    not mkstemp's 0600, so the renamed file is readable like any other."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    except OSError:
        pass
    return fd, tmp


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    """Write JSON to a temporary file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _mkstemp_like_open(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=False, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text via a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _mkstemp_like_open(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def environment() -> Dict[str, object]:
    """Versions, device and git revision, recorded in every result."""
    import torch
    import transformers

    from .. import __version__

    env = {
        "mtft_nlp": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    for mod in ("accelerate", "datasets", "peft"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:  # optional at runtime
            pass
    env["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        if rev.returncode == 0:
            env["git_revision"] = rev.stdout.strip()
    except Exception:
        pass
    return env


def find_results(root: str | os.PathLike) -> List[Dict]:
    """Every valid ``results.json`` below ``root`` (unreadable or incomplete files are skipped)."""
    out = []
    for p in sorted(Path(root).rglob("results.json")):
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
    return sorted(rows, key=lambda a: (_row_key(a["row"]), a["task"]))


def _row_key(row: str):
    return (ROW_ORDER.index(row) if row in ROW_ORDER else len(ROW_ORDER), row)


def _task_order(tasks: Iterable[str]) -> List[str]:
    """The paper's column order, then any other task alphabetically."""
    tasks = list(dict.fromkeys(tasks))
    return [t for t in _PAPER_TASK_ORDER if t in tasks] + sorted(t for t in tasks if t not in _PAPER_TASK_ORDER)


_PAPER_TASK_ORDER = (
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
    tasks = _task_order(a["task"] for a in agg)
    rows = sorted({a["row"] for a in agg}, key=_row_key)
    cell = {(a["task"], a["row"]): a for a in agg}
    best = {}
    for t in tasks:
        present = [cell[(t, r)] for r in rows if (t, r) in cell]
        if len(present) > 1:
            best[t] = max(a["mean"] for a in present)
    metric = {t: METRIC_NAMES.get(next(a["metric"] for a in agg if a["task"] == t), "") for t in tasks}
    head = [f"{t} ({metric[t]})" if metric[t] != "accuracy" else t for t in tasks]
    name = (lambda r: ROW_TITLES.get(r, r)) if titles else (lambda r: r)
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
