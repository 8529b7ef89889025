"""Locating and loading libcoppice, and turning status codes into exceptions."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
from pathlib import Path

__all__ = ["lib", "library_path", "CoppiceError", "check", "STATUS_NAMES"]

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
    """A failed Coppice call: `status` is the numeric code, `name` its COPPICE_* name and
    `message` the library's description (coppice_last_error)."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.name = STATUS_NAMES.get(status, "unknown status")
        self.message = message
        super().__init__(f"{self.name}: {message}")


def _candidates() -> list[str]:
    """Where to look for the library, in order: $COPPICE_LIBRARY (only that, when set); the
    package's own copy (an installed wheel carries it, with the libraries it needs); the
    repository's dist/lib when the package is used from a source checkout; then the system (the
    dynamic loader's search, ldconfig, pkg-config's libdir, /usr/local/lib). Files that do not
    exist are left out, so an error lists only what was really tried."""
    env = os.environ.get("COPPICE_LIBRARY")
    if env:
        return [env]
    here = Path(__file__).resolve().parent
    files = [here / "libcoppice.so.0"]
    repo = here.parent.parent.parent
    if (repo / "include" / "coppice.h").is_file():  # bindings/python/coppice in a checkout
        files.append(repo / "dist" / "lib" / "libcoppice.so.0")
    candidates = [str(f) for f in files if f.is_file()]
    candidates.append("libcoppice.so.0")  # the loader's search: LD_LIBRARY_PATH, ld.so.cache
    found = ctypes.util.find_library("coppice")
    if found:
        candidates.append(found)
    # `make install PREFIX=...` without ldconfig: ask pkg-config, then try the usual prefix.
    for libdir in (_pkg_config_libdir(), "/usr/local/lib"):
        if libdir and os.path.isfile(os.path.join(libdir, "libcoppice.so.0")):
            candidates.append(os.path.join(libdir, "libcoppice.so.0"))
    return candidates


def _pkg_config_libdir() -> str:
    try:
        result = subprocess.run(
            ["pkg-config", "--variable=libdir", "coppice"],
            capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def _load() -> tuple[ctypes.CDLL, str]:
    errors = []
    seen = set()
    for path in _candidates():
        if path in seen:
            continue
        seen.add(path)
        try:
            return ctypes.CDLL(path), path
        except OSError as error:
            errors.append(f"{path}: {error}")
    raise ImportError(
        "cannot load libcoppice: install the coppice wheel (it carries the library), or build "
        "it (`make lib`) and set COPPICE_LIBRARY to its path; tried: " + "; ".join(errors)
    )


lib, library_path = _load()

lib.coppice_version.restype = ctypes.c_char_p
lib.coppice_version.argtypes = []
lib.coppice_version_number.restype = ctypes.c_int
lib.coppice_version_number.argtypes = []
lib.coppice_last_error.restype = ctypes.c_char_p
lib.coppice_last_error.argtypes = []
lib.coppice_status_name.restype = ctypes.c_char_p
lib.coppice_status_name.argtypes = [ctypes.c_int]
lib.coppice_set_threads.restype = ctypes.c_int
lib.coppice_set_threads.argtypes = [ctypes.c_int]
lib.coppice_get_threads.restype = ctypes.c_int
lib.coppice_get_threads.argtypes = []


def last_error() -> str:
    """The calling thread's last failure message from the library ("" if none)."""
    message = lib.coppice_last_error()
    return message.decode("utf-8", "replace") if message else ""


def check(status: int) -> None:
    """Raise CoppiceError for a non-zero status, with the library's message."""
    if status != 0:
        raise CoppiceError(status, last_error())
