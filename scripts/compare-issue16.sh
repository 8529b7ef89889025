#!/usr/bin/env bash
# Issue 16, item 8: C-GaP with per-layer and global prunes against dense,
# static, GMP and RigL at 90% sparsity, uniform and non-uniform (ERK for the baselines and for
# C-GaP layer; C-GaP global is non-uniform by its ranking), on two seeds.
#   [RESULTS=DIR] [ROUNDS=R] bash scripts/compare-issue16.sh MODEL EPOCHS LIMIT_TRAIN LIMIT_TEST SEED...
# Writes DIR/MODEL/seedS/{uniform,global,erk}/ (coppice compare output); DIR defaults to
# docs/results/issue16, R (GaP rounds of one-epoch steps) to 1.
# Every compare runs under the shared build lock, one at a time.
set -euo pipefail
COPPICE="${COPPICE:-.build/release/coppice}"
model="$1" epochs="$2" train="$3" test="$4"; shift 4
for seed in "$@"; do
  base="${RESULTS:-docs/results/issue16}/$model/seed$seed"
  common=(--model "$model" --epochs "$epochs" --limit-train "$train" --limit-test "$test"
    --threads 2 --seed "$seed" --sparsity 0.9 --partitions 4 --step-epochs 1 --rounds "${ROUNDS:-1}")
  run() {
    local out="$base/$1"; shift
    [ -f "$out/done" ] && return 0
    flock /tmp/coppice-build.lock "$COPPICE" compare "${common[@]}" --out "$out" "$@" \
      > "$out.log" 2>&1 || { echo "FAILED: $out"; tail -5 "$out.log"; return 1; }
    touch "$out/done"
  }
  mkdir -p "$base"
  run uniform --methods dense,static,gmp,rigl,cgap --distribution uniform
  run global --methods cgap --distribution uniform --gap-prune global
  run erk --methods static,gmp,rigl,cgap --distribution erk
done
