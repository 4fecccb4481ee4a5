#!/usr/bin/env python
"""Issue-3 speed: the multitask stage with mixed-task batches of 10 vs the reference's micro-batch of 1
with 10-step gradient accumulation, on the same examples (same seed: the same task-uniform sequence,
consumed in the same order, 10 examples per optimizer step).

    python benchmarks/multitask_speed.py OUT_DIR [steps] [model_name_or_path] [data_dir]
(defaults: 100 steps, the embedded MiniLM, the shared data); the device the Trainer picks (a GPU when there
is one) is recorded.
"""

import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from mtft_nlp.multitask import run_multitask  # noqa: E402
from mtft_nlp.training.arguments import ModelArguments, MultitaskArguments, MultitaskTrainingArguments  # noqa: E402

out = Path(sys.argv[1])
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 100
model_args = ModelArguments(**({"model_name_or_path": sys.argv[3]} if len(sys.argv) > 3 else {}))
data = {"data_dir": sys.argv[4]} if len(sys.argv) > 4 else {}
report = {
    "steps": steps,
    "target": "RTE",
    "sources": "all (13 leave-one-out)",
    "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
}
for name, accumulation in (("mixed_batch_10", 1), ("micro_batch_1_x10", 10)):
    t0 = time.time()
    meta = run_multitask(
        model_args,
        MultitaskArguments(target="rte", sources=["all"], eval_tasks=3, **data),
        MultitaskTrainingArguments(
            output_dir=str(out / name),
            max_steps=steps,
            eval_steps=steps,
            gradient_accumulation_steps=accumulation,
            seed=42,
            disable_tqdm=True,
        ),
    )
    report[name] = {
        "train_seconds": meta["train_seconds"],
        "wall_seconds": time.time() - t0,
        "dev_loss_before": meta["dev_before"]["mean"]["loss"],
        "dev_loss_after": meta["dev_after"]["mean"]["loss"],
        "examples_drawn": {s["task"]: s["examples_drawn"] for s in meta["sources"]},
    }
    for p in (out / name).glob("*.safetensors"):
        p.unlink()
    (out / "multitask_speed.json").write_text(json.dumps(report, indent=2))  # the first way survives a time limit
report["speedup"] = report["micro_batch_1_x10"]["train_seconds"] / report["mixed_batch_10"]["train_seconds"]
(out / "multitask_speed.json").write_text(json.dumps(report, indent=2))
print(json.dumps(report, indent=2))
