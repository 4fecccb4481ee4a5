#!/usr/bin/env bash
# The embedding-method benchmark (docs/RESULTS.md section 8) with the contrastive recipe chosen on dev sets
# (benchmarks/embedding_recipe_search.sh): the base rows first and the SetFit peer on all 5 seeds (so that a cut run
# already has the comparison with the peer), then embed-ft on every target, the finetuning rows after the stage on the selected
# sources and on all sources, the zero-shot and adaptation rows, and the task-selection ablations one seed at a time.
# Resumable: rerun to continue. Results: benchmarks/results/embedding (cells/*/results.json, multitask/*); the
# cross-entropy recipe's earlier numbers stay in benchmarks/results/embedding_ce (config benchmarks/configs/embedding_ce.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
cfg=benchmarks/configs/embedding.yaml
single=(SST-2 SST-5 MR CR MPQA Subj TREC CoLA)
mtft-nlp run --config "$cfg" --rows embed-ft --targets "${single[@]}"
mtft-nlp run --config "$cfg" --rows setfit --targets "${single[@]}"
mtft-nlp run --config "$cfg" --rows embed-ft
mtft-nlp run --config "$cfg" --rows mt-sel-embed-ft   # the rows the goals compare first, the cheap ones after
mtft-nlp run --config "$cfg" --rows mt-embed-ft
mtft-nlp run --config "$cfg" --rows embed-zero-shot embed-adapt mt-sel-embed-zero-shot mt-sel-embed-adapt \
  mt-embed-zero-shot mt-embed-adapt
for seed in 13 21 42 87 100; do  # one seed on every target first, so that a cut run still covers all targets
  mtft-nlp run --config "$cfg" --rows embedding-ablations --seeds "$seed"
done
