"""The experiment runner end to end on a tiny grid (a tiny model built here, 2 targets x 2 rows x 2 seeds),
kill-and-resume, worker-count independence, and the report (RESULTS.md, CSV, LaTeX, PNG plots)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from transformers import BertConfig, BertForMaskedLM

from mtft_nlp.grid.plan import Plan, load_config, run_plan
from mtft_nlp.reporting.report import write_report
from mtft_nlp.reporting.results import aggregate, find_results, format_table
from mtft_nlp.tasks import MtftError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, bert_tokenizer):
    d = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    BertForMaskedLM(
        BertConfig(
            vocab_size=len(bert_tokenizer),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
        )
    ).save_pretrained(d)
    bert_tokenizer.save_pretrained(d)
    return d


def _config(tmp_path, tiny_model, data_dir, name, workers=1):
    cfg = {
        "model": str(tiny_model),
        "targets": ["SST-2", "TREC"],
        "rows": ["zero-shot", "pbft"],
        "seeds": [13, 21],
        "data_dir": str(data_dir),
        "output_dir": str(tmp_path / name),
        "workers": workers,
        "train": {"max_steps": 4, "eval_steps": 2, "max_test_examples": 40, "learning_rate": 1e-3},
        "zero_shot": {"max_test_examples": 40},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _table(d):
    return format_table(aggregate(find_results(d)), "csv")


@pytest.mark.slow
def test_grid_end_to_end_kill_and_resume(tmp_path, tiny_model, data_dir):
    # uninterrupted, two workers
    straight = load_config(str(_config(tmp_path, tiny_model, data_dir, "straight", workers=2)))
    counts = run_plan(straight, progress=False)
    assert counts == {"cells": 8, "ran": 8, "multitask_ran": 0, "blocked": 0}
    results = find_results(tmp_path / "straight")
    assert sorted((r["task"], r["row"], r["seed"]) for r in results) == sorted(
        (t, r, s) for t in ("SST-2", "TREC") for r in ("zero-shot", "pbft") for s in (13, 21)
    )
    assert run_plan(straight, progress=False)["ran"] == 0  # nothing left to do

    # killed mid-grid, then resumed, one worker
    cfg_path = _config(tmp_path, tiny_model, data_dir, "killed")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mtft_nlp.cli", "run", "--config", str(cfg_path)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and len(list((tmp_path / "killed").rglob("results.json"))) < 2:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "killed").rglob("results.json")}
    assert 2 <= len(before) < 8
    counts = run_plan(load_config(str(cfg_path)), progress=False)
    assert counts["ran"] == 8 - len(before)
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # finished cells not recomputed
    assert _table(tmp_path / "killed") == _table(tmp_path / "straight")  # same table, whatever the workers or kills

    # a changed setting makes new cells instead of mixing results
    changed = load_config(str(cfg_path))
    changed["train"] = dict(changed["train"], learning_rate=5e-4)
    new_cells = {str(c["dir"]) for c in Plan(changed).cells()} - {
        str(c["dir"]) for c in Plan(load_config(str(cfg_path))).cells()
    }
    assert len(new_cells) == 4 and all("/pbft/" in c for c in new_cells)

    # the report
    files = write_report(str(tmp_path / "straight"), commands=["mtft-nlp run --config straight.yaml"])
    md = files["markdown"].read_text()
    assert "| Prompt-based zero-shot |" in md and "| Prompt-based FT |" in md and "mtft-nlp run --config" in md
    assert files["csv"].read_text().splitlines()[0] == "task,row,metric,mean,std,n"
    assert "\\begin{tabular}" in files["latex"].read_text()
    png = files["plot"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_config_errors(tmp_path):
    with pytest.raises(MtftError, match="unknown rows"):
        load_config(None, "demo", rows=["pbft", "nonsense"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("targets: [SST-2]\nlearning_rate: 3\n")
    with pytest.raises(MtftError, match="unknown keys"):
        load_config(str(bad))
    with pytest.raises(MtftError, match="unknown task"):
        load_config(None, "demo", targets=["sst-9"])


def test_plan_shares_multitask_checkpoints():
    cfg = load_config(
        None,
        "minilm",
        targets=["RTE", "CR"],
        rows=["mt-zero-shot", "mt-pbft", "mt-sel-pbft", "pbft"],
        seeds=[13, 21, 42],
    )
    plan = Plan(cfg)
    jobs = plan.multitask_jobs()
    assert len(jobs) == 4  # (RTE, CR) x (all sources, selected sources), shared by every seed and row
    assert {j["variant"] for j in jobs} == {"all", "sel"}
    cells = plan.cells()
    assert len(cells) == 2 * 4 * 3
    mt_models = {c["args"][c["args"].index("--model_name_or_path") + 1] for c in cells if c["row"].startswith("mt-")}
    assert len(mt_models) == 4


def test_ablation_rows_share_identical_sources(tmp_path):
    cfg = load_config(None, "minilm", targets=["CR"], rows=["ablations"], seeds=[13, 21], output_dir=str(tmp_path))
    assert cfg["rows"] == ["mt-sel-pbft", "mt-random-pbft", "mt-nocon-pbft", "mt-nodiv-pbft"]
    plan = Plan(cfg)
    assert plan.selection_options("random")["method"] == "random"
    assert plan.selection_options("nocon")["method"] == "no-consistency"
    chosen = {"sel": ["MPQA", "MR"], "nodiv": ["MPQA", "MR"], "random": ["RTE", "TREC"], "nocon": ["SST-2"]}
    for variant, sources in chosen.items():
        path = plan.selection_path("CR", variant)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"target": "CR", "selected": sources}))
    assert len({plan.selection_path("CR", v) for v in chosen}) == 4
    jobs = {j["variant"]: j for j in plan.multitask_jobs()}
    assert sorted(jobs) == ["nocon", "random", "sel"]  # no-diversity chose the selected sources: no own stage
    assert (
        plan.multitask_dir("CR", "nodiv", "prompt")
        == plan.multitask_dir("CR", "sel", "prompt")
        != plan.multitask_dir("CR", "random", "prompt")
    )
    assert jobs["random"]["args"][jobs["random"]["args"].index("--sources") + 1] == str(
        plan.selection_path("CR", "random")
    )
    cells = plan.cells()
    assert len(cells) == 4 * 2 and len({c["dir"] for c in cells}) == 8
    assert len({c["computes"] for c in cells}) == 6  # mt-nodiv-pbft cells are the mt-sel-pbft runs
    with pytest.raises(MtftError, match="unknown rows"):
        load_config(None, "minilm", rows=["mt-best-pbft"])


@pytest.mark.slow
def test_ablation_rows_end_to_end(tmp_path, tiny_model, data_dir):
    cfg = load_config(
        None,
        "demo",
        model=str(tiny_model),
        targets=["CR"],
        seeds=[13],
        data_dir=str(data_dir),
        output_dir=str(tmp_path / "abl"),
        rows=["mt-sel-zero-shot", "mt-nodiv-zero-shot", "mt-random-zero-shot", "mt-nocon-zero-shot"],
    )
    cfg["zero_shot"] = {"max_test_examples": 20}
    cfg["multitask"] = {"max_steps": 2, "eval_steps": 2, "eval_tasks": 1}
    cfg["selection"] = {"seed": 3}
    run_plan(cfg, progress=False)
    sel = {v: Plan(cfg).selected_sources("CR", v) for v in ("sel", "nodiv", "random", "nocon")}
    # no-diversity takes its own budget (4 by default) by similarity, so it is not Selected by construction
    assert len(sel["nodiv"]) == 4 and len(sel["random"]) == len(sel["sel"])
    stages = sorted((tmp_path / "abl").rglob("multitask_config.json"))
    trained = sorted([s["task"] for s in json.loads(m.read_text())["sources"]] for m in stages)
    assert trained == sorted(map(list, {tuple(v) for v in sel.values()}))  # one stage per distinct source set
    results = {r["row"]: r for r in find_results(tmp_path / "abl")}
    assert sorted(results) == sorted(cfg["rows"])
    if sel["nodiv"] == sel["sel"]:  # a copy only when the two methods really chose the same tasks
        assert results["mt-nodiv-zero-shot"]["same_run_as"] == "mt-sel-zero-shot"
    else:
        assert "same_run_as" not in results["mt-nodiv-zero-shot"]
    assert "same_run_as" not in results["mt-random-zero-shot"] and "same_run_as" not in results["mt-sel-zero-shot"]
    md = write_report(str(tmp_path / "abl"))["markdown"].read_text()
    assert "Random tasks (zero-shot)" in md and "No diversity (zero-shot)" in md


def test_presets_load():
    from mtft_nlp.rows import ROW_GROUPS

    PAPER_ROWS, EMBEDDING_ROWS = ROW_GROUPS["all"], ROW_GROUPS["embedding"]

    for preset in ("demo", "minilm", "paper", "embedding"):
        cfg = load_config(None, preset)
        assert cfg["targets"] and set(cfg["rows"]) <= set(PAPER_ROWS) | set(EMBEDDING_ROWS) | {"setfit"}
    assert load_config(None, "paper")["model"] == "roberta-large"
    assert load_config(None, "embedding")["rows"] == list(EMBEDDING_ROWS)
    demo = load_config(None, "demo")
    assert {"pbft", "embed-ft", "mt-sel-embed-ft"} <= set(demo["rows"])  # both methods side by side


@pytest.mark.slow
def test_sweep_shots_and_num_tasks(tmp_path, tiny_model, data_dir):
    from mtft_nlp.grid.plan import run_sweep

    cfg = load_config(
        None, "demo", model=str(tiny_model), seeds=[13], data_dir=str(data_dir), output_dir=str(tmp_path / "sweep")
    )
    cfg["train"] = {"max_steps": 2, "eval_steps": 1, "max_test_examples": 20}
    cfg["multitask"] = {"max_steps": 2, "eval_steps": 2, "eval_tasks": 1}
    run_sweep(cfg, "sst-2", "shots", [4, 8])
    run_sweep(cfg, "sst-2", "num_tasks", [1, 2])
    shots = {
        json.loads(p.read_text())["value"]: find_results(p.parent)
        for p in (tmp_path / "sweep").rglob("sweep.json")
        if json.loads(p.read_text())["variable"] == "shots"
    }
    assert sorted(shots) == [4, 8]
    assert [r["n_train"] for r in shots[4]] == [8] and [r["n_train"] for r in shots[8]] == [16]
    metas = sorted((tmp_path / "sweep").rglob("multitask_config.json"))
    assert sorted(len(json.loads(m.read_text())["sources"]) for m in metas) == [1, 2]
    files = write_report(str(tmp_path / "sweep"))
    assert "sweeps" in files and files["sweeps"].read_bytes()[:4] == b"\x89PNG"


def test_embedding_sweep_of_num_tasks_runs_the_top_n_stage_and_embedding_ft(tmp_path):
    from mtft_nlp.grid.plan import sweep_configs

    cfg = load_config(None, "embedding", seeds=[13], output_dir=str(tmp_path / "s"))
    configs = sweep_configs(cfg, "mr", "num_tasks", [1, 4], method="embedding")
    assert [c["rows"] for c in configs] == [["mt-sel-embed-ft"]] * 2
    assert [(c["selection"]["method"], c["selection"]["k"]) for c in configs] == [
        ("no-diversity", 1),
        ("no-diversity", 4),
    ]
    assert [c["targets"] for c in configs] == [["MR"]] * 2
    assert [Path(c["output_dir"]).name for c in configs] == ["num_tasks-1", "num_tasks-4"]
    jobs = Plan({k: v for k, v in configs[1].items() if k != "sweep"}).multitask_jobs()
    assert [j["method"] for j in jobs] == ["embedding"]


def test_assign_devices_round_robin():
    from mtft_nlp.grid.workers import assign_devices

    assert assign_devices(3, 0, 4) == [None, None, None]  # CPU: one slot per worker, cells_per_device ignored
    assert assign_devices(1, 1, 1) == [0]
    assert assign_devices(1, 1, 8) == [0] * 8  # 8 cells packed onto the one GPU
    assert assign_devices(1, 2, 4) == [0, 1, 0, 1, 0, 1, 0, 1]  # round-robin, 4 per GPU
    assert assign_devices(5, 2, 1) == [0, 1, 0, 1, 0]  # more workers than GPUs x cells: loads differ by <= 1
    assert assign_devices(0, 3, 0) == [0, 1, 2]  # nonsense counts become 1


def test_device_envs_with_fake_device_lists(monkeypatch):
    from mtft_nlp.grid.workers import device_envs

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    envs = device_envs(1, 4, gpus=["2", "5"])  # e.g. CUDA_VISIBLE_DEVICES=2,5 set by the user
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["2", "5"] * 4
    assert {e["OMP_NUM_THREADS"] for e in envs} == {"2"}  # 16 cores / 8 cell processes
    cpu = device_envs(2, 4, gpus=[])  # no GPU: the CPU thread budget, cores // workers
    assert len(cpu) == 2 and {e["OMP_NUM_THREADS"] for e in cpu} == {"8"}
    assert all(
        "CUDA_VISIBLE_DEVICES" not in e or e["CUDA_VISIBLE_DEVICES"] == os.environ.get("CUDA_VISIBLE_DEVICES")
        for e in cpu
    )
    one = device_envs(1, 1, gpus=[])
    assert len(one) == 1 and one[0].get("OMP_NUM_THREADS") is None
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # a user's setting wins
    assert {e["OMP_NUM_THREADS"] for e in device_envs(2, 1, gpus=[])} == {"3"}


def test_cells_per_device_option(tmp_path):
    from mtft_nlp.cli import build_parser

    a = build_parser().parse_args(["run", "--cells_per_device", "4", "--workers", "2"])
    assert a.cells_per_device == 4 and a.workers == 2
    assert load_config(None, "minilm")["cells_per_device"] == 1
    assert load_config(None, "minilm", cells_per_device=4)["cells_per_device"] == 4


def test_embedding_rows_plan_their_method_and_own_stage(tmp_path):
    cfg = load_config(
        None,
        "embedding",
        targets=["CR"],
        seeds=[13],
        output_dir=str(tmp_path / "e"),
        rows=["pbft", "mt-pbft", "embed-adapt", "mt-embed-ft", "mt-embed-zero-shot", "setfit"],
    )
    plan = Plan(cfg)
    cells = {c["row"]: c for c in plan.cells()}
    flag = {r: c["args"][c["args"].index("--method") + 1] for r, c in cells.items()}
    assert flag == {
        "pbft": "prompt",
        "mt-pbft": "prompt",
        "embed-adapt": "embedding",
        "mt-embed-ft": "embedding",
        "mt-embed-zero-shot": "embedding",
        "setfit": "setfit",
    }
    assert "--frozen_encoder" in cells["embed-adapt"]["args"] and "--zero_shot" in cells["mt-embed-zero-shot"]["args"]
    # the two methods' stages are different checkpoints; the embedding rows share theirs
    assert plan.multitask_dir("CR", "all", "embedding") != plan.multitask_dir("CR", "all", "prompt")
    jobs = plan.multitask_jobs()
    assert sorted(j["method"] for j in jobs) == ["embedding", "prompt"]
    emb = [j for j in jobs if j["method"] == "embedding"][0]
    assert emb["args"][emb["args"].index("--max_steps") + 1] == str(cfg["embedding_multitask"]["max_steps"])
    # zero-shot and finetuning from the same stage are different runs
    assert cells["mt-embed-ft"]["computes"] != cells["mt-embed-zero-shot"]["computes"]


def test_batches_group_consecutive_cells_of_one_target_and_method(tmp_path):
    from mtft_nlp.grid.plan import batch_cells

    cfg = load_config(
        None,
        "embedding",
        targets=["CR", "MR"],
        seeds=[13, 21],
        output_dir=str(tmp_path / "b"),
        rows=["pbft", "embed-zero-shot", "embed-ft"],
    )
    units = batch_cells(Plan(cfg).cells(), 3, tmp_path)
    shapes = [[(c["target"], c["row"]) for c in u] for u in units]
    assert shapes[0] == [("CR", "pbft"), ("CR", "pbft")]
    # CR's 4 embedding cells need 2 units of at most 3: cut 2 + 2, not 3 + 1
    assert shapes[1] == [("CR", "embed-zero-shot")] * 2
    assert shapes[2] == [("CR", "embed-ft")] * 2
    assert all(len({t for t, _ in u}) == 1 and len(u) <= 3 for u in shapes)
    assert [c["dir"] for u in units for c in u] == [c["dir"] for c in Plan(cfg).cells()]
    spec = json.loads(units[1][0]["batch_file"].read_text())
    assert [s["args"][-1] for s in spec] == [str(c["dir"]) for c in units[1]]


def test_batches_come_in_rounds_of_the_workers(tmp_path):
    """15 cells of one target from the base model, 5 per process, 2 workers: 4 units (two full rounds), the
    larger first; cells from different multitask stages are never in one unit (each unit starts when its stage
    is saved)."""
    from mtft_nlp.grid.plan import batch_cells

    seeds = [13, 21, 42, 87, 100]
    base = ["embed-zero-shot", "embed-adapt", "embed-ft"]
    cfg = load_config(None, "embedding", targets=["MR"], seeds=seeds, output_dir=str(tmp_path), rows=base)
    cells = Plan(cfg).cells()
    assert len(cells) == 15
    assert [len(u) for u in batch_cells(cells, 5, tmp_path, workers=2)] == [4, 4, 4, 3]
    assert [len(u) for u in batch_cells(cells, 5, tmp_path, workers=1)] == [5] * 3
    assert [len(u) for u in batch_cells(cells[:1], 5, tmp_path, workers=2)] == [1]
    rows = ["pbft", "mt-sel-pbft", "mt-random-pbft", "mt-nocon-pbft", "mt-nodiv-pbft"]
    cells = Plan(load_config(None, "minilm", targets=["MR"], seeds=seeds, output_dir=str(tmp_path), rows=rows)).cells()
    units = batch_cells(cells, 5, tmp_path, workers=2)
    assert [len(u) for u in units] == [3, 2] * 5
    assert all(len({c["row"] for c in u}) == 1 for u in units)


@pytest.mark.slow
def test_embedding_grid_in_batches_end_to_end(tmp_path, tiny_model, data_dir):
    cfg = load_config(
        None,
        "embedding",
        model=str(tiny_model),
        targets=["SST-2"],
        seeds=[13, 21],
        data_dir=str(data_dir),
        output_dir=str(tmp_path / "g"),
        rows=["embed-zero-shot", "embed-adapt", "embed-ft", "mt-embed-ft"],
    )
    cfg.update(
        workers=1,
        cells_per_process=8,
        embedding={"max_steps": 2, "eval_steps": 1, "max_test_examples": 30},
        embedding_multitask={"max_steps": 2, "eval_steps": 2, "eval_tasks": 1, "examples_per_step": 4},
    )
    counts = run_plan(cfg, progress=False)
    assert counts["ran"] == 8 and counts["multitask_ran"] == 1
    # the 6 cells from the base model ran in one process, the 2 from the stage in another
    assert sorted(len(json.loads(b.read_text())) for b in (tmp_path / "g" / "batches").glob("*.json")) == [2, 6]
    results = find_results(tmp_path / "g")
    assert sorted({r["row"] for r in results}) == ["embed-adapt", "embed-ft", "embed-zero-shot", "mt-embed-ft"]
    assert all(r["method"] == "embedding" and r["pooling"] == "mean" for r in results)  # MLM folder: mean pooling
    assert run_plan(cfg, progress=False)["ran"] == 0  # resumable


def test_a_folder_filled_one_target_at_a_time_records_every_target(tmp_path):
    import yaml

    from mtft_nlp.grid.plan import record_config

    path = tmp_path / "config.yaml"
    base = dict(preset="minilm", output_dir=str(tmp_path), rows=["pbft"], seeds=[13, 21])
    record_config(path, load_config(None, targets=["SST-2"], **base))
    record_config(path, load_config(None, targets=["CR"], **base))
    record_config(path, load_config(None, targets=["SST-2"], **{**base, "seeds": [42], "workers": 3}))
    cfg = yaml.safe_load(path.read_text())
    assert cfg["targets"] == ["SST-2", "CR"] and cfg["seeds"] == [13, 21, 42] and cfg["rows"] == ["pbft"]
    # a run with other settings makes other cells: its configuration replaces the record
    record_config(path, load_config(None, targets=["MR"], **{**base, "train": {"max_steps": 7}}))
    cfg = yaml.safe_load(path.read_text())
    assert cfg["targets"] == ["MR"] and cfg["seeds"] == [13, 21] and cfg["train"]["max_steps"] == 7


def test_peer_rows_if_installed_run_only_where_their_package_is(monkeypatch, capsys, tmp_path):
    from mtft_nlp.methods import get_method

    cfg = tmp_path / "c.yaml"
    cfg.write_text("targets: [SST-2]\nrows: [embed-ft, setfit]\nseeds: [13]\nif_installed: [setfit]\n")
    monkeypatch.setattr(get_method("setfit"), "available", lambda: True)
    assert load_config(str(cfg))["rows"] == ["embed-ft", "setfit"]
    monkeypatch.setattr(get_method("setfit"), "available", lambda: False)
    assert load_config(str(cfg))["rows"] == ["embed-ft"]
    assert "note: row setfit left out: the setfit package is not installed" in capsys.readouterr().err
    cfg.write_text("targets: [SST-2]\nrows: [embed-ft]\nseeds: [13]\nif_installed: [embed-ft]\n")
    with pytest.raises(MtftError, match="not peer rows"):
        load_config(str(cfg))


def test_a_stage_record_without_its_model_is_not_a_finished_stage(tmp_path):
    """Result files copied without their weights (a stage's multitask_config.json alone) make the stage run again
    instead of failing every cell that starts from it."""
    from mtft_nlp.grid.plan import Plan
    from mtft_nlp.io import STAGE_FILE

    cfg = load_config(None, "minilm", targets=["CR"], rows=["mt-embed-ft"], seeds=[13], output_dir=str(tmp_path))
    plan = Plan(cfg)
    cell = plan.cells()[0]
    stage = plan.multitask_dir(*cell["needs"])
    stage.mkdir(parents=True)
    (stage / STAGE_FILE).write_text(json.dumps({"target": "CR"}))
    assert not plan.stage_ready(cell)
    (stage / "modules.json").write_text("[]")
    assert plan.stage_ready(cell)
