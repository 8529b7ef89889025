#!/usr/bin/env python3
"""The reference `cnn` in plain PyTorch on Fashion-MNIST, dense or sparsified by coppice.torch.

The model is the one `coppice train --model cnn` builds: conv3x3(1->32)+BN+ReLU,
conv3x3(32->64)+BN+ReLU, maxpool2, conv3x3(64->128)+BN+ReLU, maxpool2, flatten(6272),
linear(6272->256)+ReLU, linear(256->10), padding 1, convolutions without bias; inputs normalised
with mean 0.2860 / std 0.3530. SGD with momentum 0.9, weight decay 5e-4 (on conv/linear
weights), learning rate 0.05 with a cosine schedule over all steps, batch 128. The training loop
is plain PyTorch; for a sparse method one call attaches Coppice, which hooks into the optimizer
(masks gradients, steps the schedule after optimizer.step(), resets optimizer state where masks
change) and runs the conv/linear layers on its sparse kernels:

    handle = coppice.torch.sparsify(model, optimizer, method="cgap", sparsity=0.9,
                                    total_steps=..., steps_per_epoch=..., partitions=4, rounds=1)

Usage (from the repository root; data from Debian's dataset-fashion-mnist package):

    python3 examples/torch/cnn.py --method dense --epochs 10            # plain PyTorch
    python3 examples/torch/cnn.py --method cgap --sparsity 0.9          # C-GaP at 90%
    python3 examples/torch/cnn.py --method static --sparsity 0.9 --json static.json
    python3 examples/torch/cnn.py --method dense --epochs 1 --limit-train 6400   # a quick look
    python3 examples/torch/cnn.py --bench --sparsity 0.9 --json bench.json
        # training-step time: dense torch vs coppice.torch (static masks at --sparsity) on the
        # same model, initial weights and batch, interleaved; also SparseProp when installed

--json FILE writes the run's settings, one record per epoch (loss, accuracies, seconds, ms per
step, learning rate, sparsity of the weights) and the final test accuracy; with --bench it writes
{"model", "sparsity", "batch", "threads", "torch_dense_ms", "coppice_ms", "speedup", "rounds",
...} ("sparseprop_ms" too when SparseProp ran). --method dense needs only torch; the other
methods and --bench need coppice.torch (libcoppice built, bindings/python importable).
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

import common

METHODS = ("dense", "cgap", "static")


class CNN(nn.Module):
    """The reference cnn; layer names match the engine's (conv1..3, bn1..3, fc1, fc2)."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(128)
        self.fc1 = nn.Linear(128 * 7 * 7, 256)
        self.fc2 = nn.Linear(256, classes)
        for module in (self.conv1, self.conv2, self.conv3, self.fc1, self.fc2):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")  # as the engine: He, fan-in
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        x = F.max_pool2d(F.relu(self.bn3(self.conv3(x))), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


def make_optimizer(model: nn.Module, args: argparse.Namespace) -> torch.optim.Optimizer:
    return torch.optim.SGD(common.weight_decay_groups(model, args.weight_decay), lr=args.lr,
                           momentum=args.momentum)


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             batch: int = 1000) -> Tuple[float, float]:
    """(mean loss, accuracy in percent)."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(labels), batch):
        x, y = images[start:start + batch], labels[start:start + batch]
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += int((logits.argmax(1) == y).sum())
    return loss_sum / len(labels), 100.0 * correct / len(labels)


def train(args: argparse.Namespace) -> Dict[str, Any]:
    coppice_torch = None
    if args.method != "dense":
        coppice_torch = common.import_coppice_torch(f"--method {args.method}")
    common.set_threads(args.threads, coppice_too=coppice_torch is not None)

    train_x, train_y = common.load_fashion_mnist("train", args.limit_train)
    test_x, test_y = common.load_fashion_mnist("t10k", args.limit_test)
    steps_per_epoch = math.ceil(len(train_y) / args.batch_size)
    total_steps = args.epochs * steps_per_epoch

    torch.manual_seed(args.seed)
    model = CNN()
    optimizer = make_optimizer(model, args)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    handle = None
    if coppice_torch is not None:
        handle = coppice_torch.sparsify(
            model, optimizer, method=args.method, sparsity=args.sparsity, total_steps=total_steps,
            steps_per_epoch=steps_per_epoch, partitions=args.partitions, rounds=args.rounds,
            seed=args.seed)

    print(f"cnn, {args.method}" + (f" at {100 * args.sparsity:g}%" if handle else "")
          + f": {len(train_y)} training / {len(test_y)} test images, {args.epochs} epochs of "
          f"{steps_per_epoch} steps, batch {args.batch_size}, {args.threads} threads, torch "
          f"{torch.__version__}")
    print(f"{'epoch':>5} {'loss':>8} {'train%':>7} {'test%':>7} {'test loss':>9} {'seconds':>8} "
          f"{'ms/step':>8} {'lr':>8} {'sparsity':>8}")

    shuffle = torch.Generator().manual_seed(args.seed)
    history = []
    train_seconds = 0.0
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(train_y), generator=shuffle)
        loss_sum, correct = 0.0, 0
        lr = optimizer.param_groups[0]["lr"]
        start = time.perf_counter()
        for step in range(steps_per_epoch):
            batch = order[step * args.batch_size:(step + 1) * args.batch_size]
            x, y = train_x[batch], train_y[batch]
            optimizer.zero_grad()
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            loss.backward()
            optimizer.step()  # coppice.torch (if attached) masks and steps its schedule here
            schedule.step()
            loss_sum += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
        seconds = time.perf_counter() - start
        train_seconds += seconds
        test_loss, test_accuracy = evaluate(model, test_x, test_y)
        sparsity = common.overall_sparsity(common.layer_sparsity(model))
        record = {
            "epoch": epoch,
            "loss": loss_sum / len(train_y),
            "train_accuracy": 100.0 * correct / len(train_y),
            "test_loss": test_loss,
            "test_accuracy": test_accuracy,
            "seconds": seconds,
            "ms_per_step": 1000 * seconds / steps_per_epoch,
            "lr": lr,
            "sparsity": sparsity,
        }
        history.append(record)
        print(f"{epoch:>5} {record['loss']:>8.4f} {record['train_accuracy']:>7.2f} "
              f"{test_accuracy:>7.2f} {test_loss:>9.4f} {seconds:>8.1f} {record['ms_per_step']:>8.1f} "
              f"{lr:>8.4f} {100 * sparsity:>7.2f}%")

    layers = common.layer_sparsity(model)
    print(f"test accuracy {history[-1]['test_accuracy']:.2f}% after {args.epochs} epochs "
          f"({train_seconds:.1f} s of training)")
    if handle is not None:
        print(handle.report())
        print(f"coppice reports sparsity {100 * handle.sparsity():.2f}%; in the torch tensors:")
        common.print_layer_sparsity(layers, args.sparsity)
    return {
        "model": "cnn",
        "method": args.method,
        "sparsity": args.sparsity if handle else 0.0,
        "epochs": args.epochs,
        "batch": args.batch_size,
        "threads": args.threads,
        "seed": args.seed,
        "lr": args.lr,
        "momentum": args.momentum,
        "weight_decay": args.weight_decay,
        "partitions": args.partitions if args.method == "cgap" else None,
        "rounds": args.rounds if args.method == "cgap" else None,
        "train_images": len(train_y),
        "test_images": len(test_y),
        "torch_version": torch.__version__,
        "history": history,
        "test_accuracy": history[-1]["test_accuracy"],
        "train_seconds": train_seconds,
        "final_sparsity": common.overall_sparsity(layers),
        "coppice_sparsity": float(handle.sparsity()) if handle else None,
        "layers": layers,
    }


def bench(args: argparse.Namespace) -> Dict[str, Any]:
    images, labels = common.load_fashion_mnist("train", args.batch_size)
    return common.run_bench(
        model_name="cnn",
        build_model=CNN,
        make_optimizer=lambda model: make_optimizer(model, args),
        compute_loss=lambda model: F.cross_entropy(model(images), labels),
        example=images,
        include=None,
        sparsity=args.sparsity,
        batch=args.batch_size,
        threads=args.threads,
        warmup=args.bench_warmup,
        rounds=args.bench_rounds,
        steps_per_round=args.bench_steps,
        seed=args.seed,
        json_path=args.json,
    )


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--method", choices=METHODS, default="dense")
    p.add_argument("--sparsity", type=float, default=0.9, help="target sparsity of conv/linear weights")
    p.add_argument("--partitions", type=int, default=4, help="C-GaP partitions (contiguous layer groups)")
    p.add_argument("--rounds", type=int, default=1, help="C-GaP rounds over all partitions")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05, help="initial learning rate (cosine to 0)")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--limit-train", type=int, default=0, help="use the first N training images (0: all)")
    p.add_argument("--limit-test", type=int, default=0, help="use the first N test images (0: all)")
    common.add_run_arguments(p, bench_steps=5)
    args = p.parse_args(argv)
    if not 0.0 <= args.sparsity < 1.0:
        p.error("--sparsity must be in [0, 1)")
    if args.threads < 1 or args.epochs < 1 or args.batch_size < 1:
        p.error("--threads, --epochs and --batch-size must be positive")
    return args


if __name__ == "__main__":
    common.run_example(parse_args, train, bench)
