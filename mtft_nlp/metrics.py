"""Offline metrics (no ``evaluate.load``, no network): accuracy, F1, Matthews, Pearson, Spearman.

The numbers come from scikit-learn (``accuracy_score``, ``f1_score``, ``matthews_corrcoef``) and
scipy (``pearsonr``, ``spearmanr``); this module fixes the conventions around them.

Every score is a plain float: a fraction for accuracy/F1, a value in [-1, 1] for Matthews
and correlations. Degenerate inputs give 0.0 rather than NaN or an exception: a constant
prediction (or constant labels) for Matthews and the correlations, fewer than two values for a
correlation, an empty set for F1 and Matthews, a positive class absent from both predictions and
labels for F1. Accuracy of an empty set is an error. A NaN among regression predictions gives a
NaN correlation (Pearson and Spearman alike).
"""

from __future__ import annotations

import warnings
from typing import Dict

import numpy as np
from scipy import stats
from sklearn import metrics as skm


def accuracy(preds, labels) -> float:
    preds, labels = np.asarray(preds), np.asarray(labels)
    if len(labels) == 0:
        raise ValueError("accuracy of an empty set")
    return float(skm.accuracy_score(labels, preds))


def f1_binary(preds, labels, pos_label: int = 1) -> float:
    """F1 of ``pos_label`` against every other value (so labels need not be exactly two classes)."""
    preds, labels = np.asarray(preds), np.asarray(labels)
    if len(labels) == 0:
        return 0.0
    return float(skm.f1_score(labels == pos_label, preds == pos_label, zero_division=0.0))


def matthews(preds, labels) -> float:
    """Matthews correlation, multiclass form (Gorodkin 2004)."""
    preds, labels = np.asarray(preds), np.asarray(labels)
    if len(labels) == 0:
        return 0.0
    return float(skm.matthews_corrcoef(labels, preds))


def _correlation(fn, preds, labels) -> float:
    x, y = np.asarray(preds, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    if len(x) < 2:
        return 0.0
    if np.isnan(x).any() or np.isnan(y).any():
        return float("nan")
    if np.all(x == x[0]) or np.all(y == y[0]):
        return 0.0
    with warnings.catch_warnings():  # near-constant input: scipy warns, the value is still defined
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        value = float(fn(x, y)[0])
    return 0.0 if np.isnan(value) else value


def pearson(preds, labels) -> float:
    return _correlation(stats.pearsonr, preds, labels)


def spearman(preds, labels) -> float:
    """Spearman's rank correlation (ties share their mean rank)."""
    return _correlation(stats.spearmanr, preds, labels)


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
