"""coppice.SparseMatrix: SpMM, transposed SpMM and SDDMM against numpy."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import coppice
from test_arrays import FakeTensor

SHAPES = [(1, 1, 1), (7, 5, 3), (64, 48, 17), (33, 129, 64), (256, 300, 8)]


def random_problem(rows, cols, n, density=0.1, seed=0):
    rng = np.random.default_rng(seed)
    dense = rng.standard_normal((rows, cols)).astype(np.float32)
    mask = rng.random((rows, cols)) < density
    if not mask.any():
        mask[0, 0] = True
    return rng, dense, mask


def tolerance(k: int) -> dict:
    return dict(rtol=1e-4, atol=1e-5 * max(1, k))


@pytest.mark.parametrize("rows, cols, n", SHAPES)
def test_products_match_numpy(rows, cols, n):
    rng, dense, mask = random_problem(rows, cols, n)
    w = np.where(mask, dense, 0).astype(np.float32)
    with coppice.SparseMatrix(dense, mask) as m:
        assert m.shape == (rows, cols) and m.nnz == int(mask.sum())
        assert m.density == pytest.approx(mask.mean())
        x = rng.standard_normal((cols, n)).astype(np.float32)
        dy = rng.standard_normal((rows, n)).astype(np.float32)
        np.testing.assert_allclose(m.spmm(x), w @ x, **tolerance(cols))
        np.testing.assert_allclose(m.spmm_transposed(dy), w.T @ dy, **tolerance(rows))
        np.testing.assert_allclose(m.sddmm(dy, x), np.where(mask, dy @ x.T, 0), **tolerance(n))


def test_beta_accumulates_into_out():
    rng, dense, mask = random_problem(20, 30, 6, density=0.3)
    w = np.where(mask, dense, 0)
    m = coppice.SparseMatrix(dense, mask)
    x = rng.standard_normal((30, 6)).astype(np.float32)
    y0 = rng.standard_normal((20, 6)).astype(np.float32)
    y = y0.copy()
    assert m.spmm(x, beta=0.5, out=y) is y
    np.testing.assert_allclose(y, w @ x + 0.5 * y0, rtol=1e-4, atol=1e-4)
    dy = rng.standard_normal((20, 6)).astype(np.float32)
    dx0 = rng.standard_normal((30, 6)).astype(np.float32)
    dx = dx0.copy()
    m.spmm_transposed(dy, beta=2.0, out=dx)
    np.testing.assert_allclose(dx, w.T @ dy + 2 * dx0, rtol=1e-4, atol=1e-4)
    # beta = 0 ignores whatever out holds, even NaN.
    y[...] = np.nan
    m.spmm(x, out=y)
    np.testing.assert_allclose(y, w @ x, rtol=1e-4, atol=1e-4)


def test_mask_none_keeps_nonzeros_and_update_refreshes_values():
    dense = np.array([[0, 1, 0], [2, 0, 3]], np.float32)
    m = coppice.SparseMatrix(dense)
    assert m.nnz == 3
    x = np.eye(3, dtype=np.float32)
    np.testing.assert_array_equal(m.spmm(x), dense)
    m.update(dense * 10)  # same mask, new values
    np.testing.assert_array_equal(m.spmm(x), dense * 10)
    m.update(np.ones((2, 3), np.float32))  # positions outside the mask stay out
    np.testing.assert_array_equal(m.spmm(x), (dense != 0).astype(np.float32))


def test_all_zero_mask_gives_zero_products():
    dense = np.ones((4, 5), np.float32)
    m = coppice.SparseMatrix(dense, np.zeros((4, 5), np.uint8))
    assert m.nnz == 0
    np.testing.assert_array_equal(m.spmm(np.ones((5, 2), np.float32)), np.zeros((4, 2)))
    np.testing.assert_array_equal(m.sddmm(np.ones((4, 2), np.float32), np.ones((5, 2), np.float32)), 0)


def test_torch_like_buffers_work_as_inputs_and_outputs():
    rng, dense, mask = random_problem(10, 12, 4, density=0.5)
    m = coppice.SparseMatrix(FakeTensor(dense), mask)
    x = rng.standard_normal((12, 4)).astype(np.float32)
    out = np.zeros((10, 4), np.float32)
    result = m.spmm(FakeTensor(x), out=FakeTensor(out))
    assert isinstance(result, FakeTensor)
    np.testing.assert_allclose(out, np.where(mask, dense, 0) @ x, rtol=1e-4, atol=1e-5)


def test_construction_errors():
    good = np.ones((3, 4), np.float32)
    with pytest.raises(TypeError):
        coppice.SparseMatrix(None)
    with pytest.raises(TypeError):
        coppice.SparseMatrix(np.ones((3, 4)))  # float64
    with pytest.raises(ValueError, match="dimension"):
        coppice.SparseMatrix(np.ones(4, np.float32))
    with pytest.raises(ValueError, match="contiguous"):
        coppice.SparseMatrix(np.ones((4, 3), np.float32).T)
    with pytest.raises(ValueError, match="shape"):
        coppice.SparseMatrix(good, np.ones((4, 3), bool))
    with pytest.raises(TypeError):
        coppice.SparseMatrix(good, np.ones((3, 4), np.float32))
    with pytest.raises(coppice.CoppiceError) as info:
        coppice.SparseMatrix(np.ones((0, 4), np.float32))
    assert info.value.status == 1


def test_product_errors():
    rng, dense, mask = random_problem(6, 5, 3, density=0.5)
    m = coppice.SparseMatrix(dense, mask)
    x = np.ones((5, 3), np.float32)
    dy = np.ones((6, 3), np.float32)
    with pytest.raises(TypeError):
        m.spmm(None)
    with pytest.raises(TypeError):
        m.spmm(x.astype(np.float64))
    with pytest.raises(ValueError, match="rows"):
        m.spmm(np.ones((6, 3), np.float32))
    with pytest.raises(ValueError, match="contiguous"):
        m.spmm(np.ones((5, 6), np.float32)[:, ::2])
    with pytest.raises(ValueError, match="shape"):
        m.spmm(x, out=np.zeros((6, 4), np.float32))
    with pytest.raises(ValueError, match="out"):
        m.spmm(x, beta=1.0)
    read_only = np.zeros((6, 3), np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        m.spmm(x, out=read_only)
    with pytest.raises(TypeError):
        m.spmm(x, beta="1")
    with pytest.raises(coppice.CoppiceError) as info:
        m.spmm(x, beta=float("nan"), out=np.zeros((6, 3), np.float32))
    assert info.value.status == 1
    with pytest.raises(ValueError, match="rows"):
        m.spmm_transposed(x)
    with pytest.raises(ValueError, match="shape"):
        m.sddmm(dy, np.ones((5, 4), np.float32))
    with pytest.raises(ValueError, match="rows"):
        m.sddmm(x, x)
    with pytest.raises(ValueError, match="shape"):
        m.sddmm(dy, x, out=np.zeros((5, 6), np.float32))
    with pytest.raises(ValueError, match="shape"):
        m.update(np.ones((5, 6), np.float32))
    with pytest.raises(TypeError):
        m.update(None)
    # n = 0 columns: the library rejects it (n must be >= 1).
    with pytest.raises(coppice.CoppiceError):
        m.spmm(np.ones((5, 0), np.float32))


def test_use_after_close():
    m = coppice.SparseMatrix(np.ones((2, 2), np.float32))
    m.close()
    m.close()
    x = np.ones((2, 1), np.float32)
    for call in (lambda: m.nnz, lambda: m.spmm(x), lambda: m.spmm_transposed(x),
                 lambda: m.sddmm(x, x), lambda: m.update(np.ones((2, 2), np.float32))):
        with pytest.raises(ValueError, match="closed"):
            call()
    assert "closed" in repr(m)
    with pytest.raises(ValueError):
        with m:
            pass


def test_many_matrices_collected():
    for _ in range(50):
        coppice.SparseMatrix(np.ones((8, 8), np.float32))
    gc.collect()
