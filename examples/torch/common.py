"""What the PyTorch examples share: finding the coppice package and coppice.torch, thread
settings, prunable-layer selection, sparsity measured in the torch tensors themselves, JSON
output, and the benchmark (dense torch vs coppice.torch vs SparseProp, interleaved).

Not a library: the examples import it from their own directory.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[2]
BINDINGS = REPO / "bindings" / "python"

# A module-selection predicate, as coppice.torch.sparsify takes it: (name, module) -> bool.
Include = Callable[[str, nn.Module], bool]


def _put_bindings_on_path() -> None:
    """Run from a source checkout, the examples find the package next to them."""
    if importlib.util.find_spec("coppice") is None and BINDINGS.is_dir():
        sys.path.insert(0, str(BINDINGS))


def import_coppice_torch(purpose: str):
    """coppice.torch, or exit with a message that says what is missing and how to get it."""
    _put_bindings_on_path()
    try:
        import coppice.torch as coppice_torch
    except ImportError as error:  # also a libcoppice that cannot be loaded
        if isinstance(error, ModuleNotFoundError) and error.name == "coppice.torch":
            import coppice

            hint = (f"the coppice package in {Path(coppice.__file__).parent} has no torch module; "
                    "use a version of Coppice that has coppice.torch")
        else:
            hint = ("build the library (`make build`) and put bindings/python on PYTHONPATH (or "
                    "install the package)")
        raise SystemExit(
            f"{purpose} needs coppice.torch, which could not be imported: {error}.\n"
            f"To fix: {hint}; or run with --method dense for plain PyTorch."
        ) from None
    return coppice_torch


def load_fashion_mnist(split: str, limit: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """(images float32 [N, 1, 28, 28] normalised with mean 0.2860 / std 0.3530, labels int64)
    read by coppice.idx. The reader is plain numpy, so a dense run does not need libcoppice:
    when the package cannot load its library, idx.py is loaded on its own."""
    _put_bindings_on_path()
    try:
        from coppice.idx import load_fashion_mnist as load
    except ImportError:
        spec = importlib.util.spec_from_file_location("coppice_idx", BINDINGS / "coppice" / "idx.py")
        if spec is None or spec.loader is None:
            raise
        idx = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(idx)
        load = idx.load_fashion_mnist
    images, labels = load(split=split, limit=limit)
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels)


def set_threads(threads: int, coppice_too: bool = False) -> None:
    """torch's intra-op threads (and the Coppice kernels' when asked). The machines these
    examples were written on have 2 cores; more threads than cores only adds contention."""
    torch.set_num_threads(threads)
    if coppice_too:
        _put_bindings_on_path()
        import coppice

        coppice.set_threads(threads)


def prunable_layers(model: nn.Module, include: Optional[Include] = None) -> List[Tuple[str, nn.Module]]:
    """(name, module) of the layers whose weights are sparsified: every nn.Linear and nn.Conv2d
    by default (what coppice.torch registers), or those `include` accepts."""
    chosen = []
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        if include is None or include(name, module):
            chosen.append((name, module))
    return chosen


@torch.no_grad()
def layer_sparsity(model: nn.Module, include: Optional[Include] = None) -> List[Dict[str, Any]]:
    """Per prunable layer, the zeros actually in its torch weight tensor."""
    rows = []
    for name, module in prunable_layers(model, include):
        weight = module.weight
        zeros = int((weight == 0).sum())
        rows.append({"name": name, "shape": list(weight.shape), "numel": weight.numel(),
                     "zeros": zeros, "sparsity": zeros / weight.numel()})
    return rows


def overall_sparsity(rows: Sequence[Dict[str, Any]]) -> float:
    total = sum(r["numel"] for r in rows)
    return sum(r["zeros"] for r in rows) / total if total else 0.0


def print_layer_sparsity(rows: Sequence[Dict[str, Any]], target: Optional[float]) -> None:
    """One line per layer; with a target, whether it holds exactly round(n·s) zeros."""
    for r in rows:
        line = f"  {r['name']:<22} {str(tuple(r['shape'])):<18} {r['zeros']:>9}/{r['numel']:<9} zeros  {100 * r['sparsity']:6.2f}%"
        if target is not None:
            expected = round(r["numel"] * target)
            line += "  exact" if r["zeros"] == expected else f"  (round(n*s) = {expected})"
        print(line)


def add_run_arguments(p: Any, bench_steps: int) -> None:
    """The options both examples share: threads, seed, JSON output and the benchmark mode
    (`bench_steps` warm-up steps and steps per contender per round)."""
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.add_argument("--bench", action="store_true", help="time training steps instead of training")
    p.add_argument("--bench-warmup", type=int, default=bench_steps, help="warm-up steps per contender")
    p.add_argument("--bench-rounds", type=int, default=10, help="interleaved rounds")
    p.add_argument("--bench-steps", type=int, default=bench_steps,
                   help="steps per contender per round")


def run_example(parse_args: Callable[[], Any], train: Callable[[Any], Dict[str, Any]],
                bench: Callable[[Any], Dict[str, Any]]) -> None:
    """An example's main: --bench times steps (bench writes its own JSON), else it trains and
    writes the training record."""
    args = parse_args()
    if args.bench:
        bench(args)
    else:
        write_json(args.json, train(args))


def write_json(path: Optional[str], record: Dict[str, Any]) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
        print(f"wrote {path}")


def weight_decay_groups(model: nn.Module, weight_decay: float) -> List[Dict[str, Any]]:
    """Parameter groups that decay only conv/linear weights (not biases, norms, embeddings),
    as the engine does."""
    decayed = {id(m.weight) for _, m in prunable_layers(model)}
    decay = [p for p in model.parameters() if id(p) in decayed]
    rest = [p for p in model.parameters() if id(p) not in decayed]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


# ---------------------------------------------------------------------------------------------
# SparseProp, for the comparison in --bench (only when the package is installed).

def sparseprop_available() -> bool:
    return importlib.util.find_spec("sparseprop") is not None


def sparseprop_model(model: nn.Module, example: Any,
                     layers: Sequence[str]) -> Tuple[nn.Module, Dict[str, str]]:
    """A copy of `model` with the named layers swapped for SparseProp's modules, each built
    from the layer's current (masked) weight. SparseProp's own rule decides per layer whether
    its sparse module or the dense one is faster (`sparsify_if_faster`, timed on the layer's
    real input shape, captured here with forward hooks on `example`). Also returns, per layer,
    the class of module SparseProp chose."""
    from sparseprop.modules import sparsify_if_faster

    model = copy.deepcopy(model)
    shapes: Dict[str, Tuple[int, ...]] = {}
    hooks = []
    for name in layers:
        module = model.get_submodule(name)
        hooks.append(module.register_forward_hook(
            lambda m, inputs, output, name=name: shapes.__setitem__(name, tuple(inputs[0].shape))))
    training = model.training
    model.eval()
    with torch.no_grad():
        model(example)
    model.train(training)
    for hook in hooks:
        hook.remove()
    chosen = {}
    for name in layers:
        replacement = sparsify_if_faster(model.get_submodule(name), shapes[name])
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, replacement)
        chosen[name] = type(replacement).__name__
    return model, chosen


# ---------------------------------------------------------------------------------------------
# The benchmark: training steps of several contenders on the same batch, interleaved.

class Contender:
    """One way to run a training step: a name and a callable doing one full step
    (zero_grad, forward, loss, backward, optimizer step)."""

    def __init__(self, name: str, step: Callable[[], torch.Tensor]):
        self.name = name
        self.step = step


def interleaved_timing(contenders: Sequence[Contender], threads: int, warmup: int, rounds: int,
                       steps_per_round: int) -> Dict[str, List[float]]:
    """Per contender, the mean step time in ms of each round. Every contender is warmed up
    first (allocations, optimizer state, caches); then each round runs `steps_per_round` steps of
    every contender back to back, rotating which goes first, so that drift in the machine's
    load hits all of them alike. torch's thread count is set before every segment, in case a
    contender changes it."""
    for c in contenders:
        torch.set_num_threads(threads)
        for _ in range(warmup):
            loss = c.step()
        if not torch.isfinite(loss):
            raise SystemExit(f"{c.name}: loss is {loss.item()} after warm-up")
    times: Dict[str, List[float]] = {c.name: [] for c in contenders}
    for r in range(rounds):
        order = contenders[r % len(contenders):] + contenders[:r % len(contenders)]
        for c in order:
            torch.set_num_threads(threads)
            start = time.perf_counter()
            for _ in range(steps_per_round):
                c.step()
            times[c.name].append(1000 * (time.perf_counter() - start) / steps_per_round)
    return times


def median_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """The median of per-round ratios (robust to a round disturbed by other work)."""
    return statistics.median(n / d for n, d in zip(numerators, denominators))


def run_bench(
    *,
    model_name: str,
    build_model: Callable[[], nn.Module],
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    compute_loss: Callable[[nn.Module], torch.Tensor],
    example: Any,
    include: Optional[Include],
    sparsity: float,
    batch: int,
    threads: int,
    warmup: int,
    rounds: int,
    steps_per_round: int,
    seed: int,
    json_path: Optional[str],
    extra: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Times training steps of the dense torch model against a coppice.torch-sparsified copy
    (same initial weights, static masks at `sparsity`, same batch), and against SparseProp on
    the same masked weights when the sparseprop package is importable. `compute_loss(model)`
    runs the forward pass on the fixed batch; `example` is that batch's input (for SparseProp's
    shape probing)."""
    coppice_torch = import_coppice_torch("--bench")
    set_threads(threads, coppice_too=True)

    torch.manual_seed(seed)
    dense = build_model()
    sparse = copy.deepcopy(dense)
    dense_opt = make_optimizer(dense)
    sparse_opt = make_optimizer(sparse)
    handle = coppice_torch.sparsify(
        sparse, sparse_opt, method="static", sparsity=sparsity,
        total_steps=warmup + rounds * steps_per_round + 1, include=include, seed=seed)
    layers = [name for name, _ in prunable_layers(sparse, include)]

    def stepper(model: nn.Module, optimizer: torch.optim.Optimizer) -> Callable[[], torch.Tensor]:
        def step() -> torch.Tensor:
            optimizer.zero_grad()
            loss = compute_loss(model)
            loss.backward()
            optimizer.step()
            return loss.detach()
        return step

    contenders = [Contender("torch_dense", stepper(dense, dense_opt)),
                  Contender("coppice", stepper(sparse, sparse_opt))]
    # What the fused batch-norm blocks alone give: the dense model with only those on Coppice
    # (when the model has any), so the report can separate them from the sparse products.
    from coppice.torch_blocks import fuse_blocks

    dense_fused = copy.deepcopy(dense)
    if fuse_blocks(dense_fused)[0]:
        contenders.append(Contender("torch_dense_fused_blocks",
                                    stepper(dense_fused, make_optimizer(dense_fused))))
    sparseprop_note = "sparseprop not installed"
    sparseprop_layers: Dict[str, str] = {}
    if sparseprop_available():
        try:
            reference = build_model()
            reference.load_state_dict(sparse.state_dict())  # the masked weights, same masks
            sp_model, sparseprop_layers = sparseprop_model(reference, example, layers)
            contenders.append(Contender("sparseprop", stepper(sp_model, make_optimizer(sp_model))))
            sparseprop_note = ""
        except Exception as error:  # SparseProp is an optional comparison; report, go on
            sparseprop_note = f"sparseprop failed: {type(error).__name__}: {error}"
            print(sparseprop_note, file=sys.stderr)

    print(f"bench {model_name}: batch {batch}, {threads} threads, static masks at "
          f"{100 * sparsity:g}%, {warmup} warm-up steps, {rounds} rounds x {steps_per_round} steps, "
          f"contenders: {', '.join(c.name for c in contenders)}")
    times = interleaved_timing(contenders, threads, warmup, rounds, steps_per_round)

    dense_ms = times["torch_dense"]
    record: Dict[str, Any] = {
        "model": model_name,
        "sparsity": sparsity,
        "batch": batch,
        "threads": threads,
        "torch_dense_ms": statistics.median(dense_ms),
        "coppice_ms": statistics.median(times["coppice"]),
        "speedup": median_ratio(dense_ms, times["coppice"]),
        "rounds": rounds,
        "steps_per_round": steps_per_round,
        "warmup_steps": warmup,
        "coppice_sparsity": float(handle.sparsity()),
        "measured_sparsity": overall_sparsity(layer_sparsity(sparse, include)),
        "per_round_ms": times,
        "torch_version": torch.__version__,
    }
    if "torch_dense_fused_blocks" in times:
        fused_ms = times["torch_dense_fused_blocks"]
        record["dense_fused_blocks_ms"] = statistics.median(fused_ms)
        record["fused_blocks_speedup"] = median_ratio(dense_ms, fused_ms)
        record["sparsity_speedup"] = median_ratio(fused_ms, times["coppice"])
    if "sparseprop" in times:
        record["sparseprop_ms"] = statistics.median(times["sparseprop"])
        record["sparseprop_speedup"] = median_ratio(dense_ms, times["sparseprop"])
        record["coppice_vs_sparseprop"] = median_ratio(times["sparseprop"], times["coppice"])
        record["sparseprop_layers"] = sparseprop_layers
    elif sparseprop_note:
        record["sparseprop_note"] = sparseprop_note
    record.update(extra or {})

    print(f"  torch dense  {record['torch_dense_ms']:8.1f} ms/step")
    print(f"  coppice      {record['coppice_ms']:8.1f} ms/step   speedup {record['speedup']:.2f}x "
          f"(median of per-round ratios)")
    if "dense_fused_blocks_ms" in record:
        print(f"  dense, only batch norm/ReLU/pool on coppice {record['dense_fused_blocks_ms']:8.1f} ms/step"
              f"   speedup {record['fused_blocks_speedup']:.2f}x; sparse products on top "
              f"{record['sparsity_speedup']:.2f}x")
    if "sparseprop_ms" in record:
        print(f"  sparseprop   {record['sparseprop_ms']:8.1f} ms/step   speedup "
              f"{record['sparseprop_speedup']:.2f}x; coppice vs sparseprop "
              f"{record['coppice_vs_sparseprop']:.2f}x")
    else:
        print(f"  ({sparseprop_note})")
    write_json(json_path, record)
    return record
