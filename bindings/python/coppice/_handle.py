"""Ownership of an opaque library handle: close(), context managers, finalisation."""

from __future__ import annotations

import ctypes
from typing import Any, Callable, Optional, TypeVar

__all__ = ["Handle"]

H = TypeVar("H", bound="Handle")


class Handle:
    """Base of the classes that own a `coppice_*` handle.

    The handle is destroyed by `close()`, by leaving a `with` block, or when the object is
    garbage-collected. Using the object after close raises ValueError (as Python's files do);
    closing twice is harmless.
    """

    _handle: Optional[ctypes.c_void_p] = None
    _destroy: Optional[Callable[[Any], None]] = None

    def _adopt(self, handle: ctypes.c_void_p, destroy: Callable[[Any], None]) -> None:
        self._handle = handle
        self._destroy = destroy

    @property
    def closed(self) -> bool:
        """Whether close() has been called (or the object was never fully created)."""
        return not self._handle

    def _live(self) -> ctypes.c_void_p:
        """The handle, or ValueError when closed."""
        handle = self._handle
        if not handle:
            raise ValueError(f"{type(self).__name__} is closed")
        return handle

    def close(self) -> None:
        """Destroys the handle. Safe to call more than once."""
        handle, destroy = self._handle, self._destroy
        self._handle = None
        if handle and destroy is not None:
            destroy(handle)
        self._release()

    def _release(self) -> None:
        """Drops Python references the handle kept alive (subclasses override)."""

    def __enter__(self: H) -> H:
        self._live()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: modules may already be gone
            pass
