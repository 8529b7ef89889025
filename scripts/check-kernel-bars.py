#!/usr/bin/env python3
"""The sparse-kernel issue's (issue 3) acceptance bars, checked on a `coppice bench kernels` run.

    coppice bench kernels --json runs/bench-kernels.json
    python3 scripts/check-kernel-bars.py runs/bench-kernels.json [--markdown] [--strict]

Reads the JSON records of the run (one per measurement, in the order measured) and prints one
line per criterion, PASS / FAIL / PARTIAL / UNKNOWN / NOT RUN / EXEMPT:
  - forward at 90% sparsity >= 4x dense, forward at 80% >= 2x, backward at 90% >= 3x, on each
    of the four GEMM shapes of the issue;
  - break-even (sparse forward at least as fast as dense) at or below 60% sparsity, per
    conv-as-GEMM shape and per cnn convolution layer (cnn.conv1 exempt: too small to gain);
  - the dispatch (ck_sparse_prefer) never picks sparse where it measured slower;
then a count, and a note when the run's timings were unsteady. `make bench` runs it after the
bench. --markdown prints the verdicts as a Markdown list; --strict exits 1 when any is FAIL
(by default the exit status is 0: a benchmark is not a test).

Speedups and spreads come from the records' unrounded `timings_ms` (median, min, max of dense
and sparse); records written before that field existed fall back to the rounded `dense_ms`,
`sparse_ms`, `*_min_ms` and `*_spread` fields.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Dict, List, Optional, Tuple

ISSUE_SHAPES = [[256, 2304, 3136], [512, 4608, 784], [1024, 1024, 256], [4096, 1024, 128]]
CONV_GEMM_SHAPES = [[256, 2304, 3136], [512, 4608, 784]]  # the break-even bar applies to them
BREAK_EVEN_EXEMPT = {"cnn.conv1"}  # issue 3: "its first conv is too small to gain"
NOISY_SPREAD = 1.25  # rows whose timed runs disagree by more (max/min) are called noisy


class Measurement:
    """One JSON record: a dense and a sparse timing of one op on one product."""

    def __init__(self, record: Dict) -> None:
        self.op: str = record["op"]
        self.shape: List[int] = list(record["shape"])
        self.layer: Optional[str] = record.get("layer")
        self.sparsity: float = record["sparsity"]
        self.dispatch_sparse: bool = record["dispatch_sparse"]
        timings = record.get("timings_ms")
        if timings is not None:
            self.dense_ms, dense_min, dense_max = timings["dense"]
            self.sparse_ms, sparse_min, sparse_max = timings["sparse"]
            self.dense_spread = dense_max / dense_min
            self.sparse_spread = sparse_max / sparse_min
        else:
            self.dense_ms, self.sparse_ms = record["dense_ms"], record["sparse_ms"]
            self.dense_spread, self.sparse_spread = record["dense_spread"], record["sparse_spread"]
        self.speedup = self.dense_ms / self.sparse_ms

    @property
    def row_label(self) -> str:
        """The table's row label: the shape, or the layer and its shape."""
        shape = "x".join(map(str, self.shape))
        return f"{self.layer} {shape}" if self.layer else shape


def rounded(x: float) -> float:
    """Swift's Double.rounded(): half away from zero."""
    return math.copysign(math.floor(abs(x) + 0.5), x)


def percent(s: float) -> str:
    return "%g%%" % (rounded(s * 1000) / 10)


def same_sparsity(a: float, b: float) -> bool:
    return abs(a - b) < 1e-9


def speedup_criterion(products: List[Measurement], op: str, sparsity: float, bar: float) -> Tuple[str, str]:
    parts, missing, all_pass = [], [], True
    for shape in ISSUE_SHAPES:
        label = "x".join(map(str, shape))
        found = next(
            (m for m in products if m.op == op and m.shape == shape and same_sparsity(m.sparsity, sparsity)),
            None,
        )
        if found is None:
            missing.append(label)
            continue
        if found.speedup < bar:
            all_pass = False
        parts.append("%s %.2f×%s" % (label, found.speedup, " (FAIL)" if found.speedup < bar else ""))
    if not parts:
        status = "NOT RUN"
    elif not all_pass:
        status = "FAIL"
    else:
        status = "PASS" if not missing else "PARTIAL"
    text = (
        f"{op} at {percent(sparsity)} sparsity ≥ {'%g' % bar}× on each of the four GEMM shapes: "
        + (", ".join(parts) if parts else "—")
    )
    if missing:
        text += "; not measured: " + ", ".join(missing)
    return status, text


def break_even(label: str, exempt: bool, forward: List[Measurement]) -> Tuple[str, str]:
    """The smallest measured sparsity at which the sparse forward is at least as fast as dense."""
    ordered = sorted(forward, key=lambda m: m.sparsity)
    text = f"break-even (sparse forward ≥ dense) at or below 60% sparsity, {label}: "
    first = next((i for i, m in enumerate(ordered) if m.speedup >= 1), None)
    if first is not None:
        s = ordered[first].sparsity
        status = "PASS" if s <= 0.6 + 1e-9 else "FAIL"
        if first == 0 and status == "FAIL":
            # Sparse already wins at the smallest sparsity measured, which is above 60%: the run
            # says nothing about 60%.
            status = "UNKNOWN"
        if first == 0:
            text += (
                f"≤ {percent(s)} (already {'%.2f' % ordered[0].speedup}× at the smallest measured sparsity)"
            )
        else:
            a, b = ordered[first - 1], ordered[first]
            t = (1 - a.speedup) / (b.speedup - a.speedup)
            estimate = a.sparsity + t * (b.sparsity - a.sparsity)
            text += (
                f"measured {percent(s)} ({'%.2f' % a.speedup}× at {percent(a.sparsity)}, "
                f"{'%.2f' % b.speedup}× at {percent(s)}; interpolated ≈ {percent(estimate)})"
            )
    else:
        status = "FAIL"
        best = max(ordered, key=lambda m: m.speedup)
        text += (
            f"none up to {percent(ordered[-1].sparsity)} "
            f"(best {'%.2f' % best.speedup}× at {percent(best.sparsity)})"
        )
    if exempt:
        text += f" — {status} but exempt: issue 3 says the first conv is too small to gain"
        status = "EXEMPT"
    return status, text


def dispatch(measurements: List[Measurement]) -> Tuple[str, str]:
    """Sparse must never be chosen where it is slower. Backward of plain products is two separate
    decisions (input_grad, weight_grad), checked one by one."""
    decisions = [m for m in measurements if m.layer is not None or m.op != "backward"]
    wrong = [m for m in decisions if m.dispatch_sparse and m.speedup < 1]
    missed = [m for m in decisions if not m.dispatch_sparse and m.speedup > 1]
    text = (
        f"dispatch never picks sparse where it is slower: "
        f"{sum(m.dispatch_sparse for m in decisions)} of {len(decisions)} decisions sparse, "
        f"{len(wrong)} slower than dense"
    )
    if wrong:
        text += (
            " ("
            + ", ".join(
                f"{m.op} {m.layer or 'x'.join(map(str, m.shape))} @{percent(m.sparsity)} {'%.2f' % m.speedup}×"
                for m in wrong
            )
            + ")"
        )
    text += f"; dense kept where sparse was faster: {len(missed)}"
    if not decisions:
        return "NOT RUN", text
    return ("PASS" if not wrong else "FAIL"), text


def acceptance(measurements: List[Measurement]) -> List[Tuple[str, str]]:
    """One verdict per acceptance criterion of issue 3."""
    products = [m for m in measurements if m.layer is None]
    verdicts = [
        speedup_criterion(products, "forward", 0.9, 4),
        speedup_criterion(products, "forward", 0.8, 2),
        speedup_criterion(products, "backward", 0.9, 3),
    ]
    groups: List[Tuple[str, bool, List[Measurement]]] = []
    for shape in CONV_GEMM_SHAPES:
        forward = [m for m in products if m.op == "forward" and m.shape == shape]
        if forward:
            groups.append(("x".join(map(str, shape)), False, forward))
    layers: List[str] = []
    for m in measurements:
        if m.layer is not None and m.layer not in layers:
            layers.append(m.layer)
    for name in layers:
        forward = [m for m in measurements if m.op == "forward" and m.layer == name]
        label = f"{name} [{','.join(map(str, forward[0].shape))}]"
        groups.append((label, name in BREAK_EVEN_EXEMPT, forward))
    verdicts += [break_even(*group) for group in groups]
    verdicts.append(dispatch(measurements))
    return verdicts


def noise_note(measurements: List[Measurement]) -> Optional[str]:
    """A warning when other work on the machine made the timings unsteady, else None."""
    rows: Dict[Tuple[str, float], float] = {}  # (row label, sparsity) -> the row's spread
    for m in measurements:
        key = (m.row_label, m.sparsity)
        rows[key] = max(rows.get(key, 1.0), m.dense_spread, m.sparse_spread)
    noisy = [(key, spread) for key, spread in rows.items() if spread > NOISY_SPREAD]
    if not noisy:
        return None
    (label, sparsity), spread = max(noisy, key=lambda item: item[1])
    return (
        f"{len(noisy)} of {len(rows)} rows have timed runs differing by more than "
        f"{'%.2f' % NOISY_SPREAD}× (worst {'%.1f' % spread}× on {label} at {percent(sparsity)}): "
        "the machine was not quiet; verdicts near a bar are not reliable"
    )


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", help="the --json file of `coppice bench kernels`")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown list")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a criterion FAILs")
    args = parser.parse_args(argv)
    with open(args.json, encoding="utf-8") as f:
        measurements = [Measurement(record) for record in json.load(f)]

    verdicts = acceptance(measurements)
    note = noise_note(measurements)
    failed = sum(status == "FAIL" for status, _ in verdicts)
    passed = sum(status == "PASS" for status, _ in verdicts)
    if args.markdown:
        for status, text in verdicts:
            print(f"- **{status}** {text}")
        if note:
            print(f"- **NOTE** {note}")
    else:
        print(f"Acceptance (issue 3), computed from {args.json}:")
        for status, text in verdicts:
            print(f"  {status:<10s} {text}")
        print(f"  {passed} PASS, {failed} FAIL, {len(verdicts) - passed - failed} other")
        if note:
            print(f"  NOTE       {note}")
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
