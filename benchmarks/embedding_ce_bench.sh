#!/usr/bin/env bash
# The embedding-method benchmark of issue 14 (the cross-entropy recipe; docs/RESULTS.md section 8, kept for comparison): base rows first, so that a cut run still has them,
# then the multitask rows, the SetFit peer (3 seeds), the task-selection rows, their ablations (3 seeds, one at a
# time), the sweep of the number of finetuning tasks, then the remaining seeds of the peer and of the ablations.
# Resumable: rerun to continue. Results: benchmarks/results/embedding_ce (cells/*/results.json, multitask/*).
set -euo pipefail
cd "$(dirname "$0")/.."
cfg=benchmarks/configs/embedding_ce.yaml
single=(SST-2 SST-5 MR CR MPQA Subj TREC CoLA)
mtft-nlp run --config "$cfg" --rows embed-zero-shot embed-adapt embed-ft
mtft-nlp run --config "$cfg" --rows mt-embed-zero-shot mt-embed-adapt mt-embed-ft
mtft-nlp run --config "$cfg" --rows setfit --targets "${single[@]}" --seeds 13 21 42
mtft-nlp run --config "$cfg" --rows mt-sel-embed-zero-shot mt-sel-embed-adapt mt-sel-embed-ft
for seed in 13 21 42; do  # one seed on every target first, so that a cut run still covers all targets
  mtft-nlp run --config "$cfg" --rows embedding-ablations --seeds "$seed"
done
for target in MR SST-5 TREC; do  # accuracy against the number of finetuning tasks (the paper's Figure 3b shape)
  mtft-nlp sweep --config "$cfg" --target "$target" --vary num_tasks 1 2 4 8 --method embedding --seeds 13 21 42 \
    --output_dir "benchmarks/results/embedding_sweep/$target"
done
mtft-nlp run --config "$cfg" --rows setfit --targets "${single[@]}"
mtft-nlp run --config "$cfg" --rows embedding-ablations
