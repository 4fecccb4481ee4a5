#!/usr/bin/env bash
# Issue-3 probe (see benchmarks/plans/mt_adapt_lr.py): reference multitask stage for TREC on the CPU,
# then pbft vs mt-pbft at a small adaptation learning rate. The checkpoint stays in /tmp (no weights
# are committed); its multitask_config.json is copied next to the results.
set -euo pipefail
cd "$(dirname "$0")/.."
MT=${MTFT_MT_CHECKPOINT:-/tmp/mt-trec-reference}
OUT=benchmarks/results/mt_adapt_lr
[ -f "$MT/multitask_config.json" ] || mtft-nlp multitask --target trec --sources all --seed 42 --eval_steps 500 \
    --output_dir "$MT" --disable_tqdm true
mkdir -p "$OUT" && cp "$MT/multitask_config.json" "$OUT/"
MTFT_MT_CHECKPOINT="$MT" python benchmarks/run_cells.py --plan benchmarks/plans/mt_adapt_lr.py --out "$OUT"
