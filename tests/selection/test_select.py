"""Task selection (PROTOCOL section 6): coverage and Algorithm 1 on synthetic embeddings with
known geometry (monotone union coverage, the p rule), the four methods and their random streams,
the encoder phi (sentence-transformers and masked LM), the embedding cache, prompt rendering, the
leakage guard, bad input, and ``mtft-nlp select`` on the shared data (one real encoding pass,
cached for the other calls)."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from mtft_nlp import tasks as tasks_mod
from mtft_nlp.cli import main
from mtft_nlp.selection import algorithm as alg
from mtft_nlp.selection import command as selection_cli
from mtft_nlp.selection import coverage as coverage_mod
from mtft_nlp.selection import embeddings as emb
from mtft_nlp.selection import select as sel
from mtft_nlp.templates import load_prompt

SENTIMENT = ("SST-5", "MR", "CR", "MPQA")
NLI = ("MNLI", "SNLI", "QNLI", "RTE")


def _cloud(center, n, noise=0.02, seed=0):
    """n points around ``center`` (Gaussian noise in every dimension)."""
    center = np.asarray(center, dtype=np.float64)
    return center + noise * np.random.RandomState(seed).randn(n, center.size)


def _unit(i, d=6):
    v = np.zeros(d)
    v[i] = 1.0
    return v


def _fake_encoder(calls, dim=384):
    """A deterministic stand-in for the sentence encoder (MiniLM's 384 dimensions) that counts its calls."""

    def encode(texts, encoder):
        calls.append(len(texts))
        seeds = [int(hashlib.md5(t.encode()).hexdigest()[:8], 16) for t in texts]
        out = np.stack([np.random.RandomState(s).randn(dim) for s in seeds])
        return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)

    return encode


# --------------------------------------------------------------------------- consistency


def test_cosine_ordering_follows_angles():
    target = _cloud(_unit(0), 20, noise=0.0)
    angles = {"near": 10, "mid": 45, "far": 80, "opposite": 170}
    cands = {
        name: _cloud(np.cos(np.radians(a)) * _unit(0) + np.sin(np.radians(a)) * _unit(1), 10, noise=0.0)
        for name, a in angles.items()
    }
    sim = sel.consistency(target, cands)
    for name, a in angles.items():
        assert sim[name] == pytest.approx(np.cos(np.radians(a)))
    assert sel.rank_by_similarity(sim) == ["near", "mid", "far", "opposite"]
    assert sel.rank_by_similarity({"b": 0.5, "a": 0.5, "c": 0.9}) == ["c", "a", "b"]  # ties by name


# --------------------------------------------------------------------------- coverage


def test_ledoit_wolf_matches_sklearn():
    sklearn_cov = pytest.importorskip("sklearn.covariance")
    X = np.random.RandomState(1).randn(30, 50) @ np.diag(np.linspace(0.2, 3.0, 50))
    mean, cov, shrinkage = coverage_mod.ledoit_wolf(X)
    ref_cov, ref_shrinkage = sklearn_cov.ledoit_wolf(X)
    assert shrinkage == pytest.approx(ref_shrinkage)
    np.testing.assert_allclose(cov, ref_cov, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mean, X.mean(axis=0))
    assert 0.0 < shrinkage < 1.0 and np.linalg.eigvalsh(cov).min() > 0  # n < d: S is singular, the shrunk one is not


def test_chi2_quantile_is_scipys():
    stats = pytest.importorskip("scipy.stats")
    for dof in (8, 16, 384):
        for q in (0.5, 0.95):
            assert coverage_mod.chi2_quantile(q, dof) == pytest.approx(stats.chi2.ppf(q, dof), rel=1e-12)
    with pytest.raises(sel.SelectionError, match="quantile must be in"):
        coverage_mod.chi2_quantile(1.0, 4)


def _check_counts(coverage, source, inside, outside):
    target = np.concatenate([inside, outside])
    coverage = coverage.prepare(np.concatenate([source, target]))
    assert coverage(source, target) == pytest.approx(len(inside) / len(target))
    assert coverage(source, inside) == 1.0
    assert coverage(source, outside) == 0.0


@pytest.mark.parametrize("name,dims", [("ellipsoid", 0), ("ellipsoid", 3), ("union", 0), ("union", 3)])
def test_ellipsoid_coverage_counts_target_points_inside(name, dims):
    source = _cloud(_unit(0), 60, seed=1)
    inside = _cloud(_unit(0), 30, noise=0.005, seed=2)  # a quarter of the source's spread, same centre
    outside = _cloud(_unit(1), 10, noise=0.005, seed=3)  # 70 source noise widths away
    _check_counts(sel.make_coverage(name, dims=dims), source, inside, outside)


def test_knn_coverage_counts_target_points_inside():
    source = _cloud(_unit(0), 60, seed=1)
    inside = source[:30] + 1e-4 * np.random.RandomState(2).randn(30, 6)  # next to a source point each
    outside = _cloud(_unit(1), 10, seed=3)
    cov = sel.make_coverage("knn")
    _check_counts(cov, source, inside, outside)
    assert cov.radius(np.concatenate([inside, outside])) < 0.1


def test_ellipsoid_radius_is_the_gaussian_quantile():
    """Fresh points of the source's own Gaussian fall inside at about the chosen rate."""
    rng = np.random.RandomState(4)
    scales = np.array([1.5, 1.0, 0.7, 0.5])  # mild anisotropy: the shrinkage bias stays negligible
    source, fresh = rng.randn(4000, 4) * scales, rng.randn(4000, 4) * scales
    for q in (0.5, 0.9):
        for name in ("ellipsoid", "union"):
            assert sel.make_coverage(name, quantile=q, dims=0)(source, fresh) == pytest.approx(q, abs=0.03)


def test_ellipsoid_with_projection_needs_prepare():
    for name in ("ellipsoid", "union"):
        with pytest.raises(sel.SelectionError, match="prepare"):
            sel.make_coverage(name, dims=2)(np.eye(4), np.eye(4))


def test_union_is_the_default_and_per_task():
    assert sel.DEFAULT_COVERAGE == "union" and isinstance(sel.make_coverage(), coverage_mod.UnionCoverage)
    assert sel.make_coverage().describe()["name"] == "union"
    a, b = _cloud(_unit(0), 40, seed=1), _cloud(_unit(1), 40, seed=2)
    target = np.concatenate([_cloud(_unit(0), 10, noise=0.005, seed=3), _cloud(_unit(1), 10, noise=0.005, seed=4)])
    union, pooled = sel.make_coverage("union", dims=0), sel.make_coverage("ellipsoid", dims=0)
    assert union([a, b], target) == 1.0  # each task's own ellipsoid holds its half
    assert pooled([a, b], target) == pooled(np.concatenate([a, b]), target)  # the pooled one ignores task identity


@pytest.mark.parametrize("name", ["union", "knn"])
def test_coverage_only_grows_when_a_task_is_added(name):
    """Property: coverage(L + T) >= coverage(L) for random embeddings, sets and added tasks."""
    rng = np.random.RandomState(7)
    for trial in range(25):
        d = rng.choice([5, 12, 30])
        tasks = [rng.randn(rng.randint(8, 40), d) * rng.uniform(0.2, 2.0) + rng.randn(d) for _ in range(6)]
        target = rng.randn(rng.randint(10, 50), d) * rng.uniform(0.3, 1.5) + rng.randn(d)
        cov = sel.make_coverage(name, dims=int(rng.choice([0, 3])) if name == "union" else None)
        cov = cov.prepare(np.concatenate([target, *tasks]))
        order = rng.permutation(len(tasks))
        values = [cov([tasks[i] for i in order[:m]], target) for m in range(1, len(tasks) + 1)]
        assert all(b >= a for a, b in zip(values, values[1:])), (trial, values)


def test_pooled_ellipsoid_can_lose_coverage_when_a_task_is_added():
    """Why the pooled ellipsoid is not the default: a tight task elsewhere halves the pooled variance
    across the axis between the tasks, so the target (drawn like task A) falls out of the refit."""
    a = _cloud(_unit(0), 60, seed=1)
    tight = _cloud(_unit(1), 60, noise=1e-4, seed=2)
    target = _cloud(_unit(0), 40, seed=3)
    pooled, union = sel.make_coverage("ellipsoid", dims=0), sel.make_coverage("union", dims=0)
    assert pooled([a, tight], target) < pooled([a], target) - 0.2
    assert union([a, tight], target) == union([a], target) > 0.8


# --------------------------------------------------------------------------- Algorithm 1


def test_accepts_is_algorithm_1s_test_with_the_zero_rule():
    assert alg.accepts(0.75, 0.5, p=0.5) and not alg.accepts(0.74, 0.5, p=0.5)
    assert alg.accepts(0.5, 0.5, p=0.0)  # p = 0: no loss of coverage is enough
    assert not alg.accepts(0.0, 0.0, p=0.1)  # 0 >= (1 + p) * 0 holds, but nothing is covered: stop
    assert alg.accepts(0.1, 0.0, p=0.1)


def _two_region_problem():
    """Target: 40 points at e0 and 20 at e1. A covers e0 (most similar), R is a redundant
    copy of A (next most similar), B covers e1 (least similar)."""
    target = np.concatenate([_cloud(_unit(0), 40, seed=1), _cloud(_unit(1), 20, seed=2)])
    cands = {
        "A": _cloud(_unit(0), 40, seed=3),
        "R": _cloud(0.95 * _unit(0) + 0.31 * _unit(2), 40, seed=4),
        "B": _cloud(_unit(1), 40, seed=5),
    }
    return target, cands


COVERAGES = [
    sel.make_coverage("ellipsoid", dims=0),
    sel.make_coverage("ellipsoid", dims=4),
    sel.make_coverage("knn"),
    sel.make_coverage("union", dims=0),
    sel.make_coverage("union", dims=4),
]


@pytest.mark.parametrize(
    "coverage", COVERAGES, ids=["ellipsoid-full", "ellipsoid-pca4", "knn", "union-full", "union-pca4"]
)
def test_greedy_adds_a_covering_task_and_a_redundant_one_stops_it(coverage):
    target, cands = _two_region_problem()
    coverage = coverage.prepare(np.concatenate([target, *cands.values()]))
    # A then B: B covers the other region -> added
    selected, steps = sel.greedy_select(["A", "B"], target, cands, coverage, p=0.2)
    assert selected == ["A", "B"]
    second_region = target[40:]
    assert coverage(cands["A"], second_region) == 0.0 < coverage([cands["A"], cands["B"]], second_region)
    assert steps[1]["coverage"] >= 1.2 * steps[0]["coverage"] > 0
    # A then R then B: R adds nothing -> the loop stops there and never reaches B
    selected, steps = sel.greedy_select(["A", "R", "B"], target, cands, coverage, p=0.2)
    assert selected == ["A"]
    assert [s["decision"] for s in steps] == ["added (first)", "stop", "not reached"]
    assert steps[1]["coverage"] < 1.2 * steps[0]["coverage"]


def test_selected_follows_similarity_order():
    target, cands = _two_region_problem()
    res = sel.select_from_embeddings("T", target, cands, "selected", sel.make_coverage("knn"), p=0.2)
    assert [s["task"] for s in res.steps] == ["A", "R", "B"] == sel.rank_by_similarity(res.similarity)
    assert res.selected == ["A"] and res.final_coverage == res.steps[0]["coverage"]


def test_zero_coverage_stops_after_the_first_task():
    target = _cloud(_unit(3), 20, seed=1)  # far from every candidate
    cands = {"A": _cloud(_unit(0), 20, seed=2), "B": _cloud(_unit(1), 20, seed=3)}
    res = sel.select_from_embeddings("T", target, cands, "selected", sel.make_coverage("knn"), p=0.0)
    assert res.selected == [sel.rank_by_similarity(res.similarity)[0]]
    assert res.final_coverage == 0.0 and res.steps[1]["decision"] == "stop"


# --------------------------------------------------------------------------- ablations


def _many_candidates():
    """Target: four clusters around e0 + 0.3 e_{j+1} (j = 0..3). T0..T3 each cover one
    cluster, with 2i far outliers that lower their similarity in that order (the nearest-
    neighbour coverage ignores them); T4..T7 lie elsewhere and cover nothing."""
    d = 12
    centers = [_unit(0, d) + 0.3 * _unit(j + 1, d) for j in range(4)]
    target = np.concatenate([_cloud(c, 8, seed=j) for j, c in enumerate(centers)])
    cands = {}
    for i, c in enumerate(centers):
        cands[f"T{i}"] = np.concatenate([_cloud(c, 10, seed=10 + i), _cloud(2.0 * _unit(11, d), 2 * i, seed=20 + i)])
    for i in range(4, 8):
        cands[f"T{i}"] = _cloud((0.6 - 0.15 * (i - 4)) * _unit(0, d) + _unit(i + 1, d), 10, seed=10 + i)
    return target, cands


def test_ablations_differ_as_defined():
    target, cands = _many_candidates()
    cov = sel.make_coverage("knn")
    run = lambda method, **kw: sel.select_from_embeddings("T", target, cands, method, cov, p=0.01, **kw)  # noqa: E731
    chosen = run("selected")
    by_sim = sel.rank_by_similarity(chosen.similarity)
    assert by_sim == [f"T{i}" for i in range(8)]
    assert chosen.selected == ["T0", "T1", "T2", "T3"]  # each covers a new cluster; T4 covers nothing: stop
    assert [s["decision"] for s in chosen.steps][4:] == ["stop", "not reached", "not reached", "not reached"]

    nodiv = run("no-diversity")  # consistency alone: the top `budget` (default 4) by similarity, no coverage
    assert nodiv.k == sel.DEFAULT_BUDGET == 4 and nodiv.selected == by_sim[:4] and nodiv.p is None
    assert run("no-diversity", budget=2).selected == by_sim[:2] != chosen.selected  # not Selected by construction
    assert run("no-diversity", k=6).selected == by_sim[:6]
    assert run("no-diversity", budget=99).selected == by_sim  # capped at the pool

    rnd = run("random", k=4, seed=1)
    assert len(rnd.selected) == 4 == rnd.k and set(rnd.selected) <= set(cands)
    assert run("random", k=4, seed=1).selected == rnd.selected  # deterministic per seed
    assert len({tuple(run("random", k=4, seed=s).selected) for s in range(8)}) > 1  # and seed-dependent
    assert run("random", seed=1).k == len(chosen.selected)  # default k: the size of the selected set
    assert [s["task"] for s in rnd.steps][:4] == rnd.selected  # drawn tasks first, in draw order
    names = [f"task{i}" for i in range(12)]  # one seed, many targets: independent orders per target
    assert len({tuple(sel._permutation(names, 0, f"target{j}")) for j in range(6)}) == 6
    assert sel._permutation(names, 0, "RTE") == sel._permutation(list(reversed(names)), 0, "RTE")

    nocon = run("no-consistency", seed=1)  # a random order, then the same greedy loop
    order = [s["task"] for s in nocon.steps]
    assert order != by_sim and sorted(order) == sorted(cands)
    assert order == sel._permutation(cands, 1, "T", "no-consistency")
    assert (nocon.selected, nocon.steps) == sel.greedy_select(order, target, cands, cov, p=0.01)
    assert run("no-consistency", seed=1).selected == nocon.selected
    assert len({tuple(s["task"] for s in run("no-consistency", seed=s).steps) for s in range(8)}) > 1


def test_random_methods_have_their_own_streams():
    """random and no-consistency draw from streams seeded by (seed, target, method): neither the
    draw nor the order of one is a prefix of the other's, and targets at one seed differ."""
    names = [f"task{i:02d}" for i in range(13)]
    prefix_equal = 0
    for seed in range(40):
        drawn = sel._random_draw(names, 4, seed, "CR")
        order = sel._permutation(names, seed, "CR", "no-consistency")
        prefix_equal += drawn == order[:4]
        assert drawn == sel._random_draw(list(reversed(names)), 4, seed, "CR")  # deterministic, order-free
    assert prefix_equal <= 1  # one stream would give 40 of 40
    r1 = sel.method_rng(0, "CR", "random").integers(1 << 30, size=4)
    for other in (
        sel.method_rng(0, "CR", "no-consistency"),
        sel.method_rng(0, "MR", "random"),
        sel.method_rng(1, "CR", "random"),
    ):
        assert not np.array_equal(r1, other.integers(1 << 30, size=4))
    np.testing.assert_array_equal(r1, sel.method_rng(0, "CR", "random").integers(1 << 30, size=4))


def test_same_sets_reports_coinciding_methods():
    sets = {"selected": ["A", "B"], "random": ["B", "A"], "no-consistency": ["C"], "no-diversity": ["A", "B", "C"]}
    assert sel.same_sets(sets) == [("selected", "random")]
    assert sel.same_sets({"selected": ["A"], "no-diversity": ["B"]}) == []


def test_random_order_does_not_depend_on_dict_order():
    target, cands = _many_candidates()
    reversed_cands = dict(reversed(list(cands.items())))
    a = sel.select_from_embeddings("T", target, cands, "random", sel.make_coverage("knn"), k=3, seed=5)
    b = sel.select_from_embeddings("T", target, reversed_cands, "random", sel.make_coverage("knn"), k=3, seed=5)
    assert a.selected == b.selected


@pytest.mark.parametrize(
    "method,kwargs,message",
    [
        ("selected", {"k": 2}, "--k applies to the methods random and no-diversity"),
        ("random", {"k": 9}, "--k must be between 1 and the number of candidates (8)"),
        ("best", {}, "unknown method 'best'"),
        ("selected", {"p": -0.1}, "--p must be >= 0, got -0.1"),
        ("selected", {"p": "much"}, "--p must be 'auto' or a number >= 0, got 'much'"),
        ("selected", {"p": "auto"}, "p 'auto' needs the leave-one-out pools"),
        ("no-diversity", {"budget": 0}, "--budget must be >= 1, got 0"),
    ],
)
def test_bad_options(method, kwargs, message):
    target, cands = _many_candidates()
    with pytest.raises(sel.SelectionError) as exc:
        sel.select_from_embeddings("T", target, cands, method, sel.make_coverage("knn"), **kwargs)
    assert message in str(exc.value)


# --------------------------------------------------------------------------- the p rule


def test_choose_p_picks_the_grid_value_closest_to_the_budget():
    target, cands = _many_candidates()  # Algorithm 1 selects T0..T3 at small p
    rng = np.random.RandomState(0)
    pools = {
        "T": (target, cands),
        "U": (
            _cloud(_unit(5, 12), 20, seed=40),
            {f"S{i}": _cloud(_unit(5, 12) + rng.randn(12) * 0.02 * i, 15, seed=41 + i) for i in range(5)},
        ),
    }
    rule = sel.choose_p(pools, sel.make_coverage("knn"), budget=4)
    means = {float(p): m for p, m in rule["mean_size"].items()}
    assert list(means) == list(sel.P_GRID) and rule["budget"] == 4 and "closest" in rule["rule"]
    assert all(means[a] >= means[b] for a, b in zip(sel.P_GRID, sel.P_GRID[1:]))  # larger p, smaller sets
    best = min(abs(m - 4) for m in means.values())
    assert abs(means[rule["p"]] - 4) == best and rule["p"] == max(p for p, m in means.items() if abs(m - 4) == best)
    at_p = sel.select_from_embeddings("T", target, cands, "selected", sel.make_coverage("knn"), p=rule["p"])
    assert rule["sizes"]["T"] == len(at_p.selected)
    assert sel.choose_p(pools, sel.make_coverage("knn"), budget=1)["p"] >= rule["p"]
    with pytest.raises(sel.SelectionError, match="--budget must be > 0"):
        sel.choose_p(pools, budget=0)


def test_check_p():
    assert sel.check_p("auto") == "auto" and sel.check_p("0.05") == 0.05 and sel.check_p(0) == 0.0
    for bad in (-1, "-0.5", float("nan")):
        with pytest.raises(sel.SelectionError, match="--p must be >= 0"):
            sel.check_p(bad)


# --------------------------------------------------------------------------- candidates, texts, overlap


def test_default_candidates_are_the_leave_one_out_pool():
    pool = sel.default_candidates("sst-2")
    assert len(pool) == 13 and "SST-2" not in pool and "STS-B" not in pool and "MNLI-mm" not in pool
    assert "MNLI" not in sel.default_candidates("mnli-mm") and "MNLI-mm" not in sel.default_candidates("mnli")
    assert len(sel.default_candidates("mnli-mm")) == 13 and len(sel.default_candidates("sts-b")) == 14
    assert sel.resolve_candidates("cr", ["mr", "MR", "sst2"]) == ["MR", "SST-2"]
    with pytest.raises(sel.SelectionError, match="shares its data"):
        sel.resolve_candidates("mnli", ["rte", "mnli-mm"])


def test_label_variant_renders_the_prompt_with_the_gold_word():
    one = [{"text_a": "a fun film", "text_b": None, "label": "1", "label_id": 1}]
    assert emb.example_texts("SST-2", one, "label") == ["a fun film It was great."]
    assert emb.example_texts("SST-2", one, "raw") == ["a fun film"]
    pair = [{"text_a": "A man is eating.", "text_b": "Someone eats food.", "label": "entailment", "label_id": 1}]
    assert emb.example_texts("MNLI", pair, "label") == ["A man is eating? Yes, someone eats food."]
    assert emb.example_texts("MNLI", pair, "raw") == ["A man is eating. Someone eats food."]
    trec = [{"text_a": "Where is Basque country ?", "text_b": None, "label": "4", "label_id": 4}]
    assert emb.example_texts("TREC", trec, "label") == ["Location: Where is Basque country ?"]
    sts = [{"text_a": "a", "text_b": "b", "label": 4.2, "label_id": 4.2}]
    assert emb.example_texts("STS-B", sts, "label")[0].endswith("Yes, b")
    with pytest.raises(sel.SelectionError, match="unknown embedding variant"):
        emb.example_texts("SST-2", one, "fancy")


def test_text_overlap_exact_and_normalised():
    target = [{"text_a": "A good film .", "text_b": None}, {"text_a": "premise", "text_b": "The hypothesis"}]
    source = [
        {"text_a": "A good film .", "text_b": None, "row": "s:1"},  # exact
        {"text_a": "a  GOOD film .", "text_b": None, "row": "s:2"},  # case/whitespace
        {"text_a": "other", "text_b": "the hypothesis ", "row": "s:3"},  # second sentence
        {"text_a": "unrelated", "text_b": None, "row": "s:4"},
    ]
    out = sel.text_overlap(target, source)
    assert out["exact"] == 1 and out["normalized"] == 3 and out["indices"] == [0, 1, 2] and out["n_examples"] == 4
    assert [e["row"] for e in out["examples"]] == ["s:1", "s:2", "s:3"]
    assert sel.text_overlap(target, source[3:]) == {
        "n_examples": 1,
        "exact": 0,
        "normalized": 0,
        "indices": [],
        "examples": [],
    }


# --------------------------------------------------------------------------- embeddings and cache


def test_embeddings_are_cached(tmp_path, data_dir, monkeypatch):
    calls = []
    monkeypatch.setattr(emb, "embed_texts", _fake_encoder(calls))
    first = sel.task_embeddings("sst-2", data_dir, variant="label", cache_dir=tmp_path)
    assert calls == [32] and first.shape == (32, 384)
    assert len(list((tmp_path / "embeddings").glob("*.npy"))) == 1
    again = sel.task_embeddings("SST-2", data_dir, variant="label", cache_dir=tmp_path)
    assert calls == [32]  # no re-encoding
    np.testing.assert_array_equal(first, again)
    monkeypatch.setenv("MTFT_NLP_CACHE", str(tmp_path))
    sel.task_embeddings("sst2", data_dir)  # default cache dir from $MTFT_NLP_CACHE, default variant
    assert calls == [32]
    # every key field matters: variant, split seed, K, encoder
    sel.task_embeddings("sst-2", data_dir, variant="raw", cache_dir=tmp_path)
    sel.task_embeddings("sst-2", data_dir, split_seed=13, cache_dir=tmp_path)
    sel.task_embeddings("sst-2", data_dir, k_shot=8, cache_dir=tmp_path)
    other = tmp_path / "other-encoder"  # another sentence-transformers folder (its config files suffice here)
    other.mkdir()
    minilm = Path(sel.resolve_encoder("model").path)
    for f in ("config.json", "modules.json"):
        (other / f).write_bytes((minilm / f).read_bytes())
    sel.task_embeddings("sst-2", data_dir, encoder=str(other), cache_dir=tmp_path)
    assert calls == [32, 32, 32, 16, 32]
    key = json.loads(next((tmp_path / "embeddings").glob("SST-2-raw-*.json")).read_text())
    assert {key["task"], key["variant"], key["split_seed"], key["k_shot"]} == {"SST-2", "raw", 42, 16}


def test_pooled_seeds_union(tmp_path, data_dir, monkeypatch):
    calls = []
    monkeypatch.setattr(emb, "embed_texts", _fake_encoder(calls))
    one = sel.task_examples("rte", data_dir, split_seed=42)
    pooled = sel.task_examples("rte", data_dir, pool_seeds=True)
    assert len(one) == 32 and 32 < len(pooled) <= 160
    assert len({(e["text_a"], e["text_b"]) for e in pooled}) == len(pooled)
    assert sel.task_embeddings("rte", data_dir, pool_seeds=True, cache_dir=tmp_path).shape[0] == len(pooled)


def test_select_tasks_api_with_fake_encoder(tmp_path, data_dir, monkeypatch):
    monkeypatch.setattr(emb, "embed_texts", _fake_encoder([]))
    res = sel.select_tasks("mnli", candidates=["rte", "snli", "qnli"], data_dir=data_dir, cache_dir=tmp_path)
    assert res.target == "MNLI" and set(res.similarity) == {"RTE", "SNLI", "QNLI"} and res.selected
    assert "test set not available" in res.overlap_note  # MNLI's dev files are not in the shared data
    d = res.to_dict()
    assert d["selected"] == res.selected and len(d["candidates"]) == 3
    assert d["coverage_after_step"] == [s["coverage"] for s in res.steps if s["decision"].startswith("added")]
    # p "auto": the rule ran on the 14 leave-one-out pools; the record says which p and why
    assert d["p_rule"]["p"] == d["p"] in sel.P_GRID and len(d["p_rule"]["sizes"]) == 14 and d["p_rule"]["budget"] == 4
    assert d["coverage"]["name"] == "union" and d["encoder"] == "minilm"
    info = d["encoder_info"]
    assert info["requested"] == "model" and info["kind"] == "sentence-transformers" and info["dim"] == 384
    assert "mean pooling" in info["pooling"]
    for key in (
        "kind",
        "target",
        "method",
        "selected",
        "encoder",
        "variant",
        "split_seed",
        "k_shot",
        "coverage",
        "p",
        "k",
        "seed",
        "final_coverage",
        "coverage_after_step",
        "candidates",
        "similarity",
        "overlap_note",
    ):
        assert key in d  # the keys report code and committed selection files rely on


def test_compare_methods_with_fake_encoder(tmp_path, data_dir, monkeypatch):
    monkeypatch.setattr(emb, "embed_texts", _fake_encoder([]))
    cmp = sel.compare_methods("rte", data_dir=data_dir, cache_dir=tmp_path, p=0.01)
    assert list(cmp["sets"]) == list(sel.SELECTION_METHODS) and cmp["p"] == 0.01
    assert cmp["sizes"]["no-diversity"] == 4 and cmp["sizes"]["random"] == cmp["sizes"]["selected"]
    assert cmp["same"] == [list(pair) for pair in sel.same_sets(cmp["sets"])]


def test_no_candidates_left_is_an_error(monkeypatch):
    with pytest.raises(sel.SelectionError, match="target MNLI: no candidate tasks left .*'mnli-mm'"):
        sel.resolve_candidates("mnli", ["mnli-mm"])
    monkeypatch.setattr(sel, "leave_one_out", lambda target: [])
    with pytest.raises(sel.SelectionError, match="target CR: no candidate tasks left"):
        sel.select_tasks("cr", p=0.01)


def test_unloadable_candidate_is_a_clear_error(tmp_path, data_dir, monkeypatch):
    monkeypatch.setattr(emb, "embed_texts", _fake_encoder([]))
    only_sst2 = tmp_path / "data" / "original"
    only_sst2.mkdir(parents=True)
    (only_sst2 / "SST-2").symlink_to(data_dir / "original" / "SST-2")
    with pytest.raises(tasks_mod.MtftError, match="cannot load the k-shot train data of task CR"):
        sel.select_tasks("sst-2", candidates=["cr"], data_dir=tmp_path / "data", cache_dir=tmp_path)


# --------------------------------------------------------------------------- the encoder phi


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory, bert_tokenizer):
    import torch
    from transformers import BertConfig, BertForMaskedLM

    d = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(bert_tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    BertForMaskedLM(config).save_pretrained(d)
    bert_tokenizer.save_pretrained(d)
    return d


def test_resolve_encoder_model_is_the_finetuned_model(tiny_mlm):
    st = sel.resolve_encoder("model")
    assert st.name == "minilm" and st.kind == "sentence-transformers" and st.dim == 384
    assert sel.resolve_encoder(None, "minilm") == st and sel.resolve_encoder("minilm").path == st.path
    mlm = sel.resolve_encoder("model", str(tiny_mlm))
    assert mlm.kind == "masked-lm" and mlm.dim == 32 and "mask position" in mlm.pooling and mlm.name == str(tiny_mlm)
    assert sel.resolve_encoder(str(tiny_mlm), "minilm").kind == "masked-lm"  # --encoder PATH keeps another encoder
    for bad in ("./no/such/encoder", "/no/such/encoder", "not a model"):
        with pytest.raises(sel.SelectionError, match=f"unknown encoder '{bad}'"):
            sel.resolve_encoder(bad)


def test_masked_lm_phi_is_the_hidden_state_at_the_mask(tiny_mlm, tmp_path, data_dir):
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from mtft_nlp.templates import PromptEncoder, load_prompt

    pair = [
        {"text_a": "a fun film", "text_b": None, "label": "1", "label_id": 1, "row": "x:1"},
        {"text_a": "a fun film", "text_b": None, "label": "0", "label_id": 0, "row": "x:2"},
    ]
    label = emb.mask_states("SST-2", pair, str(tiny_mlm), "label")
    raw = emb.mask_states("SST-2", pair, str(tiny_mlm), "raw")
    assert label.shape == (2, 32) and label.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(label, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(label[0], label[1]) and np.allclose(raw[0], raw[1])  # the gold label word is rendered in
    # by hand: the prompt, the label word at the mask, the last hidden state there
    tok = AutoTokenizer.from_pretrained(tiny_mlm)
    model = AutoModelForMaskedLM.from_pretrained(tiny_mlm).eval()
    enc = PromptEncoder("SST-2", load_prompt("SST-2"), tok)
    f = enc.encode("a fun film")
    ids = list(f["input_ids"])
    ids[f["mask_pos"]] = enc.label_word_ids[1]
    with torch.no_grad():
        h = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0, f["mask_pos"]].numpy()
    np.testing.assert_allclose(label[0], h / np.linalg.norm(h), rtol=1e-4, atol=1e-5)
    # through select_tasks: recorded as the model, with its pooling; cached per model
    res = sel.select_tasks(
        "cr",
        candidates=["mr", "sst-2", "rte"],
        data_dir=data_dir,
        cache_dir=tmp_path,
        p=0.01,
        model_name_or_path=str(tiny_mlm),
        check_overlap=False,
    )
    d = res.to_dict()
    assert d["encoder"] == str(tiny_mlm) and d["encoder_info"]["kind"] == "masked-lm" and d["p"] == 0.01
    keys = [json.loads(k.read_text()) for k in (tmp_path / "embeddings").glob("*.json")]
    assert len(keys) == 4
    assert all(k["pooling"] == "mask" and k["encoder"] == str(Path(tiny_mlm).resolve()) for k in keys)


# --------------------------------------------------------------------------- plot helpers


def test_cluster_order_groups_similar_tasks():
    sim = np.array([[1.0, 0.1, 0.9, 0.1], [0.1, 1.0, 0.1, 0.8], [0.9, 0.1, 1.0, 0.2], [0.1, 0.8, 0.2, 1.0]])
    order = selection_cli.cluster_order(sim)
    assert sorted(order) == [0, 1, 2, 3]
    pos = {i: order.index(i) for i in order}
    assert abs(pos[0] - pos[2]) == 1 and abs(pos[1] - pos[3]) == 1


# --------------------------------------------------------------------------- the command on real data


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("embedding-cache")


def _select(args, data_dir, cache_dir, capsys):
    rc = main(["select", "--data_dir", str(data_dir), "--cache_dir", str(cache_dir), *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_selects_sentiment_sources_for_sst2(tmp_path, data_dir, cache_dir, capsys):
    out_json, png = tmp_path / "sel.json", tmp_path / "sim.png"
    rc, out, _ = _select(
        ["--target", "sst-2", "--output", str(out_json), "--plot", str(png)], data_dir, cache_dir, capsys
    )
    assert rc == 0
    d = json.loads(out_json.read_text())
    assert (
        d["target"] == "SST-2" and d["method"] == "selected" and d["variant"] == "label" and d["encoder"] == "minilm"
    )
    sim = d["similarity"]
    assert len(sim) == 13
    assert min(sim[t] for t in SENTIMENT) > max(sim[t] for t in NLI)
    assert d["selected"] and d["selected"][0] in SENTIMENT and not set(d["selected"]) & set(NLI)
    assert [c["task"] for c in d["candidates"]] == list(sim)  # considered in similarity order
    assert d["coverage_after_step"] == [c["coverage"] for c in d["candidates"] if c["task"] in d["selected"]]
    mr = next(c for c in d["candidates"] if c["task"] == "MR")
    assert mr["shares_text_with_target_test"] and mr["text_overlap"]["exact"] > 0  # SST-2 sentences come from MR
    assert "selected (" in out and "SST-5" in out
    head = png.read_bytes()
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) > 20_000
    import matplotlib.image

    assert min(matplotlib.image.imread(png).shape[:2]) > 400


def test_cli_ablations_on_real_data(tmp_path, data_dir, cache_dir, capsys):
    def run(*args):
        path = tmp_path / f"{len(list(tmp_path.iterdir()))}.json"
        rc, _, err = _select(["--target", "cr", "--output", str(path), *args], data_dir, cache_dir, capsys)
        assert rc == 0, err
        return json.loads(path.read_text())

    chosen = run()
    ranked = list(chosen["similarity"])
    assert chosen["coverage"]["name"] == "union" and chosen["p"] == chosen["p_rule"]["p"]
    assert chosen["selected"] == ranked[: len(chosen["selected"])]
    nodiv = run("--method", "no-diversity")  # the top --budget (4) by similarity
    assert nodiv["selected"] == ranked[:4] and nodiv["k"] == 4 and nodiv["p"] is None
    assert run("--method", "no-diversity", "--budget", "2")["selected"] == ranked[:2]
    rnd = run("--method", "random", "--k", "4", "--seed", "1")
    assert len(rnd["selected"]) == 4 and rnd["seed"] == 1
    assert run("--method", "random", "--k", "4", "--seed", "1") == rnd
    nocon = run("--method", "no-consistency")
    assert [c["task"] for c in nocon["candidates"]] != ranked and nocon["p"] == chosen["p"]
    knn = run("--coverage", "knn", "--p", "0.01")
    assert knn["coverage"]["name"] == "knn" and knn["candidates"][0]["task"] == ranked[0] and knn["p_rule"] is None
    assert run("--coverage", "ellipsoid", "--p", "0.01")["coverage"]["name"] == "ellipsoid"
    rc, out, err = _select(["--target", "cr", "--compare"], data_dir, cache_dir, capsys)
    assert rc == 0, err
    assert "no-diversity    (4): " + ", ".join(ranked[:4]) in out and "same set: " in out


def test_cli_renders_the_target_through_the_prompt_file_given(tmp_path, data_dir, cache_dir, capsys):
    """--prompt_file: the target's examples are rendered through that prompt (here one whose label words carry the
    opposite sentiment), the candidates through their own."""
    flipped = tmp_path / "flipped.yaml"
    flipped.write_text(
        "default: f\nprompts:\n  f:\n    template: '*cls**sent_0*_It_was*mask*.*sep+*'\n"
        "    label_words: {'0': great, '1': terrible}\n",
        encoding="utf-8",
    )
    own, other = tmp_path / "own.json", tmp_path / "other.json"
    assert _select(["--target", "sst-2", "--output", str(own)], data_dir, cache_dir, capsys)[0] == 0
    rc, _, err = _select(
        ["--target", "sst-2", "--prompt_file", str(flipped), "--output", str(other)], data_dir, cache_dir, capsys
    )
    assert rc == 0, err
    sims = [json.loads(p.read_text())["similarity"] for p in (own, other)]
    assert sims[0]["SST-5"] != pytest.approx(sims[1]["SST-5"], abs=1e-4)
    examples = sel.task_examples("SST-2", data_dir)
    texts = emb.example_texts("SST-2", examples, "label", load_prompt("SST-2", prompt_file=str(flipped)))
    negative = [t for t, ex in zip(texts, examples) if ex["label"] == "0"]
    assert len(negative) == 16 and all(t.endswith("It was great.") for t in negative)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--target", "nosuchtask"], "unknown task 'nosuchtask'"),
        (["--target", "sst-2", "--candidates", "mr", "sst2"], "is the target SST-2 or shares its data"),
        (["--target", "sst-2", "--quantile", "1.5"], "--quantile must be strictly between 0 and 1"),
        (["--target", "sst-2", "--encoder", "./no/such/encoder"], "unknown encoder './no/such/encoder'"),
        (["--target", "sst-2", "--model_name_or_path", "/no/such/model"], "unknown encoder '/no/such/model'"),
        (["--target", "sst-2", "--p", "-0.5"], "--p must be >= 0, got -0.5"),
        (["--target", "sst-2", "--p", "lots"], "--p must be 'auto' or a number >= 0, got 'lots'"),
        (["--target", "sst-2", "--coverage", "hull"], "unknown coverage 'hull'; choose from union, ellipsoid, knn"),
        (["--target", "mnli", "--candidates", "mnli-mm"], "target MNLI: no candidate tasks left"),
        (["--target", "sst-2", "--prompt_file", "/no/such/prompts.yaml"], "prompt file not found: /no/such"),
        (["--target", "sst-2", "--prompt", "nosuchprompt"], "prompt 'nosuchprompt' not in"),
    ],
)
def test_cli_bad_input_exits_2(args, message, tmp_path, data_dir, cache_dir, capsys):
    out = tmp_path / "sel.json"
    rc, _, err = _select([*args, "--output", str(out)], data_dir, cache_dir, capsys)
    assert rc == 2 and err.startswith("error: ") and message in err
    assert not out.exists()


def test_cli_cached_embeddings_of_another_size_exit_2(tmp_path, data_dir, capsys):
    """An encoder whose hidden size differs from its cached embeddings (the folder's model was replaced)."""
    spec = sel.resolve_encoder("model")
    texts = emb.example_texts("SST-2", sel.task_examples("SST-2", data_dir), "label")
    key = emb.embedding_cache_key(spec.path, "SST-2", 42, 16, "label", texts)
    emb.write_cache(tmp_path / "cache", key, np.zeros((len(texts), 16), dtype=np.float32))
    out = tmp_path / "sel.json"
    rc, _, err = _select(["--target", "sst-2", "--output", str(out)], data_dir, tmp_path / "cache", capsys)
    assert rc == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "encoder 'minilm' has hidden size 384 but the cached embeddings" in err and "have 16" in err
    assert not out.exists()
