#!/usr/bin/env bash
# Training-step time of two coppice builds, in alternating one-process runs (A B, B A, A B, …):
#   bash scripts/bench-ab-steps.sh A/coppice B/coppice [model] [sparsity] [pairs] [steps]
# Each run is `coppice bench train --model M --sparsity S --rounds 1 --steps N`; the order is
# swapped every pair, so a drift of the host over the runs does not favour either build.
# Prints every pair and, for each build, the fastest and the median step time, and the median
# of the paired ratios A/B (> 1: B is faster). On a host whose memory is shared with others the
# fastest runs estimate the uncontended speed, the paired median the typical one.
set -euo pipefail
A=$1 B=$2 MODEL=${3:-cnn} SPARSITY=${4:-0.9} PAIRS=${5:-16} STEPS=${6:-10}
step_ms() {
  "$1" bench train --model "$MODEL" --sparsity "$SPARSITY" --rounds 1 --steps "$STEPS" 2>&1 |
    awk '/^(static|dense) / { ms = $(NF - 3) } END { print ms }'
}
as=() bs=()
for p in $(seq "$PAIRS"); do
  if (( p % 2 )); then a=$(step_ms "$A"); b=$(step_ms "$B"); else b=$(step_ms "$B"); a=$(step_ms "$A"); fi
  echo "pair $p: A $a ms  B $b ms"
  as+=("$a") bs+=("$b")
done
python3 - "${as[*]}" "${bs[*]}" <<'PY'
import statistics as st, sys
a = [float(v) for v in sys.argv[1].split()]
b = [float(v) for v in sys.argv[2].split()]
print(f"A fastest {min(a):.1f} median {st.median(a):.1f} ms | B fastest {min(b):.1f} "
      f"median {st.median(b):.1f} ms | median of A/B {st.median(x / y for x, y in zip(a, b)):.3f}, "
      f"fastest A / fastest B {min(a) / min(b):.3f} ({len(a)} pairs)")
PY
