"""``mtft-nlp fit``: a user's CSV (no task file, data in the user's own folder) to a saved classifier, with task
selection over the packaged pool, the multitask stage and finetuning; and its bad input."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mtft_nlp.cli import main
from mtft_nlp.io import RESULTS_FILE

ROOT = Path(__file__).resolve().parents[1]
# three TREC classes under the names a user would give them (TREC: 3 HUM, 4 LOC, 5 NUM)
CLASSES = {"3": "person", "4": "location", "5": "number"}


def _user_csv(data_dir: Path, path: Path, split: str, per_class: int, offset: int = 0) -> Path:
    """A CSV as a user has it: a header with their own column names, label names as words."""
    rows = list(csv.reader(open(data_dir / "original" / "trec" / f"{split}.csv", encoding="utf-8")))
    taken = {c: 0 for c in CLASSES}
    out = []
    for label, text in rows[offset:]:
        if label in CLASSES and taken[label] < per_class:
            out.append((text, CLASSES[label]))
            taken[label] += 1
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["message", "category"])
        w.writerows(out)
    return path


@pytest.mark.slow
def test_fit_on_a_users_csv_saves_a_classifier_with_its_selection_and_scores(tmp_path, data_dir):
    user = tmp_path / "mine"  # the user's own folder: no task file, no LM-BFF layout, no source data
    user.mkdir()
    train = _user_csv(data_dir, user / "support.csv", "train", 10)
    test = _user_csv(data_dir, user / "support_test.csv", "test", 10)
    out = tmp_path / "runs" / "support"
    env = {**os.environ, "MTFT_NLP_DATA_DIR": str(data_dir)}  # the packaged pool's data
    cmd = [sys.executable, "-m", "mtft_nlp.cli", "fit", "--train_file", str(train), "--test_file", str(test)]
    cmd += ["--text_a_column", "message", "--label_column", "category", "--output_dir", str(out)]
    run = subprocess.run(cmd + ["--stage_steps", "4", "--max_steps", "4"], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = run.stdout.strip().splitlines()[-1]
    assert summary.startswith("done: support: sources ") and str(out / "best") in summary

    selection = json.loads((out / "selection.json").read_text())
    assert selection["target"] == "support" and selection["selected"]
    record = json.loads((out / RESULTS_FILE).read_text())
    assert record["row"] == "mt-sel-embed-ft" and record["method"] == "embedding"
    assert record["n_train"] == record["n_dev"] == 15 and record["n_test"] == 30  # 5 + 5 per class, 10 test
    assert record["multitask"]["sources"] == selection["selected"]
    assert record["test_score"] > 1 / 3  # above chance on 3 classes
    assert (out / "best" / "README.md").is_file() and (out / "task" / "support.yaml").is_file()

    from mtft_nlp.methods import load_classifier

    clf = load_classifier(out / "best")
    texts = [json.loads(x)["text_a"] for x in (out / "data" / "test.jsonl").read_text().splitlines()]
    predicted = clf.predict(texts)
    assert set(predicted) <= set(CLASSES.values())
    gold = [json.loads(x)["label"] for x in (out / "data" / "test.jsonl").read_text().splitlines()]
    assert sum(p == g for p, g in zip(predicted, gold)) / len(gold) == pytest.approx(record["test_score"])


def _fit(argv, capsys):
    try:
        rc = main(["fit", *argv])
    except SystemExit as exc:  # argparse's usage errors (a number out of range)
        rc = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--label_column": "kind"}, "no column 'kind'"),
        ({"--labels": ["person", "location"]}, "are not among --labels"),
        ({"--descriptions": ["one"]}, "--descriptions: 1 given for the 3 labels"),
        ({"--sources": ["NOPE"]}, "NOPE"),
        ({"--stage_steps": "0"}, "argument --stage_steps: 0: expected a whole number of at least 1"),
        ({"--seed": "-3"}, "argument --seed: -3: expected a whole number from 0 to"),
        ({"--task_name": "SST-2"}, "a packaged task has this name"),
        ({"--test_file": "missing.csv"}, "--test_file missing.csv: file not found"),
        ({"--method": "setfit"}, "has no multitask stage"),
    ],
)
def test_fit_refuses_bad_input_by_name_and_writes_nothing(change, message, tmp_path, data_dir, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _user_csv(data_dir, tmp_path / "support.csv", "train", 4)
    args = {"--train_file": "support.csv", "--text_a_column": "message", "--label_column": "category"}
    args.update({"--output_dir": "out", "--source_data_dir": str(data_dir), **change})
    argv = [x for k, v in args.items() for x in ([k, *v] if isinstance(v, list) else [k, v])]
    rc, err = _fit(argv, capsys)
    assert rc == 2 and len(err) == 1 and err[0].startswith("error:") and message in err[0], err
    assert not (tmp_path / "out").exists()


def test_fit_needs_two_examples_of_each_class_without_a_validation_file(tmp_path, data_dir, capsys):
    train = tmp_path / "tiny.csv"
    train.write_text("message,category\nWho is it ?,person\nWhere is it ?,location\nWhere is that ?,location\n")
    rc, err = _fit(
        ["--train_file", str(train), "--text_a_column", "message", "--label_column", "category"]
        + ["--output_dir", str(tmp_path / "out"), "--source_data_dir", str(data_dir)],
        capsys,
    )
    assert rc == 2 and "class 'person' has 1 example(s)" in err[0] and not (tmp_path / "out").exists()
