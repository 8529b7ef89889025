"""Coppice: sparse training with scheduled grow-and-prune, from Python (pure ctypes).

The package loads libcoppice from $COPPICE_LIBRARY, from its own directory, from the
repository's dist/lib, or from the system's library path, in that order.

Main classes:
  - Sparsifier    GaP / RigL / SET / GMP / static / oneshot on weights the host owns
  - SparseMatrix  the runtime's sparse kernels (SpMM, transposed SpMM, SDDMM) on host arrays
  - Model, Dataset  the engine's reference models, trained and run by the runtime
  - idx.load_fashion_mnist  IDX files as numpy arrays, for hosts with their own models

Arrays are passed by pointer, without copies: C-contiguous float32 numpy arrays, objects with
`__array_interface__` or the buffer protocol, and CPU float32 torch tensors (anything with
`data_ptr()`, `is_contiguous()`, `dtype`, `numel()` and `shape`). Failed library calls raise
CoppiceError, which carries `status`, `name` and `message`; bad Python arguments raise
TypeError or ValueError before the library is called; a closed object raises ValueError.
"""

from __future__ import annotations

from ._library import STATUS_NAMES, CoppiceError, check, lib, library_path
from . import idx
from .engine import MODELS, Dataset, EpochStats, Model, TrainResult, inspect
from .log import DEBUG, INFO, WARNING, set_log_callback
from .sparse import SparseMatrix
from .sparsifier import LIBRARY_DEFAULT, METHODS, Sparsifier, SparsityEvent

__all__ = [
    "CoppiceError",
    "STATUS_NAMES",
    "Sparsifier",
    "SparsityEvent",
    "SparseMatrix",
    "Model",
    "Dataset",
    "TrainResult",
    "EpochStats",
    "METHODS",
    "LIBRARY_DEFAULT",
    "MODELS",
    "set_log_callback",
    "DEBUG",
    "INFO",
    "WARNING",
    "version",
    "version_number",
    "set_threads",
    "get_threads",
    "status_name",
    "library_path",
    "idx",
    "inspect",
]

__version__ = "0.1.0"


def version() -> str:
    """The loaded library's version, "MAJOR.MINOR.PATCH"."""
    return lib.coppice_version().decode()


def version_number() -> int:
    """The loaded library's version as major*10000 + minor*100 + patch."""
    return int(lib.coppice_version_number())


def status_name(status: int) -> str:
    """The COPPICE_* name of a status code, as the library spells it."""
    if isinstance(status, bool) or not isinstance(status, int):
        raise TypeError(f"status must be an int, not {type(status).__name__}")
    if not -(2**31) <= status < 2**31:
        return "unknown status"
    return lib.coppice_status_name(status).decode()


def set_threads(threads: int) -> None:
    """Set the number of kernel threads (0 = all cores). Raises CoppiceError if negative."""
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise TypeError(f"threads must be an int, not {type(threads).__name__}")
    if not -(2**31) <= threads < 2**31:
        raise ValueError(f"threads = {threads} is outside the range of a C int")
    check(lib.coppice_set_threads(threads))


def get_threads() -> int:
    """The number of kernel threads in use."""
    return int(lib.coppice_get_threads())
