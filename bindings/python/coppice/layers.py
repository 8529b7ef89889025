"""Sparse layers: a host's own linear and convolution layers on the sparse kernels
(coppice_layer_*), with numpy arrays or CPU float32 tensors passed by pointer."""

from __future__ import annotations

import ctypes
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from ._arrays import as_float_buffer, as_mask_array
from ._capi import Conv2dParams, capi
from ._handle import Handle
from ._library import check

__all__ = ["SparseLinear", "SparseConv2d"]


def _conv_params(stride: int, padding: int) -> Conv2dParams:
    params = Conv2dParams()
    capi.coppice_conv2d_params_init(ctypes.byref(params))
    params.stride_h = params.stride_w = int(stride)
    params.pad_h = params.pad_w = int(padding)
    return params


class _Layer(Handle):
    """What both layer kinds share: creation, the execution report, output buffers."""

    def _create(self, function: Any, *args: Any) -> None:
        handle = ctypes.c_void_p()
        check(function(*args, ctypes.byref(handle)))
        self._adopt(handle, capi.coppice_layer_destroy)

    @property
    def execution(self) -> Tuple[bool, bool]:
        """Whether the last forward and the last backward ran on the sparse kernels."""
        forward, backward = ctypes.c_int(), ctypes.c_int()
        check(capi.coppice_layer_execution(self._live(), ctypes.byref(forward), ctypes.byref(backward)))
        return bool(forward.value), bool(backward.value)

    @staticmethod
    def _out(shape: Tuple[int, ...], out: Any) -> Any:
        return np.empty(shape, np.float32) if out is None else out


class SparseLinear(_Layer):
    """y = x·Wᵀ + b on the sparse kernels, W [out, in].

    `SparseLinear(sparsifier, "fc1.weight")` follows a registered parameter's mask (GaP steps,
    RigL updates); `SparseLinear(weights=w, mask=m)` uses a fixed mask (the weights stay the
    caller's and are read at every forward, the mask is copied). Not thread-safe.
    """

    def __init__(self, sparsifier: Any = None, name: Optional[str] = None, *, weights: Any = None,
                 mask: Any = None) -> None:
        if sparsifier is not None:
            if name is None:
                raise TypeError("a bound layer needs the parameter's name")
            self._create(capi.coppice_layer_linear_create, sparsifier._live(), name.encode())
            out_features, in_features = sparsifier.shape(name)
            self._keep = (sparsifier,)
        else:
            w = as_float_buffer(weights, "weights", ndim=2)
            out_features, in_features = w.shape
            m = as_mask_array(mask, "mask", w.shape)
            self._create(capi.coppice_layer_linear_create_masked, out_features, in_features,
                         w.address, m.ctypes.data)
            self._keep = (w,)
        self.in_features: int = in_features
        self.out_features: int = out_features

    def forward(self, x: Any, bias: Any = None, out: Any = None) -> Any:
        """y [N, out] for x [N, in] (bias [out] may be None)."""
        xb = as_float_buffer(x, "x", ndim=2)
        if xb.shape[1] != self.in_features:
            raise ValueError(f"x must have {self.in_features} columns, got shape {xb.shape}")
        n = xb.shape[0]
        y = self._out((n, self.out_features), out)
        yb = as_float_buffer(y, "out", shape=(n, self.out_features))
        bb = None if bias is None else as_float_buffer(bias, "bias", shape=(self.out_features,))
        check(capi.coppice_layer_linear_forward(self._live(), xb.address, n,
                                                None if bb is None else bb.address, yb.address))
        return y

    def backward(self, x: Any, dy: Any, *, input_grad: bool = True, weight_grad: bool = True,
                 bias_grad: bool = False) -> Tuple[Any, Any, Any]:
        """(dx [N, in], dw [out, in], db [out]) after forward(x); those not asked for are None.
        dw is zero outside the mask (see coppice_layer_linear_backward)."""
        xb = as_float_buffer(x, "x", ndim=2)
        n = xb.shape[0]
        dyb = as_float_buffer(dy, "dy", shape=(n, self.out_features))
        dx = np.empty((n, self.in_features), np.float32) if input_grad else None
        dw = np.empty((self.out_features, self.in_features), np.float32) if weight_grad else None
        db = np.empty(self.out_features, np.float32) if bias_grad else None
        check(capi.coppice_layer_linear_backward(
            self._live(), xb.address, dyb.address, n, *(None if a is None else a.ctypes.data for a in (dx, dw, db))))
        return dx, dw, db


class SparseConv2d(_Layer):
    """y = conv2d(x, W) + b on the sparse kernels: NCHW input, OIHW weight, equal stride and
    zero padding on both axes, dilation 1, groups 1. Bound to a registered parameter or with
    a fixed mask, like `SparseLinear`. Not thread-safe."""

    def __init__(self, sparsifier: Any = None, name: Optional[str] = None, *, weights: Any = None,
                 mask: Any = None, stride: int = 1, padding: int = 0) -> None:
        params = _conv_params(stride, padding)
        if sparsifier is not None:
            if name is None:
                raise TypeError("a bound layer needs the parameter's name")
            self._create(capi.coppice_layer_conv2d_create, sparsifier._live(), name.encode(),
                         ctypes.byref(params))
            shape = tuple(sparsifier.shape(name))
            self._keep = (sparsifier,)
        else:
            w = as_float_buffer(weights, "weights", ndim=4)
            shape = tuple(w.shape)
            m = as_mask_array(mask, "mask", w.shape)
            dims = (ctypes.c_int64 * 4)(*shape)
            self._create(capi.coppice_layer_conv2d_create_masked, dims, w.address, m.ctypes.data,
                         ctypes.byref(params))
            self._keep = (w,)
        self.weight_shape: Sequence[int] = shape

    def output_size(self, height: int, width: int) -> Tuple[int, int]:
        oh, ow = ctypes.c_int64(), ctypes.c_int64()
        check(capi.coppice_layer_conv2d_output_size(self._live(), height, width, ctypes.byref(oh), ctypes.byref(ow)))
        return oh.value, ow.value

    def forward(self, x: Any, bias: Any = None, out: Any = None) -> Any:
        """y [N, out, OH, OW] for x [N, in, H, W] (bias [out] may be None)."""
        xb = as_float_buffer(x, "x", ndim=4)
        n, c, h, w = xb.shape
        if c != self.weight_shape[1]:
            raise ValueError(f"x must have {self.weight_shape[1]} channels, got shape {xb.shape}")
        oh, ow = self.output_size(h, w)
        shape = (n, self.weight_shape[0], oh, ow)
        y = self._out(shape, out)
        yb = as_float_buffer(y, "out", shape=shape)
        bb = None if bias is None else as_float_buffer(bias, "bias", shape=(self.weight_shape[0],))
        check(capi.coppice_layer_conv2d_forward(self._live(), xb.address, n, h, w,
                                                None if bb is None else bb.address, yb.address))
        return y

    def backward(self, x: Any, dy: Any, *, input_grad: bool = True, weight_grad: bool = True,
                 bias_grad: bool = False) -> Tuple[Any, Any, Any]:
        """(dx like x, dw like W, db [out]) after forward(x); those not asked for are None."""
        xb = as_float_buffer(x, "x", ndim=4)
        n, c, h, w = xb.shape
        oh, ow = self.output_size(h, w)
        dyb = as_float_buffer(dy, "dy", shape=(n, self.weight_shape[0], oh, ow))
        dx = np.empty((n, c, h, w), np.float32) if input_grad else None
        dw = np.empty(tuple(self.weight_shape), np.float32) if weight_grad else None
        db = np.empty(self.weight_shape[0], np.float32) if bias_grad else None
        check(capi.coppice_layer_conv2d_backward(
            self._live(), xb.address, dyb.address, n, h, w,
            *(None if a is None else a.ctypes.data for a in (dx, dw, db))))
        return dx, dw, db
