"""A method plugs in with one folder: this file defines a method of its own (nearest class centroid on the frozen
sentence encoder), registers it, and runs it through ``mtft-nlp train``, ``mtft-nlp run`` (whose cell processes find
it through the ``mtft_nlp.methods`` entry point of an installed distribution), the report, ``load_classifier`` and
``predict``, with no change to the package. docs/ARCHITECTURE.md's "Add a method" checklist is these steps."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mtft_nlp.data.kshot import load_kshot
from mtft_nlp.data.run_inputs import load_task_data, resolve_prompt
from mtft_nlp.io import RESULTS_FILE, atomic_write_json, check_output_dir
from mtft_nlp.methods import Method, RowKind, load_classifier, register_method, unregister_method
from mtft_nlp.metrics import compute_metrics
from mtft_nlp.models import resolve_model_name
from mtft_nlp.records import run_record, write_run_record
from mtft_nlp.tasks import get_task

ROOT = Path(__file__).resolve().parents[2]
MARKER = "centroid_classifier.json"


def _texts(examples):
    return [ex["text_a"] if ex.get("text_b") is None else f"{ex['text_a']} {ex['text_b']}" for ex in examples]


class CentroidClassifier:
    """A saved centroid classifier: the encoder's name and one unit-norm centroid per class."""

    def __init__(self, path):
        from mtft_nlp.methods.embedding.modeling import load_sentence_encoder

        self.meta = json.loads((Path(path) / MARKER).read_text(encoding="utf-8"))
        self.encoder = load_sentence_encoder(self.meta["encoder"])
        self.centroids = np.asarray(self.meta["centroids"])

    def predict(self, texts, pairs=None, batch_size=64, return_probabilities=False, row_names=None):
        from mtft_nlp.methods.embedding.modeling import encode_texts

        emb = encode_texts(self.encoder, list(texts), pairs, batch_size=batch_size).numpy()
        return [self.meta["labels"][i] for i in (emb @ self.centroids.T).argmax(1)]

    def label_word(self, label):
        return None  # no verbaliser words: the predictions are the task's labels


class CentroidMethod(Method):
    name = "centroid"
    title = "nearest centroid"
    kinds = (
        RowKind(
            "centroid", "Nearest class centroid (frozen encoder)", "centroid", section="centroid", multitask=False
        ),
    )
    classifier_marker = MARKER

    def run(self, model_args, data_args, training_args, method_args=None):
        from mtft_nlp.methods.embedding.modeling import encode_texts, load_sentence_encoder

        check_output_dir(training_args.output_dir)
        task = get_task(data_args.task_file or data_args.task_name)
        prompt = resolve_prompt(task, data_args)
        data = load_task_data(task, data_args, training_args.seed)
        encoder = load_sentence_encoder(model_args.model_name_or_path)
        emb = {s: encode_texts(encoder, _texts(data[s])).numpy() for s in ("train", "dev", "test")}
        ids = np.array([ex["label_id"] for ex in data["train"]])
        centroids = np.stack([emb["train"][ids == c].mean(0) for c in range(len(task.labels))])
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        scores = {
            s: compute_metrics(task.metric, (emb[s] @ centroids.T).argmax(1), [ex["label_id"] for ex in data[s]])
            for s in ("dev", "test")
        }
        record = run_record(
            task=task,
            row=data_args.row or "centroid",
            method=self.name,
            seed=training_args.seed,
            k=data_args.k,
            dev_score=scores["dev"]["score"],
            test_metrics=scores["test"],
            zero_shot=False,
            model=model_args.model_name_or_path,
            prompt=prompt,
            sizes=tuple(len(data[s]) for s in ("train", "dev", "test")),
        )
        out = Path(training_args.output_dir)
        if data_args.save_model:
            meta = {
                "encoder": resolve_model_name(model_args.model_name_or_path),
                "labels": list(task.labels),
                "centroids": centroids.tolist(),
            }
            atomic_write_json(out / "best" / MARKER, meta)
        write_run_record(out / RESULTS_FILE, record)
        return record

    def load_classifier(self, path, device=None, **kwargs):
        return CentroidClassifier(path)


@pytest.fixture
def centroid():
    register_method(CentroidMethod)
    yield
    unregister_method("centroid")


def _installed(tmp_path) -> dict:
    """An environment where the method is installed: a distribution declaring it under the entry-point group."""
    dist = tmp_path / "site" / "mtft_centroid-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mtft-centroid\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mtft_nlp.methods]\ncentroid = test_plugin:CentroidMethod\n")
    path = os.pathsep.join([str(tmp_path / "site"), str(Path(__file__).parent), str(ROOT)])
    return {**os.environ, "PYTHONPATH": path}


def test_a_registered_method_gets_its_rows_and_titles(centroid):
    from mtft_nlp import rows

    assert "centroid" in rows.ROWS and rows.parse_row("centroid").method == "centroid"
    assert rows.ROW_TITLES["centroid"] == "Nearest class centroid (frozen encoder)"
    assert not rows.parse_row("centroid").zero_shot
    with pytest.raises(ValueError):
        rows.parse_row("mt-centroid")  # a kind without a multitask stage has no mt- rows


def test_the_report_titles_and_orders_a_method_registered_after_it_was_imported():
    from mtft_nlp.reporting.results import format_table, row_sort_key  # imported before the method is registered

    register_method(CentroidMethod)
    try:
        agg = [
            {"task": "SST-2", "row": row, "metric": "acc", "mean": 0.8, "std": 0.01, "n": 5, "seeds": [13]}
            for row in ("unknown-row", "centroid")
        ]
        assert row_sort_key("centroid") < row_sort_key("unknown-row")
        assert "Nearest class centroid (frozen encoder)" in format_table(agg, titles=True)
    finally:
        unregister_method("centroid")
    assert "Nearest class centroid" not in format_table(agg, titles=True)


@pytest.mark.slow
def test_a_plugged_in_method_runs_through_train_run_report_and_predict(centroid, tmp_path, data_dir):
    env = _installed(tmp_path)
    cli = [sys.executable, "-m", "mtft_nlp.cli"]
    train = subprocess.run(
        cli
        + ["train", "--method", "centroid", "--task_name", "SST-2", "--seed", "13", "--data_dir", str(data_dir)]
        + ["--max_test_examples", "200", "--output_dir", str(tmp_path / "one")],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert train.returncode == 0, train.stderr[-2000:]
    record = json.loads((tmp_path / "one" / RESULTS_FILE).read_text())
    assert record["method"] == "centroid" and record["row"] == "centroid" and record["n_test"] == 200
    assert record["test_score"] > 0.6  # MiniLM's class centroids separate SST-2 well above chance

    clf = load_classifier(tmp_path / "one" / "best")
    assert isinstance(clf, CentroidClassifier)
    dev = load_kshot("SST-2", data_dir, 13, splits=("dev",))["dev"]
    predicted = clf.predict(_texts(dev))
    dev_acc = np.mean([p == ex["label"] for p, ex in zip(predicted, dev)])
    assert dev_acc == pytest.approx(record["dev_score"])  # the saved classifier is the run's
    (tmp_path / "in.txt").write_text(f"{dev[0]['text_a']}\n{dev[-1]['text_a']}\n")
    pred = subprocess.run(
        cli
        + ["predict", "--model", str(tmp_path / "one" / "best"), "--input", str(tmp_path / "in.txt")]
        + ["--output", str(tmp_path / "out.jsonl")],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert pred.returncode == 0, pred.stderr[-2000:]
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [x["prediction"] for x in lines] == [predicted[0], predicted[-1]]

    config = tmp_path / "grid.yaml"
    config.write_text(
        f"targets: [SST-2]\nrows: [centroid, embed-adapt]\nseeds: [13, 21]\ndata_dir: {data_dir}\n"
        f"output_dir: {tmp_path / 'grid'}\ncentroid: {{max_test_examples: 200}}\n"
        "embedding: {max_test_examples: 200}\n"
    )
    grid = subprocess.run(cli + ["run", "--config", str(config)], env=env, capture_output=True, text=True, cwd=ROOT)
    assert grid.returncode == 0, grid.stderr[-3000:]
    cells = sorted((tmp_path / "grid" / "cells" / "SST-2" / "centroid").glob("seed*/" + RESULTS_FILE))
    assert len(cells) == 2
    again = subprocess.run(cli + ["run", "--config", str(config)], env=env, capture_output=True, text=True, cwd=ROOT)
    assert "0 cells run, 4 already done" in again.stdout + again.stderr

    from mtft_nlp.reporting.report import write_report

    text = write_report(str(tmp_path / "grid"))["markdown"].read_text()
    assert "Nearest class centroid (frozen encoder)" in text
