"""``mtft-nlp report DIR``: RESULTS.md, CSV, LaTeX and PNG plots from the results.json files below DIR.

The table is the paper's layout (tasks as columns, rows as methods, mean (std) x 100 over
the seeds, best per column in bold, the metric per task), with footnotes on the protocol,
the environment the results were measured in, and the commands that produced them.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .results import ROW_TITLES, _row_key, _task_order, aggregate, atomic_write_text, find_results, format_table


def _protocol_lines(results: List[Dict]) -> List[str]:
    def values(key):
        return sorted({str(r.get(key)) for r in results if r.get(key) is not None})

    models = sorted({r.get("model") for r in results if r.get("model")})
    lines = [
        f"- Models: {', '.join(models)}."
        + (" The embedded all-MiniLM-L6-v2 has no pretrained MLM head (zero-shot prompting with it is at chance); "
           "RoBERTa-large is the model for real numbers." if any(r.get("embedded_default_model") for r in results) else ""),
        f"- Split seeds: {', '.join(values('seed'))}; K = {', '.join(values('k'))} per class (LM-BFF splits).",
        f"- Training steps: {', '.join(v for v in values('max_steps') if v != '0')}; learning rates: "
        f"{', '.join(values('learning_rate'))}; batch sizes: {', '.join(values('train_batch_size'))}.",
        "- Test metric x 100: mean (population std, ddof 0) over the seeds; a single number where there is one run.",
        "- Best dev checkpoint (strict improvement on the k-shot dev set) is the one evaluated on test.",
    ]
    caps = sorted({r.get("n_test") for r in results if r.get("n_test")})
    if caps and max(caps) <= 1000:
        lines.append(f"- Test sets capped at {max(caps)} examples (a fixed random subset, the same for every seed and row).")
    return lines


def _environment(results: List[Dict]) -> List[str]:
    envs = [r.get("env") or {} for r in results]
    out = []
    for key in ("device", "torch", "transformers", "mtft_nlp", "git_revision", "platform", "cpu_count"):
        vals = sorted({str(e[key]) for e in envs if key in e})
        if vals:
            out.append(f"- {key}: {', '.join(vals)}")
    total = sum(float(r.get("train_seconds") or 0) + float(r.get("eval_seconds") or 0) for r in results)
    out.append(f"- total train + eval time of these runs: {total / 60:.1f} min over {len(results)} runs")
    return out


def plot_bars(agg: List[Dict], path: Path) -> Path:
    """Per-task grouped bars (one bar per row) with std error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = _task_order(a["task"] for a in agg)
    rows = sorted({a["row"] for a in agg}, key=_row_key)
    cell = {(a["task"], a["row"]): a for a in agg}
    width = 0.8 / max(1, len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(tasks) + 2), 4))
    for i, row in enumerate(rows):
        xs = [t_i + (i - (len(rows) - 1) / 2) * width for t_i, t in enumerate(tasks) if (t, row) in cell]
        ys = [cell[(t, row)]["mean"] for t in tasks if (t, row) in cell]
        es = [cell[(t, row)]["std"] for t in tasks if (t, row) in cell]
        ax.bar(xs, ys, width, yerr=es, capsize=2, label=ROW_TITLES.get(row, row))
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels(tasks, rotation=30, ha="right")
    ax.set_ylabel("test metric x 100")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_sweeps(root: Path, path: Path) -> Optional[Path]:
    """Accuracy against the swept variable (number of finetuning tasks, shots per class)."""
    curves: Dict[tuple, Dict[float, List[float]]] = defaultdict(lambda: defaultdict(list))
    for sweep_file in sorted(root.rglob("sweep.json")):
        sweep = json.loads(sweep_file.read_text())
        for r in find_results(sweep_file.parent):
            curves[(sweep["variable"], r["task"])][float(sweep["value"])].append(100 * float(r["test_score"]))
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variables = sorted({v for v, _ in curves})
    fig, axes = plt.subplots(1, len(variables), figsize=(5 * len(variables), 3.6), squeeze=False)
    for ax, var in zip(axes[0], variables):
        for (v, task), points in sorted(curves.items()):
            if v != var:
                continue
            xs = sorted(points)
            means = [sum(points[x]) / len(points[x]) for x in xs]
            stds = [math.sqrt(sum((p - m) ** 2 for p in points[x]) / len(points[x])) for x, m in zip(xs, means)]
            ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=task)
        ax.set_xlabel({"num_tasks": "number of finetuning tasks", "shots": "shots per class"}.get(var, var))
        ax.set_ylabel("test metric x 100")
        ax.set_xscale("log", base=2)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(root: str, out_dir: Optional[str] = None, commands: Sequence[str] = (), title: str = "Results",
                 rows: Optional[Sequence[str]] = None, intro: str = "") -> Dict[str, Path]:
    """Write RESULTS.md, results.csv, results.tex, results.png (and sweeps.png) for ``root``."""
    root_p = Path(root)
    out = Path(out_dir) if out_dir else root_p
    results = [r for r in find_results(root_p) if not rows or r["row"] in rows]
    if not results:
        from .tasks import MtftError

        raise MtftError(f"no results.json found below {root}")
    agg = aggregate(results)
    files = {
        "csv": out / "results.csv",
        "latex": out / "results.tex",
        "plot": out / "results.png",
        "markdown": out / "RESULTS.md",
    }
    atomic_write_text(files["csv"], format_table(agg, "csv"))
    atomic_write_text(files["latex"], format_table(agg, "latex", titles=True))
    plot_bars(agg, files["plot"])
    sweeps = plot_sweeps(root_p, out / "sweeps.png")
    n = {(a["task"], a["row"]): a["n"] for a in agg}
    md = [f"# {title}", ""]
    if intro:
        md += [intro, ""]
    md += [format_table(agg, "markdown", titles=True).rstrip(), "",
           f"Runs per cell (seeds): {min(n.values())}-{max(n.values())}. Metric per task in the header "
           "(accuracy where none is named).", "", "## Protocol", ""] + _protocol_lines(results)
    md += ["", "## Commands", ""] + ([f"    {c}" for c in commands] or ["    (not recorded)"])
    md += ["", "## Environment", ""] + _environment(results)
    md += ["", f"![per-task results]({files['plot'].name})"]
    if sweeps:
        files["sweeps"] = sweeps
        md += ["", f"![sweeps]({sweeps.name})"]
    md += ["", f"CSV: [{files['csv'].name}]({files['csv'].name}), LaTeX: [{files['latex'].name}]({files['latex'].name})."]
    atomic_write_text(files["markdown"], "\n".join(md) + "\n")
    return files
