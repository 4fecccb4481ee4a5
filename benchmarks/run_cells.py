#!/usr/bin/env python
"""Resumable benchmark runner: one run_glue_fewshot.py process per cell.

A cell is (name, arguments). Its folder holds results.json once finished; a rerun skips
finished cells, so the runner can be killed and restarted at any time. Each finished
results.json is small JSON (no weights) and can be committed as it lands.

    python benchmarks/run_cells.py --plan benchmarks/plans/prompt_ft.py --out benchmarks/results/prompt_ft
"""
import argparse
import os
import runpy
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plan", required=True, help="a Python file defining CELLS = [(name, [args...]), ...]")
    p.add_argument("--out", required=True, help="results folder; one sub-folder per cell")
    p.add_argument("--data_dir", default=os.environ.get("MTFT_NLP_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--only", nargs="*", help="run only cells whose name contains one of these strings")
    a = p.parse_args()
    cells = runpy.run_path(a.plan)["CELLS"]
    out = Path(a.out)
    todo = [(n, args) for n, args in cells if not (out / n / "results.json").exists()
            and (not a.only or any(s in n for s in a.only))]
    print(f"{len(cells)} cells, {len(cells) - len(todo)} done, {len(todo)} to run", flush=True)
    t_start = time.time()
    for i, (name, args) in enumerate(todo, 1):
        cell = out / name
        cmd = [sys.executable, str(ROOT / "run_glue_fewshot.py"), *args, "--data_dir", a.data_dir,
               "--output_dir", str(cell), "--save_model", "false", "--disable_tqdm", "true"]
        t0 = time.time()
        cell.mkdir(parents=True, exist_ok=True)
        with open(cell / "log.txt", "w") as log:
            rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        elapsed = time.time() - t0
        status = "ok" if rc == 0 and (cell / "results.json").exists() else f"FAILED rc={rc} (see {cell}/log.txt)"
        eta = (time.time() - t_start) / i * (len(todo) - i)
        print(f"[{i}/{len(todo)}] {name}: {status} in {elapsed:.0f}s, ETA {eta / 60:.0f} min", flush=True)


if __name__ == "__main__":
    main()
