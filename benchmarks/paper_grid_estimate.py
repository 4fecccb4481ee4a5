#!/usr/bin/env python
"""Projected wall time of the paper grid (configs/paper.yaml) on one GPU, with 1, 4 and 8 cells per GPU.

A randomly initialised RoBERTa-large-shaped masked LM (built from a ``RobertaConfig``: nothing is
downloaded, no tokenizer) trains on a synthetic stream of token ids; only speed is measured. One
*cell* is the paper's prompt-based FT protocol: 1000 steps of batch 2 (AdamW, lr 1e-5), a dev
evaluation of 32 examples every 100 steps, then a test evaluation of ``--test_examples`` examples at
``--eval_batch``; the model scores the label words at the mask only (no full-vocabulary projection),
as the toolkit does. On CUDA everything runs under bf16 autocast (the config's ``bf16: true``).

For each level N of ``--cells``, N processes run one cell each at the same time on the device (they
start together after building their models); the per-process step time, dev-evaluation time and
test examples/s under that contention give the projection. The single-cell level also measures
evaluation throughput at batch 32 and at ``--eval_batch``, and a multitask-stage step (10 examples).

Projection for N cells per GPU (the runner runs the stages first, then the cells, N at a time):
    ceil(24 / N) * stage_N + sum(cells) / N
with, per target t (LM-BFF test-set sizes), 5 seeds x (3 prompt-FT rows: setup + 1000 steps + 10 dev
evaluations + test; 3 zero-shot rows: setup + 1 dev evaluation + test) and 24 multitask stages of
1000 steps (stage step time scaled by the cells' step-time ratio at level N). Setup is the measured
process start (imports and model construction).

    python benchmarks/paper_grid_estimate.py OUT                       # on a GPU: RoBERTa-large shape, 1/4/8
    python benchmarks/paper_grid_estimate.py OUT --tiny                # CPU smoke run: tiny model, few steps

Writes OUT/paper_grid_estimate.json (rewritten after every level, so a time limit keeps what was measured).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import sys
import time
import traceback
from pathlib import Path

# LM-BFF test-set sizes of the paper's 12 targets (configs/paper.yaml)
TEST_SIZES = {
    "SST-2": 872,
    "SST-5": 2210,
    "MR": 2000,
    "CR": 2000,
    "MPQA": 2000,
    "Subj": 2000,
    "TREC": 500,
    "CoLA": 1043,
    "SNLI": 9842,
    "QNLI": 5463,
    "RTE": 277,
    "MRPC": 408,
}
SEEDS, FT_ROWS, ZERO_SHOT_ROWS, STAGES = 5, 3, 3, 24
PROTOCOL = {"steps": 1000, "dev_evals": 10, "batch": 2, "mt_examples_per_step": 10}

ROBERTA_LARGE = dict(
    vocab_size=50265,
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=4096,
    max_position_embeddings=514,
    type_vocab_size=1,
    pad_token_id=1,
)
TINY = dict(
    vocab_size=1000,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=514,
    type_vocab_size=1,
    pad_token_id=1,
)


def _label_logits(model, ids, label_ids, mask_pos):
    """Class logits: the MLM head at the mask, scored against the label words only."""
    import torch.nn.functional as F

    h = model.roberta(input_ids=ids).last_hidden_state[:, mask_pos]
    head = model.lm_head
    h = head.layer_norm(F.gelu(head.dense(h)))
    return h @ head.decoder.weight[label_ids].T + head.bias[label_ids]


def _worker(rank, n, a, spawned_at, barrier, queue):
    try:
        queue.put(_cell(rank, n, a, spawned_at, barrier))
    except BaseException:  # report, and release the others from the barrier
        barrier.abort()
        queue.put({"rank": rank, "error": traceback.format_exc()})


def _cell(rank, n, a, spawned_at, barrier):
    import torch
    from transformers import RobertaConfig, RobertaForMaskedLM

    device = torch.device(a["device"])
    cuda = device.type == "cuda"
    if not cuda:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // n))
    torch.manual_seed(rank)
    try:
        with device:  # built on the device directly (fast for the large shape)
            model = RobertaForMaskedLM(RobertaConfig(**a["shape"]))
    except Exception:
        model = RobertaForMaskedLM(RobertaConfig(**a["shape"])).to(device)
    # the Trainer's default optimizer (adamw_torch_fused on CUDA)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=cuda)
    vocab, seq = a["shape"]["vocab_size"], a["seq_len"]
    label_ids = torch.tensor([vocab - 3, vocab - 2], device=device)
    mask_pos = seq // 2
    gen = torch.Generator(device=device).manual_seed(rank)

    def batch(size):
        ids = torch.randint(3, vocab - 4, (size, seq), device=device, generator=gen)
        ids[:, mask_pos] = vocab - 1
        return ids, torch.randint(0, 2, (size,), device=device, generator=gen)

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    def evaluate(examples, bs):
        model.eval()
        sync()
        t0 = time.perf_counter()
        with torch.inference_mode(), autocast():
            for start in range(0, examples, bs):
                ids, _ = batch(min(bs, examples - start))
                # one host copy per batch, as the Trainer
                _label_logits(model, ids, label_ids, mask_pos).argmax(-1).cpu()
        sync()
        model.train()
        return time.perf_counter() - t0

    def train(steps, bs):
        t0 = time.perf_counter()
        for _ in range(steps):
            ids, y = batch(bs)
            with autocast():
                loss = torch.nn.functional.cross_entropy(_label_logits(model, ids, label_ids, mask_pos).float(), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        sync()
        return time.perf_counter() - t0

    model.train()
    train(2, a["batch"])  # warm-up (kernels, allocator), not timed
    evaluate(a["dev_examples"], a["dev_batch"])
    setup = time.time() - spawned_at
    barrier.wait(timeout=a["barrier_timeout"])
    start = time.time()
    train_s = dev_s = 0.0
    every = max(1, a["steps"] // max(1, a["dev_evals"]))
    done = 0
    while done < a["steps"]:
        k = min(every, a["steps"] - done)
        train_s += train(k, a["batch"])
        done += k
        dev_s += evaluate(a["dev_examples"], a["dev_batch"])
    test_s = evaluate(a["test_examples"], a["eval_batch"])
    out = {
        "rank": rank,
        "setup_s": setup,
        "start": start,
        "end": time.time(),
        "train_s": train_s,
        "step_s": train_s / a["steps"],
        "dev_eval_s": dev_s / max(1, a["dev_evals"]),
        "test_s": test_s,
        "test_examples_per_s": a["test_examples"] / test_s,
    }
    if cuda:
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    if n == 1:  # evaluation throughput and a multitask-stage step, alone on the device
        out["eval_examples_per_s"] = {
            str(bs): a["test_examples"] / evaluate(a["test_examples"], bs)
            for bs in dict.fromkeys([32, a["eval_batch"]])
        }
        out["mt_step_s"] = train(a["mt_steps"], PROTOCOL["mt_examples_per_step"]) / a["mt_steps"]
    return out


def measure(n, a):
    # CUDA needs fresh processes; on the CPU, forking the parent (torch and transformers already imported)
    # keeps the smoke run fast
    ctx = mp.get_context("fork" if a["device"] == "cpu" and "fork" in mp.get_all_start_methods() else "spawn")
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    spawned_at = time.time()
    procs = [ctx.Process(target=_worker, args=(r, n, a, spawned_at, barrier, queue)) for r in range(n)]
    for p in procs:
        p.start()
    results = []
    for _ in procs:
        try:
            results.append(queue.get(timeout=a["barrier_timeout"] + 3600))
        except Exception:  # a process died without reporting (e.g. killed for memory)
            results.append(
                {"rank": -1, "error": f"no result from a cell process (exit codes {[q.exitcode for q in procs]})"}
            )
            break
    for p in procs:
        p.join(timeout=60)
        if p.is_alive():
            p.kill()
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        return {"cells": n, "error": errors[0]}
    mean = lambda k: sum(r[k] for r in results) / n  # noqa: E731
    level = {
        "cells": n,
        "wall_s": max(r["end"] for r in results) - min(r["start"] for r in results),
        **{k: mean(k) for k in ("setup_s", "train_s", "step_s", "dev_eval_s", "test_s", "test_examples_per_s")},
        "processes": sorted(results, key=lambda r: r["rank"]),
    }
    if "peak_memory_gib" in results[0]:
        level["peak_memory_gib_per_process"] = max(r["peak_memory_gib"] for r in results)
    for k in ("eval_examples_per_s", "mt_step_s"):
        if k in results[0]:
            level[k] = results[0][k]
    return level


def project(level, single, sizes):
    """Hours for the paper grid at this level (see the module docstring)."""
    step, dev, rate, setup = (level[k] for k in ("step_s", "dev_eval_s", "test_examples_per_s", "setup_s"))
    ft = {t: setup + PROTOCOL["steps"] * step + PROTOCOL["dev_evals"] * dev + m / rate for t, m in sizes.items()}
    zs = {t: setup + dev + m / rate for t, m in sizes.items()}
    stage = setup + PROTOCOL["steps"] * single["mt_step_s"] * step / single["step_s"]
    cells = SEEDS * sum(FT_ROWS * ft[t] + ZERO_SHOT_ROWS * zs[t] for t in sizes)
    n = level["cells"]
    wall = math.ceil(STAGES / n) * stage + cells / n
    return {
        "hours": wall / 3600,
        "stage_s": stage,
        "stages_wall_s": math.ceil(STAGES / n) * stage,
        "cells_wall_s": cells / n,
        "ft_cell_s": ft,
        "zero_shot_cell_s": zs,
        "cells": len(sizes) * SEEDS * (FT_ROWS + ZERO_SHOT_ROWS),
        "stages": STAGES,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("output_dir", type=Path)
    p.add_argument("--tiny", action="store_true", help="tiny model and few steps (a CPU smoke run)")
    p.add_argument("--cells", type=int, nargs="+", help="concurrent cells per device (default 1 4 8; tiny: 1 2)")
    p.add_argument(
        "--steps",
        type=int,
        help="training steps per measured cell (default 1000; tiny 10); the "
        "projection always uses the protocol's 1000",
    )
    p.add_argument("--dev_evals", type=int, help="dev evaluations per measured cell (default 10; tiny 2)")
    p.add_argument("--test_examples", type=int, help="test examples per measured cell (default 872; tiny 64)")
    p.add_argument("--eval_batch", type=int, help="test evaluation batch (default 256; tiny 32)")
    p.add_argument("--mt_steps", type=int, help="multitask-stage steps measured (default 100; tiny 3)")
    p.add_argument("--seq_len", type=int, default=128, help="tokens per example (padded length)")
    p.add_argument("--device", help="default: cuda when available, else cpu")
    a = p.parse_args(argv)
    import torch

    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        import transformers.models.roberta.modeling_roberta  # noqa: F401  (inherited by the forked cells)
    tiny = a.tiny
    settings = {
        "shape": TINY if tiny else ROBERTA_LARGE,
        "device": device,
        "seq_len": a.seq_len,
        "batch": 2,
        "steps": a.steps or (10 if tiny else 1000),
        "dev_evals": a.dev_evals or (2 if tiny else 10),
        "dev_examples": 32,
        "dev_batch": 32,
        "test_examples": a.test_examples or (64 if tiny else 872),
        "eval_batch": a.eval_batch or (32 if tiny else 256),
        "mt_steps": a.mt_steps or (3 if tiny else 100),
        "barrier_timeout": 600,
    }
    levels = a.cells or ([1, 2] if tiny else [1, 4, 8])
    if levels[0] != 1:
        levels = [1] + levels  # the single-cell level gives the evaluation and stage measurements
    a.output_dir.mkdir(parents=True, exist_ok=True)
    out_path = a.output_dir / "paper_grid_estimate.json"
    report = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu",
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "tiny": tiny,
        "start_method": "fork (CPU)" if device == "cpu" else "spawn",
        "bf16_autocast": device == "cuda",
        "settings": settings,
        "protocol": PROTOCOL,
        "test_sizes": TEST_SIZES,
        "levels": {},
        "projection_hours": {},
        "assumptions": [
            "synthetic token ids at a fixed padded length (--seq_len) for every task",
            "the multitask stage's per-step time scales with the cells' step time at each level",
            "the stage's own dev evaluations of its sources and task selection are not counted",
            "cells pack perfectly into N slots after the stages (no tail)",
        ],
    }
    single = None
    for n in levels:
        t0 = time.time()
        level = measure(n, settings)
        level["measured_in_s"] = time.time() - t0
        report["levels"][str(n)] = level
        if "error" in level:
            print(f"{n} cells: FAILED\n{level['error']}", flush=True)
        else:
            single = single or level
            proj = project(level, single, TEST_SIZES)
            level["projection"] = proj
            report["projection_hours"][str(n)] = proj["hours"]
            print(
                f"{n} cells/device: step {level['step_s'] * 1e3:.1f} ms, test {level['test_examples_per_s']:.0f} ex/s "
                f"per cell, wall {level['wall_s']:.1f} s -> paper grid {proj['hours']:.2f} h",
                flush=True,
            )
        out_path.write_text(json.dumps(report, indent=2) + "\n")
    if single and "eval_examples_per_s" in single:
        print("evaluation examples/s (one cell):", {k: round(v) for k, v in single["eval_examples_per_s"].items()})
    print(f"written: {out_path}")
    return 0 if single else 1


if __name__ == "__main__":
    sys.exit(main())
