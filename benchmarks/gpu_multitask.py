#!/usr/bin/env python
"""Issue-3 benchmark on one GPU: for each of the 13 targets with a test set, the rows zero-shot, pbft,
mt-zero-shot and mt-pbft (5 split seeds), with the embedded MiniLM, all on the same device.

Two worker processes per target, run concurrently on the GPU: one for the single-task rows (zero-shot,
pbft), one that trains the target's multitask checkpoint once and then runs the mt rows from it (shared by
its seeds). Protocol: the issue-2 benchmark's reduced
prompt-FT protocol (200 steps, dev every 50, batch 8, lr 3e-4, test capped at 1000) and the reference
multitask stage (leave-one-out sources, 10 examples per step drawn task-uniformly, 1000 steps, lr 1e-5).

    python benchmarks/gpu_multitask.py OUT_DIR MODEL_DIR DATA_DIR [deadline_seconds] [--head_init identity]
        [--targets CR MR ...] [--seeds 100 ...] [--rows single|mt|all] [--archive FILE.tar.gz]
`--head_init identity` starts the MLM-head transform the packaged MiniLM lacks as the identity, in the
stage and in single-task FT alike (issue-3 probe 4's setting, for all targets).
`--rows mt --seeds 100` fills in mt cells of one seed (the stage is retrained: same seed, same settings).
Results: OUT_DIR/<target>/<row>/seed<seed>/results.json (+ multitask_config.json per target), tarred
(weights left out) into --archive (default OUT_DIR.tar.gz) every 20 s so that partial results survive a
time limit.
"""
import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TARGETS = ["SST-2", "SST-5", "MR", "CR", "MPQA", "Subj", "TREC", "CoLA", "SNLI", "QNLI", "RTE", "MRPC", "STS-B"]
SEEDS = [13, 21, 42, 87, 100]


def worker(target, chain, out, model, data, deadline, head_init, seeds):
    os.environ["OMP_NUM_THREADS"] = "1"
    import logging

    logging.disable(logging.WARNING)
    from mtft_nlp.multitask import MultitaskArguments, MultitaskTrainingArguments, run_multitask
    from mtft_nlp.training import ModelArguments, PromptArguments, PromptTrainingArguments, run_prompt_experiment

    def cell(row, seed, model_path, zero):
        d = Path(out) / target / row / f"seed{seed}"
        if (d / "results.json").exists() or time.time() > deadline:
            return
        extra = {} if zero else {"max_steps": 200, "eval_steps": 50}
        targs = PromptTrainingArguments(output_dir=str(d), seed=seed, disable_tqdm=True, **extra)
        run_prompt_experiment(ModelArguments(model_name_or_path=model_path, head_init=head_init),
                              PromptArguments(task_name=target, data_dir=data, zero_shot=zero, row=row,
                                              max_test_examples=1000, save_model=False), targs)

    if chain == "single":
        for seed in seeds:
            cell("zero-shot", seed, model, True)
            cell("pbft", seed, model, False)
        return
    mt_dir = Path(out) / target / "multitask"
    if not (mt_dir / "multitask_config.json").exists() and time.time() < deadline:
        run_multitask(ModelArguments(model_name_or_path=model, head_init=head_init),
                      MultitaskArguments(target=target, sources=["all"], data_dir=data),
                      MultitaskTrainingArguments(output_dir=str(mt_dir), seed=42, disable_tqdm=True, eval_steps=500))
    if not (mt_dir / "multitask_config.json").exists():
        return
    for seed in seeds:
        cell("mt-zero-shot", seed, str(mt_dir), True)
        cell("mt-pbft", seed, str(mt_dir), False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="output folder (resumable: finished cells are skipped)")
    parser.add_argument("model", help="masked LM name or path (the packaged MiniLM's folder)")
    parser.add_argument("data", help="data folder holding original/ (the shared data)")
    parser.add_argument("deadline_seconds", nargs="?", type=float, default=1e9,
                        help="start no new cell or stage after this many seconds")
    parser.add_argument("--head_init", default="random", choices=["random", "identity"],
                        help="initialisation of MLM-head weights the checkpoint lacks")
    parser.add_argument("--targets", nargs="+", default=TARGETS, choices=TARGETS, help="targets to run")
    parser.add_argument("--seeds", nargs="+", type=int, default=SEEDS, help="split seeds to run")
    parser.add_argument("--rows", default="all", choices=["all", "single", "mt"],
                        help="single: zero-shot and pbft; mt: the stage, mt-zero-shot and mt-pbft")
    parser.add_argument("--archive", type=Path, help="tarball of the results (default OUT_DIR.tar.gz)")
    args = parser.parse_args()
    out = args.out
    deadline = time.time() + args.deadline_seconds
    out.mkdir(parents=True, exist_ok=True)
    chains = [("single", t) for t in args.targets if args.rows in ("all", "single")]
    # STS-B is regression: not a multitask target in the paper's table
    chains += [("mt", t) for t in args.targets if args.rows in ("all", "mt") and t != "STS-B"]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=worker, args=(t, chain, str(out), args.model, args.data, deadline, args.head_init,
                                              args.seeds)) for chain, t in chains]
    for p in procs:
        p.start()
    tar = args.archive or out.parent / f"{out.name}.tar.gz"
    command = ["tar", "czf", str(tar), "--exclude=*.safetensors", "--exclude=*.bin", "--exclude=tokenizer*",
               "-C", str(out.parent), out.name]
    while any(p.is_alive() for p in procs):
        time.sleep(20)
        subprocess.run(command, check=False)
        done = len(list(out.rglob("results.json")))
        print(f"{time.strftime('%H:%M:%S')} results: {done}", flush=True)
    subprocess.run(command, check=False)
    print("exit codes", [p.exitcode for p in procs])


if __name__ == "__main__":
    main()
