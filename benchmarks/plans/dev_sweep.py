"""Choosing the embedded MiniLM's defaults on the k-shot DEV sets (test capped at 200 and not used to choose).

    python benchmarks/run_cells.py --plan benchmarks/plans/dev_sweep.py --out benchmarks/results/dev_sweep
"""
CONFIGS = {
    # the multitask study's setting, full LM-BFF schedule
    "paper-lr1e-5-bs2-1000": ["--learning_rate", "1e-5", "--per_device_train_batch_size", "2", "--max_steps", "1000"],
    # batch 8, 300 steps (the dev score plateaus by step 50-100 at these rates)
    "lr1e-4-bs8-300-random": ["--learning_rate", "1e-4", "--per_device_train_batch_size", "8", "--max_steps", "300", "--eval_steps", "50"],
    "lr1e-4-bs8-300-identity": ["--learning_rate", "1e-4", "--per_device_train_batch_size", "8", "--max_steps", "300", "--eval_steps", "50", "--head_init", "identity"],
    "lr2e-5-bs8-200-random": ["--learning_rate", "2e-5", "--per_device_train_batch_size", "8", "--max_steps", "200", "--eval_steps", "50"],
    "lr1e-4-bs8-200-random": ["--learning_rate", "1e-4", "--per_device_train_batch_size", "8", "--max_steps", "200", "--eval_steps", "50"],
    "lr3e-4-bs8-200-random": ["--learning_rate", "3e-4", "--per_device_train_batch_size", "8", "--max_steps", "200", "--eval_steps", "50"],
}
FIRST = [(f"{cfg}/SST-2-13", ["--task_name", "SST-2", "--seed", "13", "--max_test_examples", "200", *args])
         for cfg, args in list(CONFIGS.items())[:3]]
GRID = [(f"{cfg}/{t}-21", ["--task_name", t, "--seed", "21", "--max_test_examples", "200", *args])
        for t in ("SST-2", "TREC", "RTE") for cfg, args in list(CONFIGS.items())[3:]]
CELLS = FIRST + GRID
