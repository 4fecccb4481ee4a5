"""Issue-6 comparison: LoRA adapters vs full prompt-based FT on a few targets, same reduced protocol as
benchmarks/plans/prompt_ft.py (200 steps, dev every 50, test capped at 1000, batch 8), embedded MiniLM.
LoRA rank 8 on query/value plus the MLM head transform trained in full (the MiniLM checkpoint has no
trained head), lr 1e-3 (adapters want a larger rate than full FT).

    python benchmarks/run_cells.py --plan benchmarks/plans/lora.py --out benchmarks/results/lora
"""
CELLS = []
for task in ("SST-2", "TREC", "MRPC"):
    for seed in (13,):
        common = ["--task_name", task, "--seed", str(seed), "--max_steps", "200", "--eval_steps", "50",
                  "--max_test_examples", "1000"]
        CELLS.append((f"lora/{task}-{seed}", [*common, "--use_lora", "--lora_r", "8", "--learning_rate", "1e-3",
                                              "--lora_modules_to_save", "cls.predictions.transform", "--row", "pbft-lora"]))
        CELLS.append((f"full/{task}-{seed}", [*common, "--row", "pbft-full"]))
