"""Batch norm → ReLU (→ max-pool) of a PyTorch model on Coppice's kernels.

Once its convolutions run on Coppice's sparse kernels, a conv net's step is dominated by what
PyTorch does between them: batch norm, ReLU and max-pooling (measured on the reference cnn at
90%: about two thirds of the step). `fuse_blocks(model)` finds, in the model's traced graph
(torch.fx), every `nn.BatchNorm2d` whose only use is a ReLU, optionally followed by a 2-D max
pool, and routes each such chain through one autograd function on Coppice's fused kernels
(`coppice_batchnorm2d_*` with the ReLU folded in, `coppice_maxpool2d_*`; a 2×2 stride-2 pool
runs with them as one kernel, `coppice_batchnorm2d_relu_maxpool2_*`). The model object, its
modules, parameters, buffers and state_dict stay as they are; only `model.forward` becomes the
traced forward with the chains replaced.

Left as they are (reported, never an error): models that torch.fx cannot trace, models whose
traced graph differs between train() and eval() (a forward that branches on self.training),
batch norms without affine parameters or running statistics, max pools with dilation or
ceil_mode. In eval mode, and for inputs that are not CPU float32, a fused chain runs PyTorch's
own operations. Used by `coppice.torch.sparsify(..., fuse_blocks=True)` (the default).
"""

from __future__ import annotations

import ctypes
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import fx, nn

from ._capi import capi
from ._library import check

Pool = Tuple[int, int, int]  # kernel, stride, padding


def _shape(dims: Tuple[int, ...]) -> Any:
    """An NCHW shape as the C functions take it (int64_t[4])."""
    return (ctypes.c_int64 * 4)(*dims)


def _ptr(t: Optional[torch.Tensor]) -> Optional[int]:
    return None if t is None else t.data_ptr()


class _BatchNormReluPoolFunction(torch.autograd.Function):
    """Training-mode BatchNorm2d + ReLU (+ max-pool) forward and backward on Coppice's kernels."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                bn: nn.BatchNorm2d, pool: Optional[Pool]) -> torch.Tensor:
        c = x.shape[1]
        shape = _shape(tuple(x.shape))
        mean = torch.empty(c, dtype=torch.float32)
        invstd = torch.empty(c, dtype=torch.float32)
        running_mean = running_var = None
        momentum = 0.0
        if bn.track_running_stats and bn.running_mean is not None:
            bn.num_batches_tracked.add_(1)
            momentum = (1.0 / float(bn.num_batches_tracked)) if bn.momentum is None else bn.momentum
            running_mean, running_var = bn.running_mean, bn.running_var
        ctx.pool = pool
        ctx.shape = tuple(x.shape)
        ctx.fused_pool = pool == (2, 2, 0) and x.shape[2] >= 2 and x.shape[3] >= 2
        if ctx.fused_pool:
            # One kernel for the three: the full-size normalised output is never stored.
            out = torch.empty((x.shape[0], c, x.shape[2] // 2, x.shape[3] // 2),
                              dtype=torch.float32)
            winner = torch.empty(out.shape, dtype=torch.uint8)
            check(capi.coppice_batchnorm2d_relu_maxpool2_forward(
                shape, x.data_ptr(), weight.data_ptr(), bias.data_ptr(), float(bn.eps),
                float(momentum), _ptr(running_mean), _ptr(running_var), mean.data_ptr(),
                invstd.data_ptr(), out.data_ptr(), winner.data_ptr()))
            # β as the forward used it (the optimizer steps after the backward): with it the
            # backward takes its batch sums from the pooled output and writes dx image by image.
            # (Every path saves x, γ, β and the statistics first, then what it needs besides.)
            ctx.save_for_backward(x, weight, bias, mean, invstd, out, winner)
            return out
        y = torch.empty_like(x)
        check(capi.coppice_batchnorm2d_forward(
            shape, x.data_ptr(), weight.data_ptr(), bias.data_ptr(), float(bn.eps), float(momentum),
            _ptr(running_mean), _ptr(running_var), mean.data_ptr(), invstd.data_ptr(), 1,
            y.data_ptr()))
        # The backward recomputes the ReLU's mask from x and β (as the forward computed it), so
        # it reads two full-size arrays per pass instead of three; y itself is not kept.
        if pool is None:
            ctx.save_for_backward(x, weight, bias, mean, invstd)
            return y
        k, s, p = pool
        oh, ow = ctypes.c_int64(), ctypes.c_int64()
        check(capi.coppice_maxpool2d_output_size(shape, k, s, p, ctypes.byref(oh), ctypes.byref(ow)))
        out = torch.empty((x.shape[0], c, oh.value, ow.value), dtype=torch.float32)
        argmax = torch.empty(out.shape, dtype=torch.int32)
        check(capi.coppice_maxpool2d_forward(shape, k, s, p, y.data_ptr(), out.data_ptr(),
                                             argmax.data_ptr()))
        ctx.save_for_backward(x, weight, bias, mean, invstd, argmax)
        return out

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> Any:
        x, weight, bias, mean, invstd, *rest = ctx.saved_tensors
        shape = _shape(ctx.shape)
        dout = dout.contiguous()
        dx = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        dgamma = torch.empty_like(weight)
        dbeta = torch.empty_like(weight)
        if ctx.fused_pool:
            out, winner = rest
            check(capi.coppice_batchnorm2d_relu_maxpool2_backward_with_beta(
                shape, x.data_ptr(), weight.data_ptr(), bias.data_ptr(), mean.data_ptr(),
                invstd.data_ptr(), out.data_ptr(), winner.data_ptr(), dout.data_ptr(), _ptr(dx),
                dgamma.data_ptr(), dbeta.data_ptr()))
            return dx, dgamma, dbeta, None, None
        if ctx.pool is None:
            dy = dout
        else:
            k, s, p = ctx.pool
            dy = torch.empty_like(x)
            check(capi.coppice_maxpool2d_backward(shape, k, s, p, rest[0].data_ptr(),
                                                  dout.data_ptr(), dy.data_ptr()))
        check(capi.coppice_batchnorm2d_relu_backward(
            shape, x.data_ptr(), weight.data_ptr(), bias.data_ptr(), mean.data_ptr(),
            invstd.data_ptr(), dy.data_ptr(), _ptr(dx), dgamma.data_ptr(), dbeta.data_ptr()))
        return dx, dgamma, dbeta, None, None


class FusedBatchNormReLU(nn.Module):
    """bn → ReLU (→ max-pool) as one step; holds the model's own BatchNorm2d (not a copy)."""

    def __init__(self, bn: nn.BatchNorm2d, pool: Optional[Pool]) -> None:
        super().__init__()
        self.bn = [bn]  # a list: not registered as a submodule (the model owns it)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn = self.bn[0]
        fast = (bn.training and x.dim() == 4 and x.dtype == torch.float32
                and x.device.type == "cpu" and bn.weight is not None
                and bn.weight.dtype == torch.float32 and x.numel() > 0)
        if not fast:
            y = F.relu(bn(x))
            if self.pool is None:
                return y
            k, s, p = self.pool
            return F.max_pool2d(y, k, s, p)
        return _BatchNormReluPoolFunction.apply(x.contiguous(), bn.weight, bn.bias, bn, self.pool)

    def extra_repr(self) -> str:
        return f"pool={self.pool}"


# ---------------------------------------------------------------------------- finding chains

def _is_relu(node: fx.Node, modules: Dict[str, nn.Module]) -> bool:
    if node.op == "call_function":
        return node.target in (F.relu, torch.relu, torch.relu_) and len(node.args) == 1
    if node.op == "call_method":
        return node.target in ("relu", "relu_") and len(node.args) == 1
    if node.op == "call_module":
        return type(modules.get(node.target)) is nn.ReLU
    return False


def _square(value: Any) -> Optional[int]:
    if isinstance(value, int):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2 and value[0] == value[1]:
        return int(value[0])
    return None


def _pool_of(node: fx.Node, modules: Dict[str, nn.Module]) -> Optional[Pool]:
    """(kernel, stride, padding) of a plain square 2-D max pool on its first argument, else None."""
    if node.op == "call_module":
        m = modules.get(node.target)
        if type(m) is not nn.MaxPool2d or len(node.args) != 1:
            return None
        k, s, p, d = _square(m.kernel_size), _square(m.stride), _square(m.padding), _square(m.dilation)
        if m.ceil_mode or m.return_indices or d != 1 or None in (k, s, p):
            return None
        return k, s, p  # type: ignore[return-value]
    if node.op == "call_function" and node.target is F.max_pool2d:
        names = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
        args = dict(zip(names, node.args))
        args.update(node.kwargs)
        k = _square(args.get("kernel_size"))
        s = _square(args.get("stride") or args.get("kernel_size"))
        p = _square(args.get("padding", 0))
        if (args.get("dilation", 1) not in (1, (1, 1)) or args.get("ceil_mode", False)
                or args.get("return_indices", False) or None in (k, s, p)):
            return None
        return k, s, p  # type: ignore[return-value]
    return None


def _fusable_bn(bn: nn.Module) -> bool:
    return (type(bn) is nn.BatchNorm2d and bn.affine and bn.track_running_stats
            and bn.running_mean is not None)


def fuse_blocks(model: nn.Module) -> Tuple[List[str], str]:
    """Routes every fusable BatchNorm2d → ReLU (→ max-pool) chain of `model` through Coppice's
    kernels. Returns the names of the fused batch norms and, when none could be fused, why."""
    modules = dict(model.named_modules())
    if not any(_fusable_bn(m) for m in modules.values()):
        return [], "no BatchNorm2d with affine parameters and running statistics"
    training = model.training
    try:
        model.train()
        graph = fx.symbolic_trace(model)
        model.eval()
        if fx.symbolic_trace(model).code != graph.code:
            return [], "the forward differs between train() and eval()"
    except Exception as error:  # any tracing failure leaves the model as it is
        return [], f"torch.fx cannot trace the model ({type(error).__name__}: {error})"
    finally:
        model.train(training)
    fused: List[str] = []
    for node in list(graph.graph.nodes):
        if node.op != "call_module" or not _fusable_bn(modules.get(node.target)):
            continue
        users = list(node.users)
        if len(users) != 1 or not _is_relu(users[0], modules) or len(node.args) != 1:
            continue
        relu = users[0]
        last, pool = relu, None
        after = list(relu.users)
        if len(after) == 1 and after[0].args and after[0].args[0] is relu:
            pool = _pool_of(after[0], modules)
            if pool is not None and 2 * pool[2] <= pool[0]:
                last = after[0]
            else:
                pool = None
        name = f"coppice_fused_{len(fused)}"
        graph.add_submodule(name, FusedBatchNormReLU(modules[node.target], pool))
        with graph.graph.inserting_after(last):
            replacement = graph.graph.call_module(name, (node.args[0],))
        last.replace_all_uses_with(replacement)
        for dead in ([last, relu, node] if last is not relu else [relu, node]):
            graph.graph.erase_node(dead)
        fused.append(node.target)
    if not fused:
        return [], "no BatchNorm2d used only by a ReLU"
    graph.recompile()
    # An instance attribute (the bound method keeps the traced module alive); the traced module
    # shares the model's modules, parameters and buffers, and is not registered in the model.
    model.forward = graph.forward
    return fused, ""
