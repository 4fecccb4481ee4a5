#!/usr/bin/env bash
# The embedding-method benchmark, base rows first (so that a cut run still has them), then the multitask rows.
# Resumable: rerun to continue. Results: benchmarks/results/embedding (cells/*/results.json, multitask/*).
set -euo pipefail
cd "$(dirname "$0")/.."
cfg=benchmarks/configs/embedding.yaml
mtft-nlp run --config "$cfg" --rows embed-zero-shot embed-adapt embed-ft
mtft-nlp run --config "$cfg" --rows mt-embed-zero-shot mt-embed-adapt mt-embed-ft
mtft-nlp run --config "$cfg"
