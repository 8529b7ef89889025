#!/usr/bin/env python3
"""Summarises scripts/compare-issue16.sh: one table per model with every seed's final test
accuracy, the mean ± half the spread (max − min over seeds), and the final sparsity.
Usage: python3 scripts/issue16-tables.py [docs/results/issue16] > docs/results/issue16/tables.md"""

from __future__ import annotations

import json
import pathlib
import sys

ROOT = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "docs/results/issue16")
ROWS = [  # (config directory, method json, label)
    ("uniform", "dense", "dense"),
    ("uniform", "static", "static, uniform"),
    ("uniform", "gmp", "GMP, uniform"),
    ("uniform", "rigl", "RigL, uniform"),
    ("uniform", "cgap", "C-GaP layer prune, uniform"),
    ("global", "cgap", "C-GaP global prune (non-uniform)"),
    ("erk", "static", "static, ERK"),
    ("erk", "gmp", "GMP, ERK"),
    ("erk", "rigl", "RigL, ERK"),
    ("erk", "cgap", "C-GaP layer prune, ERK"),
]


def value(summary: dict, *keys: str) -> float:
    for k in keys:
        if k in summary:
            return float(summary[k])
    raise KeyError(keys)


for model_dir in sorted(p for p in ROOT.iterdir() if p.is_dir()):
    seeds = sorted(p for p in model_dir.iterdir() if p.is_dir() and p.name.startswith("seed"))
    if not seeds:
        continue
    first = None
    lines = [f"## {model_dir.name}", ""]
    header = "| method | " + " | ".join(s.name for s in seeds) + " | mean ± half-spread | sparsity | layer sparsity min–max |"
    lines += [header, "|" + " --- |" * (4 + len(seeds))]
    for config, method, label in ROWS:
        accs, sparsities, spreads = [], [], []
        for seed in seeds:
            f = seed / config / f"{method}.json"
            if not f.exists():
                accs.append(None)
                continue
            s = json.loads(f.read_text())
            first = first or s
            accs.append(value(s, "test_accuracy", "testAccuracy"))
            sparsities.append(value(s, "sparsity"))
            layer = [float(l["sparsity"]) for l in s.get("layers", [])]
            if layer:
                spreads.append((min(layer), max(layer)))
        done = [a for a in accs if a is not None]
        if not done:
            continue
        mean = sum(done) / len(done)
        half = (max(done) - min(done)) / 2
        cells = " | ".join("–" if a is None else f"{a:.2f}%" for a in accs)
        sp = f"{100 * sum(sparsities) / len(sparsities):.1f}%" if sparsities else "–"
        lo = min(x for x, _ in spreads) if spreads else 0
        hi = max(y for _, y in spreads) if spreads else 0
        lines.append(f"| {label} | {cells} | {mean:.2f} ± {half:.2f} | {sp} | {100*lo:.0f}–{100*hi:.0f}% |")
    if first:
        lines += ["", f"{first.get('epochs', '?')} epochs, {first.get('train_images', first.get('trainImages', '?'))} "
                  f"training / {first.get('test_images', first.get('testImages', '?'))} test images, batch "
                  f"{first.get('batch_size', first.get('batchSize', '?'))}, seeds {', '.join(s.name[4:] for s in seeds)}.", ""]
    print("\n".join(lines))
