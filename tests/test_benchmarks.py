"""benchmarks/: every grid config loads in `mtft-nlp run --config`, every command docs/RESULTS.md prints for it
parses, and paper_grid_estimate.py runs in its CPU smoke form (--tiny)."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mtft_nlp.cli import build_parser
from mtft_nlp.grid.plan import Plan, load_config

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "benchmarks" / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "benchmarks" / "configs")))
def test_benchmark_configs_load(path):
    cfg = load_config(str(path))
    assert Plan(cfg).cells()


def _report_commands():
    spec = yaml.safe_load((ROOT / "benchmarks" / "report.yaml").read_text())
    for section in spec["sections"]:
        yield from section.get("commands", [])


def test_report_commands_name_existing_configs_and_parse():
    runs = 0
    for command in _report_commands():
        words = shlex.split(command.split("#")[0])
        assert "run_cells.py" not in command and "gpu_multitask.py" not in command
        for w in words:
            if w.startswith("benchmarks/") and not w.startswith("benchmarks/results"):
                assert list(ROOT.glob(w.rstrip(";"))), f"{command}: {w} does not exist"
        if "mtft-nlp" in words and words[words.index("mtft-nlp") + 1] == "run" and "for" not in words:
            a = build_parser().parse_args(words[words.index("mtft-nlp") + 1 :])
            cfg = load_config(a.config, targets=a.targets, rows=a.rows, seeds=a.seeds, workers=a.workers)
            assert Plan(cfg).cells()
            runs += 1
    assert runs >= 10


def test_every_results_folder_is_given_the_command_that_measured_it():
    """A folder a RESULTS section reads (results, sweeps, stages) appears in some section that prints commands."""
    spec = yaml.safe_load((ROOT / "benchmarks" / "report.yaml").read_text())

    def folders(section):
        return set(section.get("results") or []) | {section[k] for k in ("sweeps", "stages") if section.get(k)}

    read = set().union(*(folders(s) for s in spec["sections"]))
    commanded = set().union(*(folders(s) for s in spec["sections"] if s.get("commands")))
    assert read and read <= commanded, sorted(read - commanded)


def test_every_results_folder_records_the_grid_it_holds():
    """A results folder's config.yaml (what `mtft-nlp run --config` reruns) lists every target, row and seed of
    its cells, also when the folder was filled one target at a time."""
    checked = 0
    for path in (ROOT / "benchmarks" / "results").rglob("config.yaml"):
        cfg = yaml.safe_load(path.read_text())
        for cell in path.parent.glob("cells/*/*/seed*"):
            target, row, seed = cell.parent.parent.name, cell.parent.name, int(cell.name[4:].split("-")[0])
            assert target in cfg["targets"] and row in cfg["rows"] and seed in cfg["seeds"], (path, cell)
            checked += 1
    assert checked


def test_paper_grid_estimate_tiny(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "paper_grid_estimate.py"),
            str(tmp_path),
            "--tiny",
            "--cells",
            "1",
            "2",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads((tmp_path / "paper_grid_estimate.json").read_text())
    assert report["tiny"] and set(report["levels"]) == {"1", "2"}
    for n in ("1", "2"):
        level = report["levels"][n]
        assert "error" not in level and len(level["processes"]) == int(n)
        assert level["step_s"] > 0 and level["test_examples_per_s"] > 0
        proj = level["projection"]
        assert (
            proj["cells"] == 12 * 6 * 5 and proj["stages"] == 24 and report["projection_hours"][n] == proj["hours"] > 0
        )
    assert report["levels"]["1"]["eval_examples_per_s"] and report["levels"]["1"]["mt_step_s"] > 0


def _replay(tmp_path, results_dir, *flags):
    out = tmp_path / "replay.json"
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "early_stopping_replay.py"), str(results_dir), str(out), *flags],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(out.read_text())


def test_early_stopping_replay_stops_where_the_callback_stops(tmp_path):
    """A full run's dev history fed to BestDevCallback: patience 2 stops two evaluations after the last gain."""
    scores = [0.5, 0.6, 0.55, 0.6, 0.7, 0.65]  # steps 0, 10, ..., 50; a tie is no gain
    cell = tmp_path / "res" / "cells" / "SST-2" / "embed-ft" / "seed13-x"
    cell.mkdir(parents=True)
    history = [{"step": 10 * i, "score": s} for i, s in enumerate(scores)]
    (cell / "results.json").write_text(json.dumps({"row": "embed-ft", "dev_history": history, "best_step": 40}))
    report = _replay(tmp_path, tmp_path / "res", "--patience", "2", "3")
    two, three = report["by_patience"]["p2"], report["by_patience"]["p3"]
    assert report["cells"] == 1
    assert two["mean_steps"] == 30 and two["cells_keeping_another_step"] == 1
    assert two["mean_dev_change_points"] == pytest.approx(-10.0)
    assert three["mean_steps"] == 50 and three["cells_keeping_another_step"] == 0 and three["step_fraction"] == 1


def test_early_stopping_replay_of_the_committed_cells_keeps_their_steps_without_stopping(tmp_path):
    """With a patience longer than the runs, the replay keeps every committed embed-ft cell's recorded best step."""
    report = _replay(tmp_path, ROOT / "benchmarks" / "results" / "embedding", "--patience", "99")
    full = report["by_patience"]["p99"]
    assert report["cells"] >= 40 and full["cells_keeping_another_step"] == 0 and full["step_fraction"] == 1
