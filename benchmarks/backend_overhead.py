"""What the Ray backend costs over the local one (issue: grids beyond one machine).

    python benchmarks/backend_overhead.py OUT [--data_dir ../shared/data] [--workers 2] [--tiny]

Runs the same small grid of short cells (embedding zero-shot and adaptation on SST-2 and TREC, 3 split seeds: 12
cells, one process each) twice through ``mtft-nlp run``: ``--backend local`` into OUT/local, then ``--backend ray``
(a local Ray cluster started by the command, ``--workers`` CPUs, one per job) into OUT/ray. Writes
OUT/backend_overhead.json: the wall time of each, the per-job overhead ((Ray wall - local wall) / jobs), Ray's task
scheduling latency measured directly (round trips of trivial tasks on a cluster started here) and its start-up time,
whether the two runs' scores are identical, and the issue's goals (overhead per job at most 2 s, Ray at most 1.2x
local). ``--tiny`` is one cell, to check that the script works. Run it on a quiet machine: another process on the
cores changes both times.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG = {
    "model": "minilm",
    "targets": ["SST-2", "TREC"],
    "rows": ["embed-zero-shot", "embed-adapt"],
    "seeds": [13, 21, 42],
    "cells_per_process": 1,
    "embedding": {"max_steps": 10, "eval_steps": 5, "max_test_examples": 200},
}
TINY = dict(CONFIG, targets=["SST-2"], rows=["embed-zero-shot"], seeds=[13], embedding={"max_test_examples": 20})


def _scores(folder: Path) -> list:
    from mtft_nlp.reporting.results import find_results

    return sorted((r["task"], r["row"], r["seed"], r["dev_score"], r["test_score"]) for r in find_results(folder))


def _ray_latency(cpus: int, rounds: int = 50) -> dict:
    """Ray's own costs on a local cluster: start-up, a trivial task's round trip (sequential), and the mean time
    per task of ``rounds`` trivial tasks submitted at once."""
    import ray

    t0 = time.time()
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="warning")
    start = time.time() - t0

    @ray.remote(num_cpus=1)
    def nothing():
        return 0

    ray.get(nothing.remote())  # a worker process is up
    t0 = time.time()
    for _ in range(rounds):
        ray.get(nothing.remote())
    latency = (time.time() - t0) / rounds
    t0 = time.time()
    ray.get([nothing.remote() for _ in range(rounds)])
    batch = (time.time() - t0) / rounds
    ray.shutdown()
    return {
        "ray_start_s": round(start, 3),
        "ray_task_latency_s": round(latency, 5),
        "ray_task_batch_s": round(batch, 5),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--data_dir", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tiny", action="store_true", help="one cell: check that the script works")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    grid = TINY if a.tiny else CONFIG
    jobs = len(grid["targets"]) * len(grid["rows"]) * len(grid["seeds"])
    result = {
        "tiny": a.tiny,
        "jobs": jobs,
        "workers": a.workers,
        "config": grid,
        "cpu_count": os.cpu_count(),
        "load_before": os.getloadavg()[0],
    }
    path = out / "backend_overhead.json"
    for backend in ("local", "ray"):
        cfg = dict(grid, workers=a.workers, output_dir=str(out / backend))
        if a.data_dir:
            cfg["data_dir"] = a.data_dir
        config = out / f"{backend}.yaml"
        config.write_text(yaml.safe_dump(cfg))
        t0 = time.time()
        rc = subprocess.call(
            [sys.executable, "-m", "mtft_nlp.cli", "run", "--config", str(config), "--backend", backend],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        result[f"{backend}_seconds"] = round(time.time() - t0, 2)
        result[f"{backend}_rc"] = rc
        path.write_text(json.dumps(result, indent=2))  # written after each step, kept if cut
    result["identical_scores"] = bool(_scores(out / "local")) and _scores(out / "local") == _scores(out / "ray")
    result["overhead_per_job_s"] = round((result["ray_seconds"] - result["local_seconds"]) / jobs, 3)
    result["ratio_ray_over_local"] = round(result["ray_seconds"] / result["local_seconds"], 3)
    result.update(_ray_latency(a.workers))
    # what is left per job once the cluster's start-up (paid once per grid) is taken out
    result["overhead_per_job_after_start_s"] = round(
        (result["ray_seconds"] - result["local_seconds"] - result["ray_start_s"]) / jobs, 3
    )
    result["goals"] = {
        "overhead_per_job_at_most_2s": result["overhead_per_job_s"] <= 2.0,
        "ray_at_most_1.2x_local": result["ratio_ray_over_local"] <= 1.2,
    }
    result["load_after"] = os.getloadavg()[0]
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0 if result["local_rc"] == 0 and result["ray_rc"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
