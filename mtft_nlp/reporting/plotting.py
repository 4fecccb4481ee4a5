"""Plots (matplotlib, Agg backend): the results bar chart and sweep curves of the report, and the task-similarity
heatmap of ``mtft-nlp select --plot``."""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from .. import rows as _rows
from .results import find_results, row_sort_key, task_order

__all__ = ["plot_bars", "plot_sweeps", "plot_similarity", "similarity_matrix", "cluster_order"]


def bars_figure(agg: List[Dict]):
    """The figure of :func:`plot_bars`: per-task grouped bars (one bar per row) with std error bars, the legend to the
    right of the axes (never over the bars). Returns (figure, axes, legend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = task_order(a["task"] for a in agg)
    rows = sorted({a["row"] for a in agg}, key=row_sort_key)
    cell = {(a["task"], a["row"]): a for a in agg}
    width = 0.8 / max(1, len(rows))
    titles = _rows.ROW_TITLES
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(tasks) + 2), 4))
    for i, row in enumerate(rows):
        xs = [t_i + (i - (len(rows) - 1) / 2) * width for t_i, t in enumerate(tasks) if (t, row) in cell]
        ys = [cell[(t, row)]["mean"] for t in tasks if (t, row) in cell]
        es = [cell[(t, row)]["std"] for t in tasks if (t, row) in cell]
        ax.bar(xs, ys, width, yerr=es, capsize=2, label=titles.get(row, row))
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels(tasks, rotation=30, ha="right")
    ax.set_ylabel("test metric x 100")
    legend = ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig, ax, legend


def plot_bars(agg: List[Dict], path: Path) -> Path:
    """Per-task grouped bars (one bar per row) with std error bars, saved to ``path``; the legend beside them."""
    import matplotlib.pyplot as plt

    fig, _, legend = bars_figure(agg)
    fig.savefig(path, dpi=120, bbox_extra_artists=[legend], bbox_inches="tight")
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


def similarity_matrix(embeddings: Dict[str, np.ndarray]) -> Tuple[List[str], np.ndarray]:
    """Pairwise cosine similarity of the tasks' mean embeddings."""
    names = list(embeddings)
    means = np.stack([np.asarray(embeddings[n], dtype=np.float64).mean(axis=0) for n in names])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    return names, means @ means.T


def cluster_order(similarity: np.ndarray) -> List[int]:
    """Leaf order of average-linkage agglomerative clustering on ``1 - similarity``.

    Repeatedly merges the two clusters with the highest mean pairwise similarity; the merged cluster
    lists the first cluster's leaves then the second's, so similar tasks end up adjacent. Ties are
    broken by the lowest index (deterministic).
    """
    sim = np.asarray(similarity, dtype=np.float64)
    clusters: List[List[int]] = [[i] for i in range(sim.shape[0])]
    while len(clusters) > 1:
        best, pair = -np.inf, (0, 1)
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                s = sim[np.ix_(clusters[a], clusters[b])].mean()
                if s > best + 1e-12:
                    best, pair = s, (a, b)
        a, b = pair
        clusters[a] = clusters[a] + clusters[b]
        del clusters[b]
    return clusters[0]


def plot_similarity(embeddings: Dict[str, np.ndarray], path: str | os.PathLike, title: Optional[str] = None) -> Path:
    """PNG heatmap of pairwise task similarity, tasks in :func:`cluster_order`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, sim = similarity_matrix(embeddings)
    idx = cluster_order(sim)
    names = [names[i] for i in idx]
    sim = sim[np.ix_(idx, idx)]
    n = len(names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * n, 0.8 + 0.5 * n))
    im = ax.imshow(sim, cmap="viridis", vmin=float(sim.min()), vmax=1.0)
    ax.set_xticks(range(n), names, rotation=60, ha="right")
    ax.set_yticks(range(n), names)
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                f"{sim[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="black" if sim[i, j] > (sim.min() + 1.0) / 2 else "white",
            )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="cosine of mean embeddings")
    ax.set_title(title or "Task similarity")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
