#!/usr/bin/env python3
"""Training-step speed of the engine against PyTorch on the same machine, in one run.

    python3 scripts/bench-vs-torch.py [--coppice .build/release/coppice] [--models cnn,resnet20]
                                      [--rounds 5] [--steps 5] [--sparsity 0,0.9]

For each model, rounds alternate: PyTorch (eager, float32, NCHW, the same architecture, SGD
with momentum, batch 128, as many threads as the engine) runs `steps` timed training steps in
this process, then `coppice bench train --rounds 1` runs the same number of steps (dense and
each static sparsity) in a child process. Reported: per-step medians and, for each engine
configuration, the median over rounds of (PyTorch dense step / engine step).
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def cnn() -> nn.Module:
    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

    return nn.Sequential(
        *block(1, 32), *block(32, 64), nn.MaxPool2d(2), *block(64, 128), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(6272, 256), nn.ReLU(), nn.Linear(256, 10))


class Basic(nn.Module):
    """A ResNet basic block with the parameter-free option-A shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride, self.pad = stride, (cout - cin) // 2

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        short = x
        if self.stride != 1 or self.pad:
            short = F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(out + short)


def resnet20() -> nn.Module:
    layers = [nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    cin = 16
    for stage, width in enumerate([16, 32, 64]):
        for b in range(3):
            layers.append(Basic(cin, width, 2 if stage > 0 and b == 0 else 1))
            cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
    return nn.Sequential(*layers)


def torch_steps(model, optimizer, x, y, steps: int) -> float:
    """Seconds per training step over `steps` steps."""
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=False)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


def engine_round(coppice: str, model: str, sparsity: str, steps: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "r.json")
        subprocess.run(
            [coppice, "bench", "train", "--model", model, "--sparsity", sparsity, "--rounds", "1",
             "--steps", str(steps), "--threads", str(threads), "--json", out],
            check=True, stdout=subprocess.DEVNULL)
        with open(out) as f:
            return {c["label"]: c["step_ms"] / 1e3 for c in json.load(f)["configurations"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--coppice", default=".build/release/coppice")
    p.add_argument("--models", default="cnn,resnet20")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--sparsity", default="0,0.9", help="engine configurations (0 = dense)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--json", help="write the results here")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    results = {}
    print(f"torch {torch.__version__}, {a.threads} threads, batch 128, {a.rounds} interleaved "
          f"rounds × {a.steps} steps")
    for name in a.models.split(","):
        model = {"cnn": cnn, "resnet20": resnet20}[name]()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        x, y = torch.randn(128, 1, 28, 28), torch.arange(128) % 10
        torch_steps(model, optimizer, x, y, 2)  # warm-up
        rounds = []
        for _ in range(a.rounds):
            t = torch_steps(model, optimizer, x, y, a.steps)
            rounds.append((t, engine_round(a.coppice, name, a.sparsity, a.steps, a.threads)))
        torch_ms = statistics.median(t for t, _ in rounds) * 1e3
        print(f"\n{name}: PyTorch dense {torch_ms:.1f} ms/step ({128e3 / torch_ms:.0f} img/s)")
        entry = {"torch_dense_ms": torch_ms, "engine": {}}
        for label in rounds[0][1]:
            ms = statistics.median(e[label] for _, e in rounds) * 1e3
            ratio = statistics.median(t / e[label] for t, e in rounds)
            print(f"  coppice {label:<11} {ms:7.1f} ms/step ({128e3 / ms:5.0f} img/s)  "
                  f"{ratio:5.2f}× PyTorch dense")
            entry["engine"][label] = {"step_ms": ms, "vs_torch_dense": ratio}
        results[name] = entry
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"torch": torch.__version__, "threads": a.threads, "models": results}, f,
                      indent=2)


if __name__ == "__main__":
    main()
