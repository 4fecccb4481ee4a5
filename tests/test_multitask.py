"""The multitask stage: sources, sampler, leakage guard, a real short run, reload, resume."""

import json
from collections import Counter

import pytest
import torch

from mtft_nlp.cli import multitask_main, run_glue_main
from mtft_nlp.data.overlap import text_overlap
from mtft_nlp.multitask import MixedTaskDataset, load_sources, resolve_sources, sampling_probs
from mtft_nlp.tasks import MtftError, classification_tasks, get_task
from mtft_nlp.training.arguments import MultitaskArguments


def test_leave_one_out_sources():
    assert len(classification_tasks()) == 14 and "STS-B" not in classification_tasks()
    rte = resolve_sources("rte", ["all"])["sources"]
    assert len(rte) == 13 and "RTE" not in rte and "STS-B" not in rte and "MNLI-mm" not in rte and "MNLI" in rte
    mm = resolve_sources("mnli-mm", ["all"])["sources"]
    assert "MNLI" not in mm and "MNLI-mm" not in mm and len(mm) == 13
    assert resolve_sources("cr", ["mr", "SST-2", "sst-5"])["sources"] == ["MR", "SST-2", "SST-5"]
    with pytest.raises(MtftError, match="target"):
        resolve_sources("mnli", ["mnli-mm", "sst-2"])
    with pytest.raises(MtftError, match="regression"):
        resolve_sources("rte", ["sts-b"])


def test_selection_file_as_sources(tmp_path, caplog):
    sel = tmp_path / "sel.json"
    sel.write_text(
        json.dumps({"target": "CR", "method": "selected", "selected": ["MR", "SST-2"], "split_seed": 42, "k_shot": 16})
    )
    r = resolve_sources("cr", [str(sel)])
    assert r["sources"] == ["MR", "SST-2"] and r["selection"]["method"] == "selected" and r["target"] == "CR"
    with pytest.raises(MtftError, match="made for target CR"):
        resolve_sources("rte", [str(sel)])
    # no --target: the file's target is used, so the leakage guard still has a test set to check
    assert resolve_sources(None, [str(sel)])["target"] == "CR"
    with caplog.at_level("WARNING", logger="mtft_nlp"):
        resolve_sources("cr", [str(sel)], split_seed=13)
    assert "computed on split seed 42, K 16; this stage trains on split seed 13, K 16" in caplog.text
    with pytest.raises(MtftError, match="--sources selected needs --target"):
        resolve_sources(None, ["selected"])


def test_pooled_sources_keep_the_dev_split_held_out(data_dir):
    from mtft_nlp.data.kshot import SEEDS, load_kshot

    src = load_sources(MultitaskArguments(sources=["rte"], data_dir=str(data_dir), pool_seeds=True), ["RTE"], None)[0]
    dev42 = load_kshot("rte", data_dir, 42, splits=("dev",))["dev"]
    assert src.dev == dev42
    dev_texts = {(ex["text_a"], ex["text_b"]) for ex in dev42}
    assert not [ex for ex in src.train if (ex["text_a"], ex["text_b"]) in dev_texts]
    pooled = [ex for s in SEEDS for ex in load_kshot("rte", data_dir, s, splits=("train",))["train"]]
    in_dev = [ex for ex in pooled if (ex["text_a"], ex["text_b"]) in dev_texts]
    assert src.dev_excluded == len(in_dev) > 0  # other seeds' train sets do draw from seed 42's dev examples
    assert len(src.train) == len({(ex["text_a"], ex["text_b"], ex["label"]) for ex in pooled if ex not in in_dev})


@pytest.mark.parametrize("sampler", ["uniform", "proportional", "temperature"])
def test_sampler_frequencies(sampler):
    sizes = [32, 96, 48, 160]  # a task id 0 among them
    feats = [[{"t": t, "i": i} for i in range(n)] for t, n in enumerate(sizes)]
    probs = sampling_probs(sizes, sampler, temperature=2.0)
    ds = MixedTaskDataset(feats, probs, total=20000, seed=3)
    counts = Counter(ds[i]["t"] for i in range(len(ds)))
    for t, p in enumerate(probs):
        sd = (20000 * p * (1 - p)) ** 0.5
        assert abs(counts[t] - 20000 * p) < 4 * sd, (t, counts[t], p)
    if sampler == "uniform":
        assert probs == pytest.approx([0.25] * 4)
    # every example of a task is used before any is repeated
    first = [ds[i]["i"] for i in range(len(ds)) if ds[i]["t"] == 0][:32]
    assert sorted(first) == list(range(32))
    assert [ds[i] for i in range(50)] == [MixedTaskDataset(feats, probs, 20000, seed=3)[i] for i in range(50)]


def test_leakage_guard_finds_planted_overlaps(data_dir):
    target_test = [
        {"text_a": "A gripping, funny film.", "text_b": None},
        {"text_a": "Dull as dishwater", "text_b": None},
    ]
    src = [
        {"text_a": "a gripping,  FUNNY film.", "text_b": None},
        {"text_a": "A gripping, funny film.", "text_b": None},
        {"text_a": "something else", "text_b": "Dull as dishwater"},
        {"text_a": "unrelated", "text_b": None},
    ]
    r = text_overlap(target_test, src)
    assert (r["exact"], r["normalized"], r["indices"]) == (2, 3, [0, 1, 2])
    # real data: plant two of SST-2's test sentences into MR's train set and load the sources
    args = MultitaskArguments(target="sst-2", sources=["mr"], data_dir=str(data_dir))
    clean = load_sources(args, ["MR"], get_task("sst-2"))[0]
    from mtft_nlp.data import kshot as data_mod

    test = data_mod.load_kshot("sst-2", data_dir, 13, splits=("test",))["test"]
    orig = data_mod.load_kshot

    def planted(task, *a, **k):
        out = orig(task, *a, **k)
        if get_task(task).name == "MR" and "train" in out:
            out["train"] = out["train"] + [dict(test[0]), dict(test[1], text_a=test[1]["text_a"].upper())]
        return out

    import mtft_nlp.data.sources as mt  # the source pool loads the k-shot data

    mt.load_kshot, saved = planted, mt.load_kshot
    try:
        guarded = load_sources(args, ["MR"], get_task("sst-2"))[0]
        kept = load_sources(
            MultitaskArguments(target="sst-2", sources=["mr"], data_dir=str(data_dir), allow_overlap=True),
            ["MR"],
            get_task("sst-2"),
        )[0]
    finally:
        mt.load_kshot = saved
    # MR really shares sentences with SST-2's test set (both come from Rotten Tomatoes reviews)
    assert clean.overlap["normalized"] >= 1 and len(clean.train) == 32 - clean.overlap["normalized"]
    assert guarded.overlap["exact"] == clean.overlap["exact"] + 1  # the upper-cased one matches only when normalised
    assert guarded.overlap["normalized"] == clean.overlap["normalized"] + 2
    assert len(guarded.train) == len(clean.train)  # both planted sentences removed
    assert len(kept.train) == 34


def _mt(tmp_path, data_dir, name, *extra):
    out = tmp_path / name
    rc = multitask_main(
        [
            "--method",
            "prompt",
            "--target",
            "rte",
            "--sources",
            "sst-2",
            "trec",
            "mnli",
            "--data_dir",
            str(data_dir),
            "--output_dir",
            str(out),
            "--learning_rate",
            "5e-5",
            "--eval_steps",
            "10",
            "--disable_tqdm",
            "true",
            *extra,
        ]
    )
    assert rc == 0
    return out


@pytest.mark.slow
def test_real_multitask_run_lowers_source_dev_loss_and_reloads(tmp_path, data_dir):
    out = _mt(tmp_path, data_dir, "mt", "--max_steps", "30", "--save_strategy", "steps", "--save_steps", "30")
    meta = json.loads((out / "multitask_config.json").read_text())
    # the mean over the sources goes through Trainer.log (console, report_to, trainer_state.json)
    logs = json.loads((out / "checkpoint-30" / "trainer_state.json").read_text())["log_history"]
    means = {e["step"]: e["eval_mean_acc"] for e in logs if "eval_mean_acc" in e}
    assert sorted(means) == [10, 20, 30]
    per_task = {(e["step"], k): v for e in logs for k, v in e.items() if k.endswith("_acc") and k != "eval_mean_acc"}
    assert means[20] == pytest.approx(sum(v for (st, _), v in per_task.items() if st == 20) / 3)
    assert means[20] == pytest.approx(meta["dev_history"]["20"]["mean"]["acc"])
    assert [s["task"] for s in meta["sources"]] == ["SST-2", "TREC", "MNLI"]
    assert sum(s["examples_drawn"] for s in meta["sources"]) == 300 and meta["sources"][0]["examples_drawn"] > 0
    assert meta["dev_after"]["mean"]["loss"] < meta["dev_before"]["mean"]["loss"]
    assert set(meta["dev_history"]["10"]) == {"SST-2", "TREC", "MNLI", "mean"}  # task id 0 evaluated too
    from transformers import AutoModelForMaskedLM

    AutoModelForMaskedLM.from_pretrained(out)
    run = tmp_path / "zs"
    assert (
        run_glue_main(
            [
                "--method",
                "prompt",
                "--task_name",
                "rte",
                "--model_name_or_path",
                str(out),
                "--zero_shot",
                "--seed",
                "13",
                "--data_dir",
                str(data_dir),
                "--output_dir",
                str(run),
                "--disable_tqdm",
                "true",
            ]
        )
        == 0
    )
    r = json.loads((run / "results.json").read_text())
    assert r["row"] == "mt-zero-shot" and r["multitask"]["target"] == "RTE"


@pytest.mark.slow
def test_resume_from_checkpoint_gives_the_same_model(tmp_path, data_dir):
    from safetensors.torch import load_file

    full = _mt(
        tmp_path,
        data_dir,
        "full",
        "--max_steps",
        "12",
        "--save_strategy",
        "steps",
        "--save_steps",
        "6",
        "--config_overrides",
        "hidden_dropout_prob=0,attention_probs_dropout_prob=0",
    )
    resumed = _mt(
        tmp_path,
        data_dir,
        "resumed",
        "--max_steps",
        "12",
        "--config_overrides",
        "hidden_dropout_prob=0,attention_probs_dropout_prob=0",
        "--resume_from_checkpoint",
        str(full / "checkpoint-6"),
    )
    a, b = load_file(full / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    assert not all(torch.equal(a[k], load_file(full / "checkpoint-6" / "model.safetensors")[k]) for k in a)


def test_bad_multitask_input(tmp_path, data_dir, capsys):
    rc = multitask_main(
        [
            "--method",
            "prompt",
            "--target",
            "rte",
            "--sources",
            "nosuch",
            "--output_dir",
            str(tmp_path / "x"),
            "--data_dir",
            str(data_dir),
        ]
    )
    assert rc == 2 and "unknown task 'nosuch'" in capsys.readouterr().err
    rc = multitask_main(
        [
            "--method",
            "prompt",
            "--target",
            "rte",
            "--sources",
            "sst-2",
            "--examples_per_step",
            "10",
            "--gradient_accumulation_steps",
            "3",
            "--output_dir",
            str(tmp_path / "y"),
            "--data_dir",
            str(data_dir),
        ]
    )
    assert rc == 2 and "not divisible" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y" / "multitask_config.json").exists()


@pytest.mark.slow
def test_multitask_with_lora_then_prompt_ft(tmp_path, data_dir):
    out = _mt(tmp_path, data_dir, "mt-lora", "--max_steps", "4", "--use_lora", "--lora_r", "4")
    assert (out / "adapter_config.json").is_file() and (out / "multitask_config.json").is_file()
    run = tmp_path / "pbft"
    assert (
        run_glue_main(
            [
                "--method",
                "prompt",
                "--task_name",
                "rte",
                "--model_name_or_path",
                str(out),
                "--seed",
                "13",
                "--max_steps",
                "2",
                "--eval_steps",
                "1",
                "--max_test_examples",
                "20",
                "--data_dir",
                str(data_dir),
                "--output_dir",
                str(run),
                "--disable_tqdm",
                "true",
                "--save_model",
                "false",
            ]
        )
        == 0
    )
    assert json.loads((run / "results.json").read_text())["row"] == "mt-pbft"


@pytest.mark.slow
def test_multitask_two_process_ddp(tmp_path, data_dir):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "mt-ddp"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "-m",
            "mtft_nlp.cli",
            "multitask",
            "--target",
            "rte",
            "--sources",
            "sst-2",
            "trec",
            "--max_steps",
            "4",
            "--eval_steps",
            "4",
            "--data_dir",
            str(data_dir),
            "--output_dir",
            str(out),
            "--disable_tqdm",
            "true",
        ],
        cwd=root,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    meta = json.loads((out / "multitask_config.json").read_text())
    assert meta["world_size"] == 2 and meta["examples_per_step"] == 10  # 5 per process per step
    assert sum(s["examples_drawn"] for s in meta["sources"]) == 40


@pytest.mark.slow
def test_sources_selected_runs_task_selection(tmp_path, data_dir, monkeypatch):
    from mtft_nlp.selection.select import select_tasks

    monkeypatch.setenv("MTFT_NLP_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "mt-sel"
    assert (
        multitask_main(
            [
                "--method",
                "prompt",
                "--target",
                "cr",
                "--sources",
                "selected",
                "--data_dir",
                str(data_dir),
                "--max_steps",
                "2",
                "--eval_steps",
                "100",
                "--output_dir",
                str(out),
                "--disable_tqdm",
                "true",
            ]
        )
        == 0
    )
    meta = json.loads((out / "multitask_config.json").read_text())
    saved = json.loads((out / "selection.json").read_text())
    expected = select_tasks("cr", data_dir=data_dir).selected  # from the cache the stage filled
    assert [s["task"] for s in meta["sources"]] == saved["selected"] == expected
    assert meta["sources_origin"] == "selected" and meta["selection"] == {
        "method": "selected",
        "encoder": "minilm",
        "target": "CR",
    }
    assert saved["target"] == "CR" and len(saved["candidates"]) == 13
