#!/usr/bin/env bash
# `coppice bench train` (usage: bench-train-cli.sh COPPICE), issue 14: dense and static-sparse
# configurations in interleaved rounds, the ratios against the first, and the --profile
# breakdown (every leaf layer, the residual blocks' own rows, the step phases, unaccounted
# time), printed and in --json; --grown weights kept dense; bad --sparsity lists refused.
set -euo pipefail
COPPICE=$(realpath "${1:-.build/debug/coppice}")
PYTHON="${PYTHON:-python3}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "bench-train-cli: FAIL: $*" >&2; exit 1; }

"$COPPICE" bench train --model resnet20 --sparsity 0,0.9 --batch-size 8 --rounds 2 --steps 1 \
  --profile --threads 2 --json "$work/r.json" > "$work/log" 2>&1 || { cat "$work/log"; fail "run"; }
grep -q "static 90%" "$work/log" || fail "no static 90% row"
grep -q "residual add + ReLU" "$work/log" || fail "no residual rows in the profile"
grep -q "^unaccounted" "$work/log" || fail "no unaccounted row"

"$PYTHON" - "$work/r.json" <<'PY' || fail "--json"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["model"] == "resnet20" and r["rounds"] == 2 and r["steps"] == 1, r
labels = [c["label"] for c in r["configurations"]]
assert labels == ["dense", "static 90%"], labels
dense, sparse = r["configurations"]
assert dense["speedup_vs_first"] == 1.0 and len(dense["round_step_ms"]) == 2
assert sparse["step_ms"] > 0 and sparse["speedup_vs_first"] > 0
assert [p["label"] for p in r["profiles"]] == labels
for p in r["profiles"]:
    names = [l["name"] for l in p["layers"]]
    # 19 convolutions + 19 batch norms + 9 residual rows + conv1/bn1 stem + pool + fc
    assert sum(n.endswith("(Conv2d)") for n in names) == 19, names
    assert sum("residual" in n for n in names) == 9, names
    phases = p["phases_ms"]
    for key in ["data loading and augmentation", "loss", "optimizer", "unaccounted"]:
        assert key in phases, (key, phases)
    total = sum(l["forward_ms"] + l["backward_ms"] for l in p["layers"])
    total += sum(v for k, v in phases.items())
    assert abs(total - p["step_ms"]) < 1e-6 * max(1, p["step_ms"]) + 1e-9, (total, p["step_ms"])
print("bench-train-cli: json ok")
PY

# --grown: the named weight stays dense in the sparse configuration (a C-GaP step with that
# partition grown), named in the header and the JSON; an unknown name is refused by name.
"$COPPICE" bench train --model cnn --sparsity 0.9 --grown conv2.weight --batch-size 4 \
  --rounds 1 --steps 1 --threads 2 --json "$work/g.json" > "$work/glog" 2>&1 ||
  { cat "$work/glog"; fail "--grown run"; }
grep -q "^grown (dense in every sparse configuration): conv2.weight" "$work/glog" ||
  fail "--grown not in the header"
"$PYTHON" -c 'import json, sys; c = json.load(open(sys.argv[1]))["configurations"][0];
assert c["grown"] == ["conv2.weight"], c' "$work/g.json" || fail "--grown not in the json"
if "$COPPICE" bench train --model cnn --sparsity 0.9 --grown conv9.weight --rounds 1 --steps 1 \
  > "$work/gbad" 2>&1; then fail "--grown conv9.weight accepted"; fi
grep -q "no weight conv9.weight" "$work/gbad" || fail "unknown --grown weight not named"

for bad in "0,1" "x" "0,,0.9" "-0.1"; do
  if "$COPPICE" bench train --sparsity "$bad" --rounds 1 --steps 1 > /dev/null 2>&1; then
    fail "--sparsity $bad accepted"
  fi
done
echo "bench-train-cli: passed"
