"""Task selection by consistency and diversity (PROTOCOL section 6, the paper's Algorithm 1).

Pipeline, one function per step::

    k-shot examples --(phi: task_embeddings, cached)--> points per task
    points --(consistency)--> cosine(mean_target, mean_candidate) --(rank_by_similarity)--> order
    order + points --(greedy_select, a coverage function, p)--> selected tasks

* **phi** (:mod:`mtft_nlp.selection.embeddings`): by default the model being finetuned (``encoder="model"``,
  ``model_name_or_path``, default the packaged MiniLM): a sentence-transformers model's pooled
  embedding of the example rendered through its task's prompt with the gold label word, or a masked
  LM's hidden state at the mask position of that prompt (gold label word in place of the mask).
* **Consistency**: cosine similarity of mean embeddings; candidates sorted descending.
* **Coverage** (:mod:`mtft_nlp.selection.coverage`): ``union`` (default) = fraction of target points inside
  the union of the selected tasks' own Ledoit-Wolf ellipsoids in a shared 16-dimensional PCA space;
  monotone in the set. ``ellipsoid`` (pooled, not monotone) and ``knn`` by name.
* **Greedy loop** (Algorithm 1): L = {first}; add the next candidate while
  ``coverage(L + Ti) >= (1 + p) * coverage(L)``; stop at the first that fails (with
  ``coverage(L) == 0`` a candidate must cover something).
* **p** (``p="auto"``, default, :func:`choose_p`): the value of a fixed grid at which the mean size of
  Algorithm 1's selection over the leave-one-out pools of all classification tasks is closest to a
  budget (default 4), from embeddings only.
* **Methods** (the paper's Table 1), each with its own random stream (:func:`method_rng`):
  ``selected``; ``random`` (|Selected| tasks drawn uniformly); ``no-consistency`` (the greedy loop
  over a random order); ``no-diversity`` (the top ``k`` by similarity, ``k`` = the budget; no coverage).

``select_tasks`` is the Python API; ``mtft-nlp select`` (:mod:`mtft_nlp.selection.command`) the command.
The design and the defaults are explained in ``docs/SELECTION.md``.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..data.kshot import DEFAULT_K, default_data_dir
from ..data.overlap import text_overlap
from ..data.sources import in_family, load_target_test
from ..tasks import TaskSpec, classification_tasks, get_task, leave_one_out
from ..templates import Prompt
from .algorithm import (
    AUTO_P,
    DEFAULT_BUDGET,
    DEFAULT_P,
    FIXED_P,
    P_GRID,
    check_p,
    choose_p,
    consistency,
    greedy_select,
    prepared_coverage,
)
from .coverage import (
    DEFAULT_COVERAGE,
    DEFAULT_ELLIPSOID_DIMS,
    SelectionError,
    make_coverage,
)
from .embeddings import (
    DEFAULT_ENCODER,
    DEFAULT_SPLIT_SEED,
    DEFAULT_TEXT_VARIANT,
    TEXT_VARIANTS,
    EncoderSpec,
    resolve_encoder,
    task_embeddings,
    task_examples,
)
from .result import SelectionResult, rank_by_similarity

logger = logging.getLogger(__name__)

SELECTION_METHODS = ("selected", "random", "no-consistency", "no-diversity")
DEFAULT_METHOD = "selected"

CoverageFn = Callable[[Sequence[np.ndarray], np.ndarray], float]


# --------------------------------------------------------------------------- candidates


def default_candidates(target: TaskSpec | str) -> List[str]:
    """PROTOCOL section 5's leave-one-out pool: the 14 classification tasks minus the target
    and its variants (tasks sharing its data, MNLI <-> MNLI-mm)."""
    return leave_one_out(target)


def resolve_candidates(target: TaskSpec | str, candidates: Optional[Sequence[str]] = None) -> List[str]:
    """Candidate task names (canonical, de-duplicated, in the given order). The target or a task sharing
    its data is an error; so is an empty pool (no candidate left after excluding the target's family)."""
    target = get_task(target)
    if candidates is None:
        out = default_candidates(target)
        if not out:
            raise SelectionError(
                f"target {target.name}: no candidate tasks left after excluding the target and the "
                f"tasks sharing its data"
            )
        return out
    family = in_family(candidates, target)
    if family and len(family) == len(candidates):
        raise SelectionError(
            f"target {target.name}: no candidate tasks left after excluding the target and the tasks "
            f"sharing its data ({', '.join(map(repr, family))})"
        )
    if family:
        raise SelectionError(f"candidate {family[0]!r} is the target {target.name} or shares its data; remove it")
    out: List[str] = []
    for c in candidates:
        t = get_task(c)
        if t.name not in out:
            out.append(t.name)
    if not out:
        raise SelectionError(f"target {target.name}: no candidate tasks given")
    return out


# --------------------------------------------------------------------------- ablations


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "little")


def method_rng(seed: int, target: str, method: str) -> np.random.Generator:
    """The random stream of one (seed, target, method): a ``numpy`` generator from a ``SeedSequence`` of the
    seed and stable hashes of the target and method names, so ``random`` and ``no-consistency`` draw
    independently, and different targets at one seed get independent draws."""
    words = [int(seed) % 2**32, _stable_int(target), _stable_int(method)]
    return np.random.default_rng(np.random.SeedSequence(words))


def _permutation(names: Iterable[str], seed: int, target: str = "", method: str = "no-consistency") -> List[str]:
    """A seeded random order of ``names`` (independent of the order they were given in)."""
    names = sorted(names)
    return [names[i] for i in method_rng(seed, target, method).permutation(len(names))]


def _random_draw(names: Iterable[str], k: int, seed: int, target: str) -> List[str]:
    """``k`` names drawn uniformly without replacement from ``random``'s own stream, in draw order."""
    names = sorted(names)
    return [names[i] for i in method_rng(seed, target, "random").choice(len(names), size=k, replace=False)]


def _fixed_steps(
    order: Sequence[str],
    selected: Sequence[str],
    target: np.ndarray,
    candidates: Dict[str, np.ndarray],
    coverage: CoverageFn,
) -> List[Dict]:
    """Steps of a fixed-size selection: the coverage as each chosen task joins (reported, not used)."""
    steps, chosen, current = [], [], 0.0
    for name in order:
        if name in selected:
            chosen.append(candidates[name])
            new = coverage(chosen, target)
            steps.append({"task": name, "coverage_before": current, "coverage": new, "decision": "added"})
            current = new
        else:
            steps.append({"task": name, "coverage_before": None, "coverage": None, "decision": "not chosen"})
    return steps


def select_from_embeddings(
    target_name: str,
    target: np.ndarray,
    candidates: Dict[str, np.ndarray],
    method: str = DEFAULT_METHOD,
    coverage: Optional[CoverageFn] = None,
    p: float = FIXED_P,
    k: Optional[int] = None,
    seed: int = 0,
    budget: int = DEFAULT_BUDGET,
) -> SelectionResult:
    """Algorithm 1 or one of its ablations on given embeddings (no data, no encoder); ``p`` is a number.

    * ``selected``: candidates by similarity, then the greedy coverage loop (:func:`greedy_select`).
    * ``random``: ``k`` candidates drawn uniformly (own stream); ``k`` defaults to |selected|.
    * ``no-consistency``: the greedy loop over a random order (another stream).
    * ``no-diversity``: the top ``k`` by similarity, no coverage; ``k`` defaults to ``budget``.
    """
    p = _check_selection_options(target_name, target, candidates, method, p, k, budget)
    fixed_size = method in ("random", "no-diversity")
    coverage = prepared_coverage(coverage or make_coverage(), target, candidates)
    similarity = consistency(target, candidates)
    by_similarity = rank_by_similarity(similarity)
    if method == "selected":
        selected, steps = greedy_select(by_similarity, target, candidates, coverage, p)
    elif method == "no-consistency":
        selected, steps = greedy_select(_permutation(candidates, seed, target_name), target, candidates, coverage, p)
    elif method == "random":
        if k is None:
            k = len(greedy_select(by_similarity, target, candidates, coverage, p)[0])
        selected = _random_draw(candidates, k, seed, target_name)
        order = selected + [n for n in sorted(candidates) if n not in selected]
        steps = _fixed_steps(order, selected, target, candidates, coverage)
    else:  # no-diversity
        k = min(int(budget), len(candidates)) if k is None else k
        selected = by_similarity[:k]
        steps = _fixed_steps(by_similarity, selected, target, candidates, coverage)
    final = [s["coverage"] for s in steps if s["decision"].startswith("added")][-1]
    describe = (
        coverage.describe() if hasattr(coverage, "describe") else {"name": getattr(coverage, "__name__", "custom")}
    )
    return SelectionResult(
        target=target_name,
        method=method,
        selected=list(selected),
        similarity=similarity,
        steps=steps,
        coverage=describe,
        final_coverage=final,
        p=p if method != "no-diversity" else None,
        k=k if fixed_size else None,
        seed=seed if method in ("random", "no-consistency") else None,
    )


def _check_selection_options(target_name, target, candidates, method, p, k, budget) -> float:
    """Bad options are one :class:`SelectionError` naming the value; returns p as a number."""
    if method not in SELECTION_METHODS:
        raise SelectionError(f"unknown method {method!r}; choose from {', '.join(SELECTION_METHODS)}")
    if not candidates:
        raise SelectionError(f"target {target_name}: no candidate tasks to select from")
    p = check_p(p)
    if p == AUTO_P:
        raise SelectionError("p 'auto' needs the leave-one-out pools: use select_tasks, or choose_p then a number")
    dims = {np.asarray(e).shape[1] for e in candidates.values()} | {np.asarray(target).shape[1]}
    if len(dims) != 1:
        raise SelectionError(
            f"embeddings of different sizes {sorted(dims)}: all tasks must be embedded by one encoder"
        )
    if budget < 1:
        raise SelectionError(f"--budget must be >= 1, got {budget}")
    if k is not None and method not in ("random", "no-diversity"):
        raise SelectionError(f"--k applies to the methods random and no-diversity, not {method}")
    if k is not None and not 1 <= k <= len(candidates):
        raise SelectionError(f"--k must be between 1 and the number of candidates ({len(candidates)}), got {k}")
    return p


# --------------------------------------------------------------------------- text overlap (leakage guard)


def _overlap_with_target(
    target: TaskSpec, data_dir, candidates: Sequence[str], split_seed: int, k_shot: int, pool_seeds: bool
) -> Tuple[Dict[str, Dict], Optional[str]]:
    """text_overlap of each candidate's k-shot train data with the target's test set (the source pool's guard,
    reported here, not applied: the multitask stage removes the overlapping examples)."""
    test, note = load_target_test(target, data_dir, split_seed, k_shot)
    if test is None:
        return {}, note
    return {
        c: text_overlap(test, task_examples(c, data_dir, split_seed, k_shot, pool_seeds)) for c in candidates
    }, None


# --------------------------------------------------------------------------- the API


def embed_tasks(
    names: Sequence[str],
    data_dir=None,
    encoder: Optional[str | EncoderSpec] = DEFAULT_ENCODER,
    variant: str = DEFAULT_TEXT_VARIANT,
    split_seed: int = DEFAULT_SPLIT_SEED,
    k_shot: int = DEFAULT_K,
    pool_seeds: bool = False,
    cache_dir=None,
    model_name_or_path: Optional[str] = None,
) -> Dict[str, np.ndarray]:
    """:func:`task_embeddings` of several tasks, by name."""
    if variant not in TEXT_VARIANTS:
        raise SelectionError(f"unknown embedding variant {variant!r}; choose from {', '.join(TEXT_VARIANTS)}")
    spec = encoder if isinstance(encoder, EncoderSpec) else resolve_encoder(encoder, model_name_or_path)
    data_dir = Path(data_dir if data_dir is not None else default_data_dir())
    return {n: task_embeddings(n, data_dir, spec, variant, split_seed, k_shot, pool_seeds, cache_dir) for n in names}


def auto_p(
    coverage,
    embed: Callable[[Sequence[str]], Dict[str, np.ndarray]],
    budget: float = DEFAULT_BUDGET,
    grid: Sequence[float] = P_GRID,
    known: Optional[Dict[str, np.ndarray]] = None,
) -> Dict:
    """:func:`choose_p` on the leave-one-out pools of every classification task (each one the target,
    its default candidates the pool), embedded by ``embed(names)``; ``known`` embeddings are reused."""
    names = classification_tasks()
    embs = dict(known or {})
    missing = [n for n in names if n not in embs]
    if missing:
        embs.update(embed(missing))
    pools = {t: (embs[t], {c: embs[c] for c in default_candidates(t)}) for t in names}
    return choose_p(pools, coverage, budget, grid)


def select_tasks(
    target: str,
    candidates: Optional[Sequence[str]] = None,
    method: str = DEFAULT_METHOD,
    encoder: Optional[str] = DEFAULT_ENCODER,
    variant: str = DEFAULT_TEXT_VARIANT,
    coverage: str = DEFAULT_COVERAGE,
    quantile: Optional[float] = None,
    dims: Optional[int] = DEFAULT_ELLIPSOID_DIMS,
    p: Union[float, str] = DEFAULT_P,
    k: Optional[int] = None,
    seed: int = 0,
    data_dir=None,
    split_seed: int = DEFAULT_SPLIT_SEED,
    k_shot: int = DEFAULT_K,
    pool_seeds: bool = False,
    cache_dir=None,
    check_overlap: bool = True,
    model_name_or_path: Optional[str] = None,
    budget: int = DEFAULT_BUDGET,
    target_examples: Optional[List[Dict]] = None,
    target_prompt: Optional[Prompt] = None,
) -> SelectionResult:
    """Choose finetuning tasks for ``target`` (the API of ``mtft-nlp select``): embed, rank, select.

    ``encoder="model"`` (default) embeds with ``model_name_or_path`` (the model being finetuned; default
    the packaged MiniLM); another ``encoder`` names another model. Candidates default to the leave-one-out
    pool (:func:`default_candidates`); ``coverage``, ``quantile`` and ``dims`` go to :func:`make_coverage`;
    ``p="auto"`` is resolved by :func:`auto_p` with ``budget``, which is also no-diversity's default k.
    Every option is checked before anything is embedded. ``target_examples``: the target's own labelled examples
    (a user's task whose data is not in ``data_dir``, which then holds only the candidates'); the text overlap with
    the target's test set is then the caller's to check. ``target_prompt``: the prompt the target's examples are
    rendered through (default: its task's default prompt; a user's task given its prompt elsewhere).
    """
    p = check_p(p)
    check_options(method=method, budget=budget, variant=variant, k=k, seed=seed, split_seed=split_seed, k_shot=k_shot)
    cov = make_coverage(coverage, quantile, dims)
    spec = resolve_encoder(encoder, model_name_or_path)
    target_task = get_task(target)
    names = resolve_candidates(target_task, candidates)
    data_dir = Path(data_dir if data_dir is not None else default_data_dir())

    def embed(tasks: Sequence[str]) -> Dict[str, np.ndarray]:
        return embed_tasks(tasks, data_dir, spec, variant, split_seed, k_shot, pool_seeds, cache_dir)

    if target_examples is None and target_prompt is None:
        embs = embed([target_task.name, *names])
    else:
        own = task_embeddings(
            target_task,
            data_dir,
            spec,
            variant,
            split_seed,
            k_shot,
            pool_seeds,
            cache_dir,
            examples=target_examples,
            prompt=target_prompt,
        )
        embs = {target_task.name: own, **embed(names)}
    p_rule = None
    if p == AUTO_P:
        p_rule = auto_p(cov, embed, budget, known=embs)
        p = p_rule["p"]
    target_emb = embs.pop(target_task.name)
    result = select_from_embeddings(target_task.name, target_emb, embs, method, cov, p, k, seed, budget)
    result.encoder, result.encoder_info = spec.name, spec.describe()
    result.p_rule = p_rule if result.p is not None or method == "random" else None
    result.variant = variant
    result.split_seed = "pooled" if pool_seeds else split_seed
    result.k_shot = k_shot
    if check_overlap and target_examples is None:
        result.overlap, result.overlap_note = _overlap_with_target(
            target_task, data_dir, names, split_seed, k_shot, pool_seeds
        )
    return result


# select_tasks' options that a grid config's selection: section may set (the rest the grid gives itself)
OPTIONS = (
    "candidates",
    "method",
    "encoder",
    "variant",
    "coverage",
    "quantile",
    "dims",
    "p",
    "k",
    "seed",
    "split_seed",
    "k_shot",
    "pool_seeds",
    "cache_dir",
    "check_overlap",
    "budget",
)


def check_options(**options) -> None:
    """:func:`select_tasks`' options checked without embedding anything (all, or those given): unknown names, and
    values of the wrong kind or range, are a :class:`SelectionError` naming the option."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise SelectionError(f"unknown selection options {unknown}; they are {', '.join(OPTIONS)}")

    def whole(name, low, high=None):
        value = options.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < low or (high and value >= high)
        ):
            raise SelectionError(f"--{name} must be a whole number >= {low}, got {value!r}")

    if "method" in options and options["method"] not in SELECTION_METHODS:
        raise SelectionError(f"unknown method {options['method']!r}; choose from {', '.join(SELECTION_METHODS)}")
    if "variant" in options and options["variant"] not in TEXT_VARIANTS:
        raise SelectionError(
            f"unknown embedding variant {options['variant']!r}; choose from {', '.join(TEXT_VARIANTS)}"
        )
    for name in ("budget", "k", "k_shot"):
        whole(name, 1)
    for name in ("seed", "split_seed"):
        whole(name, 0, 2**32)
    whole("dims", 0)
    quantile = options.get("quantile")
    if quantile is not None and (isinstance(quantile, bool) or not isinstance(quantile, (int, float))):
        raise SelectionError(f"--quantile must be a number strictly between 0 and 1, got {quantile!r}")
    for name in ("encoder", "coverage", "cache_dir"):
        if options.get(name) is not None and not isinstance(options[name], str):
            raise SelectionError(f"--{name} must be a name, got {options[name]!r}")
    if "p" in options:
        check_p(options["p"])
    if {"coverage", "quantile", "dims"} & set(options):
        make_coverage(
            options.get("coverage", DEFAULT_COVERAGE),
            options.get("quantile"),
            options.get("dims", DEFAULT_ELLIPSOID_DIMS),
        )
    for name in ("pool_seeds", "check_overlap"):
        if name in options and not isinstance(options[name], bool):
            raise SelectionError(f"--{name} must be true or false, got {options[name]!r}")
    candidates = options.get("candidates")
    if candidates is not None and (isinstance(candidates, str) or not all(isinstance(c, str) for c in candidates)):
        raise SelectionError(f"candidates must be a list of task names, got {candidates!r}")


def same_sets(selections: Dict[str, Sequence[str]]) -> List[Tuple[str, str]]:
    """Pairs of methods (in the order given) that chose the same set of tasks (order ignored)."""
    names = list(selections)
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1 :] if set(selections[a]) == set(selections[b])]


def compare_methods(target: str, methods: Sequence[str] = SELECTION_METHODS, **options) -> Dict:
    """Every method's selection for ``target`` (same options; p resolved once), and which chose the same set:
    ``{"target", "p", "sets": {method: [...]}, "sizes": {method: n}, "same": [[a, b], ...]}``."""
    options = dict(options)
    options.pop("method", None)
    k = options.pop("k", None)
    first = select_tasks(target, method="selected", check_overlap=False, **options)
    options["p"] = first.p
    results = {"selected": first}
    for m in methods:
        if m != "selected":
            results[m] = select_tasks(
                target, method=m, check_overlap=False, k=k if m in ("random", "no-diversity") else None, **options
            )
    sets = {m: results[m].selected for m in methods}
    return {
        "target": first.target,
        "p": first.p,
        "p_rule": first.p_rule,
        "sets": sets,
        "sizes": {m: len(s) for m, s in sets.items()},
        "same": [list(pair) for pair in same_sets(sets)],
    }
