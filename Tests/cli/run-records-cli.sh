#!/usr/bin/env bash
# Run records and plots through the `coppice` command (usage: run-records-cli.sh COPPICE),
# issue 17:
#  1. `train --json` carries coppice_version, every training and sparse-training setting as
#     plain values (learning-rate schedule, distribution and partitions as objects) and the
#     schedule's events in structured form, for C-GaP, RigL with ERK and a step schedule, and
#     dense (no sparse_training, no events).
#  2. `compare` writes accuracy.svg (a zoomed panel and a 0–100% panel, Okabe–Ito colours, one
#     marker shape per method), sparsity.svg (sparsity per epoch per method and the target
#     line) and layer-sparsity.svg, all well-formed XML; rendered to PNG with rsvg-convert
#     when it is installed (scripts/install-deps.sh installs it).
set -euo pipefail
COPPICE=$(realpath "${1:-.build/debug/coppice}")
PYTHON="${PYTHON:-python3}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "run-records-cli: FAIL: $*" >&2; exit 1; }
run() {
  "$COPPICE" train --model mlp --seed 1 --threads 2 --limit-train 300 --limit-test 100 "$@" \
    > "$work/log" 2>&1 || { cat "$work/log"; fail "coppice train $*"; }
}

run --method cgap --partitions 3 --epochs 4 --json "$work/cgap.json"
run --method rigl --distribution erk --schedule step --lr-step-epochs 2 --gamma 0.5 \
  --update-interval 2 --epochs 2 --json "$work/rigl.json"
run --method dense --epochs 1 --json "$work/dense.json"

# `--version` prints the version, then the run-time instruction sets in parentheses.
"$PYTHON" - "$work" "$("$COPPICE" --version | cut -d' ' -f1)" <<'EOF' || fail "train --json records"
import json, sys
work, version = sys.argv[1], sys.argv[2]
def load(name):
    with open(f"{work}/{name}.json") as f:
        return json.load(f)

cgap, rigl, dense = load("cgap"), load("rigl"), load("dense")
for r in (cgap, rigl, dense):
    assert r["coppice_version"] == version, r["coppice_version"]
    t = r["training"]
    assert t["optimizer"] == "sgd" and t["momentum"] == 0.9 and t["weight_decay"] == 0.0005, t
    assert t["batch_size"] == 128 and t["steps_per_epoch"] == 3 and t["seed"] == 1, t
    assert t["nesterov"] is False and t["warmup_epochs"] == 0 and t["label_smoothing"] == 0, t

spe = cgap["training"]["steps_per_epoch"]
assert cgap["training"]["lr_schedule"] == {"kind": "cosine", "minimum": 0}, cgap["training"]
s = cgap["sparse_training"]
assert s["method"] == "cgap" and s["sparsity"] == 0.9 and s["rounds"] == 1, s
assert s["partitions"] == {"kind": "balanced", "count": 3, "balance": "flops"}, s["partitions"]
assert s["effective_partitions"] == [["fc1.weight"], ["fc2.weight"], ["fc3.weight"]], s
assert s["distribution"] == {"kind": "uniform"}, s["distribution"]
assert s["gap_step_length"] == spe and s["gap_step_epochs"] == 1, s
assert s["gap_prune"] == "layer" and s["pgap_merge"] == "average", s
assert s["reset_optimizer_state"] is True and s["restart_lr_per_step"] is False, s

events = cgap["schedule_events"]
kinds = [e["kind"] for e in events]
assert kinds == ["start", "grow", "prune", "grow", "prune", "grow", "final_prune"], kinds
for e in events:
    assert set(e) == {"kind", "step", "epoch", "partition", "layers", "sparsity"}, e
    assert e["epoch"] == e["step"] / spe and 0 <= e["sparsity"] <= 1, e
grows = [e for e in events if e["kind"] == "grow"]
assert [e["partition"] for e in grows] == [0, 1, 2], grows
assert [e["layers"] for e in grows] == s["effective_partitions"], grows
assert all(e["sparsity"] == 0 for e in grows), grows
assert [e["epoch"] for e in grows] == [0, 1, 2], grows
final = next(e for e in events if e["kind"] == "final_prune")
assert abs(final["sparsity"] - 0.9) < 1e-3 and final["epoch"] == 3, final
assert len(events) == len(cgap["events"]), (len(events), len(cgap["events"]))

lr = rigl["training"]["lr_schedule"]
assert lr == {"kind": "step", "step_size": 2 * 3, "gamma": 0.5}, lr
s = rigl["sparse_training"]
assert s["method"] == "rigl" and s["distribution"] == {"kind": "erk", "power": 1}, s
assert s["update_interval"] == 2 and s["drop_fraction"] == 0.3, s
assert s["effective_partitions"] == [], s
kinds = {e["kind"] for e in rigl["schedule_events"]}
assert kinds >= {"start", "mask_update"}, kinds

assert "sparse_training" not in dense and dense["schedule_events"] == [], dense.keys()
print("run-records-cli: train --json records checked (cgap, rigl, dense)")
EOF

"$COPPICE" compare --model mlp --methods dense,gmp,cgap --partitions 3 --epochs 4 --seed 1 \
  --threads 2 --limit-train 300 --limit-test 100 --out "$work/compare" > "$work/log" 2>&1 \
  || { cat "$work/log"; fail "coppice compare"; }
"$PYTHON" - "$work/compare" <<'EOF' || fail "compare plots"
import sys, xml.etree.ElementTree as ET
out = sys.argv[1]
ns = "{http://www.w3.org/2000/svg}"
def load(name):
    with open(f"{out}/{name}") as f:
        text = f.read()
    return text, ET.fromstring(text)

text, svg = load("accuracy.svg")
clips = [c.get("id") for c in svg.iter(ns + "clipPath")]
assert clips == ["clip-main", "clip-full"], clips
assert "zoomed to the results" in text and "0–100%" in text
lines = [p for p in svg.iter(ns + "polyline")]
assert len(lines) == 2 * 3, len(lines)  # every method in both panels
colours = [p.get("stroke") for p in lines[:3]]
assert colours == ["#000000", "#E69F00", "#56B4E9"], colours  # Okabe–Ito
# One marker shape per method: circles for the first, squares (4-point polygons) for the
# second, triangles (3-point polygons) for the third.
assert any(c.get("fill") == "#000000" for c in svg.iter(ns + "circle"))
shapes = {len(p.get("points").split()) for p in svg.iter(ns + "polygon") if p.get("fill") == "#E69F00"}
assert shapes == {4}, shapes
shapes = {len(p.get("points").split()) for p in svg.iter(ns + "polygon") if p.get("fill") == "#56B4E9"}
assert shapes == {3}, shapes

text, svg = load("sparsity.svg")
assert "target 90%" in text, "no target line label"
dashed = [l for l in svg.iter(ns + "line") if l.get("stroke-dasharray")]
assert len(dashed) == 1, "one dashed target line"
lines = list(svg.iter(ns + "polyline"))
assert len(lines) == 3 and all(len(l.get("points").split()) == 4 for l in lines), "per epoch"

text, svg = load("layer-sparsity.svg")
assert len(list(svg.iter(ns + "rect"))) > 3
with open(f"{out}/results.md") as f:
    md = f.read()
assert "sparsity.svg" in md and "layer-sparsity.svg" in md and "accuracy.svg" in md
print("run-records-cli: compare plots checked (accuracy, sparsity, layer-sparsity)")
EOF
if command -v rsvg-convert > /dev/null; then
  for plot in accuracy sparsity layer-sparsity; do
    rsvg-convert "$work/compare/$plot.svg" -o "$work/$plot.png" || fail "rsvg-convert $plot.svg"
    [ -s "$work/$plot.png" ] || fail "empty $plot.png"
  done
  echo "run-records-cli: rendered accuracy, sparsity and layer-sparsity to PNG with rsvg-convert"
else
  echo "run-records-cli: rsvg-convert not installed; plots checked as XML only"
fi
echo "run-records-cli: passed"
