"""Task selection by consistency and diversity (PROTOCOL section 6, the paper's Algorithm 1).

Pipeline, one function per step::

    k-shot examples --(example_texts)--> texts --(task_embeddings, cached)--> points per task
    points --(consistency)--> cosine(mean_target, mean_candidate) --(rank_by_similarity)--> order
    order + points --(greedy_select, a coverage function)--> selected tasks

* **Embeddings**: a sentence-transformers encoder (default: the packaged MiniLM) embeds
  each task's k-shot train examples, L2-normalised. Variant ``label`` (default) embeds the
  example rendered through the task's prompt with the gold label word at the mask
  ("a fun film It was great."); ``raw`` embeds the text alone (a pair as one text).
  Embeddings are cached on disk (``.npy`` + ``.json`` key) under ``$MTFT_NLP_CACHE`` or
  ``~/.cache/mtft-nlp``.
* **Consistency**: cosine similarity of mean embeddings; candidates sorted descending.
* **Coverage** of the target's points by the union of the selected tasks' points:
  ``ellipsoid`` (default: a Gaussian fitted to the selected points with Ledoit-Wolf
  shrinkage, in the top 16 principal components of all tasks' points; a target point is
  covered when its Mahalanobis distance is within the radius holding 95% of the fit's mass)
  or ``knn`` (a target point is covered when a selected point lies within the target's own
  median nearest-neighbour distance).
* **Greedy loop** (Algorithm 1): L = {first}; add the next candidate while
  ``coverage(L + Ti) >= (1 + p) * coverage(L)``; stop at the first that fails. When
  ``coverage(L) == 0`` the factor test is void (0 >= 0), so a candidate must cover at least
  one target point (``coverage(L + Ti) > 0``) to be added.
* **Ablations**: ``random`` (k random candidates), ``no-consistency`` (random order, same
  loop), ``no-diversity`` (top-k by similarity), k defaulting to the size of the
  Algorithm-1 selection.

``select_tasks`` is the Python API; ``mtft-nlp select`` (``register_cli``) the command. The
design and the defaults are explained in ``docs/SELECTION.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import re
import tempfile
import zlib
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .data import DEFAULT_K, SEEDS, DataError, default_data_dir, load_kshot, text_overlap
from .tasks import MtftError, TaskSpec, get_task, leave_one_out, task_family
from .templates import load_prompt, parse_template, transform_sentence

logger = logging.getLogger(__name__)

METHODS = ("selected", "random", "no-consistency", "no-diversity")
VARIANTS = ("label", "raw")
COVERAGES = ("ellipsoid", "knn")
DEFAULT_METHOD = "selected"
DEFAULT_VARIANT = "label"
DEFAULT_COVERAGE = "ellipsoid"
DEFAULT_P = 0.01
DEFAULT_SPLIT_SEED = 42
DEFAULT_QUANTILE = 0.95  # ellipsoid: the fitted Gaussian's central 95% region
DEFAULT_ELLIPSOID_DIMS = 16  # ellipsoid: principal components of all tasks' points it is fitted in
DEFAULT_KNN_QUANTILE = 0.5  # knn: radius = median nearest-neighbour distance inside the target
DEFAULT_ENCODER = "minilm"

CoverageFn = Callable[[np.ndarray, np.ndarray], float]


class SelectionError(MtftError):
    """Bad input to task selection (target, candidates, options, embeddings)."""


# --------------------------------------------------------------------------- candidates


def default_candidates(target: TaskSpec | str) -> List[str]:
    """PROTOCOL section 5's leave-one-out pool: the 14 classification tasks minus the target
    and its variants (tasks sharing its data, MNLI <-> MNLI-mm)."""
    return leave_one_out(target)


def resolve_candidates(target: TaskSpec | str, candidates: Optional[Sequence[str]] = None) -> List[str]:
    """Candidate task names (canonical, de-duplicated, in the given order); the target or a
    task sharing its data is an error."""
    target = get_task(target)
    if candidates is None:
        return default_candidates(target)
    out: List[str] = []
    for c in candidates:
        t = get_task(c)
        if task_family(t) == task_family(target):
            raise SelectionError(f"candidate {c!r} is the target {target.name} or shares its data; remove it")
        if t.name not in out:
            out.append(t.name)
    if not out:
        raise SelectionError("no candidate tasks given")
    return out


# --------------------------------------------------------------------------- texts


def task_examples(task: TaskSpec | str, data_dir, split_seed: int = DEFAULT_SPLIT_SEED, k_shot: int = DEFAULT_K,
                  pool_seeds: bool = False) -> List[Dict]:
    """The task's k-shot train examples (one split seed, or the union over the 5 seeds)."""
    task = get_task(task)
    seeds = SEEDS if pool_seeds else (split_seed,)
    out: List[Dict] = []
    seen = set()
    for s in seeds:
        try:
            train = load_kshot(task, data_dir, s, k_shot, splits=("train",))["train"]
        except MtftError as exc:
            raise DataError(f"cannot load the k-shot train data of task {task.name} (seed {s}, K {k_shot}): {exc}") from None
        for ex in train:
            key = (ex["text_a"], ex["text_b"], str(ex["label"]))
            if key not in seen:
                seen.add(key)
                out.append(ex)
    return out


def _append_word(text: str, word: str) -> str:
    """Append a label word as a word of its own (a space unless at the start or after one)."""
    if text and not text[-1].isspace():
        text += " "
    return text + word


def render_with_label(pieces, words: Sequence[str], example: Dict, label_index: int) -> str:
    """An example rendered through parsed template ``pieces`` as plain text, with the gold
    label word at the mask (``label_i`` pieces get their class's word); special tokens
    (cls/sep) carry no text."""
    sents = (example["text_a"], example["text_b"])
    out = ""
    for p in pieces:
        if p.kind == "special":
            if p.value == "mask":
                out = _append_word(out, words[label_index])
            elif p.value == "sep" and out and not out[-1].isspace():
                out += " "
        elif p.kind == "label":
            out = _append_word(out, words[p.value])
        elif p.kind == "sent":
            text = sents[p.sent_id]
            if text is None:
                where = example.get("row", "example")
                raise SelectionError(f"{where}: the template needs sentence {p.sent_id}, which is missing")
            out += transform_sentence(str(text), p)
        else:
            out += p.value
    return out.strip()


def _label_index(task: TaskSpec, example: Dict) -> int:
    return task.label_index(example["label"]) if task.is_regression else int(example["label_id"])


def example_texts(task: TaskSpec | str, examples: Sequence[Dict], variant: str = DEFAULT_VARIANT) -> List[str]:
    """The texts embedded for ``examples``: ``raw`` (text_a, or text_a + " " + text_b) or
    ``label`` (rendered through the task's default prompt with the gold label word)."""
    task = get_task(task)
    if variant == "raw":
        return [ex["text_a"] if ex["text_b"] is None else f"{ex['text_a']} {ex['text_b']}" for ex in examples]
    if variant != "label":
        raise SelectionError(f"unknown embedding variant {variant!r}; choose from {', '.join(VARIANTS)}")
    prompt = load_prompt(task)
    pieces = parse_template(prompt.template)
    words = prompt.words_in_order(task)
    return [render_with_label(pieces, words, ex, _label_index(task, ex)) for ex in examples]


# --------------------------------------------------------------------------- embeddings and cache


def resolve_encoder(encoder: Optional[str]) -> str:
    """``None``/``"minilm"`` -> the packaged MiniLM folder; a local folder -> its absolute path;
    anything else (a Hub id) unchanged."""
    from .modeling import resolve_model_name

    name = resolve_model_name(encoder or DEFAULT_ENCODER)
    return str(Path(name).resolve()) if Path(name).is_dir() else name


@functools.lru_cache(maxsize=2)
def _load_encoder(encoder: str):
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(encoder)
    except Exception as exc:  # missing path, unknown Hub id, no network, not a sentence-transformers model
        raise SelectionError(f"cannot load sentence encoder {encoder!r}: {exc}") from None


def encode_texts(texts: Sequence[str], encoder: str) -> np.ndarray:
    """L2-normalised float32 embeddings ``[len(texts), dim]`` of ``texts`` (the only encoding call)."""
    model = _load_encoder(encoder)
    emb = model.encode(list(texts), batch_size=64, convert_to_numpy=True, normalize_embeddings=True,
                       show_progress_bar=False)
    return np.asarray(emb, dtype=np.float32)


def default_cache_dir() -> Path:
    return Path(os.environ.get("MTFT_NLP_CACHE") or Path.home() / ".cache" / "mtft-nlp")


def embedding_cache_key(encoder: str, task: str, split_seed, k_shot: int, variant: str, texts: Sequence[str]) -> Dict:
    """What an embedding file depends on; the texts' hash makes data or prompt edits a miss."""
    digest = hashlib.sha256(json.dumps(list(texts)).encode("utf-8")).hexdigest()
    return {"encoder": encoder, "task": task, "split_seed": split_seed, "k_shot": k_shot, "variant": variant,
            "n": len(texts), "texts_sha256": digest}


def _cache_paths(cache_dir: Path, key: Dict) -> Tuple[Path, Path]:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    safe_task = re.sub(r"[^A-Za-z0-9_.-]", "_", key["task"])
    stem = f"{safe_task}-{key['variant']}-seed{key['split_seed']}-k{key['k_shot']}-{digest}"
    folder = cache_dir / "embeddings"
    return folder / f"{stem}.npy", folder / f"{stem}.json"


def _read_cache(cache_dir: Path, key: Dict) -> Optional[np.ndarray]:
    npy, meta = _cache_paths(cache_dir, key)
    try:
        with open(meta, encoding="utf-8") as f:
            if json.load(f) != key:
                return None
        emb = np.load(npy)
    except (OSError, ValueError):
        return None
    return emb if emb.ndim == 2 and emb.shape[0] == key["n"] else None


def _write_cache(cache_dir: Path, key: Dict, emb: np.ndarray) -> None:
    from .results import atomic_write_json

    npy, meta = _cache_paths(cache_dir, key)
    npy.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{npy.name}.", dir=npy.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, emb)
        os.replace(tmp, npy)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    atomic_write_json(meta, key)  # the key last: a file pair without it is never read


def task_embeddings(task: TaskSpec | str, data_dir, encoder: Optional[str] = None, variant: str = DEFAULT_VARIANT,
                    split_seed: int = DEFAULT_SPLIT_SEED, k_shot: int = DEFAULT_K, pool_seeds: bool = False,
                    cache_dir: Optional[str | os.PathLike] = None) -> np.ndarray:
    """Embeddings ``[n, dim]`` of a task's k-shot train examples, from the cache when present."""
    task = get_task(task)
    encoder = resolve_encoder(encoder)
    texts = example_texts(task, task_examples(task, data_dir, split_seed, k_shot, pool_seeds), variant)
    key = embedding_cache_key(encoder, task.name, "pooled" if pool_seeds else split_seed, k_shot, variant, texts)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    emb = _read_cache(cache, key)
    if emb is None:
        logger.info("embedding %d examples of %s (%s)", len(texts), task.name, variant)
        emb = encode_texts(texts, encoder)
        _write_cache(cache, key, emb)
    return emb


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


def rank_by_similarity(similarity: Dict[str, float]) -> List[str]:
    """Names by similarity, descending (ties: by name, so the order is deterministic)."""
    return sorted(similarity, key=lambda n: (-similarity[n], n))


# --------------------------------------------------------------------------- coverage


def ledoit_wolf(X: np.ndarray) -> Tuple[np.ndarray, np.ndarray, float]:
    """Ledoit-Wolf (2004) shrinkage covariance: ``(mean, (1-s) S + s (tr S / d) I, s)``.

    ``S`` is the maximum-likelihood covariance (divisor n); the shrinkage ``s`` in [0, 1]
    minimises the expected Frobenius error, estimated from the data (the formula of
    sklearn.covariance.ledoit_wolf). With n << d, ``S`` has rank < n and is singular; the
    shrunk matrix is well conditioned whatever n is.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 2:
        raise SelectionError(f"a covariance needs at least 2 points, got shape {X.shape}")
    n, d = X.shape
    mean = X.mean(axis=0)
    Xc = X - mean
    S = Xc.T @ Xc / n
    mu = float(np.trace(S)) / d
    X2 = Xc ** 2
    beta = (float(np.sum(X2.T @ X2)) / n - float(np.sum(S ** 2))) / n  # sum_k ||x_k x_k^T - S||^2 / n^2
    delta = float(np.sum((S - mu * np.eye(d)) ** 2))  # ||S - mu I||^2
    s = 0.0 if delta == 0.0 else min(beta, delta) / delta
    return mean, (1.0 - s) * S + s * mu * np.eye(d), s


def chi2_quantile(q: float, dof: int) -> float:
    """Wilson-Hilferty approximation of the chi-square quantile (relative error < 1e-3 for dof >= 30)."""
    z = _normal_quantile(q)
    a = 2.0 / (9.0 * dof)
    return dof * (1.0 - a + z * math.sqrt(a)) ** 3


def _normal_quantile(q: float) -> float:
    """Inverse standard normal CDF by bisection on math.erf (exact to ~1e-12)."""
    if not 0.0 < q < 1.0:
        raise SelectionError(f"quantile must be in (0, 1), got {q}")
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if 0.5 * (1.0 + math.erf(mid / math.sqrt(2.0))) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def mahalanobis_sq(points: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance of each row of ``points`` to (mean, cov)."""
    diff = np.asarray(points, dtype=np.float64) - mean
    chol = np.linalg.cholesky(cov)
    z = np.linalg.solve(chol, diff.T)
    return np.sum(z ** 2, axis=0)


@dataclasses.dataclass(frozen=True)
class EllipsoidCoverage:
    """Fraction of target points inside the ellipsoid fitted to the source points.

    The ellipsoid is {x : (x - m)^T C^{-1} (x - m) <= r^2}: m the source mean, C the
    Ledoit-Wolf-shrunk source covariance, r^2 the ``quantile`` of a chi-square with as many
    degrees of freedom as dimensions (the region holding ``quantile`` of the fitted
    Gaussian's mass). With ``dims`` set, points are first projected onto the top ``dims``
    principal components of all tasks' points (:meth:`prepare`, fitted once per selection so
    every step is measured in the same space); ``dims=None`` keeps the full embedding.
    """

    quantile: float = DEFAULT_QUANTILE
    dims: Optional[int] = DEFAULT_ELLIPSOID_DIMS
    center: Optional[np.ndarray] = dataclasses.field(default=None, repr=False, compare=False)
    components: Optional[np.ndarray] = dataclasses.field(default=None, repr=False, compare=False)  # [dim, dims]

    def prepare(self, points: np.ndarray) -> "EllipsoidCoverage":
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
            raise SelectionError("EllipsoidCoverage with dims needs prepare(all points) before use")
        return (X - self.center) @ self.components

    def __call__(self, source: np.ndarray, target: np.ndarray) -> float:
        src, tgt = self.project(source), self.project(target)
        mean, cov, _ = ledoit_wolf(src)
        d2 = mahalanobis_sq(tgt, mean, cov)
        return float(np.mean(d2 <= chi2_quantile(self.quantile, src.shape[1])))

    def describe(self) -> Dict:
        return {"name": "ellipsoid", "covariance": "ledoit-wolf", "quantile": self.quantile,
                "projection": f"pca-{self.dims}" if self.dims else None}


def _pairwise_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d2 = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(d2, 0.0))


@dataclasses.dataclass(frozen=True)
class KnnCoverage:
    """Fraction of target points with a source point within radius rho.

    rho is the ``quantile`` (default: median) over target points of the Euclidean distance
    to their nearest other target point: a source example covers a target example when it is
    as close to it as the target's own examples typically are to each other.
    """

    quantile: float = DEFAULT_KNN_QUANTILE

    def radius(self, target: np.ndarray) -> float:
        d = _pairwise_dist(target, target)
        np.fill_diagonal(d, np.inf)
        return float(np.quantile(d.min(axis=1), self.quantile))

    def prepare(self, points: np.ndarray) -> "KnnCoverage":
        return self  # nothing to fit: the radius depends on the target only

    def __call__(self, source: np.ndarray, target: np.ndarray) -> float:
        nearest = _pairwise_dist(target, source).min(axis=1)
        return float(np.mean(nearest <= self.radius(target)))

    def describe(self) -> Dict:
        return {"name": "knn", "quantile": self.quantile}


def make_coverage(name: str = DEFAULT_COVERAGE, quantile: Optional[float] = None,
                  dims: Optional[int] = DEFAULT_ELLIPSOID_DIMS):
    """The coverage function called ``name``: ``ellipsoid`` (fitted in ``dims`` principal
    components; ``None`` or 0 = the full embedding) or ``knn``."""
    if quantile is not None and not 0.0 < quantile < 1.0:
        raise SelectionError(f"--quantile must be strictly between 0 and 1, got {quantile}")
    if name == "ellipsoid":
        if dims is not None and dims < 0:
            raise SelectionError(f"--dims must be >= 0 (0 = the full embedding), got {dims}")
        return EllipsoidCoverage(DEFAULT_QUANTILE if quantile is None else quantile, dims or None)
    if name == "knn":
        return KnnCoverage(DEFAULT_KNN_QUANTILE if quantile is None else quantile)
    raise SelectionError(f"unknown coverage {name!r}; choose from {', '.join(COVERAGES)}")


# --------------------------------------------------------------------------- Algorithm 1 and ablations


def accepts(new: float, old: float, p: float) -> bool:
    """Algorithm 1's test ``new >= (1 + p) * old``; with ``old == 0`` a candidate must cover something."""
    if old == 0.0:
        return new > 0.0
    return new >= (1.0 + p) * old


def greedy_select(order: Sequence[str], target: np.ndarray, embeddings: Dict[str, np.ndarray], coverage: CoverageFn,
                  p: float = DEFAULT_P) -> Tuple[List[str], List[Dict]]:
    """Algorithm 1's loop over candidates in ``order``: returns (selected, steps).

    L starts with ``order[0]``; each next candidate is added if it raises coverage by the
    factor (1 + p) (see :func:`accepts`); the loop stops at the first that does not. Each
    step records the candidate, coverage before and with it, and the decision; candidates
    after the stop are ``not reached``.
    """
    if not order:
        raise SelectionError("no candidate tasks to select from")
    if p < 0:
        raise SelectionError(f"--p must be >= 0, got {p}")
    selected = [order[0]]
    pooled = np.asarray(embeddings[order[0]])
    current = coverage(pooled, target)
    steps = [{"task": order[0], "coverage_before": 0.0, "coverage": current, "decision": "added (first)"}]
    stopped = False
    for name in order[1:]:
        if stopped:
            steps.append({"task": name, "coverage_before": None, "coverage": None, "decision": "not reached"})
            continue
        trial_points = np.concatenate([pooled, embeddings[name]], axis=0)
        trial = coverage(trial_points, target)
        step = {"task": name, "coverage_before": current, "coverage": trial}
        if accepts(trial, current, p):
            selected.append(name)
            pooled, current = trial_points, trial
            step["decision"] = "added"
        else:
            step["decision"] = "stop"
            stopped = True
        steps.append(step)
    return selected, steps


@dataclasses.dataclass
class SelectionResult:
    """The outcome of one selection: what was chosen, and the evidence for each decision.

    ``steps`` lists every candidate in the order it was considered, with the coverage of
    the target before and with it, and the decision (``added (first)``, ``added``, ``stop``,
    ``not reached`` for the greedy methods; ``added``/``not chosen`` for the fixed-size ones).
    """

    target: str
    method: str
    selected: List[str]
    similarity: Dict[str, float]  # candidate -> cosine(mean target, mean candidate)
    steps: List[Dict]
    coverage: Dict  # the coverage definition and its parameters
    final_coverage: float
    p: Optional[float] = None  # greedy methods only
    k: Optional[int] = None  # fixed-size methods only
    seed: Optional[int] = None  # random methods only
    encoder: Optional[str] = None
    variant: Optional[str] = None
    split_seed: object = None
    k_shot: Optional[int] = None
    overlap: Dict[str, Dict] = dataclasses.field(default_factory=dict)  # candidate -> text_overlap(target test, candidate)
    overlap_note: Optional[str] = None

    def shares_text(self, task: str) -> bool:
        return bool(self.overlap.get(task, {}).get("normalized"))

    def to_dict(self) -> Dict:
        """The JSON written by ``mtft-nlp select --output`` (``selected`` is what consumers read)."""
        ranks = {n: i for i, n in enumerate(rank_by_similarity(self.similarity), 1)}
        candidates = []
        for s in self.steps:
            name = s["task"]
            candidates.append({"task": name, "similarity": self.similarity[name], "similarity_rank": ranks[name],
                               "coverage_before": s["coverage_before"], "coverage": s["coverage"],
                               "decision": s["decision"], "shares_text_with_target_test": self.shares_text(name),
                               "text_overlap": self.overlap.get(name)})
        return {
            "kind": "mtft-nlp-selection",
            "target": self.target,
            "method": self.method,
            "selected": list(self.selected),
            "encoder": self.encoder,
            "variant": self.variant,
            "split_seed": self.split_seed,
            "k_shot": self.k_shot,
            "coverage": dict(self.coverage),
            "p": self.p,
            "k": self.k,
            "seed": self.seed,
            "final_coverage": self.final_coverage,
            "coverage_after_step": [s["coverage"] for s in self.steps if s["decision"].startswith("added")],
            "candidates": candidates,  # in the order considered
            "similarity": {n: self.similarity[n] for n in rank_by_similarity(self.similarity)},
            "overlap_note": self.overlap_note,
        }

    def format_table(self) -> str:
        """The console table: candidates in the order considered, similarity (rank), coverage, decision."""
        ranks = {n: i for i, n in enumerate(rank_by_similarity(self.similarity), 1)}
        opts = [f"target {self.target}", f"method {self.method}", f"coverage {_describe(self.coverage)}"]
        opts += [f"{k} {v}" for k, v in (("p", self.p), ("k", self.k), ("seed", self.seed)) if v is not None]
        lines = ["  ".join(opts)]
        if self.encoder:
            lines.append(f"encoder {self.encoder}  variant {self.variant}  split seed {self.split_seed}  K {self.k_shot}")
        lines.append(f"{'task':8s} {'similarity':>10s} {'rank':>4s} {'coverage':>8s}  decision")
        for s in self.steps:
            cov = "" if s["coverage"] is None else f"{s['coverage']:.3f}"
            flag = "  [shares text with target test]" if self.shares_text(s["task"]) else ""
            lines.append(f"{s['task']:8s} {self.similarity[s['task']]:>10.4f} {ranks[s['task']]:>4d} {cov:>8s}  "
                         f"{s['decision']}{flag}")
        lines.append(f"selected ({len(self.selected)}): {', '.join(self.selected)}  coverage {self.final_coverage:.3f}")
        if self.overlap_note:
            lines.append(f"note: {self.overlap_note}")
        return "\n".join(lines) + "\n"


def _describe(coverage: Dict) -> str:
    return coverage.get("name", "?") + "".join(f" {k}={v}" for k, v in coverage.items() if k != "name" and v is not None)


def _permutation(names: Sequence[str], seed: int, target: str = "") -> List[str]:
    """A seeded random order of ``names`` (independent of the order they were given in), drawn from
    ``(seed, target)``: with one seed, different targets get independent orders, so a ``random``
    benchmark over many targets does not pick the same tasks for all of them."""
    names = sorted(names)
    rng = np.random.RandomState([int(seed) % 2**32, zlib.crc32(target.encode("utf-8"))])
    return [names[i] for i in rng.permutation(len(names))]


def _fixed_steps(order: Sequence[str], selected: Sequence[str], target: np.ndarray, candidates: Dict[str, np.ndarray],
                 coverage: CoverageFn) -> List[Dict]:
    """Steps of a fixed-size selection: the coverage as each chosen task joins (reported, not used)."""
    steps, points, current = [], None, 0.0
    for name in order:
        if name in selected:
            points = candidates[name] if points is None else np.concatenate([points, candidates[name]], axis=0)
            new = coverage(points, target)
            steps.append({"task": name, "coverage_before": current, "coverage": new, "decision": "added"})
            current = new
        else:
            steps.append({"task": name, "coverage_before": None, "coverage": None, "decision": "not chosen"})
    return steps


def select_from_embeddings(target_name: str, target: np.ndarray, candidates: Dict[str, np.ndarray],
                           method: str = DEFAULT_METHOD, coverage: Optional[CoverageFn] = None, p: float = DEFAULT_P,
                           k: Optional[int] = None, seed: int = 0) -> SelectionResult:
    """Algorithm 1 or one of its ablations on given embeddings (no data, no encoder).

    * ``selected``: candidates by similarity, then the greedy coverage loop (:func:`greedy_select`).
    * ``no-consistency``: a seeded random order, then the same loop.
    * ``no-diversity``: the top ``k`` by similarity.
    * ``random``: the first ``k`` of a seeded random order (the order ``no-consistency`` walks).

    ``k`` (fixed-size methods only) defaults to the size of the ``selected`` set.
    """
    if method not in METHODS:
        raise SelectionError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if not candidates:
        raise SelectionError("no candidate tasks to select from")
    fixed_size = method in ("random", "no-diversity")
    if k is not None and not fixed_size:
        raise SelectionError(f"--k applies to the methods random and no-diversity, not {method}")
    if k is not None and not 1 <= k <= len(candidates):
        raise SelectionError(f"--k must be between 1 and the number of candidates ({len(candidates)}), got {k}")
    coverage = coverage or make_coverage()
    if hasattr(coverage, "prepare"):  # fitted once on every point, so all steps are measured alike
        coverage = coverage.prepare(np.concatenate([target, *candidates.values()], axis=0))
    similarity = consistency(target, candidates)
    by_similarity = rank_by_similarity(similarity)
    uses_seed = method in ("random", "no-consistency")
    order = _permutation(candidates, seed, target_name) if uses_seed else by_similarity

    if fixed_size:
        if k is None:
            k = len(greedy_select(by_similarity, target, candidates, coverage, p)[0])
        selected = order[:k]
        steps = _fixed_steps(order, selected, target, candidates, coverage)
    else:
        selected, steps = greedy_select(order, target, candidates, coverage, p)
    final = [s["coverage"] for s in steps if s["decision"].startswith("added")][-1]
    describe = coverage.describe() if hasattr(coverage, "describe") else {"name": getattr(coverage, "__name__", "custom")}
    return SelectionResult(target=target_name, method=method, selected=list(selected), similarity=similarity, steps=steps,
                           coverage=describe, final_coverage=final, p=None if fixed_size else p,
                           k=k if fixed_size else None, seed=seed if uses_seed else None)


# --------------------------------------------------------------------------- text overlap (leakage guard)


def _overlap_with_target(target: TaskSpec, data_dir, candidates: Sequence[str], split_seed: int, k_shot: int,
                         pool_seeds: bool) -> Tuple[Dict[str, Dict], Optional[str]]:
    """text_overlap of each candidate's k-shot train data with the target's test set."""
    try:
        test = load_kshot(target, data_dir, split_seed, k_shot, splits=("test",))["test"]
    except MtftError as exc:
        note = f"target test set not available, text overlap not checked ({exc})"
        logger.warning(note)
        return {}, note
    return {c: text_overlap(test, task_examples(c, data_dir, split_seed, k_shot, pool_seeds)) for c in candidates}, None


# --------------------------------------------------------------------------- the API


def embed_tasks(names: Sequence[str], data_dir=None, encoder: Optional[str] = None, variant: str = DEFAULT_VARIANT,
                split_seed: int = DEFAULT_SPLIT_SEED, k_shot: int = DEFAULT_K, pool_seeds: bool = False,
                cache_dir=None) -> Dict[str, np.ndarray]:
    """:func:`task_embeddings` of several tasks, by name."""
    if variant not in VARIANTS:
        raise SelectionError(f"unknown embedding variant {variant!r}; choose from {', '.join(VARIANTS)}")
    data_dir = Path(data_dir if data_dir is not None else default_data_dir())
    return {n: task_embeddings(n, data_dir, encoder, variant, split_seed, k_shot, pool_seeds, cache_dir) for n in names}


def select_tasks(target: str, candidates: Optional[Sequence[str]] = None, method: str = DEFAULT_METHOD,
                 encoder: Optional[str] = None, variant: str = DEFAULT_VARIANT, coverage: str = DEFAULT_COVERAGE,
                 quantile: Optional[float] = None, dims: Optional[int] = DEFAULT_ELLIPSOID_DIMS, p: float = DEFAULT_P,
                 k: Optional[int] = None, seed: int = 0, data_dir=None, split_seed: int = DEFAULT_SPLIT_SEED,
                 k_shot: int = DEFAULT_K, pool_seeds: bool = False, cache_dir=None,
                 check_overlap: bool = True) -> SelectionResult:
    """Choose finetuning tasks for ``target`` (the API of ``mtft-nlp select``): embed, rank, select.

    Candidates default to the leave-one-out pool (:func:`default_candidates`); ``coverage``,
    ``quantile`` and ``dims`` go to :func:`make_coverage`; the rest to :func:`task_embeddings`
    and :func:`select_from_embeddings`. With ``check_overlap`` every candidate's embedded
    examples are compared with the target's test set (:func:`text_overlap`).
    """
    target_task = get_task(target)
    names = resolve_candidates(target_task, candidates)
    cov = make_coverage(coverage, quantile, dims)
    if method not in METHODS:
        raise SelectionError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    data_dir = Path(data_dir if data_dir is not None else default_data_dir())
    embs = embed_tasks([target_task.name, *names], data_dir, encoder, variant, split_seed, k_shot, pool_seeds, cache_dir)
    target_emb = embs.pop(target_task.name)
    result = select_from_embeddings(target_task.name, target_emb, embs, method, cov, p, k, seed)
    result.encoder = encoder or DEFAULT_ENCODER
    result.variant = variant
    result.split_seed = "pooled" if pool_seeds else split_seed
    result.k_shot = k_shot
    if check_overlap:
        result.overlap, result.overlap_note = _overlap_with_target(target_task, data_dir, names, split_seed, k_shot,
                                                                   pool_seeds)
    return result


# --------------------------------------------------------------------------- similarity heatmap


def similarity_matrix(embeddings: Dict[str, np.ndarray]) -> Tuple[List[str], np.ndarray]:
    """Pairwise cosine similarity of the tasks' mean embeddings."""
    names = list(embeddings)
    means = np.stack([np.asarray(embeddings[n], dtype=np.float64).mean(axis=0) for n in names])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    return names, means @ means.T


def cluster_order(similarity: np.ndarray) -> List[int]:
    """Leaf order of average-linkage agglomerative clustering on ``1 - similarity``.

    Repeatedly merges the two clusters with the highest mean pairwise similarity; the
    merged cluster lists the first cluster's leaves then the second's, so similar tasks end
    up adjacent. Ties are broken by the lowest index (deterministic).
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
            ax.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if sim[i, j] > (sim.min() + 1.0) / 2 else "white")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="cosine of mean embeddings")
    ax.set_title(title or "Task similarity")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- command line


def register_cli(subparsers):
    """Add the ``select`` subcommand to the ``mtft-nlp`` parser."""
    s = subparsers.add_parser(
        "select", help="choose finetuning tasks for a target by consistency and diversity (Algorithm 1)",
        description="Rank candidate tasks by the cosine similarity of their mean embedding to the target's, then add "
                    "them greedily while they raise the coverage of the target's examples by a factor 1 + p "
                    "(PROTOCOL section 6). See docs/SELECTION.md.")
    s.add_argument("--target", required=True, help="target task (name, alias or task file)")
    s.add_argument("--output", help="write the selection JSON here")
    s.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                   help="selected (Algorithm 1, default), random (k random candidates), no-consistency (random order, "
                        "same greedy loop), no-diversity (top-k by similarity)")
    s.add_argument("--k", type=int, help="random / no-diversity: number of tasks (default: the size of the selected set)")
    s.add_argument("--seed", type=int, default=0, help="random / no-consistency: seed of the random order (default 0)")
    s.add_argument("--p", type=float, default=DEFAULT_P,
                   help=f"greedy loop: add a task only if it multiplies coverage by at least 1 + p (default {DEFAULT_P})")
    s.add_argument("--coverage", choices=COVERAGES, default=DEFAULT_COVERAGE, help="coverage definition (default ellipsoid)")
    s.add_argument("--quantile", type=float,
                   help=f"ellipsoid: Gaussian mass inside the ellipsoid (default {DEFAULT_QUANTILE}); knn: quantile of "
                        f"the target's nearest-neighbour distances used as radius (default {DEFAULT_KNN_QUANTILE})")
    s.add_argument("--dims", type=int, default=DEFAULT_ELLIPSOID_DIMS,
                   help=f"ellipsoid: principal components it is fitted in (default {DEFAULT_ELLIPSOID_DIMS}; 0 = the full "
                        f"embedding)")
    s.add_argument("--encoder", default=DEFAULT_ENCODER,
                   help="sentence-transformers model name or path (default: minilm, the packaged all-MiniLM-L6-v2)")
    s.add_argument("--variant", choices=VARIANTS, default=DEFAULT_VARIANT,
                   help="label: text rendered through the task's prompt with the gold label word (default); raw: text only")
    s.add_argument("--candidates", nargs="+", help="candidate tasks (default: the 14 classification tasks minus the target)")
    s.add_argument("--data_dir", help="LM-BFF data root (default: $MTFT_NLP_DATA_DIR or ../shared/data)")
    s.add_argument("--split_seed", type=int, default=DEFAULT_SPLIT_SEED, help="k-shot split embedded (default 42)")
    s.add_argument("--k_shot", type=int, default=DEFAULT_K, help="examples per class (default 16)")
    s.add_argument("--pool_seeds", action="store_true", help="embed the union of the 5 seeds' k-shot train sets")
    s.add_argument("--cache_dir", help="embedding cache (default: $MTFT_NLP_CACHE or ~/.cache/mtft-nlp)")
    s.add_argument("--plot", help="write a PNG heatmap of pairwise task similarity (target and candidates) here")
    s.set_defaults(func=cmd_select)
    return s


def cmd_select(a) -> int:
    """``mtft-nlp select``: print the table; write the JSON and the plot when asked."""
    from .results import atomic_write_json

    result = select_tasks(a.target, a.candidates, a.method, a.encoder, a.variant, a.coverage, a.quantile, a.dims, a.p,
                          a.k, a.seed, a.data_dir, a.split_seed, a.k_shot, a.pool_seeds, a.cache_dir)
    print(result.format_table(), end="")
    if a.output:
        atomic_write_json(a.output, result.to_dict())
        print(f"wrote {a.output}")
    if a.plot:
        embs = embed_tasks([result.target, *result.similarity], a.data_dir, a.encoder, a.variant, a.split_seed,
                           a.k_shot, a.pool_seeds, a.cache_dir)  # cache hits
        plot_similarity(embs, a.plot, title=f"Task similarity ({result.variant} embeddings, target {result.target})")
        print(f"wrote {a.plot}")
    return 0
