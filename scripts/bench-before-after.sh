#!/usr/bin/env bash
# Epoch time of two coppice builds, interleaved (A B A B …), dense and static sparse:
#   bash scripts/bench-before-after.sh OLD_COPPICE NEW_COPPICE [model] [repeats] [images]
# Prints one line per run and, per configuration, the median epoch seconds of each build and
# the median of the paired ratios old/new.
set -euo pipefail
OLD=$1 NEW=$2 MODEL=${3:-cnn} REPEATS=${4:-3} IMAGES=${5:-6400}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
epoch_seconds() {  # coppice, method args… → seconds of the one epoch
  local bin=$1; shift
  "$bin" train --model "$MODEL" --epochs 1 --limit-train "$IMAGES" --limit-test 100 --threads 2 \
    "$@" --json "$work/r.json" > /dev/null 2>&1
  python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['history'][0]['seconds'])" "$work/r.json"
}
for config in "dense" "static 0.8" "static 0.9" "static 0.95"; do
  set -- $config
  args=(--method "$1"); [ $# -gt 1 ] && args+=(--sparsity "$2")
  olds=() news=()
  for r in $(seq "$REPEATS"); do
    olds+=("$(epoch_seconds "$OLD" "${args[@]}")")
    news+=("$(epoch_seconds "$NEW" "${args[@]}")")
  done
  python3 - "$config" "${olds[*]}" "${news[*]}" <<'PY'
import statistics, sys
config, olds, news = sys.argv[1], [float(v) for v in sys.argv[2].split()], [float(v) for v in sys.argv[3].split()]
ratio = statistics.median(o / n for o, n in zip(olds, news))
print(f"{config:<12} before {statistics.median(olds):6.2f} s  after {statistics.median(news):6.2f} s  "
      f"after is {ratio:.2f}× faster (median of {len(olds)} pairs)")
PY
done
