"""The backends of ``mtft-nlp run`` (docs/BACKENDS.md): a tiny grid through a real Ray cluster equals the local run
(same cells, identical scores), a rerun through Ray runs nothing, a failing job is reported while the others finish;
submitit's local executor runs the grid; the slurm backend queues a stage's cells behind it (afterok) and its sbatch
script names the array, resources and log paths; bad input is one ``error:`` line, exit 2, nothing written.

The grid is SST-2's embedding zero-shot and adaptation cells on the packaged MiniLM (20 test examples, 2 head
steps), one process per run."""

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from mtft_nlp.cli import main
from mtft_nlp.grid.plan import Plan, load_config, run_plan
from mtft_nlp.reporting.results import find_results
from mtft_nlp.tasks import MtftError

ROOT = Path(__file__).resolve().parents[2]
ROWS = ["embed-zero-shot", "embed-adapt"]


def _grid(tmp_path, data_dir, name, **settings):
    cfg = load_config(
        None,
        "minilm",
        targets=["SST-2"],
        rows=ROWS,
        seeds=[13],
        output_dir=str(tmp_path / name),
        data_dir=str(data_dir),
    )
    cfg.update(workers=1, cells_per_process=2, embedding={"max_steps": 2, "eval_steps": 1, "max_test_examples": 20})
    cfg.update(settings)
    return cfg


def _scores(folder):
    return sorted((r["task"], r["row"], r["seed"], r["dev_score"], r["test_score"]) for r in find_results(folder))


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, data_dir):
    """The grid through the local backend (one thread per job, as a one-CPU Ray task gets)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("OMP_NUM_THREADS", "1")
    tmp = tmp_path_factory.mktemp("local")
    cfg = _grid(tmp, data_dir, "local")
    assert run_plan(cfg, progress=False)["ran"] == 2
    yield cfg
    mp.undo()


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'mtft-nlp[ray]')")
    ctx = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
    yield ctx.address_info["gcs_address"]
    ray.shutdown()


def test_a_grid_through_ray_equals_the_local_run_and_a_rerun_runs_nothing(
    local_run, ray_cluster, tmp_path, data_dir, capsys
):
    cfg = _grid(tmp_path, data_dir, "ray", backend="ray")
    counts = run_plan(cfg, progress=False)
    assert counts == {"cells": 2, "ran": 2, "multitask_ran": 0, "blocked": 0}
    assert _scores(tmp_path / "ray") == _scores(local_run["output_dir"]) and len(_scores(tmp_path / "ray")) == 2
    # the same folders, logs included, as the local run
    local_cells = sorted(str(c["dir"].relative_to(local_run["output_dir"])) for c in Plan(local_run).cells())
    assert sorted(str(c["dir"].relative_to(tmp_path / "ray")) for c in Plan(cfg).cells()) == local_cells
    assert all(c["dir"].with_suffix(".log").is_file() for c in Plan(cfg).cells())  # 2 CPUs: one cell per task
    assert "backend" not in yaml.safe_load((Path(local_run["output_dir"]) / "config.yaml").read_text())
    # a rerun through the command line, connecting to the running cluster: nothing to run, the report as locally
    config = tmp_path / "ray.yaml"
    config.write_text(yaml.safe_dump(cfg))
    r = subprocess.run(
        [sys.executable, "-m", "mtft_nlp.cli", "run", "--config", str(config), "--ray_address", ray_cluster],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 cells run, 2 already done" in r.stdout and "SST-2" in r.stdout
    assert (tmp_path / "ray" / "RESULTS.md").is_file()


def test_a_failing_job_is_reported_and_the_others_finish(ray_cluster, tmp_path, data_dir, capsys):
    cfg = _grid(tmp_path, data_dir, "fail", backend="ray", cells_per_process=1)
    cells = {c["row"]: c for c in Plan(cfg).cells()}
    broken = cells["embed-adapt"]["dir"]
    broken.parent.mkdir(parents=True)
    broken.write_text("a file where the cell's folder goes: the cell fails at once")
    with pytest.raises(MtftError, match="1 jobs failed: SST-2 embed-adapt seed 13; rerun to retry them"):
        run_plan(cfg, progress=False)
    out = capsys.readouterr().out
    assert f"SST-2 embed-adapt seed 13: FAILED (log: {broken.with_suffix('.log')})" in out
    assert "--output_dir" in broken.with_suffix(".log").read_text()  # the job's own error, in its log
    assert [r["row"] for r in find_results(tmp_path / "fail")] == ["embed-zero-shot"]


def test_submitit_local_executor_runs_the_grid(local_run, tmp_path, data_dir):
    pytest.importorskip("submitit", reason="the slurm extra is not installed (pip install 'mtft-nlp[slurm]')")
    cfg = _grid(tmp_path, data_dir, "slurm", backend="slurm", slurm={"cluster": "local", "time_min": 10})
    assert run_plan(cfg, progress=False)["ran"] == 2
    assert _scores(tmp_path / "slurm") == _scores(local_run["output_dir"])
    assert list((tmp_path / "slurm" / "slurm").rglob("*_log.out"))  # submitit's logs in the grid folder
    assert run_plan(cfg, progress=False)["ran"] == 0


class _FakeJob:
    def __init__(self, job_id):
        self.job_id = job_id

    def done(self, force_check=False):
        return True

    def result(self):
        return 0, 0.0


class _FakeExecutor:
    """submitit's executor API as the slurm backend uses it, recording each array it would queue."""

    arrays = []

    def __init__(self, folder, cluster):
        self.params, self.pending = {}, None

    def update_parameters(self, **params):
        self.params = params

    @contextmanager
    def batch(self):
        self.pending = []
        yield
        _FakeExecutor.arrays.append((self.params, self.pending))
        self.pending = None

    def submit(self, fn, *args):
        job = _FakeJob(f"{100 + len(_FakeExecutor.arrays)}_{len(self.pending)}")
        self.pending.append((args, job))
        return job


def test_slurm_queues_a_stages_cells_behind_it(monkeypatch, tmp_path):
    submitit = pytest.importorskip("submitit", reason="the slurm extra is not installed")
    from mtft_nlp.grid import backends

    monkeypatch.setattr(backends.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(submitit, "AutoExecutor", _FakeExecutor)
    _FakeExecutor.arrays = []
    cfg = {"output_dir": str(tmp_path), "backend": "slurm", "slurm": {"partition": "gpu", "gpus_per_task": 1}}
    backend = backends.open_backend(cfg)
    backend.poll_s = 0.05
    stage = [{"target": "RTE", "variant": "all", "dir": tmp_path / "mt"}]
    cells = [
        [{"target": "RTE", "row": "mt-embed-ft", "seed": s, "dir": tmp_path / f"c{s}", "needs": 1}] for s in (1, 2)
    ]
    base = [[{"target": "RTE", "row": "embed-ft", "seed": 1, "dir": tmp_path / "b", "needs": None}]]
    reported = []
    left = backend.run(
        [stage, *cells, *base],
        lambda unit: ([sys.executable, "-m", "mtft_nlp.cli", "x"], unit[0]["dir"].with_suffix(".log")),
        lambda job, rc, seconds: reported.append((job["dir"].name, rc)),
        None,
        lambda job: False,
        lambda unit: not unit[0].get("needs"),  # the stage's cells wait for it (never saved here)
        lambda unit: tmp_path / "mt" if unit[0].get("needs") else None,
    )
    assert left == [] and sorted(reported) == [("b", 0), ("c1", 0), ("c2", 0), ("mt", 0)]
    (stage_params, stage_jobs), (base_params, _), (cell_params, cell_jobs) = _FakeExecutor.arrays
    assert stage_params["slurm_job_name"] == "mtft-stages" and "slurm_dependency" not in stage_params
    assert "slurm_dependency" not in base_params and stage_params["slurm_partition"] == "gpu"
    assert cell_params["slurm_dependency"] == f"afterok:{stage_jobs[0][1].job_id}" and len(cell_jobs) == 2
    assert cell_params["slurm_additional_parameters"] == {"kill-on-invalid-dep": "yes"}


def test_the_sbatch_script_names_the_array_resources_and_logs(tmp_path):
    pytest.importorskip("submitit", reason="the slurm extra is not installed")
    from mtft_nlp.grid.backends import sbatch_script

    cfg = load_config(None, "minilm", output_dir=str(tmp_path / "grid"), backend="slurm")
    cfg["slurm"] = {
        "partition": "gpu",
        "time_min": 30,
        "cpus_per_task": 4,
        "gpus_per_task": 1,
        "array_parallelism": 8,
        "sbatch": {"account": "nlp", "mem": "16G"},
    }
    text = sbatch_script(cfg, 12, dependency="afterok:42_0")
    for line in (
        "#SBATCH --array=0-11%8",
        "#SBATCH --job-name=mtft-cells",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=30",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --gpus-per-task=1",
        "#SBATCH --account=nlp",
        "#SBATCH --mem=16G",
        "#SBATCH --dependency=afterok:42_0",
        f"#SBATCH --output={tmp_path / 'grid' / 'slurm'}/%A_%a/%A_%a_0_log.out",
    ):
        assert line in text.splitlines(), (line, text)
    assert "-m submitit.core._submit" in text and not (tmp_path / "grid").exists()


def _bad_run(tmp_path, capsys, settings, *flags):
    cfg = {"targets": ["SST-2"], "rows": ["embed-zero-shot"], "seeds": [13], "output_dir": str(tmp_path / "out")}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**cfg, **settings}))
    rc = main(["run", "--config", str(path), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert not (tmp_path / "out").exists()
    return err[0]


@pytest.mark.parametrize(
    "settings, flags, message",
    [
        ({"backend": "spark"}, [], "'backend' is 'spark', expected one of local, ray, slurm"),
        ({"backend": "slurm", "slurm": {"cpus_per_task": "4"}}, [], "'slurm.cpus_per_task' is str '4', expected int"),
        ({"backend": "slurm", "slurm": {"partitoin": "gpu"}}, [], "unknown keys ['partitoin'] in 'slurm'"),
        ({"backend": "slurm", "slurm": {"time_min": 0}}, [], "'slurm.time_min' is 0"),
        ({"backend": "slurm", "slurm": {"sbatch": {"mem": [1]}}}, [], "'slurm.sbatch' options"),
        ({"backend": "slurm"}, [], "sbatch is not found"),
        ({"backend": "slurm"}, ["--slurm", "cpus_per_task=x"], "--slurm: 'slurm.cpus_per_task' is str 'x'"),
        ({"backend": "ray", "ray": {"cpus_per_job": "2"}}, [], "'ray.cpus_per_job' is str '2'"),
        ({"backend": "ray"}, ["--ray_address", "127.0.0.1:1"], "ray address '127.0.0.1:1' (--ray_address"),
        ({"backend": "ray", "ray": {"address": "nowhere"}}, [], "expected host:port"),
    ],
)
def test_bad_backend_input_is_one_error_line(settings, flags, message, tmp_path, capsys, monkeypatch):
    if settings["backend"] != "spark":
        pytest.importorskip({"ray": "ray", "slurm": "submitit"}[settings["backend"]])
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    assert message in _bad_run(tmp_path, capsys, settings, *flags)


@pytest.mark.parametrize("backend, package", [("ray", "ray"), ("slurm", "submitit")])
def test_a_backend_whose_extra_is_missing_is_one_error_line(backend, package, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, package, None)  # import fails as when the extra is not installed
    message = _bad_run(tmp_path, capsys, {"backend": backend, "slurm": {"cluster": "local"}})
    assert f"backend {backend!r} needs the {backend} extra" in message and f"mtft-nlp[{backend}]" in message


def test_an_unknown_backend_flag_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--backend", "spark"])
    assert exc.value.code == 2 and "argument --backend: invalid choice: 'spark'" in capsys.readouterr().err


def test_the_benchmark_script_runs_on_a_tiny_grid(tmp_path, data_dir):
    pytest.importorskip("ray", reason="the ray extra is not installed")
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "backend_overhead.py"), str(tmp_path), "--tiny"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MTFT_NLP_DATA_DIR": str(data_dir)},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads((tmp_path / "backend_overhead.json").read_text())
    assert out["tiny"] and out["identical_scores"] and out["jobs"] >= 1
    assert out["ray_task_latency_s"] > 0 and "overhead_per_job_s" in out


def test_one_ctrl_c_cancels_the_ray_jobs_and_exits_130(tmp_path, data_dir):
    pytest.importorskip("ray", reason="the ray extra is not installed")
    cfg = _grid(tmp_path, data_dir, "stop", rows=["embed-ft"], embedding={"max_steps": 2000, "max_test_examples": 20})
    config = tmp_path / "stop.yaml"
    config.write_text(yaml.safe_dump(cfg))
    log = Plan(cfg).cells()[0]["dir"].with_suffix(".log")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mtft_nlp.cli", "run", "--config", str(config), "--backend", "ray"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
    )
    deadline = time.time() + 120
    while not log.is_file() and time.time() < deadline:  # the Ray task has started the cell's process
        time.sleep(0.5)
    assert log.is_file(), proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted: 0 of 1 cells finished" in err
    time.sleep(1)
    running = subprocess.run(["pgrep", "-f", str(tmp_path / "stop")], capture_output=True, text=True).stdout
    assert not running.strip(), running  # the cell's process was stopped with its task
