"""Issue 2 benchmark: zero-shot and prompt-based FT with the embedded default (MiniLM) on the 13 tasks
that have test sets here, 5 split seeds each (the full-protocol SST-2 runs are in
benchmarks/plans/full_protocol.py).

Reduced protocol (stated in docs/RESULTS.md): 200 steps with dev evaluation every 50 (instead of
1000 / 100), test sets capped at a fixed random subset of 1,000 examples (same subset for every seed
and row); everything else is the toolkit's default (batch 8, lr 3e-4, chosen on dev sets).

    python benchmarks/run_cells.py --plan benchmarks/plans/prompt_ft.py --out benchmarks/results/prompt_ft
"""
TASKS = ["SST-2", "SST-5", "MR", "CR", "MPQA", "Subj", "TREC", "CoLA", "SNLI", "QNLI", "RTE", "MRPC", "STS-B"]
SEEDS = [13, 21, 42, 87, 100]
REDUCED = ["--max_steps", "200", "--eval_steps", "50", "--max_test_examples", "1000"]

CELLS = []
for seed in SEEDS:
    for task in TASKS:
        CELLS.append((f"zero-shot/{task}-{seed}", ["--task_name", task, "--seed", str(seed), "--zero_shot",
                                                  "--max_test_examples", "1000"]))
        CELLS.append((f"pbft/{task}-{seed}", ["--task_name", task, "--seed", str(seed), *REDUCED]))
