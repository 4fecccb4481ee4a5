#!/usr/bin/env bash
# Issue 15's Table 1 for the prompt-based method (docs/RESULTS.md section 3): rows pbft, mt-sel-pbft, mt-random-pbft,
# mt-nocon-pbft, mt-nodiv-pbft, one target at a time so that a cut run leaves complete targets. Each target
# needs up to four 1000-step multitask stages (about 8.5 min each at one thread on the 2-core CPU, two at a
# time), then 25 cells (60-95 s each, two at a time): 30-40 min a target (measured: TREC 33 min, SST-2 38 min).
# Resumable: rerun to continue. Results: benchmarks/results/prompt_selection.
set -euo pipefail
cd "$(dirname "$0")/.."
cfg=benchmarks/configs/prompt_selection.yaml
for target in ${TARGETS:-MR SST-5 TREC SST-2 CR MPQA Subj CoLA SNLI QNLI RTE MRPC}; do
  mtft-nlp run --config "$cfg" --targets "$target" --rows pbft ablations
done
