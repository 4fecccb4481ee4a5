"""Choosing the embedded MiniLM's defaults on the k-shot DEV sets (test capped, not used to choose)."""
CONFIGS = {
    "paper-lr1e-5-bs2-1000": ["--learning_rate", "1e-5", "--per_device_train_batch_size", "2", "--max_steps", "1000"],
    "lr1e-4-bs8-300-random": ["--learning_rate", "1e-4", "--per_device_train_batch_size", "8", "--max_steps", "300", "--eval_steps", "50"],
    "lr1e-4-bs8-300-identity": ["--learning_rate", "1e-4", "--per_device_train_batch_size", "8", "--max_steps", "300", "--eval_steps", "50", "--head_init", "identity"],
    "lr5e-5-bs4-500-identity": ["--learning_rate", "5e-5", "--per_device_train_batch_size", "4", "--max_steps", "500", "--eval_steps", "50", "--head_init", "identity"],
    "lr2e-4-bs8-300-identity": ["--learning_rate", "2e-4", "--per_device_train_batch_size", "8", "--max_steps", "300", "--eval_steps", "50", "--head_init", "identity"],
}
TASKS = ["SST-2", "TREC"]
SEEDS = [13]
CELLS = [(f"{cfg}/{t}-{s}", ["--task_name", t, "--seed", str(s), "--max_test_examples", "200", *args])
         for t in TASKS for s in SEEDS for cfg, args in CONFIGS.items()]
