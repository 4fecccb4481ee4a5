"""Algorithm 1's core on embeddings (PROTOCOL section 6): consistency (cosine of mean embeddings), the greedy
coverage loop with its test ``coverage(L + T) >= (1 + p) coverage(L)``, and the p rule fixed in advance.

:mod:`mtft_nlp.selection.select` builds on it: candidates, embeddings, the four methods, the API.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .coverage import SelectionError, make_coverage
from .result import rank_by_similarity

__all__ = [
    "AUTO_P",
    "DEFAULT_P",
    "FIXED_P",
    "DEFAULT_BUDGET",
    "P_GRID",
    "cosine",
    "consistency",
    "check_p",
    "accepts",
    "greedy_select",
    "choose_p",
]

CoverageFn = Callable[[Sequence[np.ndarray], np.ndarray], float]
AUTO_P = "auto"
DEFAULT_P = AUTO_P
FIXED_P = 0.01  # select_from_embeddings' default (no pools to choose p from)
DEFAULT_BUDGET = 4  # p rule's target mean size, and no-diversity's k
P_GRID = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


# --------------------------------------------------------------------------- consistency


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        raise SelectionError("cosine similarity of a zero vector is undefined")
    return float(np.dot(a, b) / (na * nb))


def consistency(target: np.ndarray, candidates: Dict[str, np.ndarray]) -> Dict[str, float]:
    """similarity(T0, Ti) = cosine(mean embedding of T0, mean embedding of Ti)."""
    mu0 = np.asarray(target, dtype=np.float64).mean(axis=0)
    return {name: cosine(mu0, np.asarray(e, dtype=np.float64).mean(axis=0)) for name, e in candidates.items()}


# --------------------------------------------------------------------------- Algorithm 1


def check_p(p) -> Union[float, str]:
    """``"auto"`` or a number >= 0 (a string number is parsed); anything else is a :class:`SelectionError`."""
    given = p
    if isinstance(p, str):
        if p.strip().lower() == AUTO_P:
            return AUTO_P
        try:
            p = float(p)
        except ValueError:
            raise SelectionError(f"--p must be 'auto' or a number >= 0, got {p!r}") from None
    number = not isinstance(p, bool) and isinstance(p, (int, float, np.number))
    if not number or p != p or p < 0 or p == float("inf"):  # (no float() of a huge integer: it overflows)
        raise SelectionError(f"--p must be >= 0, got {given}")
    if p > 1e300:
        raise SelectionError(f"--p must be a finite number, got {str(given)[:20]}...")
    return float(p)


def accepts(new: float, old: float, p: float) -> bool:
    """Algorithm 1's test ``new >= (1 + p) * old``; with ``old == 0`` a candidate must cover something."""
    if old == 0.0:
        return new > 0.0
    return new >= (1.0 + p) * old


def greedy_select(
    order: Sequence[str],
    target: np.ndarray,
    embeddings: Dict[str, np.ndarray],
    coverage: CoverageFn,
    p: float = FIXED_P,
    memo: Optional[Dict] = None,
) -> Tuple[List[str], List[Dict]]:
    """Algorithm 1's loop over candidates in ``order``: returns (selected, steps).

    L starts with ``order[0]``; each next candidate is added if it raises coverage by the factor
    (1 + p) (:func:`accepts`); the loop stops at the first that does not; later candidates are
    ``not reached``. Coverage is called with one array per task. ``memo`` (a dict, optional) caches
    coverage by the tuple of task names, for repeated runs on one target (:func:`choose_p`).
    """
    if not order:
        raise SelectionError("no candidate tasks to select from")
    p = check_p(p)
    if p == AUTO_P:
        raise SelectionError("greedy_select needs a number p; 'auto' is resolved by choose_p / select_tasks")
    memo = {} if memo is None else memo

    def cov(names: Tuple[str, ...]) -> float:
        if names not in memo:
            memo[names] = coverage([embeddings[n] for n in names], target)
        return memo[names]

    selected = [order[0]]
    current = cov(tuple(selected))
    steps = [{"task": order[0], "coverage_before": 0.0, "coverage": current, "decision": "added (first)"}]
    stopped = False
    for name in order[1:]:
        if stopped:
            steps.append({"task": name, "coverage_before": None, "coverage": None, "decision": "not reached"})
            continue
        trial = cov(tuple(selected) + (name,))
        step = {"task": name, "coverage_before": current, "coverage": trial}
        if accepts(trial, current, p):
            selected.append(name)
            current = trial
            step["decision"] = "added"
        else:
            step["decision"] = "stop"
            stopped = True
        steps.append(step)
    return selected, steps


def prepared_coverage(coverage, target: np.ndarray, candidates: Dict[str, np.ndarray]):
    """The coverage fitted (PCA) once on every point of this selection, so all steps are measured alike."""
    if hasattr(coverage, "prepare"):
        return coverage.prepare(np.concatenate([target, *candidates.values()], axis=0))
    return coverage


def choose_p(
    pools: Dict[str, Tuple[np.ndarray, Dict[str, np.ndarray]]],
    coverage=None,
    budget: float = DEFAULT_BUDGET,
    grid: Sequence[float] = P_GRID,
) -> Dict:
    """The p rule, fixed in advance and using embeddings only: for each p of ``grid``, run Algorithm 1
    (similarity order, greedy loop) on every pool ``{target: (target points, {candidate: points})}``; pick
    the p whose mean selected-set size is closest to ``budget`` (ties: the larger p, the stricter test).

    Returns ``{"rule", "p", "budget", "grid", "mean_size": {p: mean}, "sizes": {target: size at p}}``.
    """
    if not pools:
        raise SelectionError("choose_p needs at least one pool")
    if budget <= 0:
        raise SelectionError(f"--budget must be > 0, got {budget}")
    coverage = coverage or make_coverage()
    sizes: Dict[float, Dict[str, int]] = {float(p): {} for p in grid}
    for name, (target, cands) in pools.items():
        cov = prepared_coverage(coverage, target, cands)
        order = rank_by_similarity(consistency(target, cands))
        memo: Dict = {}
        for p in grid:
            sizes[float(p)][name] = len(greedy_select(order, target, cands, cov, p, memo)[0])
    mean = {p: float(np.mean(list(s.values()))) for p, s in sizes.items()}
    best = min(mean, key=lambda p: (abs(mean[p] - budget), -p))
    return {
        "rule": f"p in the grid whose mean Algorithm-1 set size over {len(pools)} leave-one-out pools is closest "
        f"to the budget (ties: the larger p)",
        "p": best,
        "budget": budget,
        "grid": [float(p) for p in grid],
        "mean_size": {str(p): m for p, m in mean.items()},
        "sizes": dict(sizes[best]),
    }
