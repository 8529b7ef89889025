"""Host buffers passed to the library by pointer, without copies.

`as_float_buffer` accepts
  - numpy arrays (C-contiguous float32),
  - objects exposing `__array_interface__` or the buffer protocol (viewed through numpy, no
    copy), e.g. `array.array("f")`, memoryviews, CuPy-free array libraries on the CPU,
  - torch-like tensors: objects with `data_ptr()`, `is_contiguous()`, `dtype`, `numel()` and
    `shape` (and optionally `device`), such as a CPU `torch.float32` tensor. Pass the tensor
    itself (or `param.data` / `param.grad`): its memory is used in place, so the sparsifier
    masks the tensor the optimizer updates.

Everything is checked before the library sees the pointer: None, wrong dtype, non-contiguous
memory, read-only memory where the library writes, wrong shape or size all raise TypeError or
ValueError with the argument's name in the message.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

__all__ = [
    "FloatBuffer",
    "as_float_buffer",
    "as_mask_array",
    "as_label_array",
    "c_string",
    "c_int_value",
    "c_float_value",
    "checked_product",
]

INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class FloatBuffer:
    """A contiguous CPU float32 buffer: its address, shape and element count, and `owner`, the
    Python object that must stay alive while the library uses the address."""

    address: int
    shape: tuple[int, ...]
    size: int
    owner: Any

    @property
    def ndim(self) -> int:
        return len(self.shape)


def _is_torch_like(obj: Any) -> bool:
    return all(
        callable(getattr(obj, attribute, None)) for attribute in ("data_ptr", "is_contiguous", "numel")
    ) and hasattr(obj, "dtype") and hasattr(obj, "shape")


def _torch_buffer(obj: Any, name: str) -> FloatBuffer:
    dtype = str(obj.dtype)
    if dtype not in ("torch.float32", "float32", "torch.float"):
        raise TypeError(f"{name} must be float32, got a tensor of dtype {dtype}")
    device = getattr(obj, "device", None)
    device_type = getattr(device, "type", device)
    if device is not None and str(device_type) != "cpu":
        raise ValueError(f"{name} must be on the CPU, got a tensor on {device}")
    if not obj.is_contiguous():
        raise ValueError(f"{name} must be contiguous (call .contiguous() on it first)")
    shape = tuple(int(d) for d in obj.shape)
    size = int(obj.numel())
    address = int(obj.data_ptr())
    if size > 0 and address == 0:
        raise ValueError(f"{name} has no storage (data_ptr() is 0)")
    return FloatBuffer(address, shape, size, obj)


def _numpy_view(obj: Any, name: str) -> np.ndarray:
    if isinstance(obj, np.ndarray):
        return obj
    if hasattr(obj, "__array_interface__"):
        return np.asarray(obj)
    try:
        memoryview(obj)
    except TypeError:
        raise TypeError(
            f"{name} must be a float32 numpy array or an object exposing a contiguous CPU float32 "
            f"buffer (__array_interface__, the buffer protocol, or a tensor's data_ptr()), "
            f"got {type(obj).__name__}"
        ) from None
    return np.asarray(memoryview(obj))


def as_float_buffer(
    obj: Any,
    name: str = "array",
    *,
    writable: bool = False,
    shape: Optional[Sequence[int]] = None,
    ndim: Optional[int] = None,
) -> FloatBuffer:
    """Checks that `obj` is a C-contiguous CPU float32 buffer (writable when the library writes
    into it; of `shape` or `ndim` dimensions when given) and returns its address, without
    copying. `name` is the argument's name for error messages."""
    if obj is None:
        raise TypeError(f"{name} must be a float32 array, got None")
    if isinstance(obj, (str, bytes, bool, int, float, complex)):
        raise TypeError(f"{name} must be a float32 array, got {type(obj).__name__}")
    if not isinstance(obj, np.ndarray) and _is_torch_like(obj):
        buffer = _torch_buffer(obj, name)
    else:
        array = _numpy_view(obj, name)
        if array.dtype != np.float32:
            raise TypeError(f"{name} must be float32, got dtype {array.dtype}")
        if not array.dtype.isnative:
            raise TypeError(f"{name} must be float32 in native byte order")
        if not array.flags.c_contiguous:
            raise ValueError(
                f"{name} must be C-contiguous (use np.ascontiguousarray), got strides {array.strides}"
            )
        if writable and not array.flags.writeable:
            raise ValueError(f"{name} must be writable (the library writes into it)")
        # The owner keeps the numpy view too: for buffer-protocol objects (array.array, ...)
        # its export stops the memory from being reallocated while the library holds it.
        owner = obj if array is obj else (obj, array)
        buffer = FloatBuffer(int(array.ctypes.data), tuple(array.shape), int(array.size), owner)
    if ndim is not None and buffer.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {buffer.shape}")
    if shape is not None and tuple(buffer.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {buffer.shape}")
    return buffer


def as_mask_array(obj: Any, name: str, shape: Sequence[int]) -> np.ndarray:
    """A C-contiguous uint8 view of a bool/uint8/int8 mask of `shape` (no copy)."""
    if obj is None:
        raise TypeError(f"{name} must be a bool or uint8 array, got None")
    if not isinstance(obj, np.ndarray):
        if hasattr(obj, "__array_interface__"):
            obj = np.asarray(obj)
        else:
            raise TypeError(f"{name} must be a numpy bool or uint8 array, got {type(obj).__name__}")
    if obj.dtype not in (np.bool_, np.uint8, np.int8):
        raise TypeError(f"{name} must be bool or uint8, got dtype {obj.dtype}")
    if not obj.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use np.ascontiguousarray)")
    if tuple(obj.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {obj.shape}")
    return obj.view(np.uint8)


def as_label_array(obj: Any, name: str, count: int) -> np.ndarray:
    """Integer labels as a contiguous int32 array of length `count` (copied only when the dtype
    or layout differs; the library copies labels anyway)."""
    if obj is None:
        raise TypeError(f"{name} must be an integer array, got None")
    array = np.asarray(obj)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, got dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {array.shape}")
    if array.shape[0] != count:
        raise ValueError(f"{name} has {array.shape[0]} entries for {count} images")
    if array.size and (array.min() < -(2**31) or array.max() >= 2**31):
        raise ValueError(f"{name} has values outside the int32 range")
    return np.ascontiguousarray(array, dtype=np.int32)


def c_string(value: Any, name: str, *, allow_none: bool = False) -> Optional[bytes]:
    """`value` as NUL-free bytes for a `const char *` argument (None → NULL when allowed)."""
    if value is None:
        if allow_none:
            return None
        raise TypeError(f"{name} must be a string, got None")
    if isinstance(value, bytes):
        encoded = value
    elif isinstance(value, str):
        encoded = value.encode("utf-8")
    else:
        try:
            encoded = os.fsencode(value)  # path-like objects
        except TypeError:
            raise TypeError(f"{name} must be a string, got {type(value).__name__}") from None
    if b"\0" in encoded:
        raise ValueError(f"{name} must not contain NUL characters")
    return encoded


def c_int_value(value: Any, name: str, bits: int = 32, unsigned: bool = False) -> int:
    """`value` as a Python int that fits a C integer of `bits` bits (ctypes would silently
    truncate it otherwise)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    low, high = (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    if not low <= value <= high:
        raise ValueError(f"{name} = {value} is outside the range of a C {'u' if unsigned else ''}int{bits}")
    return value


def c_float_value(value: Any, name: str) -> float:
    """`value` as a Python float (ints and numpy scalars accepted; NaN is passed on so that the
    library's validation reports it)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    return float(value)


def checked_product(shape: Sequence[int]) -> int:
    """The element count of `shape`."""
    return int(math.prod(int(d) for d in shape))
