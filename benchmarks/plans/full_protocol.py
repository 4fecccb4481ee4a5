"""Two full-protocol runs (SST-2, seed 13, 1000 steps, dev every 100 steps, whole test set) with the
embedded MiniLM: the multitask study's setting (batch 2, lr 1e-5; also the speed measurement of the
issue) and the toolkit's defaults (batch 8, lr 3e-4, chosen on dev sets).

    python benchmarks/run_cells.py --plan benchmarks/plans/full_protocol.py --out benchmarks/results/full_protocol
"""
CELLS = [
    ("SST-2-13-paper-hparams", ["--task_name", "SST-2", "--seed", "13", "--paper_hparams"]),
    ("SST-2-13-defaults", ["--task_name", "SST-2", "--seed", "13"]),
]
