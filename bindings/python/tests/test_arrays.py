"""Host buffers by pointer: numpy, __array_interface__, the buffer protocol, torch-like tensors."""

from __future__ import annotations

import array

import numpy as np
import pytest

from coppice._arrays import as_float_buffer, as_label_array, as_mask_array, c_int_value, c_string


class ArrayInterfaceOnly:
    """An object that exposes memory only through __array_interface__."""

    def __init__(self, base: np.ndarray) -> None:
        self.base = base
        self.__array_interface__ = base.__array_interface__


class FakeDevice:
    def __init__(self, kind: str) -> None:
        self.type = kind

    def __str__(self) -> str:
        return self.type


class FakeTensor:
    """Duck-types the parts of torch.Tensor that the bindings use."""

    def __init__(self, base: np.ndarray, dtype: str = "torch.float32", device: str = "cpu", contiguous: bool = True):
        self.base = base
        self.dtype = dtype
        self.device = FakeDevice(device)
        self.shape = base.shape
        self._contiguous = contiguous

    def data_ptr(self) -> int:
        return self.base.ctypes.data

    def is_contiguous(self) -> bool:
        return self._contiguous

    def numel(self) -> int:
        return self.base.size


def test_numpy_array_by_address_without_copy():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = as_float_buffer(a, "a", writable=True)
    assert b.address == a.ctypes.data and b.shape == (3, 4) and b.size == 12 and b.owner is a


def test_array_interface_object_is_used_in_place():
    base = np.ones((2, 3), np.float32)
    b = as_float_buffer(ArrayInterfaceOnly(base), "x", writable=True)
    assert b.address == base.ctypes.data and b.shape == (2, 3)


def test_buffer_protocol_object_is_used_in_place():
    data = array.array("f", [1.0, 2.0, 3.0])
    b = as_float_buffer(data, "x", writable=True)
    assert b.shape == (3,) and b.address == data.buffer_info()[0]


def test_buffer_protocol_memory_cannot_move_while_held():
    data = array.array("f", [1.0] * 8)
    b = as_float_buffer(data, "x", writable=True)
    with pytest.raises(BufferError):
        data.extend([2.0] * 1000)  # would reallocate under the library's pointer
    del b


def test_torch_like_tensor_uses_data_ptr():
    base = np.zeros((4, 5), np.float32)
    b = as_float_buffer(FakeTensor(base), "t", writable=True)
    assert b.address == base.ctypes.data and b.shape == (4, 5) and b.size == 20


@pytest.mark.parametrize(
    "tensor, error",
    [
        (FakeTensor(np.zeros(3, np.float32), dtype="torch.float64"), TypeError),
        (FakeTensor(np.zeros(3, np.float32), device="cuda"), ValueError),
        (FakeTensor(np.zeros(3, np.float32), contiguous=False), ValueError),
    ],
)
def test_torch_like_tensor_errors(tensor, error):
    with pytest.raises(error):
        as_float_buffer(tensor, "t")


@pytest.mark.parametrize(
    "value, error, text",
    [
        (None, TypeError, "None"),
        (np.zeros(3, np.float64), TypeError, "float32"),
        (np.zeros(3, np.int32), TypeError, "float32"),
        (np.zeros((4, 4), np.float32)[:, ::2], ValueError, "contiguous"),
        (np.zeros((4, 4), np.float32).T, ValueError, "contiguous"),
        ([1.0, 2.0], TypeError, "list"),
        ("abc", TypeError, "str"),
        (3.0, TypeError, "float"),
        (object(), TypeError, "object"),
        (np.zeros(3, dtype=">f4"), TypeError, "float32"),
    ],
)
def test_rejected_buffers(value, error, text):
    with pytest.raises(error, match=text):
        as_float_buffer(value, "weights")


def test_read_only_array_rejected_only_when_written():
    a = np.zeros(3, np.float32)
    a.flags.writeable = False
    as_float_buffer(a, "a")
    with pytest.raises(ValueError, match="writable"):
        as_float_buffer(a, "a", writable=True)


def test_shape_and_ndim_checks():
    a = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="shape"):
        as_float_buffer(a, "a", shape=(3, 2))
    with pytest.raises(ValueError, match="dimension"):
        as_float_buffer(a, "a", ndim=3)


def test_masks_accept_bool_and_uint8_without_copy():
    m = np.ones((2, 2), bool)
    view = as_mask_array(m, "mask", (2, 2))
    assert view.dtype == np.uint8 and view.ctypes.data == m.ctypes.data
    with pytest.raises(TypeError):
        as_mask_array(np.ones((2, 2), np.float32), "mask", (2, 2))
    with pytest.raises(ValueError):
        as_mask_array(np.ones((2, 3), np.uint8), "mask", (2, 2))
    with pytest.raises(TypeError):
        as_mask_array(None, "mask", (2, 2))


def test_labels():
    assert as_label_array(np.array([1, 2], np.int64), "labels", 2).dtype == np.int32
    with pytest.raises(TypeError):
        as_label_array(np.array([1.0, 2.0]), "labels", 2)
    with pytest.raises(ValueError):
        as_label_array(np.array([1, 2]), "labels", 3)
    with pytest.raises(ValueError):
        as_label_array(np.array([2**40]), "labels", 1)
    with pytest.raises(TypeError):
        as_label_array(None, "labels", 1)


def test_c_values():
    assert c_string("a", "s") == b"a"
    with pytest.raises(ValueError):
        c_string("a\0b", "s")
    with pytest.raises(TypeError):
        c_string(3, "s")
    assert c_string(None, "s", allow_none=True) is None
    with pytest.raises(ValueError):
        c_int_value(2**31, "x")
    with pytest.raises(TypeError):
        c_int_value(1.5, "x")
    with pytest.raises(TypeError):
        c_int_value(True, "x")
    assert c_int_value(2**64 - 1, "x", 64, unsigned=True) == 2**64 - 1
    with pytest.raises(ValueError):
        c_int_value(-1, "x", 64, unsigned=True)
