#!/usr/bin/env python3
"""Train one of the engine's reference models from Python with a sparse-training method.

The runtime builds, trains and runs the model itself (sparse layers on sparse kernels); Python
only configures it, watches the epochs through a callback and the schedule through the log.

    python3 examples/python/train_engine.py --model mlp --method cgap --sparsity 0.9 --epochs 4
    python3 examples/python/train_engine.py --model cnn --limit 5000 --epochs 2
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional

import numpy as np

import coppice
from coppice.idx import load_fashion_mnist


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp", choices=coppice.MODELS)
    parser.add_argument("--method", default="cgap", choices=coppice.METHODS)
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--limit", type=int, default=0, help="training samples (0: all)")
    parser.add_argument("--test-limit", type=int, default=0, help="test samples (0: all)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--partitions", type=int, default=None, help="GaP partitions (default 4)")
    parser.add_argument("--rounds", type=int, default=None, help="GaP rounds (default 2)")
    parser.add_argument("--step-steps", type=int, default=None,
                        help="GaP step length in optimizer steps (default: one epoch)")
    parser.add_argument("--threads", type=int, default=0, help="kernel threads (0: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=None, help="IDX directory (default: the Debian package's)")
    args = parser.parse_args(argv)

    coppice.set_threads(args.threads)
    coppice.set_log_callback(lambda level, text: print(f"  [coppice] {text}", flush=True))
    loaded = time.perf_counter()
    train = coppice.Dataset.load_idx(args.data, "train", args.limit)
    test = coppice.Dataset.load_idx(args.data, "t10k", args.test_limit)
    model = coppice.Model(args.model, seed=args.seed)
    print(f"coppice {coppice.version()} ({coppice.get_threads()} threads): {args.model} with "
          f"{model.parameter_count:,} parameters; {len(train)} training / {len(test)} test images "
          f"(loaded in {time.perf_counter() - loaded:.1f}s); {args.method} at {args.sparsity:.0%}")

    def report(stats: coppice.EpochStats) -> bool:
        print(f"epoch {stats.epoch}: loss {stats.train_loss:.4f}, test accuracy "
              f"{stats.test_accuracy:.2f}%, sparsity {stats.sparsity:.4f}, {stats.seconds:.1f}s",
              flush=True)
        return False  # True would stop training

    options = {}
    if args.partitions is not None:
        options["partitions"] = args.partitions
    if args.rounds is not None:
        options["rounds"] = args.rounds
    if args.step_steps is not None:
        options["gap_step_length"] = args.step_steps
    elif args.method in ("cgap", "pgap"):
        # coppice_train's default GaP step is one epoch, so κ·R steps need κ·R epochs (8 by
        # default). For shorter runs, fit the GaP steps into the first 75% of training.
        steps_per_epoch = -(-len(train) // args.batch_size)
        kappa, rounds = args.partitions or 4, args.rounds or 2
        sequential = kappa * rounds if args.method == "cgap" else rounds
        if sequential > args.epochs:
            options["gap_step_length"] = max(1, int(0.75 * args.epochs * steps_per_epoch) // sequential)
    result = model.train(
        train, test, epochs=args.epochs, method=args.method, sparsity=args.sparsity,
        batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed, callback=report,
        **options,
    )
    coppice.set_log_callback(None)
    print(f"result: test accuracy {result.test_accuracy:.2f}%, sparsity {result.sparsity:.4f}, "
          f"{result.epochs} epochs in {result.train_seconds:.1f}s")

    # Inference on numpy arrays: logits, one row per image.
    images, labels = load_fashion_mnist(args.data, "t10k", args.test_limit)
    logits = model.predict(images)
    accuracy = 100.0 * float(np.mean(logits.argmax(axis=1) == labels))
    print(f"predict on {len(images)} numpy images: accuracy {accuracy:.2f}% "
          f"(evaluate: {model.evaluate(test):.2f}%)")
    for dataset in (train, test):
        dataset.close()
    model.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
