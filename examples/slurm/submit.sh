#!/bin/bash
# Submits a valuelens run as a Slurm job array of SHARDS tasks and its merge as a job that
# starts when every task has succeeded. Prints the two job ids.
#   VALUELENS=/shared/valuelens VALUELENS_OUT=/shared/results/run \
#   VALUELENS_ARGS="--model smollm2-135m" bash examples/slurm/submit.sh 8
set -euo pipefail
shards="${1:-4}"
here="$(cd "$(dirname "$0")" && pwd)"
array=$(sbatch --parsable --export=ALL --array="0-$((shards - 1))" "$here/valuelens-array.sbatch")
merge=$(sbatch --parsable --export=ALL --dependency="afterok:${array%%;*}" "$here/valuelens-merge.sbatch")
echo "array job ${array%%;*} ($shards shards), merge job ${merge%%;*}"
