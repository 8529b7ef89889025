#!/usr/bin/env python3
"""A small character-level Transformer language model in plain PyTorch, trained on Debian's
fortunes corpus, dense or sparsified by coppice.torch in the GaP paper's setting.

The model is decoder-only with pre-LN blocks (default 4 blocks, d_model 256, 4 heads, FFN 1024,
context 128). Every block's linears are written out as nn.Linear layers — attention q, k, v and
out projections, FFN fc1 and fc2 — so they are the prunable weights; the token and position
embeddings, the layer norms and the output head stay dense. As in the paper (whose official GaP
code is a Transformer), C-GaP partitions are groups of whole blocks: by default two blocks per
partition, i.e. partitions=[[blocks 0-1's linears], [blocks 2-3's linears]]. AdamW with a linear
warm-up and a cosine decay, gradient clipping at 1.0.

The corpus: every plain-text file under /usr/share/games/fortunes (recursively, names sorted,
`.dat` index files skipped, symlinks to files already read skipped), split into entries at the
lines holding `%`, joined with "\\n%\\n"; a character vocabulary; the last 5% of the text is the
validation split. Validation loss (nats per character) and bits per character are reported
every --eval-every steps and at the end, on a fixed set of validation windows.

Usage (from the repository root; the corpus from Debian's `fortunes` package):

    python3 examples/torch/transformer_lm.py --method dense --steps 2000
    python3 examples/torch/transformer_lm.py --method cgap --sparsity 0.9 --steps 2000
    python3 examples/torch/transformer_lm.py --method static --sparsity 0.9 --json static.json
    python3 examples/torch/transformer_lm.py --method dense --steps 200 --eval-every 100  # a quick look
    python3 examples/torch/transformer_lm.py --bench --sparsity 0.9 --json bench.json
        # training-step time: dense torch vs coppice.torch (static masks on the blocks' linears)
        # on the same model, initial weights and batch, interleaved; SparseProp too if installed

--json FILE writes the settings, the corpus's size, the evaluations (step, train loss, validation
loss and bits per character, ms per step) and the final validation loss; with --bench,
{"model", "sparsity", "batch", "threads", "torch_dense_ms", "coppice_ms", "speedup", "rounds",
...}. --method dense needs only torch; the other methods and --bench need coppice.torch.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

import common

METHODS = ("dense", "cgap", "static")
FORTUNES = "/usr/share/games/fortunes"


# ---------------------------------------------------------------------------------------------
# The corpus

def fortune_files(root: str) -> List[str]:
    """The corpus's text files: every file under `root` but the `.dat` indexes, each read once
    (a symlink to a file already listed is a duplicate), sorted for a deterministic order."""
    files = set()
    for directory, subdirectories, names in os.walk(root):
        subdirectories.sort()
        for name in names:
            real = os.path.realpath(os.path.join(directory, name))
            if os.path.isfile(real) and not real.endswith(".dat"):
                files.add(real)
    return sorted(files)


def read_entries(path: str) -> List[str]:
    """The entries of one fortune file (separated by lines holding only `%`), empty ones dropped."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    entries, current = [], []
    for line in lines + ["%"]:
        if line == "%":
            text = "\n".join(current).strip("\n")
            if text.strip():
                entries.append(text)
            current = []
        else:
            current.append(line)
    return entries


class Corpus:
    """The fortunes as one character sequence with a fixed train/validation split."""

    def __init__(self, root: str = FORTUNES, validation_fraction: float = 0.05):
        self.files = fortune_files(root)
        if not self.files:
            raise SystemExit(f"no fortune files under {root}: install Debian's `fortunes` package "
                             "(scripts/install-deps.sh does)")
        entries = [e for path in self.files for e in read_entries(path)]
        self.entries = len(entries)
        text = "\n%\n".join(entries) + "\n%\n"
        self.vocabulary = sorted(set(text))
        index = {c: i for i, c in enumerate(self.vocabulary)}
        data = torch.tensor([index[c] for c in text], dtype=torch.long)
        split = len(data) - int(validation_fraction * len(data))
        self.train, self.validation = data[:split], data[split:]

    def describe(self) -> Dict[str, Any]:
        return {"files": len(self.files), "entries": self.entries, "vocabulary": len(self.vocabulary),
                "train_characters": len(self.train), "validation_characters": len(self.validation)}


def random_batch(data: torch.Tensor, batch: int, context: int,
                 generator: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
    """`batch` windows at random offsets: inputs [batch, context] and next-character targets."""
    starts = torch.randint(len(data) - context - 1, (batch,), generator=generator)
    windows = data[starts[:, None] + torch.arange(context + 1)]
    return windows[:, :-1], windows[:, 1:]


def validation_windows(data: torch.Tensor, context: int, count: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """A fixed set of non-overlapping validation windows, evenly spread (all of them if count <= 0)."""
    available = (len(data) - 1) // context
    chosen = range(available) if count <= 0 or count >= available else \
        [i * available // count for i in range(count)]
    starts = torch.tensor([i * context for i in chosen])
    windows = data[starts[:, None] + torch.arange(context + 1)]
    return windows[:, :-1], windows[:, 1:]


# ---------------------------------------------------------------------------------------------
# The model

class SelfAttention(nn.Module):
    """Causal multi-head self-attention with explicit q/k/v/out projections."""

    def __init__(self, d_model: int, heads: int, dropout: float):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not divisible by {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape

        def heads(y: torch.Tensor) -> torch.Tensor:  # [b, t, d] -> [b, heads, t, d / heads]
            return y.view(b, t, self.heads, d // self.heads).transpose(1, 2)

        y = F.scaled_dot_product_attention(heads(self.q(x)), heads(self.k(x)), heads(self.v(x)),
                                           dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=True)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class FeedForward(nn.Module):
    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(d_model, hidden)
        self.fc2 = nn.Linear(hidden, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-LN: x + attn(ln(x)), then x + ffn(ln(x))."""

    def __init__(self, d_model: int, heads: int, hidden: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, heads, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.ffn(self.ln2(x)))


class CharTransformer(nn.Module):
    def __init__(self, vocabulary: int, context: int, layers: int, d_model: int, heads: int,
                 hidden: int, dropout: float):
        super().__init__()
        self.context = context
        self.token = nn.Embedding(vocabulary, d_model)
        self.position = nn.Embedding(context, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, heads, hidden, dropout) for _ in range(layers))
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocabulary)
        # GPT-2's initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2 * layers).
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() == 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith(("attn.out.weight", "ffn.fc2.weight")) else 0.02
                nn.init.normal_(p, std=std)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits [batch, time, vocabulary] for tokens [batch, time]."""
        t = tokens.shape[1]
        x = self.drop(self.token(tokens) + self.position(torch.arange(t, device=tokens.device)))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


def block_linears(name: str, module: nn.Module) -> bool:
    """The prunable layers: the Transformer blocks' linears (not the embeddings or the head)."""
    return isinstance(module, nn.Linear) and name.startswith("blocks.")


def block_partitions(model: CharTransformer, partitions: int) -> List[List[str]]:
    """`partitions` contiguous groups of whole blocks, as even as possible; each partition lists
    the (module) names of its blocks' linears."""
    layers = len(model.blocks)
    size, extra = divmod(layers, partitions)
    groups, first = [], 0
    for p in range(partitions):
        last = first + size + (1 if p < extra else 0)
        groups.append([name for name, module in model.named_modules()
                       if block_linears(name, module) and first <= int(name.split(".")[1]) < last])
        first = last
    return groups


def build_model(corpus: Corpus, args: argparse.Namespace) -> CharTransformer:
    return CharTransformer(len(corpus.vocabulary), args.context, args.layers, args.d_model,
                           args.heads, args.ffn, args.dropout)


def make_optimizer(model: nn.Module, args: argparse.Namespace) -> torch.optim.Optimizer:
    return torch.optim.AdamW(common.weight_decay_groups(model, args.weight_decay), lr=args.lr,
                             betas=(0.9, 0.95))


def lm_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


@torch.no_grad()
def evaluate(model: nn.Module, windows: Tuple[torch.Tensor, torch.Tensor], batch: int) -> float:
    """Mean validation loss in nats per character."""
    model.eval()
    x, y = windows
    total = 0.0
    for start in range(0, len(x), batch):
        total += lm_loss(model, x[start:start + batch], y[start:start + batch]).item() * len(x[start:start + batch])
    model.train()
    return total / len(x)


def learning_rate(step: int, args: argparse.Namespace) -> float:
    """Factor of the base rate: linear warm-up, then cosine down to 10%."""
    if step < args.warmup:
        return (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


# ---------------------------------------------------------------------------------------------
# Training and benchmark

def train(args: argparse.Namespace) -> Dict[str, Any]:
    coppice_torch = None
    if args.method != "dense":
        coppice_torch = common.import_coppice_torch(f"--method {args.method}")
    common.set_threads(args.threads, coppice_too=coppice_torch is not None)

    corpus = Corpus(args.corpus)
    torch.manual_seed(args.seed)
    model = build_model(corpus, args)
    optimizer = make_optimizer(model, args)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: learning_rate(step, args))
    partitions = block_partitions(model, args.partitions)
    handle = None
    if coppice_torch is not None:
        schedule_options = {"partitions": partitions, "rounds": args.rounds} if args.method == "cgap" else {}
        handle = coppice_torch.sparsify(
            model, optimizer, method=args.method, sparsity=args.sparsity, total_steps=args.steps,
            steps_per_epoch=None, include=block_linears, seed=args.seed, **schedule_options)

    described = corpus.describe()
    prunable = sum(m.weight.numel() for _, m in common.prunable_layers(model, block_linears))
    print(f"fortunes: {described['files']} files, {described['entries']} entries, "
          f"{described['train_characters']} training / {described['validation_characters']} "
          f"validation characters, vocabulary {described['vocabulary']}")
    print(f"transformer {args.layers}x{args.d_model} ({args.heads} heads, FFN {args.ffn}, context "
          f"{args.context}): {sum(p.numel() for p in model.parameters())} parameters, {prunable} "
          f"in the blocks' linears; {args.method}"
          + (f" at {100 * args.sparsity:g}%" if handle else "")
          + (f", partitions {[sorted({int(n.split('.')[1]) for n in g}) for g in partitions]}"
             if args.method == "cgap" else "")
          + f"; {args.steps} steps of batch {args.batch_size}, {args.threads} threads, torch {torch.__version__}")

    windows = validation_windows(corpus.validation, args.context, args.eval_windows)
    batches = torch.Generator().manual_seed(args.seed)
    history, log = [], []
    loss_sum, loss_count, interval_seconds, train_seconds = 0.0, 0, 0.0, 0.0
    for step in range(1, args.steps + 1):
        x, y = random_batch(corpus.train, args.batch_size, args.context, batches)
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = lm_loss(model, x, y)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        optimizer.step()  # coppice.torch (if attached) masks and steps its schedule here
        schedule.step()
        elapsed = time.perf_counter() - start
        interval_seconds += elapsed
        train_seconds += elapsed
        loss_sum += loss.item()
        loss_count += 1

        if step % args.log_every == 0 or step == args.steps:
            entry = {"step": step, "train_loss": loss_sum / loss_count,
                     "ms_per_step": 1000 * interval_seconds / loss_count,
                     "lr": optimizer.param_groups[0]["lr"]}
            log.append(entry)
            print(f"step {step:>6}  train loss {entry['train_loss']:.4f}  "
                  f"{entry['ms_per_step']:7.1f} ms/step  lr {entry['lr']:.2e}", flush=True)
            loss_sum, loss_count, interval_seconds = 0.0, 0, 0.0
        if step % args.eval_every == 0 or step == args.steps:
            validation = evaluate(model, windows, args.batch_size)
            record = {"step": step, "train_loss": log[-1]["train_loss"] if log else None,
                      "validation_loss": validation, "validation_bpc": validation / math.log(2),
                      "train_seconds": train_seconds,
                      "sparsity": common.overall_sparsity(common.layer_sparsity(model, block_linears))}
            history.append(record)
            print(f"step {step:>6}  validation loss {validation:.4f}  "
                  f"({record['validation_bpc']:.3f} bits/char)  sparsity {100 * record['sparsity']:.2f}%",
                  flush=True)

    layers = common.layer_sparsity(model, block_linears)
    final = history[-1]
    print(f"validation loss {final['validation_loss']:.4f} ({final['validation_bpc']:.3f} bits per "
          f"character) after {args.steps} steps, {train_seconds:.1f} s of training "
          f"({1000 * train_seconds / args.steps:.1f} ms/step)")
    if handle is not None:
        print(handle.report())
        print(f"coppice reports sparsity {100 * handle.sparsity():.2f}%; in the torch tensors:")
        common.print_layer_sparsity(layers, args.sparsity)
    return {
        "model": "transformer_lm",
        "method": args.method,
        "sparsity": args.sparsity if handle else 0.0,
        "steps": args.steps,
        "batch": args.batch_size,
        "threads": args.threads,
        "seed": args.seed,
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "bench")},
        "partitions": partitions if args.method == "cgap" else None,
        "corpus": described,
        "parameters": sum(p.numel() for p in model.parameters()),
        "prunable_parameters": prunable,
        "torch_version": torch.__version__,
        "history": history,
        "log": log,
        "validation_loss": final["validation_loss"],
        "validation_bpc": final["validation_bpc"],
        "train_seconds": train_seconds,
        "ms_per_step": 1000 * train_seconds / args.steps,
        "final_sparsity": common.overall_sparsity(layers),
        "coppice_sparsity": float(handle.sparsity()) if handle else None,
        "layers": layers,
    }


def bench(args: argparse.Namespace) -> Dict[str, Any]:
    corpus = Corpus(args.corpus)
    x, y = random_batch(corpus.train, args.batch_size, args.context,
                        torch.Generator().manual_seed(args.seed))
    return common.run_bench(
        model_name="transformer_lm",
        build_model=lambda: build_model(corpus, args),
        make_optimizer=lambda model: make_optimizer(model, args),
        compute_loss=lambda model: lm_loss(model, x, y),
        example=x,
        include=block_linears,
        sparsity=args.sparsity,
        batch=args.batch_size,
        threads=args.threads,
        warmup=args.bench_warmup,
        rounds=args.bench_rounds,
        steps_per_round=args.bench_steps,
        seed=args.seed,
        json_path=args.json,
        extra={"context": args.context, "layers": args.layers, "d_model": args.d_model,
               "heads": args.heads, "ffn": args.ffn},
    )


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--method", choices=METHODS, default="dense")
    p.add_argument("--sparsity", type=float, default=0.9, help="target sparsity of the blocks' linears")
    p.add_argument("--partitions", type=int, default=None,
                   help="C-GaP partitions, each a group of whole blocks (default: two blocks per partition)")
    p.add_argument("--rounds", type=int, default=1, help="C-GaP rounds over all partitions")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps (default: 5%% of --steps)")
    p.add_argument("--weight-decay", type=float, default=0.1, help="AdamW decay of the linears' weights")
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--ffn", type=int, default=1024)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--corpus", default=FORTUNES, help="directory of fortune files")
    p.add_argument("--eval-every", type=int, default=250, help="steps between validation evaluations")
    p.add_argument("--eval-windows", type=int, default=512,
                   help="validation windows of --context characters (0: all of the split)")
    p.add_argument("--log-every", type=int, default=50, help="steps between training-loss lines")
    common.add_run_arguments(p, bench_steps=3)
    args = p.parse_args(argv)
    if not 0.0 <= args.sparsity < 1.0:
        p.error("--sparsity must be in [0, 1)")
    if min(args.steps, args.batch_size, args.threads, args.layers, args.eval_every, args.log_every) < 1:
        p.error("--steps, --batch-size, --threads, --layers, --eval-every and --log-every must be positive")
    if args.partitions is None:
        args.partitions = max(1, args.layers // 2)
    if not 1 <= args.partitions <= args.layers:
        p.error(f"--partitions must be between 1 and --layers ({args.layers}): a partition is a group of whole blocks")
    if args.warmup is None:
        args.warmup = max(1, args.steps // 20)
    return args


if __name__ == "__main__":
    common.run_example(parse_args, train, bench)
