"""Offline metrics (no ``evaluate.load``, no network): accuracy, F1, Matthews, Pearson, Spearman.

Every score is a plain float: a fraction for accuracy/F1, a value in [-1, 1] for Matthews
and correlations. Degenerate inputs (a constant prediction) give 0.0 rather than NaN, as
scikit-learn does for Matthews.
"""

from __future__ import annotations

from typing import Dict

import numpy as np


def accuracy(preds, labels) -> float:
    preds, labels = np.asarray(preds), np.asarray(labels)
    if len(labels) == 0:
        raise ValueError("accuracy of an empty set")
    return float((preds == labels).mean())


def f1_binary(preds, labels, pos_label: int = 1) -> float:
    preds, labels = np.asarray(preds), np.asarray(labels)
    tp = float(((preds == pos_label) & (labels == pos_label)).sum())
    fp = float(((preds == pos_label) & (labels != pos_label)).sum())
    fn = float(((preds != pos_label) & (labels == pos_label)).sum())
    denom = 2 * tp + fp + fn
    return 0.0 if denom == 0 else 2 * tp / denom


def matthews(preds, labels) -> float:
    """Matthews correlation, multiclass form (Gorodkin 2004), equal to sklearn's."""
    preds, labels = np.asarray(preds), np.asarray(labels)
    classes = np.union1d(preds, labels)
    idx = {c: i for i, c in enumerate(classes)}
    cm = np.zeros((len(classes), len(classes)), dtype=np.float64)
    for y, p in zip(labels, preds):
        cm[idx[y], idx[p]] += 1
    t = cm.sum(axis=1)
    p = cm.sum(axis=0)
    c = np.trace(cm)
    s = cm.sum()
    cov_ytyp = c * s - np.dot(t, p)
    cov_ypyp = s * s - np.dot(p, p)
    cov_ytyt = s * s - np.dot(t, t)
    denom = np.sqrt(cov_ytyt * cov_ypyp)
    return 0.0 if denom == 0 else float(cov_ytyp / denom)


def pearson(preds, labels) -> float:
    x, y = np.asarray(preds, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    xm, ym = x - x.mean(), y - y.mean()
    denom = np.sqrt((xm * xm).sum() * (ym * ym).sum())
    return 0.0 if denom == 0 else float((xm * ym).sum() / denom)


def _rank(a: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean rank), as scipy.stats.rankdata."""
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(len(a), dtype=np.float64)
    sa = a[order]
    i = 0
    while i < len(a):
        j = i
        while j + 1 < len(a) and sa[j + 1] == sa[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1
        i = j + 1
    return ranks


def spearman(preds, labels) -> float:
    return pearson(_rank(np.asarray(preds, dtype=np.float64)), _rank(np.asarray(labels, dtype=np.float64)))


METRIC_FNS = {"acc": accuracy, "f1": f1_binary, "mcc": matthews, "pearson": pearson, "spearman": spearman}
METRIC_NAMES = {"acc": "accuracy", "f1": "F1", "mcc": "Matthews corr.", "pearson": "Pearson", "spearman": "Spearman"}


def compute_metrics(metric: str, preds, labels) -> Dict[str, float]:
    """The task's metric under the key ``score`` plus the usual companions.

    Classification: ``acc`` always, ``f1`` for binary tasks, ``mcc`` for Matthews tasks.
    Regression: ``pearson`` and ``spearman``.
    """
    out: Dict[str, float] = {}
    if metric in ("pearson", "spearman"):
        out["pearson"] = pearson(preds, labels)
        out["spearman"] = spearman(preds, labels)
    else:
        out["acc"] = accuracy(preds, labels)
        if metric == "f1":
            out["f1"] = f1_binary(preds, labels)
        if metric == "mcc":
            out["mcc"] = matthews(preds, labels)
    out["score"] = out[metric]
    return out
