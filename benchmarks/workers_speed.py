"""Grid throughput on the CPU: the same cells with ``--workers 1`` and ``--workers 2`` (issue: grid throughput).

    python benchmarks/workers_speed.py OUT [--data_dir ../shared/data]

Runs one small grid twice through ``mtft-nlp run`` (prompt and embedding cells of SST-2 and TREC, seed 13, reduced
steps), into OUT/w1 and OUT/w2, and writes OUT/workers_speed.json with the wall time of each and the machine. Each
worker gets ``cores // workers`` threads (OMP_NUM_THREADS), which is what makes two workers on two cores faster than
one instead of slower. Run it on a quiet machine: another process on the cores changes both times.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

CONFIG = {
    "model": "minilm",
    "targets": ["SST-2", "TREC"],
    "rows": ["zero-shot", "pbft", "embed-adapt", "embed-ft"],
    "seeds": [13],
    "train": {"max_steps": 30, "eval_steps": 15, "max_test_examples": 300},
    "zero_shot": {"max_test_examples": 300},
    "embedding": {"max_steps": 30, "eval_steps": 15, "max_test_examples": 300},
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--data_dir", default=None)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "cells": len(CONFIG["targets"]) * len(CONFIG["rows"]) * len(CONFIG["seeds"]),
        "config": CONFIG,
        "cpu_count": os.cpu_count(),
        "load_before": os.getloadavg()[0],
    }
    for workers in (1, 2):
        cfg = dict(CONFIG, workers=workers, output_dir=str(out / f"w{workers}"))
        if a.data_dir:
            cfg["data_dir"] = a.data_dir
        path = out / f"w{workers}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        t0 = time.time()
        rc = subprocess.call(
            [sys.executable, "-m", "mtft_nlp.cli", "run", "--config", str(path)], stdout=subprocess.DEVNULL
        )
        result[f"workers_{workers}_seconds"] = round(time.time() - t0, 1)
        result[f"workers_{workers}_rc"] = rc
        (out / "workers_speed.json").write_text(json.dumps(result, indent=2))  # written after each, kept if cut
    result["ratio_2_over_1"] = round(result["workers_2_seconds"] / result["workers_1_seconds"], 3)
    (out / "workers_speed.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
