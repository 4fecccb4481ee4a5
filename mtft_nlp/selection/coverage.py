"""Coverage of a target task's embedded examples by selected tasks (PROTOCOL section 6, docs/SELECTION.md).

A coverage function takes the selected tasks' points, **one array per task** (a single array
counts as one task), and the target's points, and returns the fraction of target points covered:

* ``union`` (default): a target point is covered when it lies inside the ellipsoid of **any**
  selected task; one Ledoit-Wolf-shrunk Gaussian ellipsoid per task, all in one PCA space
  fitted once per selection (:meth:`UnionCoverage.prepare`). Each task's region depends on that
  task alone, so adding a task can only grow the union: coverage(L + T) >= coverage(L).
* ``ellipsoid``: one ellipsoid fitted to the **pooled** points of the selected tasks (the
  earlier default). Not monotone: adding a task refits, and can shrink or move, the region.
* ``knn``: a target point is covered when a selected point lies within the target's own
  nearest-neighbour radius (monotone).

Statistics come from the libraries: :func:`sklearn.covariance.ledoit_wolf` and
:func:`scipy.stats.chi2.ppf`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np

from ..tasks import MtftError

COVERAGES = ("union", "ellipsoid", "knn")
DEFAULT_COVERAGE = "union"
DEFAULT_QUANTILE = 0.95  # ellipsoids: the fitted Gaussian's central 95% region
DEFAULT_ELLIPSOID_DIMS = 16  # ellipsoids: principal components of all tasks' points they are fitted in
DEFAULT_KNN_QUANTILE = 0.5  # knn: radius = median nearest-neighbour distance inside the target

Sources = Union[np.ndarray, Sequence[np.ndarray]]


class SelectionError(MtftError):
    """Bad input to task selection (target, candidates, options, encoder, embeddings, coverage); the CLI
    prints it as one ``error:`` line and exits 2."""


def as_task_list(sources: Sources) -> list:
    """``sources`` as a list of per-task 2-D arrays (a single 2-D array is one task)."""
    if isinstance(sources, np.ndarray) and sources.ndim == 2:
        return [sources]
    out = [np.asarray(s, dtype=np.float64) for s in sources]
    if not out:
        raise SelectionError("coverage of an empty set of tasks")
    return out


def ledoit_wolf(X: np.ndarray) -> Tuple[np.ndarray, np.ndarray, float]:
    """``(mean, covariance, shrinkage)`` by :func:`sklearn.covariance.ledoit_wolf` (Ledoit and Wolf 2004):
    covariance = (1 - s) S + s (tr S / d) I, S the maximum-likelihood covariance, s estimated from the data.
    With n << d, S is singular; the shrunk matrix is not."""
    from sklearn.covariance import ledoit_wolf as _lw

    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 2:
        raise SelectionError(f"a covariance needs at least 2 points, got shape {X.shape}")
    cov, shrinkage = _lw(X)
    return X.mean(axis=0), cov, float(shrinkage)


def chi2_quantile(q: float, dof: int) -> float:
    """The ``q`` quantile of a chi-square with ``dof`` degrees of freedom (:func:`scipy.stats.chi2.ppf`)."""
    from scipy.stats import chi2

    if not 0.0 < q < 1.0:
        raise SelectionError(f"quantile must be in (0, 1), got {q}")
    return float(chi2.ppf(q, dof))


def mahalanobis_sq(points: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance of each row of ``points`` to (mean, cov)."""
    diff = np.asarray(points, dtype=np.float64) - mean
    chol = np.linalg.cholesky(cov)
    z = np.linalg.solve(chol, diff.T)
    return np.sum(z**2, axis=0)


@dataclasses.dataclass(frozen=True)
class _Projected:
    """Shared by the ellipsoid coverages: an optional PCA projection fitted once per selection."""

    quantile: float = DEFAULT_QUANTILE
    dims: Optional[int] = DEFAULT_ELLIPSOID_DIMS
    center: Optional[np.ndarray] = dataclasses.field(default=None, repr=False, compare=False)
    components: Optional[np.ndarray] = dataclasses.field(default=None, repr=False, compare=False)  # [dim, dims]

    def prepare(self, points: np.ndarray):
        """A copy whose projection is the PCA of ``points`` (target and all candidates pooled)."""
        if not self.dims:
            return self
        X = np.asarray(points, dtype=np.float64)
        dims = min(self.dims, X.shape[1], X.shape[0] - 1)
        center = X.mean(axis=0)
        _, _, vt = np.linalg.svd(X - center, full_matrices=False)
        return dataclasses.replace(self, center=center, components=vt[:dims].T)

    def project(self, points: np.ndarray) -> np.ndarray:
        X = np.asarray(points, dtype=np.float64)
        if not self.dims:
            return X
        if self.components is None:
            raise SelectionError(f"{type(self).__name__} with dims needs prepare(all points) before use")
        return (X - self.center) @ self.components

    def inside(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Boolean mask of the target points inside the ellipsoid fitted to ``source`` (both unprojected)."""
        src, tgt = self.project(source), self.project(target)
        mean, cov, _ = ledoit_wolf(src)
        return mahalanobis_sq(tgt, mean, cov) <= chi2_quantile(self.quantile, src.shape[1])


@dataclasses.dataclass(frozen=True)
class UnionCoverage(_Projected):
    """Fraction of target points inside the union of the selected tasks' own ellipsoids.

    Task i's ellipsoid is {x : (x - m_i)^T C_i^{-1} (x - m_i) <= r^2}: m_i its mean, C_i its
    Ledoit-Wolf-shrunk covariance, r^2 the ``quantile`` of a chi-square with as many degrees of
    freedom as dimensions; all in the top ``dims`` principal components of every task's points.
    """

    _masks: Dict = dataclasses.field(default_factory=dict, repr=False, compare=False)  # (task, target) -> inside

    def prepare(self, points: np.ndarray) -> "UnionCoverage":
        prepared = super().prepare(points)
        return dataclasses.replace(prepared, _masks={})

    def _inside_cached(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        """:meth:`inside`, remembered by content: a task's region is fitted once per selection, not once per step."""
        key = tuple(
            hashlib.sha1(np.ascontiguousarray(x, dtype=np.float64).tobytes()).hexdigest() for x in (source, target)
        )
        if key not in self._masks:
            if len(self._masks) > 4096:
                self._masks.clear()
            self._masks[key] = self.inside(source, target)
        return self._masks[key]

    def __call__(self, sources: Sources, target: np.ndarray) -> float:
        covered = np.zeros(len(target), dtype=bool)
        for src in as_task_list(sources):
            covered |= self._inside_cached(src, target)
        return float(covered.mean())

    def describe(self) -> Dict:
        return {
            "name": "union",
            "covariance": "ledoit-wolf",
            "quantile": self.quantile,
            "projection": f"pca-{self.dims}" if self.dims else None,
            "regions": "one ellipsoid per task",
        }


@dataclasses.dataclass(frozen=True)
class EllipsoidCoverage(_Projected):
    """Fraction of target points inside one ellipsoid fitted to the pooled points of the selected tasks
    (not monotone in the set of tasks; kept for comparison)."""

    def __call__(self, sources: Sources, target: np.ndarray) -> float:
        return float(np.mean(self.inside(np.concatenate(as_task_list(sources), axis=0), target)))

    def describe(self) -> Dict:
        return {
            "name": "ellipsoid",
            "covariance": "ledoit-wolf",
            "quantile": self.quantile,
            "projection": f"pca-{self.dims}" if self.dims else None,
        }


def _pairwise_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d2 = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(d2, 0.0))


@dataclasses.dataclass(frozen=True)
class KnnCoverage:
    """Fraction of target points with a source point within radius rho: the ``quantile`` (default:
    median) over target points of the Euclidean distance to their nearest other target point."""

    quantile: float = DEFAULT_KNN_QUANTILE

    def radius(self, target: np.ndarray) -> float:
        d = _pairwise_dist(target, target)
        np.fill_diagonal(d, np.inf)
        return float(np.quantile(d.min(axis=1), self.quantile))

    def prepare(self, points: np.ndarray) -> "KnnCoverage":
        return self  # nothing to fit: the radius depends on the target only

    def __call__(self, sources: Sources, target: np.ndarray) -> float:
        nearest = _pairwise_dist(target, np.concatenate(as_task_list(sources), axis=0)).min(axis=1)
        return float(np.mean(nearest <= self.radius(target)))

    def describe(self) -> Dict:
        return {"name": "knn", "quantile": self.quantile}


def make_coverage(
    name: str = DEFAULT_COVERAGE, quantile: Optional[float] = None, dims: Optional[int] = DEFAULT_ELLIPSOID_DIMS
):
    """The coverage function called ``name``: ``union`` (default) or ``ellipsoid`` (fitted in ``dims``
    principal components; ``None`` or 0 = the full embedding), or ``knn``."""
    if name not in COVERAGES:
        raise SelectionError(f"unknown coverage {name!r}; choose from {', '.join(COVERAGES)}")
    if quantile is not None and not 0.0 < quantile < 1.0:
        raise SelectionError(f"--quantile must be strictly between 0 and 1, got {quantile}")
    if name == "knn":
        return KnnCoverage(DEFAULT_KNN_QUANTILE if quantile is None else quantile)
    if dims is not None and dims < 0:
        raise SelectionError(f"--dims must be >= 0 (0 = the full embedding), got {dims}")
    cls = UnionCoverage if name == "union" else EllipsoidCoverage
    return cls(DEFAULT_QUANTILE if quantile is None else quantile, dims or None)
