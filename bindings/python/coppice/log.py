"""The library's log messages (schedule events) delivered to a Python function."""

from __future__ import annotations

import sys
from typing import Any, Callable, Optional

from ._capi import LOG_CALLBACK, capi

__all__ = ["set_log_callback", "DEBUG", "INFO", "WARNING"]

DEBUG, INFO, WARNING = 0, 1, 2

LogFunction = Callable[[int, str], Any]

# The C function pointer must outlive its registration: kept here until replaced.
_installed: Optional[Any] = None


def set_log_callback(function: Optional[LogFunction]) -> None:
    """Sends the library's log messages to `function(level, message)` (level 0 debug, 1 info,
    2 warning), e.g. ``coppice.set_log_callback(lambda level, text: print(text))``. None stops
    logging. Process-wide; set it before creating handles. Exceptions raised by `function` are
    reported through sys.unraisablehook and otherwise ignored (they cannot cross the C call)."""
    global _installed
    if function is None:
        capi.coppice_set_log_callback(LOG_CALLBACK(), None)
        _installed = None
        return
    if not callable(function):
        raise TypeError(f"log callback must be callable or None, got {type(function).__name__}")

    def deliver(level: int, message: Optional[bytes], _user: Any) -> None:
        try:
            function(level, message.decode("utf-8", "replace") if message else "")
        except BaseException as error:  # never unwind through the library
            hook = getattr(sys, "unraisablehook", None)
            if hook is not None:
                hook(_Unraisable(error, function))

    c_function = LOG_CALLBACK(deliver)
    capi.coppice_set_log_callback(c_function, None)
    _installed = c_function


class _Unraisable:
    """The argument sys.unraisablehook expects."""

    def __init__(self, error: BaseException, function: Any) -> None:
        self.exc_type = type(error)
        self.exc_value = error
        self.exc_traceback = error.__traceback__
        self.err_msg = "Exception ignored in coppice log callback"
        self.object = function
