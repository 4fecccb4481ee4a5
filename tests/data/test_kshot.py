"""LM-BFF-exact k-shot splits (all 105 checksummed files), readers and bad data."""

import hashlib
import shutil
from pathlib import Path

import pytest

from mtft_nlp.data.kshot import KShotSplitter, load_files, load_kshot, load_kshot_dataset, write_splits
from mtft_nlp.data.readers import DataError, read_lmbff_file
from mtft_nlp.tasks import TaskError, get_task

CHECKED = ["SST-2", "sst-5", "trec", "CoLA", "MRPC", "RTE", "STS-B"]


def _md5(p: Path) -> str:
    return hashlib.md5(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def splits_dir(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("k-shot")
    write_splits(CHECKED, data_dir / "original", out)
    return out


def test_split_parity_with_lmbff_checksums(data_dir, splits_dir):
    expected = {}
    for line in (data_dir / "lmbff-k-shot-checksum.txt").read_text().splitlines():
        md5, rel = line.split()
        if rel.split("/")[0] in CHECKED:
            expected[rel] = md5
    assert len(expected) == 105
    mismatched = [
        rel for rel, md5 in expected.items() if not (splits_dir / rel).exists() or _md5(splits_dir / rel) != md5
    ]
    assert mismatched == []


def test_split_sizes_and_no_train_dev_overlap(splits_dir):
    for task in ("SST-2", "trec"):
        t = get_task(task)
        for seed in (13, 87):
            d = splits_dir / t.lmbff.dir / f"16-{seed}"
            train = read_lmbff_file(t, d / t.lmbff.train)
            dev = read_lmbff_file(t, d / t.lmbff.dev_name)
            assert len(train) == len(dev) == 16 * t.num_labels
            assert {lab: sum(e["label"] == lab for e in train) for lab in t.labels} == {lab: 16 for lab in t.labels}
            assert not {e["text_a"] for e in train} & {e["text_a"] for e in dev}


@pytest.mark.parametrize("task", ["SST-2", "CoLA", "trec", "STS-B"])
def test_in_memory_split_equals_written_files(task, data_dir, splits_dir):
    t = get_task(task)
    for seed in (13, 42):
        mem = load_kshot(t, data_dir, seed)
        d = splits_dir / t.lmbff.dir / f"16-{seed}"
        for split, name in (("train", t.lmbff.train), ("dev", t.lmbff.dev_name), ("test", t.lmbff.test_name)):
            files = read_lmbff_file(t, d / name)
            strip = lambda exs: [(e["text_a"], e["text_b"], e["label"]) for e in exs]  # noqa: E731
            assert strip(mem[split]) == strip(files), (task, seed, split)
        # an LM-BFF split folder is used as is
        assert [e["text_a"] for e in load_kshot(t, d, seed)["train"]] == [e["text_a"] for e in mem["train"]]


def test_cola_cumulative_shuffle_matters(data_dir):
    """CoLA (no header) was shuffled in place across seeds: seed 13 is NOT a fresh shuffle."""
    sp = KShotSplitter("CoLA", data_dir / "original")
    fresh = sp._train_lines[:]
    import numpy as np

    np.random.RandomState(13).shuffle(fresh)
    assert sp._shuffled(13)[1] != fresh
    assert sp._shuffled(100)[1] == (lambda x: (np.random.RandomState(100).shuffle(x), x)[1])(sp._train_lines[:])


def test_datasets_view(data_dir):
    ds = load_kshot_dataset("sst-2", data_dir, 21)
    assert set(ds) == {"train", "dev", "test"}
    assert ds["train"].num_rows == 32 and ds["test"].num_rows == 872
    assert set(ds["train"].column_names) >= {"text_a", "text_b", "label", "label_id"}


def test_nli_and_regression_columns(data_dir):
    rte = load_kshot("rte", data_dir, 13, splits=("train",))["train"]
    assert all(e["text_b"] for e in rte) and {e["label"] for e in rte} == {"entailment", "not_entailment"}
    sts = load_kshot("sts-b", data_dir, 13, splits=("train",))["train"]
    assert all(isinstance(e["label"], float) and 0 <= e["label"] <= 5 for e in sts)


def test_task_names_case_insensitive_and_unknown():
    assert get_task("sst-2") is get_task("SST-2") is get_task("sst2")
    assert get_task("mnli-mm").name == "MNLI-mm"
    with pytest.raises(TaskError, match="unknown task 'sst-3'"):
        get_task("sst-3")


def _split_copy(data_dir, tmp_path, task="SST-2", seed=13):
    t = get_task(task)
    d = tmp_path / "split"
    d.mkdir()
    sp = KShotSplitter(t, data_dir / "original")
    sp.write(seed, tmp_path / "w")
    for f in (tmp_path / "w" / t.lmbff.dir / f"16-{seed}").iterdir():
        shutil.copy(f, d / f.name)
    return t, d


def test_malformed_row_is_named(data_dir, tmp_path):
    t, d = _split_copy(data_dir, tmp_path, "RTE")
    lines = (d / "train.tsv").read_text().splitlines(keepends=True)
    lines[5] = "only-one-column\n"
    (d / "train.tsv").write_text("".join(lines))
    with pytest.raises(DataError, match=r"train.tsv:6: expected at least 3 tab-separated columns, found 1"):
        read_lmbff_file(t, d / "train.tsv")


def test_unknown_label_is_named(data_dir, tmp_path):
    t, d = _split_copy(data_dir, tmp_path)
    lines = (d / "dev.tsv").read_text().splitlines(keepends=True)
    text = lines[3].split("\t")[0]
    lines[3] = f"{text}\t7\n"
    (d / "dev.tsv").write_text("".join(lines))
    with pytest.raises(DataError, match=r"dev.tsv:4: label '7' is not one of task SST-2's labels"):
        read_lmbff_file(t, d / "dev.tsv")


def test_too_few_examples_per_class(tmp_path):
    d = tmp_path / "original" / "cr"
    d.mkdir(parents=True)
    rows = [f"{i % 2},sentence number {i}" for i in range(40)] + ["1,extra"] * 10
    (d / "train.csv").write_text("\n".join(rows) + "\n")
    (d / "test.csv").write_text("0,a\n1,b\n")
    with pytest.raises(DataError, match=r"class 0 has 20, class 1 has 30 examples, fewer than the 32"):
        load_kshot("cr", tmp_path, 13)
    with pytest.raises(DataError, match="fewer than the 32"):
        write_splits(["cr"], tmp_path / "original", tmp_path / "out")
    assert not (tmp_path / "out" / "cr").exists() or not any((tmp_path / "out" / "cr").iterdir())


def test_missing_data_dir_is_an_error(tmp_path):
    with pytest.raises(DataError, match="neither an LM-BFF split"):
        load_kshot("sst-2", tmp_path, 13)


def test_csv_and_jsonl_files_with_column_mapping(tmp_path):
    import json

    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"sentence": f"text {i}", "y": str(i % 2)}) + "\n" for i in range(64)))
    test = tmp_path / "test.csv"
    test.write_text("sentence,y\nhello,1\nbye,0\n")
    parts = load_files("sst-2", 13, 16, str(train), None, str(test), text_a_column="sentence", label_column="y")
    assert len(parts["train"]) == len(parts["dev"]) == 32 and len(parts["test"]) == 2
    with pytest.raises(DataError, match="no column 'label'"):
        load_files("sst-2", 13, 16, str(train), None, str(test), text_a_column="sentence")


def test_hub_layout_from_a_saved_dataset(tmp_path):
    """--dataset_name with a save_to_disk folder: the task file's Hub columns and label map are used."""
    import datasets

    from mtft_nlp.data.kshot import load_hub

    train = {"sentence": [f"review {i}" for i in range(80)], "label": [i % 2 for i in range(80)]}
    val = {"sentence": ["good", "bad", "unlabelled"], "label": [1, 0, -1]}
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict(train), "validation": datasets.Dataset.from_dict(val)}
    ).save_to_disk(tmp_path / "sst2")
    parts = load_hub("sst-2", 13, dataset_name=str(tmp_path / "sst2"))
    assert len(parts["train"]) == len(parts["dev"]) == 32
    assert [(e["text_a"], e["label"]) for e in parts["test"]] == [("good", "1"), ("bad", "0")]  # -1 rows dropped
    assert not {e["text_a"] for e in parts["train"]} & {e["text_a"] for e in parts["dev"]}
