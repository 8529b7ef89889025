"""Coppice: sparse training with scheduled grow-and-prune, from Python (pure ctypes).

The package loads libcoppice from $COPPICE_LIBRARY, from its own directory, from the
repository's dist/lib, or from the system's library path, in that order.
"""

from __future__ import annotations

from ._library import CoppiceError, check, lib

__all__ = ["CoppiceError", "version", "version_number", "set_threads", "get_threads"]


def version() -> str:
    """The loaded library's version, "MAJOR.MINOR.PATCH"."""
    return lib.coppice_version().decode()


def version_number() -> int:
    """The loaded library's version as major*10000 + minor*100 + patch."""
    return int(lib.coppice_version_number())


def set_threads(threads: int) -> None:
    """Set the number of kernel threads (0 = all cores). Raises CoppiceError if negative."""
    if not isinstance(threads, int):
        raise TypeError(f"threads must be an int, not {type(threads).__name__}")
    check(lib.coppice_set_threads(threads))


def get_threads() -> int:
    """The number of kernel threads in use."""
    return int(lib.coppice_get_threads())
