#!/usr/bin/env python
"""What ``--early_stopping_patience`` would have done to committed finetuning cells, on their dev scores only.

Every cell's ``dev_history`` (the dev score at each evaluation of a full run) is fed, in order, to the
:class:`~mtft_nlp.training.callbacks.BestDevCallback` the runs use, with the given patience; where the callback
asks the Trainer to stop, the run would have stopped. Reported per patience: the optimizer steps the cells would
have trained (against the full runs'), how many cells would keep another step, and the change of the kept dev
score. Test scores are not read: a cell whose kept step does not change keeps its test score; the others would
need a rerun.

    python benchmarks/early_stopping_replay.py RESULTS_DIR OUT.json [--rows embed-ft ...] [--patience 1 2 3]
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from transformers import TrainerControl, TrainerState

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from mtft_nlp.training.callbacks import BestDevCallback  # noqa: E402


def replay(history, patience):
    """(steps trained, kept step, kept dev score) of a run that had stopped with ``patience``."""
    callback, state, control = BestDevCallback(patience=patience), TrainerState(), TrainerControl()
    weights = torch.nn.Linear(1, 1)
    for point in history:
        state.global_step = point["step"]
        callback.on_evaluate(None, state, control, {"eval_score": point["score"]}, weights)
        if control.should_training_stop:
            break
    return state.global_step, callback.best_step, callback.best_score


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_dir")
    parser.add_argument("output")
    parser.add_argument("--rows", nargs="+", default=["embed-ft"])
    parser.add_argument("--patience", nargs="+", type=int, default=[1, 2, 3])
    args = parser.parse_args(argv)
    cells = []
    for path in sorted(Path(args.results_dir).glob("cells/*/*/*/results.json")):
        record = json.loads(path.read_text())
        if record["row"] in args.rows and record.get("dev_history"):
            cells.append(record)
    if not cells:
        parser.error(f"no cell of rows {args.rows} with a dev_history under {args.results_dir}")
    report = {"results_dir": args.results_dir, "rows": args.rows, "cells": len(cells), "by_patience": {}}
    for patience in args.patience:
        steps = kept_changed = 0
        full_steps = dev_change = 0.0
        for record in cells:
            history = record["dev_history"]
            trained, best_step, best_score = replay(history, patience)
            full_step, _, full_score = replay(history, None)
            steps += trained
            full_steps += full_step
            kept_changed += best_step != record["best_step"]
            dev_change += 100 * (best_score - full_score)
        report["by_patience"][f"p{patience}"] = {  # keys that str.format can index (RESULTS quotes them)
            "mean_steps": steps / len(cells),
            "mean_full_steps": full_steps / len(cells),
            "step_fraction": steps / full_steps,
            "cells_keeping_another_step": kept_changed,
            "mean_dev_change_points": dev_change / len(cells),
        }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
