#!/usr/bin/env bash
# Fixed-seed training runs whose exported weights must not change under a refactor.
#   bash scripts/fingerprint.sh [path/to/coppice] > after.txt; diff before.txt after.txt
# Each line: the run, the SHA-256 of its exported model (all weights, CSR for sparse ones) and
# its final test accuracy. Runs are small (a few seconds in all) and use 2 threads: the kernels
# split work statically, so the same thread count gives the same bits.
set -euo pipefail
COPPICE="${1:-.build/release/coppice}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
run() {
  local name="$1"; shift
  "$COPPICE" train --seed 3 --threads 2 --limit-train 2000 --limit-test 500 "$@" \
    --export "$WORK/$name.cpx" > "$WORK/$name.log" 2>&1 || { echo "$name FAILED"; cat "$WORK/$name.log"; return 1; }
  local acc; acc=$(grep -o 'test accuracy [0-9.]*%' "$WORK/$name.log" | tail -1)
  echo "$name $(sha256sum < "$WORK/$name.cpx" | cut -c1-16) $acc"
}
for m in dense static oneshot gmp set rigl; do
  run "mlp-$m" --model mlp --method "$m" --sparsity 0.9 --epochs 4 --update-interval 5
done
run mlp-cgap --model mlp --method cgap --sparsity 0.9 --partitions 3 --epochs 4
run mlp-cgap-steps --model mlp --method cgap --sparsity 0.8 --partitions 2 --step-steps 7 --rounds 2 --epochs 3
run mlp-pgap --model mlp --method pgap --sparsity 0.9 --partitions 3 --rounds 2 --epochs 3
run mlp-erk --model mlp --method static --distribution erk --sparsity 0.8 --epochs 2
run cnn-cgap --model cnn --method cgap --sparsity 0.9 --partitions 4 --epochs 5 --limit-train 512
run resnet20-static --model resnet20 --method static --sparsity 0.9 --epochs 1 --limit-train 256
