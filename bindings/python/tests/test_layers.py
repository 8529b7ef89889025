"""Sparse layer operations (coppice_layer_*) against dense masked math in numpy: fixed-mask
and sparsifier-bound layers, both dispatch paths, mask and value resync, errors."""

from __future__ import annotations

import numpy as np
import pytest

import coppice
from coppice.layers import SparseConv2d, SparseLinear

INVALID_ARGUMENT, SHAPE_MISMATCH, NOT_FOUND, UNSUPPORTED = 1, 2, 3, 8


def random_mask(rng, shape, sparsity):
    mask = np.ones(int(np.prod(shape)), np.uint8)
    mask[rng.permutation(mask.size)[: int(round(mask.size * sparsity))]] = 0
    return mask.reshape(shape)


def close(a, b, scale=1.0):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4 * scale)


def conv_reference(x, w, bias, stride, padding):
    """Direct convolution in float64 (NCHW, OIHW)."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh = (h + 2 * padding - kh) // stride + 1
    ow = (wd + 2 * padding - kw) // stride + 1
    y = np.zeros((n, o, oh, ow))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
            y += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    if bias is not None:
        y += bias[None, :, None, None]
    return y


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.97, 1.0])
@pytest.mark.parametrize("shape, batch", [((37, 53), 5), ((64, 300), 256), ((1, 7), 3)])
def test_fixed_mask_linear_matches_masked_dense_math(sparsity, shape, batch):
    rng = np.random.default_rng(1)
    out_f, in_f = shape
    w = rng.standard_normal(shape).astype(np.float32)
    mask = random_mask(rng, shape, sparsity)
    layer = SparseLinear(weights=w, mask=mask)
    x = rng.standard_normal((batch, in_f)).astype(np.float32)
    b = rng.standard_normal(out_f).astype(np.float32)
    wm = w * mask
    close(layer.forward(x, b), x @ wm.T + b, np.sqrt(in_f))
    dy = rng.standard_normal((batch, out_f)).astype(np.float32)
    dx, dw, db = layer.backward(x, dy, bias_grad=True)
    close(dx, dy @ wm, np.sqrt(out_f))
    close(dw, (dy.T @ x) * mask, np.sqrt(batch))
    assert np.all(dw[mask == 0] == 0)
    close(db, dy.sum(0), np.sqrt(batch))


def test_linear_runs_sparse_at_high_sparsity_and_dense_when_dense():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((256, 1024)).astype(np.float32)
    x = rng.standard_normal((256, 1024)).astype(np.float32)
    dy = rng.standard_normal((256, 256)).astype(np.float32)
    sparse = SparseLinear(weights=w, mask=random_mask(rng, w.shape, 0.95))
    sparse.forward(x)
    sparse.backward(x, dy)
    assert sparse.execution == (True, True)
    dense = SparseLinear(weights=w, mask=np.ones(w.shape, np.uint8))
    dense.forward(x)
    dense.backward(x, dy)
    assert dense.execution == (False, False)


@pytest.mark.parametrize("sparsity", [0.0, 0.9, 1.0])
@pytest.mark.parametrize("stride, padding, size", [(1, 1, 9), (2, 1, 11), (1, 0, 6), (3, 2, 8)])
def test_fixed_mask_conv2d_matches_direct_convolution(sparsity, stride, padding, size):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    mask = random_mask(rng, w.shape, sparsity)
    layer = SparseConv2d(weights=w, mask=mask, stride=stride, padding=padding)
    x = rng.standard_normal((3, 4, size, size)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    wm = (w * mask).astype(np.float64)
    y = layer.forward(x, b)
    close(y, conv_reference(x, wm, b, stride, padding), 6)
    # Gradients from the adjoint: <dy, conv(x, W)> differentiated by finite structure.
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, db = layer.backward(x, dy, bias_grad=True)
    expected_dw = np.zeros_like(wm)
    basis = np.zeros_like(wm)
    for index in np.ndindex(*wm.shape):
        basis[index] = 1
        expected_dw[index] = (conv_reference(x, basis, None, stride, padding) * dy).sum()
        basis[index] = 0
    close(dw, expected_dw * mask, 10)
    assert np.all(dw[mask == 0] == 0)
    # dx: the adjoint of the (linear in x) convolution, checked on random directions.
    for _ in range(3):
        v = rng.standard_normal(x.shape)
        lhs = (conv_reference(v, wm, None, stride, padding) * dy).sum()
        assert abs(lhs - (dx * v).sum()) < 1e-3 * (1 + abs(lhs))
    close(db, dy.sum((0, 2, 3)), 10)


def bound_host(method="cgap", **options):
    """A sparsifier over a host's linear [24, 40] and conv [8, 3, 3, 3] weights."""
    rng = np.random.default_rng(4)
    weights = {
        "fc.weight": rng.standard_normal((24, 40)).astype(np.float32),
        "conv.weight": rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
    }
    grads = {k: np.zeros_like(v) for k, v in weights.items()}
    s = coppice.Sparsifier(method=method, sparsity=0.75, total_steps=12, **options)
    for name, w in weights.items():
        s.add_parameter(name, w, grads[name])
    return s, weights, grads


def test_bound_layers_follow_the_schedule_and_the_host_weights():
    s, weights, _ = bound_host(partitions=2, gap_step_length=3)
    fc = SparseLinear(s, "fc.weight")
    conv = SparseConv2d(s, "conv.weight", padding=1)
    s.start()
    rng = np.random.default_rng(5)
    x = rng.standard_normal((7, 40)).astype(np.float32)
    xc = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    masks_seen = set()
    for step in range(12):
        # The host changes its weights in place (an optimizer step); the layer must see them.
        weights["fc.weight"] *= np.float32(0.9)
        weights["conv.weight"] += np.float32(0.01)
        s.step()  # re-applies masks, grows/prunes on schedule
        fm = s.mask("fc.weight")
        cm = s.mask("conv.weight")
        masks_seen.add(fm.tobytes())
        close(fc.forward(x), x @ (weights["fc.weight"] * fm).T, 7)
        close(conv.forward(xc), conv_reference(xc, weights["conv.weight"] * cm, None, 1, 1), 6)
        dy = rng.standard_normal((7, 24)).astype(np.float32)
        _, dw, _ = fc.backward(x, dy)
        assert np.all(dw[fm == 0] == 0), step
    assert len(masks_seen) >= 2  # the GaP steps changed fc's mask and the layer followed


def test_explicit_partitions_from_the_host():
    s, _, _ = bound_host(gap_step_length=2)
    s.set_partitions([["conv.weight"], ["fc.weight"]])
    s.start()
    assert s.phase.endswith("partition 0 dense")
    assert s.sparsity("conv.weight") == 0 and s.sparsity("fc.weight") > 0.7
    s2, _, _ = bound_host(gap_step_length=2)
    s2.set_partitions([["conv.weight"]])  # fc.weight in no partition
    with pytest.raises(coppice.CoppiceError, match="fc.weight"):
        s2.start()
    s3, _, _ = bound_host()
    with pytest.raises(coppice.CoppiceError) as info:
        s3.set_partitions([["nope"]])
    assert info.value.status == NOT_FOUND


def test_layer_errors_are_statuses():
    s, weights, _ = bound_host()
    with pytest.raises(coppice.CoppiceError) as info:
        SparseLinear(s, "conv.weight")  # rank 4 is not a linear weight
    assert info.value.status == SHAPE_MISMATCH
    with pytest.raises(coppice.CoppiceError) as info:
        SparseLinear(s, "missing.weight")
    assert info.value.status == NOT_FOUND
    with pytest.raises(coppice.CoppiceError) as info:
        SparseConv2d(weights=weights["conv.weight"], mask=np.ones((8, 3, 3, 3), np.uint8), stride=0)
    assert info.value.status == INVALID_ARGUMENT
    conv = SparseConv2d(weights=weights["conv.weight"], mask=np.ones((8, 3, 3, 3), np.uint8))
    x_conv = np.zeros((1, 3, 4, 4), np.float32)
    with pytest.raises(coppice.CoppiceError) as info:
        conv.forward(np.zeros((1, 3, 2, 2), np.float32))  # smaller than the kernel
    assert info.value.status == SHAPE_MISMATCH
    with pytest.raises(ValueError):
        conv.forward(np.zeros((1, 4, 5, 5), np.float32))  # channels
    from coppice._capi import Conv2dParams, capi
    import ctypes

    params = Conv2dParams()
    capi.coppice_conv2d_params_init(ctypes.byref(params))
    params.dilation_h = params.dilation_w = 2
    handle = ctypes.c_void_p()
    dims = (ctypes.c_int64 * 4)(8, 3, 3, 3)
    status = capi.coppice_layer_conv2d_create_masked(
        dims, weights["conv.weight"].ctypes.data, np.ones(216, np.uint8).ctypes.data,
        ctypes.byref(params), ctypes.byref(handle))
    assert status == UNSUPPORTED and b"dilation" in capi.coppice_last_error()
    # Absurd sizes are refused, never overflowed.
    huge = (ctypes.c_int64 * 4)(2**30, 2**30, 3, 3)
    assert capi.coppice_layer_conv2d_create_masked(
        huge, weights["conv.weight"].ctypes.data, np.ones(216, np.uint8).ctypes.data, None,
        ctypes.byref(handle)) == INVALID_ARGUMENT
    oh, ow = ctypes.c_int64(), ctypes.c_int64()
    assert capi.coppice_layer_conv2d_output_size(conv._live(), 2**31 - 1, 2**31 - 1, ctypes.byref(oh),
                                                 ctypes.byref(ow)) == INVALID_ARGUMENT
    assert capi.coppice_layer_conv2d_forward(conv._live(), x_conv.ctypes.data, 2**31 - 1, 2**20, 2**20,
                                             None, x_conv.ctypes.data) == INVALID_ARGUMENT
    linear = SparseLinear(weights=weights["fc.weight"], mask=np.ones((24, 40), np.uint8))
    x = np.zeros((2, 40), np.float32)
    y = np.zeros((2, 24), np.float32)
    # A linear call on a conv layer's handle is refused, not followed.
    assert capi.coppice_layer_linear_forward(conv._live(), x.ctypes.data, 2, None, y.ctypes.data) == INVALID_ARGUMENT
    assert capi.coppice_layer_linear_forward(linear._live(), x.ctypes.data, 0, None, y.ctypes.data) == INVALID_ARGUMENT
    assert capi.coppice_layer_linear_forward(linear._live(), None, 2, None, y.ctypes.data) == INVALID_ARGUMENT
    assert capi.coppice_layer_linear_forward(None, x.ctypes.data, 2, None, y.ctypes.data) == INVALID_ARGUMENT
