"""Real runs of the packaged MiniLM on the real SST-2 16-shot split (seed 13): prompt-based FT beats
chance on the real test set; zero-shot writes a complete results.json; 2-process DDP on CPU (gloo)
gives the same scores as one process at the same global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mtft_nlp.cli import run_glue_main
from mtft_nlp.reporting.results import REQUIRED_KEYS

ROOT = Path(__file__).resolve().parents[3]


def _results(d: Path) -> dict:
    return json.loads((d / "results.json").read_text())


@pytest.mark.slow
def test_prompt_finetuning_beats_chance_on_real_sst2(tmp_path, data_dir):
    out = tmp_path / "sst2-13"
    rc = run_glue_main(
        [
            "--method",
            "prompt",
            "--task_name",
            "sst-2",
            "--seed",
            "13",
            "--data_dir",
            str(data_dir),
            "--output_dir",
            str(out),
            "--max_steps",
            "150",
            "--eval_steps",
            "50",
            "--disable_tqdm",
            "true",
        ]
    )
    assert rc == 0
    r = _results(out)
    for key in REQUIRED_KEYS + ("args", "env", "train_seconds", "eval_seconds"):
        assert key in r, key
    assert r["row"] == "pbft" and r["n_test"] == 872 and r["n_train"] == 32 and r["n_dev"] == 32
    assert r["best_step"] in (50, 100, 150) and r["dev_score"] == max(h["score"] for h in r["dev_history"])
    majority = 444 / 872  # the larger class of the real test set
    assert r["test_score"] >= majority + 0.06, r["test_score"]
    # the best-dev model is saved as a plain HF masked LM with its prompt
    from transformers import AutoModelForMaskedLM

    assert AutoModelForMaskedLM.from_pretrained(out / "best") is not None
    prompt = json.loads((out / "best" / "config.json").read_text())["prompt_classifier"]
    assert prompt["label_words"] == {"0": "terrible", "1": "great"} and prompt["task"] == "SST-2"
    assert prompt["scores"]["test"] == r["test_score"]


def test_zero_shot_writes_results(tmp_path, data_dir):
    out = tmp_path / "rte-zs"
    assert (
        run_glue_main(
            [
                "--method",
                "prompt",
                "--task_name",
                "rte",
                "--seed",
                "42",
                "--zero_shot",
                "--data_dir",
                str(data_dir),
                "--output_dir",
                str(out),
                "--disable_tqdm",
                "true",
            ]
        )
        == 0
    )
    r = _results(out)
    assert r["zero_shot"] is True and r["row"] == "zero-shot" and r["train_seconds"] == 0
    assert r["n_test"] == 277 and 0.0 <= r["test_score"] <= 1.0
    assert r["prompt"]["label_words"] == {"entailment": "Yes", "not_entailment": "No"}
    assert not (out / "best").exists()


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path, data_dir):
    common = [
        "--method",
        "prompt",
        "--task_name",
        "sst-2",
        "--seed",
        "13",
        "--max_steps",
        "20",
        "--eval_steps",
        "10",
        "--max_test_examples",
        "150",
        "--save_model",
        "false",
        "--disable_tqdm",
        "true",
        "--config_overrides",
        "hidden_dropout_prob=0,attention_probs_dropout_prob=0",
        "--data_dir",
        str(data_dir),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "run_glue_fewshot.py",
            *common,
            "--per_device_train_batch_size",
            "2",
            "--output_dir",
            str(tmp_path / "ddp"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ddp.returncode == 0, ddp.stdout[-3000:] + ddp.stderr[-3000:]
    single = subprocess.run(
        [
            sys.executable,
            "run_glue_fewshot.py",
            *common,
            "--per_device_train_batch_size",
            "4",
            "--output_dir",
            str(tmp_path / "one"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    a, b = _results(tmp_path / "ddp"), _results(tmp_path / "one")
    assert a["world_size"] == 2 and b["world_size"] == 1  # two processes really ran, as one job
    assert a["train_batch_size"] == b["train_batch_size"] == 4
    assert a["n_test"] == b["n_test"] == 150  # distributed evaluation scores each example once
    assert [h["score"] for h in a["dev_history"]] == pytest.approx([h["score"] for h in b["dev_history"]])
    assert a["test_score"] == pytest.approx(b["test_score"], abs=1 / 150 + 1e-9)


def test_lmbff_grid_picks_the_best_dev_config(tmp_path, data_dir):
    out = tmp_path / "grid"
    assert (
        run_glue_main(
            [
                "--method",
                "prompt",
                "--task_name",
                "sst-2",
                "--seed",
                "13",
                "--lmbff_grid",
                "--max_steps",
                "2",
                "--eval_steps",
                "1",
                "--max_test_examples",
                "20",
                "--data_dir",
                str(data_dir),
                "--output_dir",
                str(out),
                "--save_model",
                "false",
                "--disable_tqdm",
                "true",
            ]
        )
        == 0
    )
    r = _results(out)
    assert [(g["learning_rate"], g["batch_size"]) for g in r["grid"]] == [
        (lr, bs) for lr in (1e-5, 2e-5, 5e-5) for bs in (2, 4, 8)
    ]
    best = max(r["grid"], key=lambda g: g["dev_score"])  # first of the ties, as the runs were compared in order
    assert r["dev_score"] == best["dev_score"] and r["test_score"] == best["test_score"]
    assert (r["learning_rate"], r["train_batch_size"]) == (best["learning_rate"], best["batch_size"])
