#!/usr/bin/env bash
# Data-parallel strong scaling on this machine (usage: bench-distributed.sh COPPICE [OUT.md]):
# the same cnn training (global batch 128, 1 kernel thread per process) as one process and as
# 2 MPI ranks, dense and 90% sparse (static masks), measured in one run; prints images/s, the
# speedup and the gradient volume each step sums over the ranks.
set -euo pipefail
COPPICE=$(realpath "${1:-.build/release/coppice}")
OUT=${2:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ARGS=(train --model cnn --epochs 1 --limit-train 7680 --limit-test 500 --batch-size 128 --threads 1)
rate() { "${PYTHON:-python3}" -c "import json,sys; print(round(json.load(open(sys.argv[1]))['images_per_second']))" "$1"; }
table="| model | ranks × threads | images/s | speedup | gradients summed per step |
| --- | --- | --- | --- | --- |"
for method in dense static; do
  extra=()
  [ "$method" = static ] && extra=(--method static --sparsity 0.9)
  "$COPPICE" "${ARGS[@]}" "${extra[@]}" --json "$work/$method-1.json" > "$work/$method-1.log"
  mpirun --allow-run-as-root -np 2 "$COPPICE" "${ARGS[@]}" "${extra[@]}" \
    --json "$work/$method-2.json" > "$work/$method-2.log"
  one=$(rate "$work/$method-1.json")
  two=$(rate "$work/$method-2.json")
  volume=$(grep -o "sums [0-9.]* MB" "$work/$method-2.log" | grep -o "[0-9.]* MB")
  name="cnn $([ "$method" = static ] && echo "90% sparse" || echo dense)"
  speedup=$("${PYTHON:-python3}" -c "print(f'{$two / $one:.2f}×')")
  table+="
| $name | 1 × 1 | $one | 1.00× | – |
| $name | 2 × 1 | $two | $speedup | $volume |"
done
echo "$table"
if [ -n "$OUT" ]; then echo "$table" > "$OUT"; echo "wrote $OUT"; fi
