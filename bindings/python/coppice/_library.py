"""Locating and loading libcoppice, and turning status codes into exceptions."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

__all__ = ["lib", "CoppiceError", "check"]

# Status codes of coppice.h (stable; never renumbered).
STATUS_NAMES = {
    0: "COPPICE_OK",
    1: "COPPICE_INVALID_ARGUMENT",
    2: "COPPICE_SHAPE_MISMATCH",
    3: "COPPICE_NOT_FOUND",
    4: "COPPICE_IO_ERROR",
    5: "COPPICE_INVALID_FILE",
    6: "COPPICE_INVALID_STATE",
    7: "COPPICE_OUT_OF_MEMORY",
    8: "COPPICE_UNSUPPORTED",
    9: "COPPICE_INTERNAL",
}


class CoppiceError(RuntimeError):
    """A failed Coppice call: `status` is the numeric code, `name` its COPPICE_* name."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.name = STATUS_NAMES.get(status, "unknown status")
        super().__init__(f"{self.name}: {message}")


def _candidates() -> list[str]:
    env = os.environ.get("COPPICE_LIBRARY")
    if env:
        return [env]
    here = Path(__file__).resolve().parent
    repo = here.parent.parent.parent
    return [
        str(here / "libcoppice.so.0"),
        str(repo / "dist" / "lib" / "libcoppice.so.0"),
        "libcoppice.so.0",
    ]


def _load() -> ctypes.CDLL:
    errors = []
    for path in _candidates():
        try:
            return ctypes.CDLL(path)
        except OSError as error:
            errors.append(f"{path}: {error}")
    raise ImportError(
        "cannot load libcoppice (set COPPICE_LIBRARY to its path): " + "; ".join(errors)
    )


lib = _load()

lib.coppice_version.restype = ctypes.c_char_p
lib.coppice_version.argtypes = []
lib.coppice_version_number.restype = ctypes.c_int
lib.coppice_last_error.restype = ctypes.c_char_p
lib.coppice_status_name.restype = ctypes.c_char_p
lib.coppice_status_name.argtypes = [ctypes.c_int]
lib.coppice_set_threads.restype = ctypes.c_int
lib.coppice_set_threads.argtypes = [ctypes.c_int]
lib.coppice_get_threads.restype = ctypes.c_int


def check(status: int) -> None:
    """Raise CoppiceError for a non-zero status, with the library's message."""
    if status != 0:
        raise CoppiceError(status, lib.coppice_last_error().decode("utf-8", "replace"))
