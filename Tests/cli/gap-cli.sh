#!/usr/bin/env bash
# GaP through the `coppice` command (usage: gap-cli.sh COPPICE), issue 16:
#  1. The GaP phase counts the partitions that take effect: the mlp has 3 layers, so
#     --partitions 4 runs κ=3 steps and --finetune-epochs 0 adds nothing.
#  2. Layers the distribution keeps dense are left out of the partitions, and the log says so.
#  3. --gap-prune global, the restart options and --pgap-merge partition run and end at the
#     target sparsity.
#  4. ERK with --keep-first-dense at 50% works (the dense layer is outside the budget).
set -euo pipefail
COPPICE=$(realpath "${1:-.build/debug/coppice}")
fail() { echo "gap-cli: FAIL: $*" >&2; exit 1; }
run() { "$COPPICE" train --model mlp --seed 1 --threads 2 --limit-train 300 --limit-test 100 "$@" 2>&1; }

out=$(run --method cgap --partitions 4 --finetune-epochs 0)
grep -q "3 epochs" <<<"$out" || fail "κ=3 should run 3 epochs: $(tail -2 <<<"$out")"
grep -q "partitions reduced from 4 to 3" <<<"$out" || fail "no κ note"

out=$(run --method cgap --partitions 3 --keep-first-dense --epochs 3)
grep -q "left out of the GaP partitions (kept dense by the distribution): fc1.weight" <<<"$out" \
  || fail "no note on fc1 left out"

out=$(run --method cgap --partitions 3 --gap-prune global --restart-lr-per-step \
  --restart-warmup-per-step --warmup-epochs 1 --restart-optimizer-per-step --epochs 4)
grep -q "global ranking over the whole model" <<<"$out" || fail "no global final prune"
grep -Eq "^total .* 90.00% +90.00%" <<<"$out" || fail "global C-GaP not at 90% in total"

out=$(run --method pgap --partitions 3 --pgap-merge partition --gap-prune global --epochs 2)
grep -Eq "^total .* 90.00% +90.00%" <<<"$out" || fail "P-GaP partition merge not at 90%"

out=$(run --method static --distribution erk --keep-first-dense --sparsity 0.5 --epochs 1)
grep -Eq "^fc2.weight .* 51.67%" <<<"$out" || fail "ERK keep-first-dense: fc2 not at 51.67%"

out=$(run --method rigl --reference-mask-updates --update-interval 2 --epochs 2)
grep -q "RigL drop fraction" <<<"$out" || fail "no RigL updates"
echo "gap-cli: passed"
