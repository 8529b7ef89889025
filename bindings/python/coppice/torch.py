"""Sparse training of a PyTorch model on Coppice's kernels: `coppice.torch.sparsify`.

    import coppice.torch
    sparse = coppice.torch.sparsify(model, optimizer, method="cgap", sparsity=0.9,
                                    total_steps=epochs * len(loader), steps_per_epoch=len(loader))
    ... the usual PyTorch training loop, unchanged ...

`sparsify` registers the weight of every `nn.Linear` and `nn.Conv2d` (filter them with
`include` / `exclude`) with a `coppice.Sparsifier`, and from then on:

- those layers' forward and backward run through Coppice's sparse layer operations
  (coppice_layer_*): the sparse kernels where the cost model expects them to be faster, and
  PyTorch's own dense math where it does not (a GaP partition while it is dense, a small first
  convolution); the weight gradient is computed only at kept positions;
- after `optimizer.step()` (an optimizer step hook) the schedule steps: masks are re-applied,
  grown and pruned, and the optimizer state (SGD momentum, Adam moments, any state tensor shaped
  like the weight) is zeroed wherever a mask changed; before it, gradients are masked;
- a parameter that was reallocated (`.to(dtype)`, `.data = ...`, moved off the CPU) is reported
  with a clear error instead of silently training stale memory; `zero_grad()` with
  `set_to_none=True` is fine.

FLOPs per weight (for FLOP-balanced GaP partitions) are measured on the first forward pass
(or on `example_input`), where the sparsifier also starts. `handle.state_dict()` /
`load_state_dict()` carry the sparsifier state next to the model's and the optimizer's.

Threads: PyTorch (GNU OpenMP) and Coppice (LLVM OpenMP) each have a thread pool, and an idle
libgomp thread spins for about 9 ms after every PyTorch operation (measured here), stealing a
core from the Coppice product that follows. So `sparsify` lends PyTorch's pool to Coppice
(`coppice_set_parallel_runner` with libgomp's `GOMP_parallel`, when this process's PyTorch runs
on libgomp, as the Linux wheels do): the routed layers' products then run on PyTorch's own
threads, one pool for the whole step; results are bit-identical to Coppice's own threads.
`share_threads=False` keeps the two pools (Coppice's then sleep right after each product). The
runner is process-wide: the handle started last decides.
Coppice uses `threads` threads (default: torch.get_num_threads()).

`import coppice` works without PyTorch; importing this module needs it.
"""

from __future__ import annotations

import ctypes
import os
import tempfile
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ._capi import Conv2dParams, capi
from ._library import check
from .sparsifier import LIBRARY_DEFAULT, Sparsifier

__all__ = ["sparsify", "SparseModel"]

Filter = Union[None, Callable[[str, nn.Module], bool], Iterable[Union[str, type]]]


def _block_of(model: nn.Module, name: str) -> str:
    """The block a layer belongs to for GaP partitions: its nearest enclosing module that is
    neither the model itself nor an nn.Sequential/ModuleList ("layer2.1" for
    "layer2.1.downsample.0" in a torchvision ResNet); "" when there is none."""
    parts = name.split(".")
    for end in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:end])
        module = model.get_submodule(prefix)
        if not isinstance(module, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            return prefix
    return ""


def _matches(filter_: Filter, name: str, module: nn.Module) -> bool:
    if callable(filter_):
        return bool(filter_(name, module))
    for item in filter_:  # type: ignore[union-attr]
        if isinstance(item, type) and isinstance(module, item):
            return True
        if isinstance(item, str) and (name == item or f"{name}.weight" == item):
            return True
    return False


def _check_tensor(tensor: torch.Tensor, what: str) -> None:
    if tensor.device.type != "cpu" or tensor.dtype != torch.float32 or tensor.layout != torch.strided:
        raise TypeError(f"{what} must be a CPU float32 strided tensor, got {tensor.dtype} on {tensor.device}")
    if not tensor.is_contiguous():
        raise ValueError(f"{what} must be contiguous")


class _Layer:
    """One routed nn.Linear / nn.Conv2d: its coppice_layer handle and the dense/sparse choice."""

    def __init__(self, owner: "SparseModel", name: str, module: nn.Module) -> None:
        self.owner = owner
        self.name = name
        self.module = module
        self.parameter = f"{name}.weight"
        self.weight: torch.Tensor = module.weight
        self.address = module.weight.data_ptr()
        self.handle: Optional[ctypes.c_void_p] = None
        self.is_conv = isinstance(module, nn.Conv2d)

    def routable(self) -> Optional[str]:
        """Why this layer cannot run on Coppice's layer operations, or None."""
        if self.is_conv:
            m = self.module
            if m.groups != 1:
                return "groups != 1"
            if tuple(m.dilation) != (1, 1):
                return "dilation != 1"
            if m.stride[0] != m.stride[1] or not isinstance(m.padding, tuple) or m.padding[0] != m.padding[1]:
                return "unequal stride or padding (or padding='same'/'valid')"
            if m.padding_mode != "zeros":
                return f"padding_mode {m.padding_mode!r}"
        return None

    def create(self, sparsifier: Sparsifier) -> None:
        handle = ctypes.c_void_p()
        if self.is_conv:
            params = Conv2dParams()
            capi.coppice_conv2d_params_init(ctypes.byref(params))
            params.stride_h = params.stride_w = int(self.module.stride[0])
            params.pad_h = params.pad_w = int(self.module.padding[0])
            check(capi.coppice_layer_conv2d_create(sparsifier._live(), self.parameter.encode(),
                                                   ctypes.byref(params), ctypes.byref(handle)))
        else:
            check(capi.coppice_layer_linear_create(sparsifier._live(), self.parameter.encode(),
                                                   ctypes.byref(handle)))
        self.handle = handle

    def destroy(self) -> None:
        if self.handle is not None:
            capi.coppice_layer_destroy(self.handle)
            self.handle = None

    def __del__(self) -> None:
        try:
            self.destroy()
        except Exception:  # interpreter shutdown: the library may be gone already
            pass

    def verify(self) -> None:
        """Raises if the weight was reallocated or changed kind since registration."""
        w = self.module.weight
        if w is not self.weight or w.data_ptr() != self.address or w.dtype != torch.float32 \
                or w.device.type != "cpu" or not w.is_contiguous():
            raise RuntimeError(
                f"coppice.torch: parameter {self.parameter} was reallocated or converted "
                f"({w.dtype} on {w.device}, {'' if w.is_contiguous() else 'non-'}contiguous) after "
                "sparsify(); its masks and layer operations refer to the old memory. Convert the "
                "model (dtype, device) before calling coppice.torch.sparsify, and update weights "
                "in place.")

    def runs_sparse(self, batch: int, height: int = 0, width: int = 0) -> bool:
        """Whether Coppice would run the forward or the backward of this input sparse at the
        current masks (coppice_layer_plan); if not, PyTorch's own dense math is used. Asked at
        every call, so the choice depends only on the state, never on history."""
        forward, backward = ctypes.c_int(), ctypes.c_int()
        check(capi.coppice_layer_plan(self.handle, batch, height, width, ctypes.byref(forward),
                                      ctypes.byref(backward)))
        return bool(forward.value or backward.value)

    def execution(self) -> Tuple[bool, bool]:
        forward, backward = ctypes.c_int(), ctypes.c_int()
        check(capi.coppice_layer_execution(self.handle, ctypes.byref(forward), ctypes.byref(backward)))
        return bool(forward.value), bool(backward.value)


def _gradient_outputs(ctx: Any, x: torch.Tensor, layer: _Layer) -> Tuple[Any, Any, Any]:
    """Fresh dx, dw, db tensors for the gradients autograd asks for (None for the others)."""
    need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    need_b = ctx.has_bias and ctx.needs_input_grad[2]
    return (torch.empty_like(x) if need_x else None,
            torch.empty_like(layer.weight) if need_w else None,
            torch.empty(layer.weight.shape[0], dtype=torch.float32) if need_b else None)


class _LayerFunction(torch.autograd.Function):
    """A routed layer's forward and backward on its coppice_layer handle (linear: x [N, in];
    conv2d: x NCHW)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                layer: _Layer) -> torch.Tensor:
        b = None if bias is None else bias.data_ptr()
        if layer.is_conv:
            n, _, h, w = x.shape
            oh, ow = ctypes.c_int64(), ctypes.c_int64()
            check(capi.coppice_layer_conv2d_output_size(layer.handle, h, w, ctypes.byref(oh), ctypes.byref(ow)))
            y = torch.empty((n, weight.shape[0], oh.value, ow.value), dtype=torch.float32)
            check(capi.coppice_layer_conv2d_forward(layer.handle, x.data_ptr(), n, h, w, b, y.data_ptr()))
        else:
            y = torch.empty((x.shape[0], weight.shape[0]), dtype=torch.float32)
            check(capi.coppice_layer_linear_forward(layer.handle, x.data_ptr(), x.shape[0], b, y.data_ptr()))
        ctx.save_for_backward(x)
        ctx.layer = layer
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> Any:
        (x,) = ctx.saved_tensors
        layer: _Layer = ctx.layer
        dy = dy.contiguous()
        dx, dw, db = _gradient_outputs(ctx, x, layer)
        outputs = (None if t is None else t.data_ptr() for t in (dx, dw, db))
        if layer.is_conv:
            n, _, h, w = x.shape
            check(capi.coppice_layer_conv2d_backward(layer.handle, x.data_ptr(), dy.data_ptr(), n, h, w, *outputs))
        else:
            check(capi.coppice_layer_linear_backward(layer.handle, x.data_ptr(), dy.data_ptr(), x.shape[0], *outputs))
        return dx, dw, db, None


def _routed_forward(layer: _Layer, dense_forward: Callable[[torch.Tensor], torch.Tensor]) -> Callable:
    """The replacement `forward` of a routed module."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        model = layer.owner
        if not model._started:
            return dense_forward(x)
        layer.verify()
        if x.dtype != torch.float32 or x.device.type != "cpu":
            raise TypeError(f"coppice.torch: {layer.name} got a {x.dtype} input on {x.device}; "
                            "CPU float32 is needed")
        module = layer.module
        if layer.is_conv:
            if x.dim() != 4 or not layer.runs_sparse(x.shape[0], x.shape[2], x.shape[3]):
                return dense_forward(x)
            return _LayerFunction.apply(x.contiguous(), module.weight, module.bias, layer)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1]).contiguous()
        if x2.shape[0] == 0 or not layer.runs_sparse(x2.shape[0]):
            return dense_forward(x)
        return _LayerFunction.apply(x2, module.weight, module.bias, layer).reshape(*lead, -1)

    return forward


class SparseModel:
    """The handle `sparsify` returns: the sparsifier, the routed layers and the hooks."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, layers: List[_Layer],
                 sparsifier: Sparsifier, partitions: Optional[List[List[str]]], example_input: Any,
                 share_threads: bool, threads: Optional[int],
                 restart_optimizer: bool = False, reference_mask_updates: bool = False) -> None:
        self.model = model
        self._restart_optimizer = restart_optimizer
        self._partitions = partitions
        self._measuring = False
        self.optimizer = optimizer
        self.sparsifier = sparsifier
        self.layers = layers
        self._started = False
        self._gradients: Dict[str, torch.Tensor] = {}
        self._hooks: List[Any] = []
        self._threads = threads
        self._share_threads = share_threads
        # Batch norms whose BN → ReLU (→ max-pool) chain runs on Coppice's fused kernels, and why
        # none does when the list is empty (see coppice.torch_blocks).
        self.fused_blocks: List[str] = []
        self.fuse_note = "fuse_blocks=False"
        # Whose threads run the layer products: "torch" (PyTorch's pool lent through
        # coppice_set_parallel_runner) or "coppice" (Coppice's own OpenMP threads); set on start.
        self.thread_pool: Optional[str] = None
        for layer in layers:
            layer.owner = self
            if layer.routable() is None:
                dense = layer.module.forward
                layer.module.forward = _routed_forward(layer, dense)  # an instance attribute
        self._hooks.append(model.register_forward_pre_hook(self._before_first_forward))
        self._hooks.append(optimizer.register_step_pre_hook(self._before_optimizer_step))
        self._hooks.append(optimizer.register_step_post_hook(self._after_optimizer_step))
        self._skipping_step: Optional[Callable[..., Any]] = None
        if reference_mask_updates:
            self._skip_optimizer_step_on_mask_updates(optimizer)
        if example_input is not None:
            self._start(example_input)

    # ------------------------------------------------------------------ start
    def _before_first_forward(self, _module: nn.Module, args: Tuple[Any, ...]) -> None:
        if not self._started and not self._measuring:
            self._start(args[0] if len(args) == 1 else args)

    def _start(self, example_input: Any) -> None:
        """Measures FLOPs per weight on one forward pass (in eval mode, so running statistics
        do not move), registers the weights, starts the sparsifier, creates the layers."""
        inputs = example_input if isinstance(example_input, tuple) else (example_input,)
        samples = int(inputs[0].shape[0]) if getattr(inputs[0], "ndim", 0) > 0 else 1
        flops: Dict[str, float] = {}

        def measure(layer: _Layer) -> Callable[..., None]:
            def hook(module: nn.Module, args: Tuple[Any, ...], output: torch.Tensor) -> None:
                if layer.is_conv:  # 2·OH·OW per weight per sample
                    flops[layer.parameter] = 2.0 * output.shape[-2] * output.shape[-1]
                else:  # 2 per weight per input row; rows per sample (e.g. a sequence's tokens)
                    rows = args[0].numel() // args[0].shape[-1]
                    flops[layer.parameter] = 2.0 * rows / samples
            return hook

        hooks = [layer.module.register_forward_hook(measure(layer)) for layer in self.layers]
        modes = [(m, m.training) for m in self.model.modules()]
        self._measuring = True
        try:
            self.model.eval()
            with torch.no_grad():
                self.model(*inputs)
        finally:
            self._measuring = False
            for module, training in modes:
                module.training = training
            for h in hooks:
                h.remove()
        for layer in self.layers:
            w = layer.module.weight
            _check_tensor(w, layer.parameter)
            self._gradients[layer.parameter] = torch.zeros_like(w)
            self.sparsifier.add_parameter(layer.parameter, w.data, self._gradients[layer.parameter],
                                          flops_per_weight=flops.get(layer.parameter, 2.0))
        if self._partitions is not None:
            self.sparsifier.set_partitions(self._partitions)
        else:
            # Balanced partitions keep whole blocks (e.g. a ResNet BasicBlock) together.
            for layer in self.layers:
                block = _block_of(self.model, layer.name)
                if block:
                    self.sparsifier.set_block(layer.parameter, block)
        self.sparsifier.start()
        if self._threads is not None:
            check(capi.coppice_set_threads(int(self._threads)))
        # Coppice's threads sleep right after each product, so PyTorch's have the cores.
        capi.coppice_set_idle_spin(0)
        self.thread_pool = "coppice"
        if self._share_threads and _lend_torch_pool():
            self.thread_pool = "torch"
        elif not self._share_threads:
            check(capi.coppice_set_parallel_runner(None))
        for layer in self.layers:
            if layer.routable() is None:
                layer.create(self.sparsifier)
        self._started = True

    # ------------------------------------------------------------------ the step
    def _skip_optimizer_step_on_mask_updates(self, optimizer: torch.optim.Optimizer) -> None:
        """RigL/SET as the reference runs them (`reference_mask_updates=True`): on a mask-update
        step the mask update replaces the gradient step, so `optimizer.step()` then only masks
        the gradients and steps the schedule, without updating any parameter."""
        original = optimizer.step

        def step(*args: Any, **kwargs: Any) -> Any:
            if self._started and self.sparsifier.skips_optimizer_step():
                self._before_optimizer_step(optimizer, args, kwargs)
                self._after_optimizer_step(optimizer, args, kwargs)
                return None
            return original(*args, **kwargs)

        optimizer.step = step  # an instance attribute; remove() puts the original back
        self._skipping_step = original

    def _before_optimizer_step(self, _optimizer: Any, _args: Any, _kwargs: Any) -> None:
        """Gradients into the registered buffers (rebinding after zero_grad(set_to_none=True)),
        then masked."""
        if not self._started:
            return
        for layer in self.layers:
            layer.verify()
            p = layer.module.weight
            buffer = self._gradients[layer.parameter]
            if p.grad is None:  # no gradient this step: the optimizer skips the weight
                buffer.zero_()
                continue
            if p.grad.data_ptr() != buffer.data_ptr():
                buffer.copy_(p.grad)
            p.grad = buffer
        self.sparsifier.mask_gradients()

    def _after_optimizer_step(self, optimizer: Any, _args: Any, _kwargs: Any) -> None:
        """Masks re-applied, the schedule stepped; optimizer state reset where masks changed."""
        if not self._started:
            return
        changed_masks = self.sparsifier.step()
        if self._restart_optimizer and self.sparsifier.ended_gap_step():
            optimizer.state.clear()  # a fresh optimizer: state is rebuilt at its next step
            return
        if changed_masks:
            for layer in self.layers:
                changed = torch.from_numpy(self.sparsifier.changed_mask(layer.parameter).astype(bool)).reshape(layer.weight.shape)
                if not bool(changed.any()):
                    continue
                for value in optimizer.state.get(layer.weight, {}).values():
                    if isinstance(value, torch.Tensor) and value.shape == layer.weight.shape:
                        value.masked_fill_(changed, 0)

    # ------------------------------------------------------------------ reports and state
    def sparsity(self, name: Optional[str] = None) -> float:
        """Sparsity of one registered weight ("fc1.weight"), or over all of them."""
        return self.sparsifier.sparsity(name)

    def report(self) -> str:
        """A table: per routed layer, its sparsity and whether it runs on Coppice's kernels."""
        rows = [f"{'parameter':<32} {'sparsity':>9}  runs on"]
        for layer in self.layers:
            why = layer.routable()
            where = "coppice" if why is None else f"torch ({why})"
            rows.append(f"{layer.parameter:<32} {100 * self.sparsity(layer.parameter):8.2f}%  {where}")
        rows.append(f"{'total':<32} {100 * self.sparsity():8.2f}%")
        if self.fused_blocks:
            rows.append(f"batch norm + ReLU (+ max-pool) on coppice: {', '.join(self.fused_blocks)}")
        else:
            rows.append(f"batch norm + ReLU (+ max-pool) on torch: {self.fuse_note}")
        return "\n".join(rows)

    @property
    def phase(self) -> str:
        return self.sparsifier.phase

    def state_dict(self) -> Dict[str, Any]:
        """The sparsifier's state (masks, step, schedule), to save next to model and optimizer."""
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "sparsifier.json")
            self.sparsifier.save(path)
            with open(path, "rb") as f:
                return {"format": "coppice.torch/1", "sparsifier": f.read()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restores `state_dict()` into a handle made the same way (same model, same options);
        load the model's and the optimizer's state dicts too."""
        if state.get("format") != "coppice.torch/1":
            raise ValueError("not a coppice.torch state dict")
        if not self._started:
            raise RuntimeError("run one forward pass (or pass example_input) before load_state_dict")
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "sparsifier.json")
            with open(path, "wb") as f:
                f.write(state["sparsifier"])
            self.sparsifier.load(path)

    def remove(self) -> None:
        """Detaches: hooks removed, layers back to PyTorch's forward, handles freed."""
        for h in self._hooks:
            h.remove()
        self._hooks = []
        if self._skipping_step is not None:
            del self.optimizer.step  # the class's step again
            self._skipping_step = None
        for layer in self.layers:
            if "forward" in layer.module.__dict__:
                del layer.module.forward
            layer.destroy()
        self.sparsifier.close()


def _lend_torch_pool() -> bool:
    """Installs the GNU OpenMP runtime already loaded in this process (PyTorch's) as the runner
    of the layer products; False (nothing changed) when no libgomp is loaded."""
    try:
        gomp = ctypes.CDLL("libgomp.so.1", mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
        runner = ctypes.cast(gomp.GOMP_parallel, ctypes.c_void_p)
    except (OSError, AttributeError):
        return False
    check(capi.coppice_set_parallel_runner(runner))
    return True


def sparsify(model: nn.Module, optimizer: torch.optim.Optimizer, *, total_steps: int,
             method: str = LIBRARY_DEFAULT, sparsity: float = LIBRARY_DEFAULT,
             steps_per_epoch: Optional[int] = None,
             partitions: Union[int, Sequence[Sequence[str]], Any] = LIBRARY_DEFAULT,
             include: Filter = None, exclude: Filter = None, example_input: Any = None,
             threads: Optional[int] = None, share_threads: bool = True,
             fuse_blocks: bool = True, **options: Any) -> SparseModel:
    """Sparse training of `model` with `optimizer` (see the module's documentation).

    `method`, `sparsity`, `total_steps`, `steps_per_epoch` and the other keyword options are
    those of `coppice.Sparsifier` (defaults: the library's). `partitions` is a count or a list
    of partitions, each a list of parameter or module names (e.g. whole Transformer blocks).
    `include` / `exclude` choose the layers: a callable (name, module) → bool, or a list of
    module names, parameter names or module types; by default every nn.Linear and nn.Conv2d.
    `example_input` starts the sparsifier at once (else at the first forward pass).
    `threads`: Coppice's kernel threads (default: torch.get_num_threads()). `share_threads`:
    run the routed layers' products on PyTorch's thread pool (see the module's documentation).
    `fuse_blocks`: run BatchNorm2d → ReLU (→ max-pool) chains on Coppice's fused kernels
    (`coppice.torch_blocks`; the model's forward becomes its torch.fx trace with those chains
    replaced; models that cannot be traced are left as they are).
    """
    layers: List[_Layer] = []
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        if include is not None and not _matches(include, name, module):
            continue
        if exclude is not None and _matches(exclude, name, module):
            continue
        _check_tensor(module.weight, f"{name}.weight")
        layers.append(_Layer(None, name, module))  # type: ignore[arg-type]
    if not layers:
        raise ValueError("coppice.torch.sparsify: no nn.Linear or nn.Conv2d layer selected")
    explicit: Optional[List[List[str]]] = None
    if isinstance(partitions, int) or partitions is LIBRARY_DEFAULT:
        count = partitions
    else:
        explicit = [[n if n.endswith(".weight") else f"{n}.weight" for n in group] for group in partitions]
        count = len(explicit)
        known = {layer.parameter for layer in layers}
        unknown = [n for group in explicit for n in group if n not in known]
        if unknown:
            raise ValueError(f"partitions name layers that are not selected: {unknown}")
    sparsifier = Sparsifier(method=method, sparsity=sparsity, total_steps=total_steps,
                            steps_per_epoch=steps_per_epoch, partitions=count, **options)
    handle = SparseModel(model, optimizer, layers, sparsifier, explicit, example_input, share_threads,
                         threads if threads is not None else torch.get_num_threads(),
                         restart_optimizer=bool(options.get("restart_optimizer_per_step", False)),
                         reference_mask_updates=bool(options.get("reference_mask_updates", False)))
    if fuse_blocks:
        from .torch_blocks import fuse_blocks as fuse

        handle.fused_blocks, handle.fuse_note = fuse(model)
    return handle
