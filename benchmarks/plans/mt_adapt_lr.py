"""Issue-3 probe: does a smaller adaptation learning rate keep more of the multitask stage?
Target TREC (multitask hurt prompt-based FT there by 2.9 points at the default lr 3e-4).
Rows pbft and mt-pbft at lr 2e-5 (batch 8, 200 steps, dev every 50), 5 seeds, starting from the
reference multitask checkpoint written by benchmarks/mt_adapt_lr.sh (CPU run). Also mt-pbft at the
default lr 3e-4 from the same checkpoint: the same-device control for the GPU's mt-pbft row and for the
task-selection rows measured on this CPU.

    bash benchmarks/mt_adapt_lr.sh
"""
import os

MT = os.environ.get("MTFT_MT_CHECKPOINT", "/tmp/mt-trec-reference")
CELLS = []
for seed in (13, 21, 42, 87, 100):
    common = ["--task_name", "TREC", "--seed", str(seed), "--max_steps", "200", "--eval_steps", "50",
              "--learning_rate", "2e-5", "--max_test_examples", "1000"]
    CELLS.append((f"pbft-lr2e-5/TREC-{seed}", [*common, "--row", "pbft-lr2e-5"]))
    CELLS.append((f"mt-pbft-lr2e-5/TREC-{seed}", [*common, "--model_name_or_path", MT, "--row", "mt-pbft-lr2e-5"]))
for seed in (13, 21, 42, 87, 100):
    CELLS.append((f"mt-pbft/TREC-{seed}", ["--task_name", "TREC", "--seed", str(seed), "--max_steps", "200",
                                           "--eval_steps", "50", "--max_test_examples", "1000",
                                           "--model_name_or_path", MT, "--row", "mt-pbft"]))
