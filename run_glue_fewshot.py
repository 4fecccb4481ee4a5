#!/usr/bin/env python
"""Prompt-based few-shot finetuning (LM-BFF) of a masked LM on one task and one seed.

HF-examples style: every ``TrainingArguments`` flag works, plus the model and prompt/data
arguments below (``--help`` lists them all). Runs with ``python`` (one process),
``torchrun --nproc_per_node N`` (CPU/GPU DDP) or ``accelerate launch`` (GPUs).

    python run_glue_fewshot.py --task_name sst-2 --seed 13 --output_dir runs/sst2-13
    python run_glue_fewshot.py --task_name rte --seed 42 --zero_shot --output_dir runs/rte-zs
    accelerate launch run_glue_fewshot.py --task_name sst-2 --model_name_or_path roberta-large \\
        --paper_hparams --seed 13 --output_dir runs/sst2-13-roberta

Writes ``<output_dir>/results.json`` (and the best model to ``<output_dir>/best``);
``mtft-nlp table <dir>`` aggregates them.
"""

import sys

from mtft_nlp.cli import run_glue_main

if __name__ == "__main__":
    sys.exit(run_glue_main())
