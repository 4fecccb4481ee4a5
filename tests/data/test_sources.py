"""The source pool (load -> de-duplicate -> exclude the target's family -> overlap guard) on the shared data, and
that the multitask stage and task selection draw the same examples from it."""

from types import SimpleNamespace

import pytest

from mtft_nlp.data.kshot import SEEDS, load_kshot
from mtft_nlp.data.overlap import normalize_text
from mtft_nlp.data.readers import DataError
from mtft_nlp.data.sources import (
    SourceData,
    in_family,
    leave_one_out,
    load_sources,
    load_target_test,
    overlap_guard,
    pooled_train,
    split_seeds,
)
from mtft_nlp.multitask import load_sources as multitask_load_sources
from mtft_nlp.multitask import resolve_sources
from mtft_nlp.selection import select as sel
from mtft_nlp.tasks import MtftError, get_task


def _key(ex):
    return ex["text_a"], ex["text_b"], str(ex["label"])


def _args(data_dir, **kw):
    base = dict(data_dir=str(data_dir), source_seed=42, source_k=16, pool_seeds=False, allow_overlap=False)
    return SimpleNamespace(**{**base, **kw})


def test_one_seed_is_the_k_shot_train_set(data_dir):
    assert split_seeds(42) == [42] and split_seeds(42, pool_seeds=True) == list(SEEDS) == [13, 21, 42, 87, 100]
    train, n_held_out = pooled_train("trec", data_dir, [21])
    assert train == load_kshot("trec", data_dir, 21, splits=("train",))["train"] and n_held_out == 0
    assert len(train) == 6 * 16


def test_pooled_seeds_are_deduplicated_in_seed_order(data_dir):
    per_seed = [load_kshot("rte", data_dir, s, splits=("train",))["train"] for s in SEEDS]
    pooled, n_held_out = pooled_train("rte", data_dir, SEEDS)
    everything = [ex for part in per_seed for ex in part]
    first = {}
    for ex in everything:
        first.setdefault(_key(ex), ex)
    assert n_held_out == 0
    assert len(pooled) == len(first) < len(everything)  # the seeds' train sets do share examples
    assert pooled == list(first.values())  # the first occurrence of each, in seed order 13 21 42 87 100
    assert len({_key(ex) for ex in pooled}) == len(pooled)
    assert pooled[: len(per_seed[0])] == per_seed[0]


def test_held_out_dev_examples_are_left_out_and_counted(data_dir):
    dev = load_kshot("rte", data_dir, 42, splits=("dev",))["dev"]
    held_out = {(ex["text_a"], ex["text_b"]) for ex in dev}
    plain, _ = pooled_train("rte", data_dir, SEEDS)
    kept, n_held_out = pooled_train("rte", data_dir, SEEDS, held_out=held_out)
    in_dev = [ex for ex in plain if (ex["text_a"], ex["text_b"]) in held_out]
    assert in_dev and kept == [ex for ex in plain if ex not in in_dev]
    assert n_held_out >= len(in_dev)  # repeats over the seeds are counted each time
    multitask = load_sources(_args(data_dir, pool_seeds=True), ["RTE"], None)[0]
    assert multitask.train == kept and multitask.dev == dev and multitask.dev_excluded == n_held_out


def test_a_split_that_cannot_be_loaded_names_task_seed_and_k(tmp_path):
    with pytest.raises(DataError, match=r"cannot load the k-shot train data of task MR \(seed 13, K 8\)"):
        pooled_train("mr", tmp_path, [13], k=8)


def test_family_exclusion(data_dir):
    assert in_family(["MNLI-mm", "SST-2", "MNLI", "RTE"], get_task("mnli")) == ["MNLI-mm", "MNLI"]
    assert in_family(["MNLI", "QNLI"], "mnli-mm") == ["MNLI"] and in_family(["SNLI", "QNLI"], "mnli") == []
    pool = leave_one_out("mnli")
    assert "MNLI" not in pool and "MNLI-mm" not in pool and not in_family(pool, "mnli") and len(pool) == 13
    # both users of the pool refuse the target's family
    with pytest.raises(MtftError, match=r"\['MNLI-mm'\] are the target MNLI or its variants"):
        resolve_sources("mnli", ["sst-2", "mnli-mm"])
    with pytest.raises(sel.SelectionError, match="candidate 'mnli-mm' is the target MNLI or shares its data"):
        sel.resolve_candidates("mnli", ["sst-2", "mnli-mm"])
    with pytest.raises(sel.SelectionError, match="no candidate tasks left"):
        sel.resolve_candidates("mnli-mm", ["mnli"])


def test_target_test_set_or_a_note(data_dir, caplog):
    test, note = load_target_test(get_task("sst-2"), data_dir, 42)
    assert note == "" and test == load_kshot("sst-2", data_dir, 42, splits=("test",))["test"]
    with caplog.at_level("WARNING", logger="mtft_nlp"):
        test, note = load_target_test(get_task("mnli"), data_dir, 42)  # MNLI's test file is not in the shared data
    assert test is None and note.startswith("target test set not available, text overlap not checked (")
    assert "target MNLI: target test set not available" in caplog.text


def test_overlap_guard_drops_examples_sharing_text_with_the_target_test_set(data_dir, caplog):
    # MR and SST-2 both come from Rotten Tomatoes reviews: MR's train set shares sentences with SST-2's test set
    test = load_kshot("sst-2", data_dir, 42, splits=("test",))["test"]
    train, _ = pooled_train("mr", data_dir, [42])
    planted = train + [dict(test[3], row="planted"), dict(test[4], text_a="  " + test[4]["text_a"].upper())]
    with caplog.at_level("WARNING", logger="mtft_nlp"):
        kept, report = overlap_guard(test, planted, source="MR", target="SST-2")
    test_texts = {normalize_text(ex["text_a"]) for ex in test}
    shared = [ex for ex in planted if normalize_text(ex["text_a"]) in test_texts]
    assert len(shared) >= 3 and report["normalized"] == len(shared) and "indices" not in report
    assert report["exact"] == len(shared) - 1  # the upper-cased one matches only after normalisation
    assert kept == [ex for ex in planted if ex not in shared]
    assert "share text with SST-2's test set" in caplog.text and "; excluded" in caplog.text
    allowed, report2 = overlap_guard(test, planted, allow_overlap=True)
    assert allowed == planted and report2 == report


def test_load_sources_applies_every_step(data_dir):
    sources = load_sources(_args(data_dir), ["MR", "TREC"], get_task("sst-2"))
    assert [type(s) for s in sources] == [SourceData, SourceData] and [s.task.name for s in sources] == ["MR", "TREC"]
    mr, trec = sources
    test_texts = {normalize_text(ex["text_a"]) for ex in load_kshot("sst-2", data_dir, 42, splits=("test",))["test"]}
    assert mr.overlap["normalized"] >= 1 and len(mr.train) == 32 - mr.overlap["normalized"]
    assert not [ex for ex in mr.train if normalize_text(ex["text_a"]) in test_texts]
    assert trec.overlap["normalized"] == 0 and len(trec.train) == 6 * 16
    assert mr.dev == load_kshot("mr", data_dir, 42, splits=("dev",))["dev"]
    assert load_sources(_args(data_dir), ["MR"], None)[0].overlap is None  # no target: nothing to guard
    assert multitask_load_sources is load_sources  # the multitask stage's own name for it


@pytest.mark.parametrize("pool", [False, True])
def test_selection_embeds_the_same_pool(data_dir, pool):
    """Task selection embeds exactly the examples the pool gives (before the stage's held-out and overlap steps)."""
    assert (
        sel.task_examples("cr", data_dir, split_seed=13, pool_seeds=pool)
        == pooled_train("cr", data_dir, split_seeds(13, pool))[0]
    )
    if not pool:  # without pooling and without a target, the stage trains on the same examples
        assert load_sources(_args(data_dir, source_seed=13), ["CR"], None)[0].train == sel.task_examples(
            "cr", data_dir, split_seed=13
        )
