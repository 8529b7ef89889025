"""Shared helpers of the Python binding tests."""

from __future__ import annotations

import math
import os
from typing import Dict, List, Tuple

import numpy as np
import pytest

IDX_DIRECTORY = "/usr/share/datasets/fashion-mnist"


def exact_zeros(count: int, sparsity: float) -> int:
    """round(n·s) with halves away from zero: the library's exact zero count."""
    return min(count, max(0, int(math.floor(count * sparsity + 0.5))))


class TinyHost:
    """A host that owns a few float32 weights and gradients, like a real training loop."""

    SHAPES: Dict[str, Tuple[int, ...]] = {
        "fc1": (40, 50),
        "conv": (8, 4, 3, 3),
        "fc2": (30, 40),
        "fc3": (10, 30),
    }

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.weights = {
            name: rng.standard_normal(shape).astype(np.float32) for name, shape in self.SHAPES.items()
        }
        self.grads = {name: np.zeros(shape, np.float32) for name, shape in self.SHAPES.items()}

    def register(self, sparsifier) -> None:
        for name in self.SHAPES:
            sparsifier.add_parameter(name, self.weights[name], self.grads[name])

    def backward(self) -> None:
        for g in self.grads.values():
            g[...] = self.rng.standard_normal(g.shape).astype(np.float32)

    def optimizer_step(self, lr: float = 0.01) -> None:
        for name, w in self.weights.items():
            w -= lr * self.grads[name]

    def train(self, sparsifier, steps: int) -> List[int]:
        """Runs `steps` steps; returns the steps at which masks changed."""
        changes = []
        for _ in range(steps):
            self.backward()
            sparsifier.mask_gradients()
            self.optimizer_step()
            if sparsifier.step():
                changes.append(sparsifier.steps)
        return changes


@pytest.fixture
def host() -> TinyHost:
    return TinyHost()


def have_idx() -> bool:
    return os.path.exists(os.path.join(IDX_DIRECTORY, "train-images-idx3-ubyte.gz"))


def run_isolated(code: str, timeout: float = 120) -> "subprocess.CompletedProcess[str]":
    """Runs Python `code` in a child process with the same library and package, so that a crash
    of the library (a trap, a segfault) fails one test instead of killing the test run."""
    import subprocess
    import sys

    env = dict(os.environ)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(
        [package_root, os.path.dirname(os.path.abspath(__file__))]
        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout
    )


def describe_exit(result: "subprocess.CompletedProcess[str]") -> str:
    """A readable account of how a child process ended."""
    import signal

    code = result.returncode
    how = f"exit status {code}"
    if code < 0:
        how = f"killed by {signal.Signals(-code).name}"
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
    return f"{how}\n{tail}"
