#!/usr/bin/env python3
"""P-GaP run by the host: K worker processes, each growing one partition of a numpy MLP,
exchanging their partitions through files (or through mpi4py when run under mpirun).

Coppice's sparsifier keeps the masks and does the merge; the host owns the model, the training
loop and the communication. Every worker starts from the same seed, so all hold the same sparse
model at each round's start. Per round, worker w:

    sparsifier.begin_worker(w)              partition w dense, the others at 90%
    train one GaP step (--step-epochs) with mask_gradients / step as usual
    weights, masks = sparsifier.export_partition(w)       flat float32 / uint8
    publish them, with its biases and momentum, to the other workers
    sparsifier.import_partition(v, weights_v) for every worker v
    average the biases and momentum over the workers (the host's own tensors)
    sparsifier.finish_round()              partition v from worker v, pruned to 90%

After the rounds the masks are frozen and worker 0 fine-tunes and reports.

    python3 examples/python/pgap_host.py                         # 3 processes, files
    python3 examples/python/pgap_host.py --limit 2000 --rounds 1 --finetune-epochs 1
    mpirun -np 3 python3 examples/python/pgap_host.py --mpi       # needs mpi4py

Worker 0 reports whether every worker ended the rounds with the same weights and masks
(bindings/python/tests/test_sparsifier.py checks that, and the exact sparsity, for host-run P-GaP).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

import numpy as np

import coppice
from coppice.idx import load_fashion_mnist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sparsify_numpy_mlp import MomentumSGD, NumpyMLP  # noqa: E402


class FileExchange:
    """All-gather through a shared directory: each worker writes its .npz atomically, then
    waits for everybody's."""

    def __init__(self, directory: str, worker: int, workers: int) -> None:
        self.directory, self.worker, self.workers = directory, worker, workers

    def all_gather(self, tag: str, arrays: Dict[str, np.ndarray]) -> List[Dict[str, np.ndarray]]:
        path = os.path.join(self.directory, f"{tag}-worker{self.worker}.npz")
        with open(path + ".tmp", "wb") as f:
            np.savez(f, **arrays)
        os.replace(path + ".tmp", path)
        gathered = []
        for w in range(self.workers):
            other = os.path.join(self.directory, f"{tag}-worker{w}.npz")
            deadline = time.time() + 600
            while not os.path.exists(other):
                if time.time() > deadline:
                    raise TimeoutError(f"worker {w} never published {tag}")
                time.sleep(0.01)
            with np.load(other) as data:
                gathered.append({k: data[k] for k in data.files})
        return gathered


class MPIExchange:
    def __init__(self, comm) -> None:
        self.comm = comm

    def all_gather(self, tag: str, arrays: Dict[str, np.ndarray]) -> List[Dict[str, np.ndarray]]:
        return self.comm.allgather(arrays)


def run_worker(args: argparse.Namespace, worker: int, exchange) -> int:
    train_x, train_y = load_fashion_mnist(args.data, "train", args.limit)
    test_x, test_y = load_fashion_mnist(args.data, "t10k", args.test_limit)
    train_x = train_x.reshape(len(train_x), 784)
    steps_per_epoch = math.ceil(len(train_x) / args.batch_size)
    step_length = args.step_epochs * steps_per_epoch
    total_steps = (args.rounds * args.step_epochs + args.finetune_epochs) * steps_per_epoch

    model = NumpyMLP(args.seed)
    optimizer = MomentumSGD(model.parameters(), momentum=0.9, weight_decay=5e-4)
    sparsifier = coppice.Sparsifier(
        method="pgap", sparsity=args.sparsity, total_steps=total_steps,
        steps_per_epoch=steps_per_epoch, partitions=args.workers, rounds=args.rounds,
        gap_step_length=step_length, seed=args.seed,
    )
    for name, w in model.weights.items():
        sparsifier.add_parameter(name, w, model.grads[name])
    sparsifier.start()
    workers, _, rounds = sparsifier.pgap_status
    assert workers == args.workers, (workers, args.workers)

    rng = np.random.default_rng(args.seed + 1)  # the same data order on every worker
    step = 0

    def train_epochs(epochs: int) -> float:
        nonlocal step
        losses = []
        for _ in range(epochs):
            order = rng.permutation(len(train_x))
            for start in range(0, len(order), args.batch_size):
                batch = order[start : start + args.batch_size]
                losses.append(model.loss_and_backward(train_x[batch], train_y[batch]))
                lr = 0.5 * args.lr * (1 + math.cos(math.pi * step / total_steps))
                sparsifier.mask_gradients()
                optimizer.step(model.grads, lr)
                step += 1
                sparsifier.step()
        return float(np.mean(losses))

    say = print if worker == 0 else (lambda *a, **k: None)
    say(f"coppice {coppice.version()} — P-GaP run by the host: {workers} workers "
        f"({'mpi4py' if isinstance(exchange, MPIExchange) else 'files'}), numpy LeNet-300-100, "
        f"{len(train_x)} images, {rounds} round(s) × {args.step_epochs} epoch(s), "
        f"{args.finetune_epochs} fine-tune epoch(s), {args.sparsity:.0%} sparse")
    for r in range(rounds):
        start_weights = {k: v.copy() for k, v in model.parameters().items()}
        start_velocity = {k: v.copy() for k, v in optimizer.velocity.items()}
        round_step = step
        sparsifier.begin_worker(worker)
        started = time.perf_counter()
        loss = train_epochs(args.step_epochs)
        weights, _ = sparsifier.export_partition(worker)
        shared = {"partition": weights}
        shared.update({f"b:{k}": v for k, v in model.biases.items()})
        shared.update({f"v:{k}": v for k, v in optimizer.velocity.items()})
        everyone = exchange.all_gather(f"round{r}", shared)
        # The round starts again from its shared model, then takes every worker's partition.
        for k, v in model.parameters().items():
            v[...] = start_weights[k]
        for k, v in optimizer.velocity.items():
            v[...] = start_velocity[k]
        for v, data in enumerate(everyone):
            sparsifier.import_partition(v, data["partition"])
        for k, b in model.biases.items():
            b[...] = np.mean([data[f"b:{k}"] for data in everyone], axis=0)
        for k, vel in optimizer.velocity.items():
            vel[...] = np.mean([data[f"v:{k}"] for data in everyone], axis=0)
        sparsifier.finish_round()
        for name in model.weights:  # momentum of merged weights restarts where masks changed
            optimizer.velocity[name][sparsifier.mask(name) == 0] = 0
        step = round_step + step_length
        say(f"round {r + 1}/{rounds}: worker 0 loss {loss:.4f}, merged model test accuracy "
            f"{model.accuracy(test_x, test_y):.2f}%, sparsity {sparsifier.sparsity():.4f}, "
            f"{time.perf_counter() - started:.1f}s")

    digest = hashlib.sha256()
    for name, w in model.weights.items():
        digest.update(w.tobytes())
        digest.update(sparsifier.mask(name).tobytes())
    digests = exchange.all_gather("final", {"digest": np.frombuffer(digest.digest(), np.uint8)})
    identical = all(np.array_equal(d["digest"], digests[0]["digest"]) for d in digests)
    if worker != 0:
        return 0
    say(f"after the rounds every worker holds the same weights and masks: {identical}; "
        f"sparsity {sparsifier.sparsity():.4f}")
    if args.finetune_epochs:
        loss = train_epochs(args.finetune_epochs)
        say(f"fine-tune ({sparsifier.phase}): loss {loss:.4f}")
    say(f"final test accuracy: {model.accuracy(test_x, test_y):.2f}%")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=3, help="processes = partitions")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--step-epochs", type=int, default=1)
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--limit", type=int, default=10000, help="training samples (0: all)")
    parser.add_argument("--test-limit", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=None, help="IDX directory")
    parser.add_argument("--mpi", action="store_true", help="exchange with mpi4py (under mpirun)")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--exchange", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

    if args.mpi:
        from mpi4py import MPI  # optional dependency, only for this mode

        comm = MPI.COMM_WORLD
        args.workers = comm.Get_size()
        return run_worker(args, comm.Get_rank(), MPIExchange(comm))
    if args.worker is not None:
        return run_worker(args, args.worker, FileExchange(args.exchange, args.worker, args.workers))
    # The launcher: one process per worker, exchanging through a temporary directory.
    with tempfile.TemporaryDirectory(prefix="coppice-pgap-") as directory:
        base = [sys.executable, os.path.abspath(__file__)] + (argv if argv is not None else sys.argv[1:])
        children = [
            subprocess.Popen(base + ["--worker", str(w), "--exchange", directory])
            for w in range(args.workers)
        ]
        codes = [c.wait() for c in children]
    if any(codes):
        print(f"workers exited with {codes}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
