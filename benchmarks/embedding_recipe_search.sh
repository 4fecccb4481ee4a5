#!/usr/bin/env bash
# The dev-only search of the embedding method's contrastive recipe (issue 26; docs/RESULTS.md section 8): the
# cross-entropy recipe and the main contrastive candidate on the k-shot dev sets of the 8 single-sentence targets
# x split seeds 13, 21 (row embed-ft from the base MiniLM), then the secondary candidates (half the batch, fewer
# steps, a jointly trained head, the temperature) on 4 of them. Test sets capped at 100 examples, never read.
# Resumable.
set -euo pipefail
cd "$(dirname "$0")/.."
for c in ce-b16-50 supcon-t0.07-b32-50 supcon-t0.07-b16-50 supcon-t0.07-b32-30 supconce-t0.07-b32-50 supcon-t0.1-b32-50; do
  mtft-nlp run --config "benchmarks/configs/embedding_recipe/$c.yaml"
done
# the stage's objective, with the recipe chosen above for the target (benchmarks/configs/embedding_recipe_stage/)
for c in ce-e16 supcon-e32-t2; do
  mtft-nlp run --config "benchmarks/configs/embedding_recipe_stage/$c.yaml"
done
