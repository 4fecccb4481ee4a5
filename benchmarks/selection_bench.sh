#!/usr/bin/env bash
# Issue-4 benchmark on 2 CPU cores through the experiment runner (`mtft-nlp run`, resumable: rerun this
# script to continue). Two single-threaded loops, one target at a time each; per loop, first the
# "+ task selection" rows (mt-sel-zero-shot, mt-sel-pbft) for each of its targets, then the selection
# ablation rows (mt-random-pbft, mt-nocon-pbft, mt-nodiv-pbft; `--rows ablations`) for the same targets.
# Checkpoints stay in $MTFT_BENCH_OUT (default /tmp/selbench); result files, selections and multitask
# metadata are copied to benchmarks/results/selection/ after every (target, phase).
#     bash benchmarks/selection_bench.sh                       # the targets below
#     LOOP_A="CR RTE" LOOP_B="CoLA MRPC" bash benchmarks/selection_bench.sh   # more targets
set -uo pipefail
cd "$(dirname "$0")/.."
CONFIG=${MTFT_BENCH_CONFIG:-benchmarks/configs/selection.yaml}
OUT=${MTFT_BENCH_OUT:-/tmp/selbench}
DEST=benchmarks/results/selection
LOOP_A=${LOOP_A:-"SST-2 MR"}
LOOP_B=${LOOP_B:-"SST-5 TREC"}
sync_results() {
    (cd "$OUT" && find . \( -name results.json -o -name multitask_config.json -o -path './selection/*.json' \) -print0 \
        | tar --null -T - -cf -) | (mkdir -p "$DEST" && tar -C "$DEST" -xf -)
}
loop() {
    for rows in "mt-sel-zero-shot mt-sel-pbft" "ablations"; do
        for t in "$@"; do
            # shellcheck disable=SC2086
            OMP_NUM_THREADS=1 mtft-nlp run --config "$CONFIG" --targets "$t" --output_dir "$OUT" --rows $rows \
                || echo "target $t ($rows): runner failed (rerun to retry)"
            sync_results
        done
    done
}
# shellcheck disable=SC2086
loop $LOOP_A &
# shellcheck disable=SC2086
loop $LOOP_B &
wait
sync_results
