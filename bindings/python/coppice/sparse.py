"""Sparse matrices: the runtime's sparse kernels (SpMM, transposed SpMM, SDDMM) on host buffers."""

from __future__ import annotations

import ctypes
from typing import Any, Tuple

import numpy as np

from ._arrays import as_float_buffer, as_mask_array, c_float_value
from ._capi import capi
from ._handle import Handle
from ._library import check

__all__ = ["SparseMatrix"]


class SparseMatrix(Handle):
    """A sparse rows×cols float32 matrix W (coppice_sparse_matrix).

    Built from a dense 2-D array and an optional mask of the same shape (bool or uint8,
    non-zero = kept; None keeps the non-zero entries of `dense`). Both are copied.

    With n the number of columns of the activations (the contiguous dimension):
      - `spmm(x)`            y  = W·x           x: cols×n → y: rows×n
      - `spmm_transposed(dy)` dx = Wᵀ·dy        dy: rows×n → dx: cols×n
      - `sddmm(dy, x)`       dw = (dy·xᵀ) at W's kept positions, 0 elsewhere (rows×cols)
    All arrays are C-contiguous float32 (numpy or any buffer accepted by the sparsifier).
    Not thread-safe: one thread at a time per matrix.
    """

    def __init__(self, dense: Any, mask: Any = None) -> None:
        buffer = as_float_buffer(dense, "dense", ndim=2)
        rows, cols = buffer.shape
        mask_array = None if mask is None else as_mask_array(mask, "mask", (rows, cols))
        handle = ctypes.c_void_p()
        check(
            capi.coppice_sparse_matrix_create(
                rows,
                cols,
                buffer.address,
                None if mask_array is None else mask_array.ctypes.data,
                ctypes.byref(handle),
            )
        )
        self._adopt(handle, capi.coppice_sparse_matrix_destroy)
        self.rows: int = rows
        self.cols: int = cols

    @property
    def shape(self) -> Tuple[int, int]:
        """(rows, cols)."""
        return (self.rows, self.cols)

    @property
    def nnz(self) -> int:
        """Number of kept entries."""
        out = ctypes.c_int64()
        check(capi.coppice_sparse_matrix_nnz(self._live(), ctypes.byref(out)))
        return out.value

    @property
    def density(self) -> float:
        """nnz / (rows·cols)."""
        return self.nnz / max(1, self.rows * self.cols)

    def update(self, dense: Any) -> None:
        """Refreshes the stored values from `dense` (rows×cols; the mask stays)."""
        handle = self._live()
        buffer = as_float_buffer(dense, "dense", shape=self.shape)
        check(capi.coppice_sparse_matrix_update(handle, buffer.address))

    def _product(
        self, function: Any, source: Any, source_rows: int, out_rows: int, beta: float, out: Any, names: Tuple[str, str]
    ) -> Any:
        handle = self._live()
        x = as_float_buffer(source, names[0], ndim=2)
        if x.shape[0] != source_rows:
            raise ValueError(f"{names[0]} must have {source_rows} rows, got shape {x.shape}")
        n = x.shape[1]
        beta = c_float_value(beta, "beta")
        if out is None:
            if beta != 0:
                raise ValueError("beta != 0 needs an `out` array to accumulate into")
            out = np.empty((out_rows, n), dtype=np.float32)
        y = as_float_buffer(out, names[1], writable=True, shape=(out_rows, n))
        check(function(handle, n, x.address, beta, y.address))
        return out

    def spmm(self, x: Any, beta: float = 0.0, out: Any = None) -> Any:
        """y = W·x + beta·y for x of shape (cols, n); returns `out` (rows×n, allocated when
        None; then beta must be 0)."""
        return self._product(capi.coppice_spmm, x, self.cols, self.rows, beta, out, ("x", "out"))

    def spmm_transposed(self, dy: Any, beta: float = 0.0, out: Any = None) -> Any:
        """dx = Wᵀ·dy + beta·dx for dy of shape (rows, n); returns `out` (cols×n)."""
        return self._product(
            capi.coppice_spmm_transposed, dy, self.rows, self.cols, beta, out, ("dy", "out")
        )

    def sddmm(self, dy: Any, x: Any, out: Any = None) -> Any:
        """dw = (dy·xᵀ) at the kept positions, 0 elsewhere; dy: rows×n, x: cols×n; returns
        `out` (rows×cols, allocated when None)."""
        handle = self._live()
        g = as_float_buffer(dy, "dy", ndim=2)
        if g.shape[0] != self.rows:
            raise ValueError(f"dy must have {self.rows} rows, got shape {g.shape}")
        n = g.shape[1]
        a = as_float_buffer(x, "x", shape=(self.cols, n))
        if out is None:
            out = np.empty(self.shape, dtype=np.float32)
        w = as_float_buffer(out, "out", writable=True, shape=self.shape)
        check(capi.coppice_sddmm(handle, n, g.address, a.address, w.address))
        return out

    def __repr__(self) -> str:
        if self.closed:
            return "<coppice.SparseMatrix (closed)>"
        return f"<coppice.SparseMatrix {self.rows}x{self.cols}, nnz={self.nnz}>"
