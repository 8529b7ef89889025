"""Raw C entry points at the edges the Python classes cannot reach (sizes that overflow, handles
of the wrong type), each in a child process so that a crash fails one test, not the run."""

from __future__ import annotations

import pytest

from conftest import describe_exit, run_isolated

PRELUDE = """
import ctypes, sys
from ctypes import byref, c_void_p, c_int64
import numpy as np
from coppice._capi import capi, SparsifierConfig
def expect_failure(status):
    if status == 0:
        print("returned COPPICE_OK"); sys.exit(3)
    if not capi.coppice_last_error():
        print("empty coppice_last_error()"); sys.exit(4)
    print("status", status, capi.coppice_last_error().decode())
"""

CASES = {
    "sparse_matrix_create rows*cols overflows int64": """
dense = np.ones(64, np.float32); out = c_void_p()
for rows, cols in ((2**62, 6), (6, 2**62), (2**63 - 1, 2**63 - 1), (2**32, 2**32)):
    expect_failure(capi.coppice_sparse_matrix_create(rows, cols, dense.ctypes.data, None, byref(out)))
""",
    "dataset_create count*height*width overflows int64": """
images = np.zeros(4 * 784, np.float32); labels = np.zeros(4, np.int32); out = c_void_p()
for count in (2**60, 2**62, 2**63 - 1, 2**58 + 1):
    expect_failure(capi.coppice_dataset_create(images.ctypes.data, labels.ctypes.data, count, 28, 28, 10, byref(out)))
""",
    "sparsifier_add_parameter dims whose product overflows": """
config = SparsifierConfig(); capi.coppice_sparsifier_config_init(byref(config)); config.total_steps = 10
s = c_void_p(); assert capi.coppice_sparsifier_create(byref(config), byref(s)) == 0
w = np.zeros(16, np.float32)
for dims in ((2**62, 2**62), (2**31, 2**31), (-1, 4), (0, 4), (2**63 - 1, 2)):
    shape = (c_int64 * 2)(*dims)
    expect_failure(capi.coppice_sparsifier_add_parameter(s, b"w", w.ctypes.data, shape, 2, None, 0.0))
""",
    "GaP schedule lengths that overflow at start": """
w = np.zeros(16, np.float32); shape = (c_int64 * 1)(16)
for total, length, rounds, parts in ((2**63 - 1, 2**62, 2**31 - 1, 4), (2**63 - 1, 2**63 - 1, 2, 1),
                                     (2**63 - 1, 0, 2**31 - 1, 1024)):
    config = SparsifierConfig(); capi.coppice_sparsifier_config_init(byref(config))
    config.total_steps, config.gap_step_length, config.rounds, config.partitions = total, length, rounds, parts
    s = c_void_p()
    if capi.coppice_sparsifier_create(byref(config), byref(s)) != 0:
        continue
    capi.coppice_sparsifier_add_parameter(s, b"w", w.ctypes.data, shape, 1, None, 0.0)
    status = capi.coppice_sparsifier_start(s)
    for _ in range(3):
        capi.coppice_sparsifier_step(s, None)
    capi.coppice_sparsifier_destroy(s)
print("survived")
""",
    "destroying a handle with the wrong destroy function leaves it alive": """
config = SparsifierConfig(); capi.coppice_sparsifier_config_init(byref(config)); config.total_steps = 10
s = c_void_p(); assert capi.coppice_sparsifier_create(byref(config), byref(s)) == 0
m = c_void_p(); assert capi.coppice_model_create(b"mlp", 0, 10, byref(m)) == 0
capi.coppice_model_destroy(s); capi.coppice_dataset_destroy(s); capi.coppice_sparse_matrix_destroy(s)
capi.coppice_sparsifier_destroy(m)
n = c_int64()
if capi.coppice_sparsifier_steps(s, byref(n)) != 0:
    print("sparsifier died:", capi.coppice_last_error().decode()); sys.exit(5)
if capi.coppice_model_parameter_count(m, byref(n)) != 0:
    print("model died:", capi.coppice_last_error().decode()); sys.exit(5)
""",
    "file_inspect with capacity SIZE_MAX is a large buffer, not -1": """
import os, tempfile
m = c_void_p(); assert capi.coppice_model_create(b"mlp", 0, 10, byref(m)) == 0
path = os.path.join(tempfile.mkdtemp(), "m.safetensors").encode()
assert capi.coppice_model_save(m, path) == 0
buffer = ctypes.create_string_buffer(1 << 20); needed = ctypes.c_size_t()
status = capi.coppice_file_inspect(path, buffer, 2**64 - 1, byref(needed))
if status != 0:
    print("refused:", capi.coppice_last_error().decode()); sys.exit(6)
assert buffer.value.startswith(b"{") and needed.value == len(buffer.value) + 1
""",
    "the same or overlapping buffers registered twice": """
config = SparsifierConfig(); capi.coppice_sparsifier_config_init(byref(config)); config.total_steps = 10
s = c_void_p(); assert capi.coppice_sparsifier_create(byref(config), byref(s)) == 0
w = np.ones(64, np.float32); g = np.zeros(64, np.float32); shape = (c_int64 * 1)(32)
assert capi.coppice_sparsifier_add_parameter(s, b"a", w.ctypes.data, shape, 1, g.ctypes.data, 0.0) == 0
expect_failure(capi.coppice_sparsifier_add_parameter(s, b"b", w.ctypes.data, shape, 1, None, 0.0))
expect_failure(capi.coppice_sparsifier_add_parameter(s, b"c", w.ctypes.data + 64, shape, 1, None, 0.0))
expect_failure(capi.coppice_sparsifier_add_parameter(s, b"d", w.ctypes.data + 128, shape, 1, g.ctypes.data, 0.0))
expect_failure(capi.coppice_sparsifier_add_parameter(s, b"e", g.ctypes.data + 128, shape, 1, g.ctypes.data + 128, 0.0))
assert capi.coppice_sparsifier_add_parameter(s, b"f", w.ctypes.data + 128, shape, 1, g.ctypes.data + 128, 0.0) == 0
""",
    "predict with NaN or infinite images": """
m = c_void_p(); assert capi.coppice_model_create(b"mlp", 0, 10, byref(m)) == 0
logits = np.zeros(20, np.float32)
for value in (float("nan"), float("inf"), -float("inf")):
    images = np.zeros(2 * 784, np.float32); images[784 + 5] = value
    expect_failure(capi.coppice_predict(m, images.ctypes.data, 2, 28, 28, logits.ctypes.data, 20))
images = np.zeros(2 * 784, np.float32)
assert capi.coppice_predict(m, images.ctypes.data, 2, 28, 28, logits.ctypes.data, 20) == 0
""",
    "stepping far beyond total_steps": """
config = SparsifierConfig(); capi.coppice_sparsifier_config_init(byref(config)); config.total_steps = 3
config.partitions = 1; config.rounds = 1
s = c_void_p(); assert capi.coppice_sparsifier_create(byref(config), byref(s)) == 0
w = np.ones(16, np.float32); shape = (c_int64 * 1)(16)
assert capi.coppice_sparsifier_add_parameter(s, b"w", w.ctypes.data, shape, 1, None, 0.0) == 0
assert capi.coppice_sparsifier_start(s) == 0
for _ in range(1000):
    capi.coppice_sparsifier_step(s, None)
print("zeros", int((w == 0).sum()))
""",
}


@pytest.mark.parametrize("name", list(CASES))
def test_edge_case_is_an_error_not_a_crash(name):
    result = run_isolated(PRELUDE + CASES[name])
    assert result.returncode == 0, describe_exit(result)
