"""Feeds bad arguments to every C entry point of libcoppice through raw ctypes.

Run as a program (test_fuzz.py does, in a child process, so that a crash is a test failure):

    python fuzz_abi.py --seed 1 --iterations 2000 [--skip scenario,...] [--threads N]

With --threads N, N fuzzers run at once, each in its own thread on its own handles and files
(seeds seed..seed+N-1, --iterations each): the library promises that separate handles are
independent. Two things are left out there, being the caller's to serialise by contract:
coppice_set_threads while other threads are inside the library, and destroyed handles (whose
address another thread's new handle may take over, making it a shared handle).

Every call is printed ("CALL <n> <function> <arguments>") and flushed before it is made, so the
last line before a crash names the culprit. Each argument is drawn from a pool of values tagged
"good", "bad" (the header says the call must fail: NULL where a value is required, negative or
overflowing sizes, garbage names, NaN, stale or foreign handles, ...) or "neutral" (allowed
either way). A call with a bad argument must return a non-zero status and leave a non-empty
coppice_last_error(); anything else is printed as "VIOLATION ...". The run ends with
"DONE <calls> calls, <violations> violations".

Buffers handed to the library are always large enough for the sizes it cannot check (the valid
ones); bad sizes are ones it can check (negative, overflowing, inconsistent with a handle).
"""

from __future__ import annotations

import argparse
import ctypes
import gzip
import math
import os
import random
import sys
import tempfile
import threading
import time
from ctypes import byref, c_double, c_int, c_int64, c_void_p
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from coppice._capi import EPOCH_CALLBACK, SparsifierConfig, TrainConfig, TrainResult, capi  # noqa: E402

GOOD, BAD, NEUTRAL = "good", "bad", "neutral"
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
INT_MAX = 2**31 - 1
INT_MIN = -(2**31)

Arg = Tuple[Any, str, str]  # value, tag, description


def good(value: Any, text: Optional[str] = None) -> Arg:
    return (value, GOOD, text if text is not None else repr(value))


def bad(value: Any, text: Optional[str] = None) -> Arg:
    return (value, BAD, text if text is not None else repr(value))


def neutral(value: Any, text: Optional[str] = None) -> Arg:
    return (value, NEUTRAL, text if text is not None else repr(value))


class Fuzzer:
    def __init__(self, seed: int, workdir: str, skip: List[str], threaded: bool = False) -> None:
        self.threaded = threaded
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        self.workdir = workdir
        self.skip = set(skip)
        self.calls = 0
        self.violations: List[str] = []
        self.keep: List[Any] = []  # buffers the library may hold pointers to
        self._setup()

    # ------------------------------------------------------------------ fixtures

    def floats(self, count: int, fill: float = 0.5) -> np.ndarray:
        a = np.full(count, fill, np.float32)
        self.keep.append(a)
        return a

    def _setup(self) -> None:
        # Parameters of the long-lived sparsifier: "a" is 8×8, "b" has 16 elements.
        self.wa, self.ga = self.floats(64, 1.0), self.floats(64, 0.1)
        self.wb, self.gb = self.floats(16, 1.0), self.floats(16, 0.1)
        self.sparsifier = self._new_sparsifier(b"cgap", total_steps=50)
        self._add(self.sparsifier, b"a", self.wa, (8, 8), self.ga)
        self._add(self.sparsifier, b"b", self.wb, (16,), self.gb)
        assert capi.coppice_sparsifier_start(self.sparsifier) == 0
        self.fresh = self._new_sparsifier(b"static", total_steps=50)  # never started
        dead = self._new_sparsifier(b"static", total_steps=5)
        capi.coppice_sparsifier_destroy(dead)
        self.stale_sparsifier = dead

        self.matrix_dense = self.floats(48, 1.0)
        self.matrix = c_void_p()
        assert capi.coppice_sparse_matrix_create(8, 6, self.matrix_dense.ctypes.data, None, byref(self.matrix)) == 0
        dead_matrix = c_void_p()
        assert capi.coppice_sparse_matrix_create(2, 2, self.matrix_dense.ctypes.data, None, byref(dead_matrix)) == 0
        capi.coppice_sparse_matrix_destroy(dead_matrix)
        self.stale_matrix = dead_matrix

        self.model = c_void_p()
        assert capi.coppice_model_create(b"mlp", 0, 10, byref(self.model)) == 0
        dead_model = c_void_p()
        assert capi.coppice_model_create(b"mlp", 0, 10, byref(dead_model)) == 0
        capi.coppice_model_destroy(dead_model)
        self.stale_model = dead_model

        self.images = self.floats(8 * 784, 0.25)
        self.labels = np.array([0, 1, 2, 3, 4, 5, 6, 7], np.int32)
        self.bad_labels = np.array([0, 1, 99, -1, 4, 5, 6, 7], np.int32)
        self.nan_images = self.floats(8 * 784, float("nan"))
        self.keep += [self.labels, self.bad_labels]
        self.dataset = c_void_p()
        assert capi.coppice_dataset_create(
            self.images.ctypes.data, self.labels.ctypes.data, 4, 28, 28, 10, byref(self.dataset)) == 0
        self.small_dataset = c_void_p()  # 20×20 images: wrong shape for the models
        assert capi.coppice_dataset_create(
            self.images.ctypes.data, self.labels.ctypes.data, 4, 20, 20, 10, byref(self.small_dataset)) == 0
        dead_dataset = c_void_p()
        assert capi.coppice_dataset_create(
            self.images.ctypes.data, self.labels.ctypes.data, 2, 28, 28, 10, byref(dead_dataset)) == 0
        capi.coppice_dataset_destroy(dead_dataset)
        self.stale_dataset = dead_dataset

        # Layers: a linear one over the sparsifier's "a" (8×8), a masked convolution (4×2×3×3,
        # no padding), a destroyed one. Activation buffers hold the largest good sizes.
        self.layer = c_void_p()
        assert capi.coppice_layer_linear_create(self.sparsifier, b"a", byref(self.layer)) == 0
        self.conv_weights = self.floats(72, 0.5)
        self.conv_mask = np.tile(np.array([1, 0, 1], np.uint8), 24)
        self.keep.append(self.conv_mask)
        conv_shape = (c_int64 * 4)(4, 2, 3, 3)
        self.keep.append(conv_shape)
        self.conv = c_void_p()
        assert capi.coppice_layer_conv2d_create_masked(
            conv_shape, self.conv_weights.ctypes.data, self.conv_mask.ctypes.data, None,
            byref(self.conv)) == 0
        dead_layer = c_void_p()
        assert capi.coppice_layer_linear_create(self.sparsifier, b"a", byref(dead_layer)) == 0
        capi.coppice_layer_destroy(dead_layer)
        self.stale_layer = dead_layer
        self.activations = [self.floats(2 * 4 * 8 * 8, 0.25) for _ in range(5)]  # x, y, dy, dx, dw

        self.out_floats = self.floats(4096)
        self.out_bytes = np.zeros(4096, np.uint8)
        self.keep.append(self.out_bytes)

        # Files: a valid sparsifier state, garbage, an empty file; bad IDX directories.
        self.state_path = os.path.join(self.workdir, "state.bin").encode()
        assert capi.coppice_sparsifier_save(self.sparsifier, self.state_path) == 0
        with open(self.state_path, "rb") as f:
            self.state_bytes = f.read()
        self.garbage_path = self._write("garbage.bin", bytes(self.rng.getrandbits(8) for _ in range(300)))
        self.empty_path = self._write("empty.bin", b"")
        self.idx_dirs: List[Arg] = []
        idx_cases = {
            "idx-garbage": b"not an idx file at all",
            "idx-truncated": b"\x00\x00\x08\x03\x00\x00\x00\x05",
            "idx-huge-dims": b"\x00\x00\x08\x03" + b"\xff\xff\xff\xff" * 3 + b"\x00" * 32,
            "idx-zero-dims": b"\x00\x00\x08\x03" + b"\x00\x00\x00\x00" * 3,
            "idx-rank-9": b"\x00\x00\x08\x09" + b"\x00\x00\x00\x01" * 9 + b"\x00",
        }
        for label, content in idx_cases.items():
            directory = os.path.join(self.workdir, label)
            os.makedirs(directory, exist_ok=True)
            for stem in ("train", "t10k"):
                for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
                    with gzip.open(os.path.join(directory, f"{stem}-{kind}.gz"), "wb") as f:
                        f.write(content)
            self.idx_dirs.append(bad(directory.encode(), label))

    def _write(self, name: str, content: bytes) -> bytes:
        path = os.path.join(self.workdir, name)
        with open(path, "wb") as f:
            f.write(content)
        return path.encode()

    def _new_sparsifier(self, method: bytes, total_steps: int) -> c_void_p:
        config = SparsifierConfig()
        capi.coppice_sparsifier_config_init(byref(config))
        config.method = method
        config.total_steps = total_steps
        config.partitions = 2
        handle = c_void_p()
        assert capi.coppice_sparsifier_create(byref(config), byref(handle)) == 0
        return handle

    def _add(self, s: c_void_p, name: bytes, w: np.ndarray, shape: Tuple[int, ...], g: Optional[np.ndarray]) -> int:
        dims = (c_int64 * len(shape))(*shape)
        self.keep.append(dims)
        return capi.coppice_sparsifier_add_parameter(
            s, name, w.ctypes.data, dims, len(shape), None if g is None else g.ctypes.data, 0.0)

    # ------------------------------------------------------------------ pools

    def pick(self, pool: List[Arg]) -> Arg:
        return self.rng.choice(pool)

    def garbage_bytes(self) -> bytes:
        n = self.rng.choice([1, 7, 64, 5000])
        return bytes(self.rng.randrange(1, 256) for _ in range(n))

    def live_addresses(self) -> set:
        """Addresses of the handles alive between scenarios (transient ones are destroyed)."""
        handles = [self.sparsifier, self.fresh, self.matrix, self.model, self.dataset, self.small_dataset,
                   self.layer, self.conv]
        return {h.value for h in handles}

    def handle_pool(self, live: c_void_p, stale: c_void_p, foreign: c_void_p, what: str) -> List[Arg]:
        # A destroyed handle's address can be reused by a newer object (then it is live again:
        # no C library can tell the difference), so it only counts as bad while it is unused.
        reused = stale.value in self.live_addresses()
        pool = [
            good(live, what),
            good(live, what),
            bad(None, "NULL"),
            (stale, NEUTRAL if reused else BAD, f"destroyed {what}" + (" (address reused)" if reused else "")),
            bad(foreign, "foreign handle"),
            bad(c_void_p(0xDEADBEEF), "0xdeadbeef"),
        ]
        if self.threaded:  # another thread may own that address now
            del pool[3]
        return pool

    def sparsifier_handles(self) -> List[Arg]:
        return self.handle_pool(self.sparsifier, self.stale_sparsifier, self.matrix, "sparsifier")

    def matrix_handles(self) -> List[Arg]:
        return self.handle_pool(self.matrix, self.stale_matrix, self.model, "matrix")

    def model_handles(self) -> List[Arg]:
        return self.handle_pool(self.model, self.stale_model, self.dataset, "model")

    def dataset_handles(self, for_model: bool = True) -> List[Arg]:
        """Dataset handles; a 20×20 dataset is bad only where a 28×28 model consumes it."""
        pool = self.handle_pool(self.dataset, self.stale_dataset, self.sparsifier, "dataset")
        if for_model:
            pool.append(bad(self.small_dataset, "20x20 dataset"))
        else:
            pool.append(good(self.small_dataset, "20x20 dataset"))
        return pool

    def layer_handles(self, conv: bool) -> List[Arg]:
        """Linear or convolution layer handles; the other kind of layer is bad too."""
        live, other = (self.conv, self.layer) if conv else (self.layer, self.conv)
        what = "conv layer" if conv else "linear layer"
        pool = self.handle_pool(live, self.stale_layer, self.model, what)
        return pool + [bad(other, "linear layer" if conv else "conv layer")]

    def layer_sizes(self, valid: List[int]) -> List[Arg]:
        """Batch or image sizes: the valid ones fit the activation buffers; the bad ones are
        those the library must refuse (below 1, above 2^31 − 1)."""
        return [good(v) for v in valid] + [bad(v) for v in (0, -1, 2**31, INT64_MAX, INT64_MIN)]

    def activation_pool(self, index: int, name: str, optional: bool = False) -> List[Arg]:
        buffer = self.activations[index].ctypes.data
        return [good(buffer, name), good(buffer, name), (None, GOOD if optional else BAD, "NULL")]

    def name_pool(self, valid: bytes = b"a") -> List[Arg]:
        g = self.garbage_bytes()
        return [
            good(valid),
            good(valid),
            bad(None, "NULL"),
            bad(b"", "''"),
            bad(b"no-such-parameter"),
            bad(g, f"garbage[{len(g)}]"),
        ]

    def out_pool(self, ctype: Any) -> List[Arg]:
        holder = ctype()
        self.keep.append(holder)
        return [good(byref(holder), "&out"), good(byref(holder), "&out"), bad(None, "NULL")]

    def float_buffer_pool(self, name: str) -> List[Arg]:
        return [good(self.out_floats.ctypes.data, name), good(self.out_floats.ctypes.data, name), bad(None, "NULL")]

    def int64_sizes(self, valid: List[int], extra_bad: Tuple[int, ...] = ()) -> List[Arg]:
        pool = [good(v) for v in valid] * 2
        for v in (-1, INT64_MIN, INT64_MAX, 2**62) + extra_bad:
            pool.append(bad(v))
        return pool

    def doubles(self, valid: List[float], invalid: List[float]) -> List[Arg]:
        return [good(v) for v in valid] * 2 + [bad(v) for v in invalid]

    def path_pool_load(self) -> List[Arg]:
        mutated = bytearray(self.state_bytes)
        for _ in range(self.rng.choice([1, 2, 8])):
            if mutated:
                i = self.rng.randrange(len(mutated))
                mutated[i] ^= 1 << self.rng.randrange(8)
        cut = self.state_bytes[: self.rng.randrange(max(1, len(self.state_bytes)))]
        g = self.garbage_bytes()
        return [
            good(self.state_path, "state.bin"),
            bad(None, "NULL"),
            bad(b"", "''"),
            bad(b"/nonexistent-dir/state.bin"),
            bad(self.garbage_path, "garbage.bin"),
            bad(self.empty_path, "empty.bin"),
            bad(self._write("truncated.bin", cut), f"truncated[{len(cut)}]"),
            bad(os.path.join(self.workdir, "\udcff\udcfe").encode("utf-8", "surrogateescape"), "non-utf8 missing"),
            bad(b"/nonexistent/" + g.replace(b"/", b"_")[:200], "garbage path"),
            neutral(self._write("mutated.bin", bytes(mutated)), "bit-flipped state"),
            bad(self.workdir.encode(), "a directory"),
        ]

    def path_pool_save(self) -> List[Arg]:
        return [
            good(os.path.join(self.workdir, "saved.bin").encode(), "saved.bin"),
            bad(None, "NULL"),
            bad(b"", "''"),
            bad(b"/nonexistent-dir/state.bin"),
            bad(self.workdir.encode(), "a directory"),
        ]

    def field_drawer(self, struct: Any, tags: List[Tuple[str, str]]) -> Callable[[str, List[Arg]], None]:
        """draw(field, pool): sets `struct.field` to a value drawn from `pool`, noting its tag."""

        def draw(field: str, pool: List[Arg]) -> None:
            value, tag, text = self.pick(pool)
            setattr(struct, field, value)
            tags.append((tag, f"{field}={text}"))

        return draw

    def sparsifier_config(self, sparse_method: bool = False) -> Arg:
        """A config struct with every field drawn from its pool."""
        c = SparsifierConfig()
        capi.coppice_sparsifier_config_init(byref(c))
        tags: List[Tuple[str, str]] = []
        draw = self.field_drawer(c, tags)

        g = self.garbage_bytes()
        methods = [good(m) for m in (b"static", b"cgap", b"rigl", b"set", b"gmp", b"oneshot", b"pgap")]
        if not sparse_method:
            methods += [good(b"dense"), neutral(None, "NULL")]
        draw("struct_size", [good(ctypes.sizeof(SparsifierConfig))] * 6 + [bad(0), bad(3), bad(2**40), neutral(16)])
        draw("method", methods * 2 + [bad(b"nope"), bad(g, f"garbage[{len(g)}]"), bad(b"")])
        draw("sparsity", self.doubles([0.0, 0.5, 0.9, 0.999], [math.nan, 1.0, -0.1, math.inf, -math.inf, 1e300]))
        draw("distribution", [good(None, "NULL"), good(b"uniform"), good(b"erk"), bad(b"gaussian"), bad(g, "garbage")])
        draw("erk_power", [good(1.0), good(0.5), neutral(math.nan), neutral(-1.0), neutral(math.inf)])
        draw("keep_first_dense", [good(0), good(1), neutral(-7)])
        draw("keep_last_dense", [good(0), good(1), neutral(INT_MAX)])
        draw("total_steps", [good(50)] * 4 + [bad(0), bad(-5), bad(INT64_MIN), neutral(INT64_MAX), neutral(1)])
        draw("steps_per_epoch", [good(0), good(10)] * 2 + [bad(-1), bad(INT64_MIN), neutral(INT64_MAX)])
        draw("partitions", [good(2), good(4)] * 2 + [bad(0), bad(-1), bad(INT_MIN), neutral(INT_MAX), neutral(1)])
        draw("partition_balance", [good(None, "NULL"), good(b"flops"), good(b"parameters"), bad(b"weight"), bad(g, "garbage")])
        draw("gap_step_length", [good(0), good(5)] * 2 + [bad(-1), bad(INT64_MIN), neutral(INT64_MAX), neutral(2**62)])
        draw("rounds", [good(2), good(1)] * 2 + [bad(0), bad(-3), bad(INT_MIN), neutral(INT_MAX)])
        draw("update_interval", [good(100), good(5)] * 2 + [bad(0), bad(-1), bad(INT64_MIN), neutral(INT64_MAX)])
        draw("drop_fraction", self.doubles([0.3, 0.0, 1.0], [math.nan, -0.1, 1.5, math.inf]))
        draw("prune_step", [good(-1), good(5)] * 2 + [neutral(INT64_MIN), neutral(INT64_MAX), neutral(49)])
        draw("seed", [good(0), good(2**64 - 1), good(12345)])
        worst = BAD if any(t == BAD for t, _ in tags) else (NEUTRAL if any(t == NEUTRAL for t, _ in tags) else GOOD)
        self.keep.append(c)
        text = "{" + ", ".join(t for _, t in tags if _ != GOOD) + "}"
        return (c, worst, text)

    # ------------------------------------------------------------------ calling

    def call(self, function: str, args: List[Arg], expect: str = "status", force_bad: bool = True) -> Any:
        """Calls `function` with drawn args; checks the status against the tags."""
        tags = [tag for _, tag, _ in args]
        self.calls += 1
        print(f"CALL {self.calls} {function}({', '.join(text for _, _, text in args)})", flush=True)
        result = getattr(capi, function)(*[value for value, _, _ in args])
        has_bad = BAD in tags
        if expect == "status" and has_bad:
            if result == 0:
                self.violation(function, args, "returned COPPICE_OK for a bad argument")
            else:
                message = capi.coppice_last_error()
                if not message:
                    self.violation(function, args, f"status {result} with an empty coppice_last_error()")
        if expect == "pointer" and has_bad and result is not None:
            self.violation(function, args, f"returned {result!r} for a bad handle, not NULL")
        return result

    def violation(self, function: str, args: List[Arg], what: str) -> None:
        line = f"VIOLATION {function}({', '.join(text for _, _, text in args)}): {what}"
        print(line, flush=True)
        self.violations.append(line)

    def draw(self, pools: List[List[Arg]], force_bad: bool) -> List[Arg]:
        """One argument per pool; when `force_bad`, at least one is bad."""
        args = [self.pick(pool) for pool in pools]
        if force_bad and not any(tag == BAD for _, tag, _ in args):
            candidates = [i for i, pool in enumerate(pools) if any(tag == BAD for _, tag, _ in pool)]
            if candidates:
                i = self.rng.choice(candidates)
                args[i] = self.rng.choice([a for a in pools[i] if a[1] == BAD])
        return args

    # ------------------------------------------------------------------ entry points

    def scenarios(self) -> Dict[str, Callable[[bool], None]]:
        return {
            "coppice_status_name": self.f_status_name,
            "coppice_set_threads": self.f_set_threads,
            "coppice_config_init": self.f_config_init,
            "coppice_sparsifier_create": self.f_sparsifier_create,
            "coppice_sparsifier_add_parameter": self.f_add_parameter,
            "coppice_sparsifier_start": self.f_simple_sparsifier("coppice_sparsifier_start", started_is_bad=True),
            "coppice_sparsifier_mask_gradients": self.f_simple_sparsifier("coppice_sparsifier_mask_gradients"),
            "coppice_sparsifier_step": self.f_step,
            "coppice_sparsifier_needs_dense_gradients": self.f_out_sparsifier("coppice_sparsifier_needs_dense_gradients", c_int),
            "coppice_sparsifier_parameter_count": self.f_out_sparsifier("coppice_sparsifier_parameter_count", c_int),
            "coppice_sparsifier_parameter_info": self.f_parameter_info,
            "coppice_model_shape": self.f_model_shape,
            "coppice_sparsifier_steps": self.f_out_sparsifier("coppice_sparsifier_steps", c_int64),
            "coppice_sparsifier_get_mask": self.f_mask("coppice_sparsifier_get_mask"),
            "coppice_sparsifier_changed_mask": self.f_mask("coppice_sparsifier_changed_mask"),
            "coppice_sparsifier_sparsity": self.f_sparsity,
            "coppice_sparsifier_phase": self.f_phase,
            "coppice_sparsifier_save": self.f_save,
            "coppice_sparsifier_load": self.f_load,
            "sparsifier_lifecycle": self.f_lifecycle,
            "coppice_sparse_matrix_create": self.f_matrix_create,
            "coppice_sparse_matrix_update": self.f_matrix_update,
            "coppice_sparse_matrix_nnz": self.f_matrix_nnz,
            "coppice_spmm": self.f_product("coppice_spmm"),
            "coppice_spmm_transposed": self.f_product("coppice_spmm_transposed"),
            "coppice_sddmm": self.f_sddmm,
            "coppice_model_create": self.f_model_create,
            "coppice_model_parameter_count": self.f_model_count,
            "coppice_dataset_create": self.f_dataset_create,
            "coppice_dataset_load_idx": self.f_load_idx,
            "coppice_dataset_count": self.f_dataset_count,
            "coppice_train": self.f_train,
            "coppice_evaluate": self.f_evaluate,
            "coppice_predict": self.f_predict,
            "coppice_model_export": self.f_model_export,
            "coppice_file_inspect": self.f_file_inspect,
            "coppice_sparsifier_pgap_status": self.f_pgap_status,
            "coppice_sparsifier_pgap_begin_worker": self.f_pgap_worker("coppice_sparsifier_pgap_begin_worker"),
            "coppice_sparsifier_pgap_partition_size": self.f_pgap_partition_size,
            "coppice_sparsifier_pgap_export_partition": self.f_pgap_transfer("coppice_sparsifier_pgap_export_partition"),
            "coppice_sparsifier_pgap_import_partition": self.f_pgap_transfer("coppice_sparsifier_pgap_import_partition"),
            "coppice_sparsifier_pgap_finish_round": self.f_simple_sparsifier("coppice_sparsifier_pgap_finish_round"),
            "coppice_layer_linear_create": self.f_layer_create,
            "coppice_layer_linear_create_masked": self.f_layer_create_masked,
            "coppice_layer_linear_forward": self.f_linear_forward,
            "coppice_layer_linear_backward": self.f_linear_backward,
            "coppice_layer_conv2d_output_size": self.f_conv_output_size,
            "coppice_layer_conv2d_forward": self.f_conv_forward,
            "coppice_layer_conv2d_backward": self.f_conv_backward,
            "coppice_layer_plan": self.f_layer_plan,
            "coppice_layer_execution": self.f_layer_execution,
            "destroy": self.f_destroy,
        }

    # ------------------------------------------------------------------ sparse layers

    def f_layer_create(self, force: bool) -> None:
        names = [good(b"a"), bad(b"b", "1-D parameter"), bad(None, "NULL"), bad(b"no-such-parameter")]
        out = c_void_p()
        args = self.draw([self.sparsifier_handles(), names, [good(byref(out), "&out"), bad(None, "NULL")]], force)
        if self.call("coppice_layer_linear_create", args) == 0:
            capi.coppice_layer_destroy(out)

    def f_layer_create_masked(self, force: bool) -> None:
        out = c_void_p()
        weights = [good(self.out_floats.ctypes.data, "weights"), bad(None, "NULL")]
        mask = [good(self.out_bytes.ctypes.data, "mask"), bad(None, "NULL")]
        args = self.draw([self.layer_sizes([8, 16]), self.layer_sizes([4, 8]), weights, mask,
                          [good(byref(out), "&out"), bad(None, "NULL")]], force)
        if self.call("coppice_layer_linear_create_masked", args) == 0:
            capi.coppice_layer_destroy(out)

    def f_linear_forward(self, force: bool) -> None:
        args = self.draw([self.layer_handles(False), self.activation_pool(0, "x"), self.layer_sizes([1, 4]),
                          self.activation_pool(4, "bias", optional=True), self.activation_pool(1, "y")], force)
        self.call("coppice_layer_linear_forward", args)

    def f_linear_backward(self, force: bool) -> None:
        args = self.draw([self.layer_handles(False), self.activation_pool(0, "x"), self.activation_pool(2, "dy"),
                          self.layer_sizes([1, 4]), self.activation_pool(3, "dx", optional=True),
                          self.activation_pool(4, "dw", optional=True),
                          self.activation_pool(1, "db", optional=True)], force)
        self.call("coppice_layer_linear_backward", args)

    def conv_sizes(self) -> List[Arg]:
        """Image sizes: 3..8 fit the buffers; 1 and 2 are smaller than the 3×3 kernel."""
        return self.layer_sizes([3, 5, 8]) + [bad(1), bad(2)]

    def f_conv_output_size(self, force: bool) -> None:
        h, w = c_int64(), c_int64()
        self.keep += [h, w]
        outs = [good(byref(h), "&oh"), bad(None, "NULL")]
        args = self.draw([self.layer_handles(True), self.conv_sizes(), self.conv_sizes(), outs,
                          [good(byref(w), "&ow"), bad(None, "NULL")]], force)
        self.call("coppice_layer_conv2d_output_size", args)

    def f_conv_forward(self, force: bool) -> None:
        args = self.draw([self.layer_handles(True), self.activation_pool(0, "x"), self.layer_sizes([1, 2]),
                          self.conv_sizes(), self.conv_sizes(), self.activation_pool(4, "bias", optional=True),
                          self.activation_pool(1, "y")], force)
        self.call("coppice_layer_conv2d_forward", args)

    def f_conv_backward(self, force: bool) -> None:
        args = self.draw([self.layer_handles(True), self.activation_pool(0, "x"), self.activation_pool(2, "dy"),
                          self.layer_sizes([1, 2]), self.conv_sizes(), self.conv_sizes(),
                          self.activation_pool(3, "dx", optional=True), self.activation_pool(4, "dw", optional=True),
                          self.activation_pool(1, "db", optional=True)], force)
        self.call("coppice_layer_conv2d_backward", args)

    def f_layer_plan(self, force: bool) -> None:
        conv = self.rng.random() < 0.5
        a, b = c_int(), c_int()
        self.keep += [a, b]
        sizes = self.conv_sizes() if conv else [neutral(v) for v in (0, 1, 8, INT64_MAX)]
        args = self.draw([self.layer_handles(conv)[:-1], self.layer_sizes([1, 2]), sizes, sizes,
                          [good(byref(a), "&forward"), good(None, "NULL")],
                          [good(byref(b), "&backward"), good(None, "NULL")]], force)
        self.call("coppice_layer_plan", args)

    def f_layer_execution(self, force: bool) -> None:
        conv = self.rng.random() < 0.5
        a, b = c_int(), c_int()
        self.keep += [a, b]
        args = self.draw([self.layer_handles(conv)[:-1], [good(byref(a), "&forward"), good(None, "NULL")],
                          [good(byref(b), "&backward"), good(None, "NULL")]], force)
        self.call("coppice_layer_execution", args)

    def f_status_name(self, _force: bool) -> None:
        code = self.rng.choice([-1, 0, 9, 10, INT_MAX, INT_MIN, self.rng.randrange(-1000, 1000)])
        self.calls += 1
        print(f"CALL {self.calls} coppice_status_name({code})", flush=True)
        name = capi.coppice_status_name(code)
        if not name:
            self.violation("coppice_status_name", [good(code)], "returned NULL")
        print(f"CALL {self.calls} coppice_last_error()", flush=True)
        capi.coppice_last_error()

    def f_set_threads(self, force: bool) -> None:
        args = self.draw([[good(1), good(2), bad(-1), bad(INT_MIN), bad(INT_MAX), bad(1025)]], force)
        self.call("coppice_set_threads", args)
        capi.coppice_set_threads(2)

    def f_config_init(self, _force: bool) -> None:
        self.calls += 1
        print(f"CALL {self.calls} coppice_*_config_init(NULL)", flush=True)
        capi.coppice_sparsifier_config_init(None)
        capi.coppice_train_config_init(None)

    def f_sparsifier_create(self, force: bool) -> None:
        out = c_void_p()
        config = self.sparsifier_config()
        args = self.draw([[config, config, bad(None, "NULL")], [good(byref(out), "&out"), good(byref(out), "&out"), bad(None, "NULL")]], force)
        status = self.call("coppice_sparsifier_create", args)
        if status == 0 and out:
            capi.coppice_sparsifier_destroy(out)
        elif status != 0 and out:
            self.violation("coppice_sparsifier_create", args, "failed but left a handle in *out")

    def f_lifecycle(self, _force: bool) -> None:
        """A config drawn from the pools, then a random sequence of calls on the new sparsifier
        (valid arguments, any order): statuses may be anything but nothing may crash."""
        config, _tag, text = self.sparsifier_config()
        out = c_void_p()
        self.calls += 1
        print(f"CALL {self.calls} lifecycle create{text}", flush=True)
        if capi.coppice_sparsifier_create(byref(config), byref(out)) != 0:
            return
        s = out
        registered = []
        for step in range(self.rng.randrange(2, 14)):
            op = self.rng.choice(["add", "add", "add", "start", "start", "step", "mask_gradients",
                                  "get_mask", "changed_mask", "sparsity", "save", "load", "needs_dense", "phase"])
            self.calls += 1
            print(f"CALL {self.calls} lifecycle {op}", flush=True)
            if op == "add":
                shape = self.rng.choice([(4, 4), (16,), (2, 3, 4), (1,), (3, 1, 1, 1, 1, 1, 1, 2)])
                n = int(np.prod(shape))
                w = self.floats(n, 1.0)
                w[:] = self.np_rng.standard_normal(n)
                g = self.floats(n, 0.1) if self.rng.random() < 0.8 else None
                name = self.rng.choice([b"p0", b"p1", b"p2", b"p3"])
                if self._add(s, name, w, shape, g) == 0:
                    registered.append((name, n))
            elif op == "start":
                capi.coppice_sparsifier_start(s)
            elif op == "step":
                for _ in range(self.rng.choice([1, 5, 30])):
                    capi.coppice_sparsifier_mask_gradients(s)
                    capi.coppice_sparsifier_step(s, None)
            elif op == "mask_gradients":
                capi.coppice_sparsifier_mask_gradients(s)
            elif op in ("get_mask", "changed_mask") and registered:
                name, n = self.rng.choice(registered)
                getattr(capi, f"coppice_sparsifier_{op}")(s, name, self.out_bytes.ctypes.data, n)
            elif op == "sparsity":
                capi.coppice_sparsifier_sparsity(s, self.rng.choice([None, b"p0"]), byref(c_double()))
            elif op == "save":
                capi.coppice_sparsifier_save(s, os.path.join(self.workdir, "lifecycle.bin").encode())
            elif op == "load":
                path = self.rng.choice([self.state_path, os.path.join(self.workdir, "lifecycle.bin").encode()])
                capi.coppice_sparsifier_load(s, path)
            elif op == "needs_dense":
                capi.coppice_sparsifier_needs_dense_gradients(s, byref(c_int()))
            elif op == "phase":
                capi.coppice_sparsifier_phase(s)
        capi.coppice_sparsifier_destroy(s)

    def f_add_parameter(self, force: bool) -> None:
        w = self.floats(64, 1.0)
        g = self.floats(64, 0.1)
        shapes = {
            "[8,8]": ((8, 8), GOOD), "[0,8]": ((0, 8), BAD), "[-1,8]": ((-1, 8), BAD),
            "[2^62,2^62]": ((2**62, 2**62), BAD), "[INT64_MIN,1]": ((INT64_MIN, 1), BAD),
            "[2^31,2^31]": ((2**31, 2**31), BAD),
        }
        shape_pool = []
        for text, (shape, tag) in shapes.items():
            dims = (c_int64 * 8)(*shape)
            self.keep.append(dims)
            shape_pool.append((dims, tag, text))
        shape_pool += [shape_pool[0]] * 3
        unique = f"p{self.calls}".encode()
        flops = [good(0.0), good(2.0), neutral(-1.0), neutral(-math.inf), bad(math.nan), bad(math.inf)]
        # The handle: a never-started sparsifier (adding works) or the started one (INVALID_STATE).
        handles = self.handle_pool(self.fresh, self.stale_sparsifier, self.model, "fresh sparsifier")
        handles.append(bad(self.sparsifier, "started sparsifier"))
        args = self.draw([
            handles,
            [good(unique), good(unique), bad(None, "NULL"), bad(b"", "''"), bad(b"a", "'a' (duplicate)")],
            [good(w.ctypes.data, "weights"), good(w.ctypes.data, "weights"), bad(None, "NULL")],
            shape_pool + [bad(None, "NULL")],
            [good(2), good(2), bad(0), bad(-1), bad(9), bad(INT_MAX), bad(INT_MIN)],
            [good(g.ctypes.data, "grads"), good(None, "NULL grads")],
            flops,
        ], force)
        if args[1][2] == "'a' (duplicate)" and args[0][2] == "fresh sparsifier":
            capi.coppice_sparsifier_add_parameter(self.fresh, b"a", w.ctypes.data, shape_pool[0][0], 2, None, 0.0)
        self.call("coppice_sparsifier_add_parameter", args)

    def f_simple_sparsifier(self, function: str, started_is_bad: bool = False) -> Callable[[bool], None]:
        def run(force: bool) -> None:
            pool = self.sparsifier_handles()
            if started_is_bad:
                pool = [a if a[1] != GOOD else bad(a[0], "started sparsifier") for a in pool]
            else:
                pool.append(bad(self.fresh, "unstarted sparsifier"))
            self.call(function, self.draw([pool], force))
        return run

    def f_step(self, force: bool) -> None:
        changed = c_int()
        pool = self.sparsifier_handles() + [bad(self.fresh, "unstarted sparsifier")]
        args = self.draw([pool, [good(byref(changed), "&changed"), good(None, "NULL (allowed)")]], force)
        self.call("coppice_sparsifier_step", args)

    def f_out_sparsifier(self, function: str, ctype: Any) -> Callable[[bool], None]:
        def run(force: bool) -> None:
            pool = self.sparsifier_handles()
            if function == "coppice_sparsifier_needs_dense_gradients":
                pool.append(bad(self.fresh, "unstarted sparsifier"))
            self.call(function, self.draw([pool, self.out_pool(ctype)], force))
        return run

    def f_parameter_info(self, force: bool) -> None:
        name, count = ctypes.c_char_p(), c_int64()
        self.keep += [name, count]
        args = self.draw([
            self.sparsifier_handles(),
            [good(0), good(1), bad(2), bad(-1), bad(INT_MAX), bad(INT_MIN)],
            [good(byref(name), "&name"), good(None, "NULL (allowed)")],
            [good(byref(count), "&count"), good(None, "NULL (allowed)")],
        ], force)
        self.call("coppice_sparsifier_parameter_info", args)

    def f_model_shape(self, force: bool) -> None:
        outs = [c_int(), c_int(), c_int()]
        self.keep += outs
        args = self.draw([self.model_handles()] + [[good(byref(o), "&out"), good(None, "NULL (allowed)")] for o in outs], force)
        self.call("coppice_model_shape", args)

    def f_mask(self, function: str) -> Callable[[bool], None]:
        def run(force: bool) -> None:
            buffer = [good(self.out_bytes.ctypes.data, "buffer"), good(self.out_bytes.ctypes.data, "buffer"), bad(None, "NULL")]
            args = self.draw([
                self.sparsifier_handles() + [bad(self.fresh, "unstarted sparsifier")],
                self.name_pool(b"a"),
                buffer,
                self.int64_sizes([64], extra_bad=(0, 63, 65, 16, 4096)),
            ], force)
            self.call(function, args)
        return run

    def f_sparsity(self, force: bool) -> None:
        names = [a for a in self.name_pool(b"a") if a[2] != "NULL"] + [good(None, "NULL (global)")]
        args = self.draw([
            self.sparsifier_handles() + [bad(self.fresh, "unstarted sparsifier")],
            names,
            self.out_pool(c_double),
        ], force)
        self.call("coppice_sparsifier_sparsity", args)

    def f_phase(self, force: bool) -> None:
        args = self.draw([self.sparsifier_handles()], force)
        self.call("coppice_sparsifier_phase", args, expect="pointer")

    def f_save(self, force: bool) -> None:
        pool = self.sparsifier_handles() + [bad(self.fresh, "unstarted sparsifier")]
        self.call("coppice_sparsifier_save", self.draw([pool, self.path_pool_save()], force))

    def f_load(self, force: bool) -> None:
        # Loading into the long-lived sparsifier: a good load restores the saved state.
        args = self.draw([self.sparsifier_handles(), self.path_pool_load()], force)
        self.call("coppice_sparsifier_load", args)

    def f_matrix_create(self, force: bool) -> None:
        out = c_void_p()
        mask = np.ones(48, np.uint8)
        self.keep.append(mask)
        sizes_bad = (0, -1, INT64_MIN, INT64_MAX, 2**62, 2**31, 2**40)
        args = self.draw([
            [good(8)] * 3 + [bad(v) for v in sizes_bad],
            [good(6)] * 3 + [bad(v) for v in sizes_bad],
            [good(self.matrix_dense.ctypes.data, "dense"), good(self.matrix_dense.ctypes.data, "dense"), bad(None, "NULL")],
            [good(None, "NULL mask"), good(mask.ctypes.data, "mask")],
            [good(byref(out), "&out"), good(byref(out), "&out"), bad(None, "NULL")],
        ], force)
        status = self.call("coppice_sparse_matrix_create", args)
        if status == 0 and out:
            capi.coppice_sparse_matrix_destroy(out)

    def f_matrix_update(self, force: bool) -> None:
        args = self.draw([
            self.matrix_handles(),
            [good(self.matrix_dense.ctypes.data, "dense"), bad(None, "NULL")],
        ], force)
        self.call("coppice_sparse_matrix_update", args)

    def f_matrix_nnz(self, force: bool) -> None:
        self.call("coppice_sparse_matrix_nnz", self.draw([self.matrix_handles(), self.out_pool(c_int64)], force))

    def f_product(self, function: str) -> Callable[[bool], None]:
        def run(force: bool) -> None:
            args = self.draw([
                self.matrix_handles(),
                self.int64_sizes([1, 4], extra_bad=(0, 2**31, 2**40)),
                self.float_buffer_pool("in"),
                [good(0.0), good(1.0), neutral(math.nan), neutral(math.inf)],
                self.float_buffer_pool("out"),
            ], force)
            self.call(function, args)
        return run

    def f_sddmm(self, force: bool) -> None:
        args = self.draw([
            self.matrix_handles(),
            self.int64_sizes([1, 4], extra_bad=(0, 2**31, 2**40)),
            self.float_buffer_pool("dy"),
            self.float_buffer_pool("x"),
            self.float_buffer_pool("dw"),
        ], force)
        self.call("coppice_sddmm", args)

    def f_model_create(self, force: bool) -> None:
        out = c_void_p()
        g = self.garbage_bytes()
        args = self.draw([
            [good(b"mlp")] * 3 + [bad(None, "NULL"), bad(b""), bad(b"gpt"), bad(g, f"garbage[{len(g)}]")],
            [good(0), good(2**64 - 1)],
            [good(10), good(2)] + [bad(v) for v in (0, 1, -1, INT_MAX, INT_MIN)],
            [good(byref(out), "&out"), good(byref(out), "&out"), bad(None, "NULL")],
        ], force)
        status = self.call("coppice_model_create", args)
        if status == 0 and out:
            capi.coppice_model_destroy(out)

    def f_model_count(self, force: bool) -> None:
        self.call("coppice_model_parameter_count", self.draw([self.model_handles(), self.out_pool(c_int64)], force))

    def f_dataset_create(self, force: bool) -> None:
        out = c_void_p()
        args = self.draw([
            [good(self.images.ctypes.data, "images"), good(self.images.ctypes.data, "images"),
             bad(None, "NULL"), bad(self.nan_images.ctypes.data, "NaN images")],
            [good(self.labels.ctypes.data, "labels"), good(self.labels.ctypes.data, "labels"),
             bad(None, "NULL"), bad(self.bad_labels.ctypes.data, "labels 99/-1")],
            [good(4), good(8), bad(0), bad(-1), bad(INT64_MIN), bad(INT64_MAX), bad(2**60), bad(2**62)],
            [good(28), good(28), bad(0), bad(-1), bad(INT_MIN)],
            [good(28), good(28), bad(0), bad(-5), bad(INT_MIN)],
            [good(10), good(10), bad(0), bad(-1), bad(INT_MIN)],
            [good(byref(out), "&out"), good(byref(out), "&out"), bad(None, "NULL")],
        ], force)
        status = self.call("coppice_dataset_create", args)
        if status == 0 and out:
            capi.coppice_dataset_destroy(out)

    def f_load_idx(self, force: bool) -> None:
        out = c_void_p()
        g = self.garbage_bytes()
        directories = [good(None, "NULL (default)"), bad(b"/nonexistent-dir"), bad(b""),
                       bad(b"/nonexistent/" + g.replace(b"/", b"_")[:100], "garbage")] + self.idx_dirs
        args = self.draw([
            directories,
            [good(b"t10k"), good(b"t10k"), bad(None, "NULL"), bad(b"valid"), bad(b""), bad(g, "garbage")],
            [good(8), good(16), neutral(0), neutral(-5), neutral(INT64_MAX), neutral(INT64_MIN)],
            [good(byref(out), "&out"), good(byref(out), "&out"), bad(None, "NULL")],
        ], force)
        # The default directory with every other argument good reads 10k images: fine, but
        # a limit <= 0 reads them all; keep the run fast by not doing that twice.
        status = self.call("coppice_dataset_load_idx", args)
        if status == 0 and out:
            capi.coppice_dataset_destroy(out)

    def f_dataset_count(self, force: bool) -> None:
        self.call("coppice_dataset_count", self.draw([self.dataset_handles(for_model=False), self.out_pool(c_int64)], force))

    def train_config(self) -> Arg:
        c = TrainConfig()
        capi.coppice_train_config_init(byref(c))
        tags: List[Tuple[str, str]] = []
        draw = self.field_drawer(c, tags)

        g = self.garbage_bytes()
        draw("struct_size", [good(ctypes.sizeof(TrainConfig))] * 6 + [bad(0), bad(7), bad(2**40)])
        draw("epochs", [good(1), good(2)] * 2 + [bad(0), bad(-1), bad(INT_MIN), neutral(INT_MAX)])
        draw("batch_size", [good(4), good(128)] * 2 + [bad(0), bad(-1), bad(INT_MIN), neutral(INT_MAX)])
        draw("learning_rate", self.doubles([0.05], [math.nan, math.inf, -1.0, 0.0]))
        draw("optimizer", [good(None, "NULL"), good(b"sgd"), good(b"adamw"), bad(b"lion"), bad(g, "garbage")])
        draw("momentum", self.doubles([0.9, 0.0], [math.nan, -0.5, 1.0, math.inf]))
        draw("weight_decay", self.doubles([5e-4, 0.0], [math.nan, -1.0, math.inf]))
        draw("lr_schedule", [good(None, "NULL"), good(b"cosine"), good(b"constant"), bad(b"wavy"), bad(g, "garbage")])
        draw("seed", [good(0), good(2**64 - 1)])
        sub, sub_tag, sub_text = self.sparsifier_config(sparse_method=True)
        if sub_tag != GOOD and self.rng.random() < 0.5:
            sub = SparsifierConfig()
            capi.coppice_sparsifier_config_init(byref(sub))
            sub_tag, sub_text = NEUTRAL, "{init, method NULL}"
        # total_steps and steps_per_epoch are filled in by coppice_train, struct_size too.
        for field in ("total_steps", "steps_per_epoch", "struct_size"):
            sub_text = sub_text.replace(field + "=", "(ignored)" + field + "=")
        c.sparsity = sub
        tags.append((self._sub_tag(sub), "sparsity=" + sub_text))
        stop = EPOCH_CALLBACK(lambda *a: 1)  # stop after the first epoch: fast
        self.keep.append(stop)
        c.on_epoch = stop
        worst = BAD if any(t == BAD for t, _ in tags) else (NEUTRAL if any(t == NEUTRAL for t, _ in tags) else GOOD)
        self.keep.append(c)
        return (c, worst, "{" + ", ".join(t for tag, t in tags if tag != GOOD) + "}")

    def _sub_tag(self, sub: SparsifierConfig) -> str:
        """The nested config's tag, ignoring the fields coppice_train overwrites."""
        method = sub.method
        if method is None or method == b"dense":
            return NEUTRAL  # dense training ignores the sparsity options
        values_bad = (
            method not in (b"static", b"cgap", b"rigl", b"set", b"gmp", b"oneshot", b"pgap")
            or not (0 <= sub.sparsity < 1)
            or (sub.distribution not in (None, b"uniform", b"erk"))
            or sub.partitions < 1 or sub.rounds < 1 or sub.gap_step_length < 0
            or sub.update_interval < 1 or not (0 <= sub.drop_fraction <= 1)
            or sub.partition_balance not in (None, b"flops", b"parameters")
            or sub.steps_per_epoch < 0
        )
        return BAD if values_bad else NEUTRAL

    def f_train(self, force: bool) -> None:
        config = self.train_config()
        result = TrainResult()
        self.keep.append(result)
        args = self.draw([
            self.model_handles(),
            self.dataset_handles(),
            self.dataset_handles(),
            [config, config, bad(None, "NULL")],
            [good(byref(result), "&result"), good(None, "NULL (allowed)")],
        ], force)
        self.call("coppice_train", args)

    def f_evaluate(self, force: bool) -> None:
        args = self.draw([self.model_handles(), self.dataset_handles(), self.out_pool(c_double)], force)
        self.call("coppice_evaluate", args)

    def f_predict(self, force: bool) -> None:
        args = self.draw([
            self.model_handles(),
            [good(self.images.ctypes.data, "images"), good(self.images.ctypes.data, "images"), bad(None, "NULL")],
            [good(2), good(4), bad(0), bad(-1), bad(INT64_MIN), bad(INT64_MAX), bad(2**62)],
            [good(28), good(28), bad(27), bad(0), bad(-1), bad(INT_MAX), bad(INT_MIN)],
            [good(28), good(28), bad(29), bad(0), bad(INT_MIN)],
            self.float_buffer_pool("logits"),
            [neutral("match", "count*10"), neutral("match", "count*10"), bad(19), bad(0), bad(-1), bad(INT64_MAX), bad(INT64_MIN)],
        ], force)
        # logits_count "match" is count × classes when count is valid (else just a number).
        count = args[2][0]
        if args[6][0] == "match":
            args[6] = (count * 10 if 0 < count <= 4 else 40, GOOD, "count*10")
        self.call("coppice_predict", args)

    def f_model_export(self, force: bool) -> None:
        size, dense = c_int64(), c_int64()
        self.keep += [size, dense]
        args = self.draw([
            self.model_handles(),
            self.path_pool_save(),
            [good(byref(size), "&bytes"), good(None, "NULL (allowed)")],
            [good(byref(dense), "&dense_bytes"), good(None, "NULL (allowed)")],
        ], force)
        self.call("coppice_model_export", args)

    def f_file_inspect(self, force: bool) -> None:
        model_file = os.path.join(self.workdir, "model.safetensors").encode()
        if not os.path.exists(model_file):
            capi.coppice_model_save(self.model, model_file)
        raw = bytearray(open(model_file, "rb").read())
        for _ in range(self.rng.choice([1, 3])):
            raw[self.rng.randrange(len(raw))] ^= 1 << self.rng.randrange(8)
        buffer = ctypes.create_string_buffer(1 << 16)
        needed = ctypes.c_size_t()
        self.keep += [buffer, needed]
        args = self.draw([
            [good(model_file, "model.safetensors"), good(model_file, "model.safetensors"),
             bad(None, "NULL"), bad(b"", "''"), bad(b"/nonexistent-dir/x.safetensors"),
             bad(self.garbage_path, "garbage.bin"), bad(self.empty_path, "empty.bin"),
             bad(self.state_path, "a sparsifier state"), bad(self.workdir.encode(), "a directory"),
             neutral(self._write("flipped.safetensors", bytes(raw)), "bit-flipped model")],
            [good(buffer, "json[65536]"), good(buffer, "json[65536]"), neutral(None, "NULL")],
            [good(1 << 16), good(1 << 16), neutral(0), neutral(7)],
            [good(byref(needed), "&needed"), good(None, "NULL (allowed)")],
        ], force)
        self.call("coppice_file_inspect", args)

    def worker_pool(self) -> List[Arg]:
        return [good(0), good(1), bad(-1), bad(INT_MAX), bad(INT_MIN)]

    def f_pgap_status(self, force: bool) -> None:
        args = self.draw([self.sparsifier_handles(), [good(byref(c_int()), "&workers"), good(None, "NULL")],
                          [good(None, "NULL")], [good(None, "NULL")]], force)
        self.call("coppice_sparsifier_pgap_status", args)

    def f_pgap_worker(self, function: str) -> Callable[[bool], None]:
        def scenario(force: bool) -> None:
            self.call(function, self.draw([self.sparsifier_handles(), self.worker_pool()], force))
        return scenario

    def f_pgap_partition_size(self, force: bool) -> None:
        args = self.draw([self.sparsifier_handles(), self.worker_pool(), self.out_pool(c_int64)], force)
        self.call("coppice_sparsifier_pgap_partition_size", args)

    def f_pgap_transfer(self, function: str) -> Callable[[bool], None]:
        exporting = function.endswith("export_partition")

        def scenario(force: bool) -> None:
            pools = [self.sparsifier_handles(), self.worker_pool(), self.float_buffer_pool("weights")]
            if exporting:
                masks = np.zeros(64, np.uint8)
                self.keep.append(masks)
                pools.append([good(masks.ctypes.data, "masks"), good(None, "NULL (allowed)")])
            pools.append([good(48), neutral(64), bad(-1), bad(INT64_MIN), bad(INT64_MAX), neutral(0)])
            self.call(function, self.draw(pools, force))
        return scenario

    def f_destroy(self, _force: bool) -> None:
        """Every _destroy with NULL, stale, foreign and garbage handles: must be a no-op."""
        victims = [(None, "NULL"), (self.stale_sparsifier, "stale sparsifier"), (self.stale_matrix, "stale matrix"),
                   (self.stale_model, "stale model"), (self.stale_dataset, "stale dataset"),
                   (c_void_p(0xDEADBEEF), "0xdeadbeef"), (self.sparsifier, "live sparsifier (foreign type)")]
        function = self.rng.choice(["coppice_sparsifier_destroy", "coppice_sparse_matrix_destroy",
                                    "coppice_model_destroy", "coppice_dataset_destroy"])
        victim, text = self.rng.choice(victims)
        if function == "coppice_sparsifier_destroy" and text.startswith("live"):
            victim, text = self.model, "live model (foreign type)"
        self.calls += 1
        print(f"CALL {self.calls} {function}({text})", flush=True)
        getattr(capi, function)(victim)
        if text.startswith("live"):  # a foreign handle must be left alone, still usable
            if victim is self.model:
                alive = capi.coppice_model_parameter_count(victim, byref(c_int64())) == 0
            else:
                alive = capi.coppice_sparsifier_steps(victim, byref(c_int64())) == 0
            if not alive:
                self.violation(function, [good(victim, text)],
                               "destroying a handle of another type unregistered it (it is now dead)")
                self._replace_dead(victim)

    def _replace_dead(self, victim: c_void_p) -> None:
        """Replaces a long-lived handle that a violation killed, so fuzzing can go on."""
        if victim is self.model:
            self.model = c_void_p()
            assert capi.coppice_model_create(b"mlp", 0, 10, byref(self.model)) == 0
        else:
            self.sparsifier = self._new_sparsifier(b"cgap", total_steps=50)
            self._add(self.sparsifier, b"a", self.wa, (8, 8), self.ga)
            self._add(self.sparsifier, b"b", self.wb, (16,), self.gb)
            assert capi.coppice_sparsifier_start(self.sparsifier) == 0

    # ------------------------------------------------------------------ driver

    def run(self, iterations: int) -> None:
        skip = self.skip | ({"coppice_set_threads", "destroy"} if self.threaded else set())
        scenarios = {k: v for k, v in self.scenarios().items() if k not in skip}
        names = sorted(scenarios)
        for i in range(iterations):
            name = names[self.rng.randrange(len(names))]
            print(f"ITER {i} {name}", flush=True)
            scenarios[name](self.rng.random() < 0.9)
        # The long-lived handles still work after all that (the sparsifier may hold a
        # bit-flipped state that the library accepted; restore the saved one first).
        status = capi.coppice_sparsifier_load(self.sparsifier, self.state_path)
        if status == 0:
            status = capi.coppice_sparsifier_step(self.sparsifier, None)
        if status != 0:
            self.violation("final check", [], f"long-lived sparsifier fails: {status} {capi.coppice_last_error()!r}")
        count = c_int64()
        if capi.coppice_dataset_count(self.dataset, byref(count)) != 0 or count.value != 4:
            self.violation("final check", [], "long-lived dataset lost")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--skip", default="", help="comma-separated scenarios to leave out")
    parser.add_argument("--threads", type=int, default=1, help="fuzzers running at once")
    options = parser.parse_args(argv)
    capi.coppice_set_threads(2)
    skip = [s for s in options.skip.split(",") if s]
    with tempfile.TemporaryDirectory(prefix="coppice-fuzz-") as workdir:
        if options.threads <= 1:
            fuzzer = Fuzzer(options.seed, workdir, skip)
            fuzzer.run(options.iterations)
            print(f"DONE {fuzzer.calls} calls, {len(fuzzer.violations)} violations", flush=True)
            return 0
        fuzzers = []
        for i in range(options.threads):
            directory = os.path.join(workdir, f"thread-{i}")
            os.makedirs(directory)
            fuzzers.append(Fuzzer(options.seed + i, directory, skip, threaded=True))
        threads = [threading.Thread(target=f.run, args=(options.iterations,)) for f in fuzzers]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        calls = sum(f.calls for f in fuzzers)
        violations = sum(len(f.violations) for f in fuzzers)
        print(f"DONE {calls} calls, {violations} violations, {options.threads} threads, "
              f"{time.monotonic() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
