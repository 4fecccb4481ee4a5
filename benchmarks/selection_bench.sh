#!/usr/bin/env bash
# Issue-4 benchmark on 2 CPU cores: two single-threaded loops over the targets (one target at a time
# each, so every finished target is complete), each target through the experiment runner
# (`mtft-nlp run`, resumable: rerun this script to continue). Checkpoints stay in $OUT (default
# /tmp/selbench); result files, selections and multitask metadata are copied to
# benchmarks/results/selection/ after every target.
#     bash benchmarks/selection_bench.sh [config] [rows...]
set -uo pipefail
cd "$(dirname "$0")/.."
CONFIG=${1:-benchmarks/configs/selection.yaml}; shift || true
ROWS=("$@")
OUT=${MTFT_BENCH_OUT:-/tmp/selbench}
DEST=benchmarks/results/selection
sync_results() {
    (cd "$OUT" && find . \( -name results.json -o -name multitask_config.json -o -path './selection/*.json' \
        -o -name config.yaml \) -print0 | tar --null -T - -cf -) | (mkdir -p "$DEST" && tar -C "$DEST" -xf -)
}
loop() {
    for t in "$@"; do
        OMP_NUM_THREADS=1 mtft-nlp run --config "$CONFIG" --targets "$t" --output_dir "$OUT" \
            ${ROWS[@]:+--rows "${ROWS[@]}"} || echo "target $t: runner failed (rerun to retry)"
        sync_results
    done
}
loop SST-2 MR MPQA TREC SNLI RTE &
loop SST-5 CR Subj CoLA QNLI MRPC &
wait
sync_results
