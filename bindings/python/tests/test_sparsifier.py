"""coppice.Sparsifier: GaP and the baselines on weights the test owns."""

from __future__ import annotations

import ctypes
import gc
import inspect
import math
import weakref

import numpy as np
import pytest

import coppice
from coppice._capi import SparsifierConfig, capi
from conftest import TinyHost, exact_zeros

INVALID_ARGUMENT, SHAPE_MISMATCH, NOT_FOUND, IO_ERROR, INVALID_FILE, INVALID_STATE = 1, 2, 3, 4, 5, 6


def make(method="cgap", total_steps=40, **options) -> coppice.Sparsifier:
    return coppice.Sparsifier(method=method, total_steps=total_steps, **options)


def started(host: TinyHost, method="cgap", total_steps=40, **options) -> coppice.Sparsifier:
    s = make(method, total_steps, **options)
    host.register(s)
    s.start()
    return s


def assert_exact(s: coppice.Sparsifier, host: TinyHost, name: str, sparsity: float) -> None:
    """The mask, the host's weights and the library's report all say exactly round(n·s)."""
    n = host.weights[name].size
    zeros = exact_zeros(n, sparsity)
    mask = s.mask(name)
    assert mask.shape == host.weights[name].shape and mask.dtype == np.uint8
    assert int((mask == 0).sum()) == zeros, name
    assert np.all(host.weights[name][mask == 0] == 0), f"{name}: masked weights not zero"
    assert s.sparsity(name) == pytest.approx(zeros / n, abs=1e-12)


# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize("sparsity", [1.0, -0.1, 1.5, math.nan, math.inf, -math.inf])
def test_out_of_range_sparsity_is_invalid_argument(sparsity):
    with pytest.raises(coppice.CoppiceError) as info:
        make(sparsity=sparsity)
    assert info.value.status == INVALID_ARGUMENT
    assert "sparsity" in info.value.message


@pytest.mark.parametrize(
    "options, text",
    [
        ({"method": "nope"}, "nope"),
        ({"distribution": "gaussian"}, "gaussian"),
        ({"partition_balance": "vibes"}, "vibes"),
        ({"total_steps": 0}, "total_steps"),
        ({"total_steps": -5}, "total_steps"),
        ({"partitions": 0}, "partitions"),
        ({"rounds": 0}, "rounds"),
        ({"update_interval": 0}, "update_interval"),
        ({"drop_fraction": 1.5}, "drop_fraction"),
        ({"drop_fraction": math.nan}, "drop_fraction"),
        ({"gap_step_length": -1}, "gap_step_length"),
        ({"steps_per_epoch": -1}, "steps_per_epoch"),
        ({"distribution": "erk", "erk_power": math.nan}, "erk_power"),
    ],
)
def test_invalid_config_values_are_reported_by_the_library(options, text):
    options.setdefault("total_steps", 40)
    with pytest.raises(coppice.CoppiceError) as info:
        coppice.Sparsifier(**options)
    assert info.value.status == INVALID_ARGUMENT and text in str(info.value)


@pytest.mark.parametrize(
    "options, error",
    [
        ({"method": None}, TypeError),
        ({"method": 3}, TypeError),
        ({"method": "cg\0ap"}, ValueError),
        ({"sparsity": "0.9"}, TypeError),
        ({"sparsity": None}, TypeError),
        ({"partitions": 2.5}, TypeError),
        ({"partitions": 2**31}, ValueError),
        ({"total_steps": 2**63}, ValueError),
        ({"seed": -1}, ValueError),
        ({"seed": 2**64}, ValueError),
    ],
)
def test_wrong_python_types_fail_before_the_library(options, error):
    options.setdefault("total_steps", 40)
    with pytest.raises(error):
        coppice.Sparsifier(**options)


def test_total_steps_is_required():
    with pytest.raises(TypeError):
        coppice.Sparsifier(method="cgap")  # type: ignore[call-arg]


def test_gap_schedule_that_does_not_fit_is_rejected_at_start(host):
    s = make(total_steps=10, gap_step_length=5, partitions=2, rounds=2)
    host.register(s)
    with pytest.raises(coppice.CoppiceError) as info:
        s.start()
    assert info.value.status == INVALID_ARGUMENT


# ------------------------------------------------------------------ registration errors


def test_add_parameter_argument_errors(host):
    s = make()
    w = np.zeros((4, 4), np.float32)
    with pytest.raises(TypeError):
        s.add_parameter("w", None)
    with pytest.raises(TypeError):
        s.add_parameter("w", np.zeros((4, 4), np.float64))
    with pytest.raises(ValueError, match="contiguous"):
        s.add_parameter("w", np.zeros((4, 8), np.float32)[:, ::2])
    read_only = np.zeros((4, 4), np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        s.add_parameter("w", read_only)
    with pytest.raises(ValueError, match="shape"):
        s.add_parameter("w", w, np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match="shape"):
        s.add_parameter("w", w, np.zeros(16, np.float32))
    with pytest.raises(TypeError):
        s.add_parameter("w", w, np.zeros((4, 4), np.float16))
    with pytest.raises(TypeError):
        s.add_parameter(None, w)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        s.add_parameter(b"w", w)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        s.add_parameter("w\0x", w)
    with pytest.raises(TypeError):
        s.add_parameter("w", w, flops_per_weight="2")
    assert s.parameter_count == 0


@pytest.mark.parametrize(
    "name, weights, text",
    [
        ("", np.zeros(4, np.float32), "empty"),
        ("scalar", np.zeros((), np.float32), "rank"),
        ("rank9", np.zeros((1,) * 9, np.float32), "rank"),
        ("empty", np.zeros((0, 4), np.float32), "dimension"),
    ],
)
def test_add_parameter_library_errors(name, weights, text):
    s = make()
    with pytest.raises(coppice.CoppiceError) as info:
        s.add_parameter(name, weights)
    assert info.value.status == INVALID_ARGUMENT and text in info.value.message
    assert s.parameter_count == 0 and s.names == []


def test_nan_flops_per_weight_is_rejected():
    s = make()
    with pytest.raises(coppice.CoppiceError):
        s.add_parameter("w", np.zeros(4, np.float32), flops_per_weight=math.nan)


def test_duplicate_name_is_rejected_and_the_first_registration_kept():
    s = make()
    first = np.ones(4, np.float32)
    s.add_parameter("w", first)
    with pytest.raises(coppice.CoppiceError) as info:
        s.add_parameter("w", np.ones(8, np.float32))
    assert info.value.status == INVALID_ARGUMENT
    assert s.parameter_count == 1 and s._parameters["w"].weights.owner is first


def test_state_errors(host):
    s = make()
    for call in (s.start, s.step, s.mask_gradients):
        with pytest.raises(coppice.CoppiceError) as info:
            call()
        assert info.value.status == INVALID_STATE
    with pytest.raises(coppice.CoppiceError) as info:
        s.needs_dense_gradients
    assert info.value.status == INVALID_STATE
    host.register(s)
    with pytest.raises(coppice.CoppiceError) as info:
        s.mask("fc1")
    assert info.value.status == INVALID_STATE
    with pytest.raises(coppice.CoppiceError) as info:
        s.sparsity()
    assert info.value.status == INVALID_STATE
    assert s.phase == "not started" and s.steps == 0
    s.start()
    with pytest.raises(coppice.CoppiceError) as info:
        s.start()
    assert info.value.status == INVALID_STATE
    with pytest.raises(coppice.CoppiceError) as info:
        s.add_parameter("late", np.zeros(4, np.float32))
    assert info.value.status == INVALID_STATE


def test_parameter_info(host):
    s = make()
    host.register(s)
    assert [s.parameter_info(i) for i in range(4)] == [
        (name, int(np.prod(shape))) for name, shape in TinyHost.SHAPES.items()
    ]
    for index in (4, -1, 2**31 - 1):
        with pytest.raises(coppice.CoppiceError) as info:
            s.parameter_info(index)
        assert info.value.status == NOT_FOUND
    with pytest.raises(ValueError):
        s.parameter_info(2**31)
    with pytest.raises(TypeError):
        s.parameter_info("0")  # type: ignore[arg-type]


def test_unknown_parameter_names(host):
    s = started(host)
    for call in (s.mask, s.changed_mask, s.sparsity):
        with pytest.raises(coppice.CoppiceError) as info:
            call("nope")
        assert info.value.status == NOT_FOUND and "nope" in info.value.message
    with pytest.raises(TypeError):
        s.mask(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        s.sparsity(3)  # type: ignore[arg-type]


# ------------------------------------------------------------------ in-place masking, exactness


def test_start_masks_the_hosts_own_buffers_exactly(host):
    before = {name: w.copy() for name, w in host.weights.items()}
    addresses = {name: w.ctypes.data for name, w in host.weights.items()}
    s = started(host, method="static", sparsity=0.9)
    assert s.parameter_count == 4 and s.names == list(TinyHost.SHAPES)
    for name in TinyHost.SHAPES:
        assert host.weights[name].ctypes.data == addresses[name]
        assert_exact(s, host, name, 0.9)
        kept = s.mask(name).astype(bool)
        np.testing.assert_array_equal(host.weights[name][kept], before[name][kept])
    total = sum(w.size for w in host.weights.values())
    zeros = sum(exact_zeros(w.size, 0.9) for w in host.weights.values())
    assert s.sparsity() == pytest.approx(zeros / total)


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.73, 0.9, 0.99])
def test_cgap_start_and_schedule_are_exact(host, sparsity):
    s = started(host, sparsity=sparsity, partitions=2, gap_step_length=5, rounds=2, total_steps=30)
    assert "partition 0 dense" in s.phase
    dense_now = [name for name in TinyHost.SHAPES if s.sparsity(name) == 0]
    for name in TinyHost.SHAPES:
        if name not in dense_now:
            assert_exact(s, host, name, sparsity)
    changes = host.train(s, 30)
    assert changes == ([5, 10, 15, 20] if sparsity > 0 else [])
    assert s.phase == "fine-tune" and s.steps == 30
    for name in TinyHost.SHAPES:
        assert_exact(s, host, name, sparsity)


def test_cgap_grows_one_partition_at_a_time_and_reports_changes(host):
    s = started(host, partitions=4, gap_step_length=3, rounds=1, total_steps=20)
    dense = [name for name in TinyHost.SHAPES if s.sparsity(name) == 0]
    assert dense == ["fc1"]
    seen = []
    for step in range(1, 21):
        previous = {name: s.mask(name) for name in TinyHost.SHAPES}
        host.backward()
        s.mask_gradients()
        for name in TinyHost.SHAPES:  # gradients masked in place
            assert np.all(host.grads[name][previous[name] == 0] == 0)
        host.optimizer_step()
        changed = s.step()
        assert s.steps == step
        for name in TinyHost.SHAPES:
            now = s.mask(name)
            np.testing.assert_array_equal(s.changed_mask(name), (now != previous[name]).astype(np.uint8))
            assert np.all(host.weights[name][now == 0] == 0)
        assert changed == any(not np.array_equal(s.mask(n), previous[n]) for n in TinyHost.SHAPES)
        if changed:
            seen.append(tuple(name for name in TinyHost.SHAPES if s.sparsity(name) == 0))
    assert seen == [("conv",), ("fc2",), ("fc3",), ()]
    for name in TinyHost.SHAPES:
        assert_exact(s, host, name, 0.9)


def test_grown_weights_restart_from_zero(host):
    s = started(host, partitions=2, gap_step_length=2, rounds=1, total_steps=10)
    grown_next = [n for n in TinyHost.SHAPES if s.sparsity(n) > 0][0]
    pruned_positions = s.mask(grown_next) == 0
    host.train(s, 2)  # boundary: partition 1 grows
    assert s.sparsity(grown_next) == 0
    assert np.all(host.weights[grown_next][pruned_positions] == 0)


@pytest.mark.parametrize("method", [m for m in coppice.METHODS if m != "pgap"])  # pgap: below
def test_every_method_ends_exactly_at_target(host, method):
    s = started(host, method=method, sparsity=0.8, total_steps=40, update_interval=4, partitions=2,
                distribution="uniform")
    assert isinstance(s.phase, str) and s.phase
    for _ in range(40):
        dense = s.needs_dense_gradients
        assert isinstance(dense, bool)
        host.backward()
        s.mask_gradients()
        host.optimizer_step()
        s.step()
    target = 0.0 if method == "dense" else 0.8
    for name in TinyHost.SHAPES:
        assert_exact(s, host, name, target)


def test_rigl_default_erk_keeps_each_layers_count_through_updates(host):
    s = started(host, method="rigl", sparsity=0.8, total_steps=40, update_interval=4)
    at_start = {name: int((s.mask(name) == 0).sum()) for name in TinyHost.SHAPES}
    assert len(set(at_start[n] / host.weights[n].size for n in TinyHost.SHAPES)) > 1  # ERK
    changes = host.train(s, 40)
    assert changes
    for name in TinyHost.SHAPES:
        assert int((s.mask(name) == 0).sum()) == at_start[name]
        assert np.all(host.weights[name][s.mask(name) == 0] == 0)


def test_rigl_asks_for_dense_gradients_on_update_steps(host):
    s = started(host, method="rigl", total_steps=40, update_interval=5)
    asked = []
    for step in range(1, 41):
        if s.needs_dense_gradients:
            asked.append(step)
        host.backward()
        s.mask_gradients()
        host.optimizer_step()
        s.step()
    assert asked and all(step % 5 == 0 for step in asked) and max(asked) <= 30


def test_rigl_without_gradient_buffers_is_rejected(host):
    s = make(method="rigl")
    for name, w in host.weights.items():
        s.add_parameter(name, w)
    with pytest.raises(coppice.CoppiceError) as info:
        s.start()
    assert info.value.status == INVALID_ARGUMENT and "gradient" in info.value.message


def test_keep_first_and_last_dense(host):
    s = started(host, method="static", keep_first_dense=True, keep_last_dense=True)
    assert s.sparsity("fc1") == 0 and s.sparsity("fc3") == 0
    assert_exact(s, host, "conv", 0.9)
    assert_exact(s, host, "fc2", 0.9)


def test_erk_distribution_meets_the_global_budget(host):
    s = started(host, method="static", distribution="erk", sparsity=0.8)
    per_layer = s.sparsities()
    assert len(set(round(v, 3) for v in per_layer.values())) > 1
    total = sum(w.size for w in host.weights.values())
    zeros = sum(int((s.mask(n) == 0).sum()) for n in TinyHost.SHAPES)
    assert abs(zeros / total - 0.8) < 0.01
    assert s.sparsity() == pytest.approx(zeros / total)


def test_same_seed_same_masks_other_seed_other_masks():
    masks = []
    for seed in (7, 7, 8):
        h = TinyHost()
        s = started(h, method="static", seed=seed)
        masks.append(s.mask("fc1"))
    np.testing.assert_array_equal(masks[0], masks[1])
    assert not np.array_equal(masks[0], masks[2])


def test_registration_without_gradients_and_with_flops():
    w = np.ones((10, 10), np.float32)
    s = make(method="static", sparsity=0.5)
    s.add_parameter("w", w, flops_per_weight=100.0)
    s.start()
    s.mask_gradients()  # no gradient buffer: nothing to mask, no error
    s.step()
    assert (w == 0).sum() == 50


def test_torch_like_tensors_are_masked_in_place():
    from test_arrays import FakeTensor

    base = np.ones((10, 10), np.float32)
    grad = np.ones((10, 10), np.float32)
    s = make(method="static", sparsity=0.3)
    s.add_parameter("t", FakeTensor(base), FakeTensor(grad))
    s.start()
    s.mask_gradients()
    assert (base == 0).sum() == 30 and (grad == 0).sum() == 30


# ------------------------------------------------------------------ checkpoints


def test_save_and_load_resume_the_schedule(tmp_path, host):
    options = dict(partitions=2, gap_step_length=4, rounds=2, total_steps=30, seed=3)
    s = started(host, **options)
    host.train(s, 6)
    path = tmp_path / "state.bin"
    s.save(path)
    weights_at_save = {n: w.copy() for n, w in host.weights.items()}

    other = TinyHost(seed=1)
    for name, w in weights_at_save.items():
        other.weights[name][...] = w
    r = make(**options)
    other.register(r)
    r.load(str(path))
    assert r.steps == 6 and r.phase == s.phase
    for name in TinyHost.SHAPES:
        np.testing.assert_array_equal(r.mask(name), s.mask(name))
    # Both continue identically when fed the same updates.
    for _ in range(24):
        for h, sp in ((host, s), (other, r)):
            for name, g in h.grads.items():
                g[...] = 0.01
            sp.mask_gradients()
            h.optimizer_step()
            sp.step()
    for name in TinyHost.SHAPES:
        np.testing.assert_array_equal(r.mask(name), s.mask(name))
        assert_exact(r, other, name, 0.9)


def test_checkpoint_errors(tmp_path, host):
    s = make()
    host.register(s)
    with pytest.raises(coppice.CoppiceError) as info:
        s.save(tmp_path / "early.bin")
    assert info.value.status == INVALID_STATE
    s.start()
    with pytest.raises(coppice.CoppiceError) as info:
        s.save(tmp_path / "missing-dir" / "state.bin")
    assert info.value.status == IO_ERROR
    with pytest.raises(coppice.CoppiceError) as info:
        s.load(tmp_path / "does-not-exist.bin")
    assert info.value.status == IO_ERROR
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00\xffnot a sparsifier state" * 10)
    with pytest.raises(coppice.CoppiceError) as info:
        s.load(garbage)
    assert info.value.status == INVALID_FILE
    good = tmp_path / "good.bin"
    s.save(good)
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(coppice.CoppiceError) as info:
        s.load(truncated)
    assert info.value.status == INVALID_FILE
    with pytest.raises(TypeError):
        s.save(None)  # type: ignore[arg-type]
    # A state of differently shaped parameters does not load.
    mismatched = make()
    mismatched.add_parameter("fc1", np.zeros((3, 3), np.float32))
    with pytest.raises(coppice.CoppiceError) as info:
        mismatched.load(good)
    assert info.value.status == INVALID_FILE
    empty = make()
    with pytest.raises(coppice.CoppiceError) as info:
        empty.load(good)
    assert info.value.status == INVALID_STATE


# ------------------------------------------------------------------ lifetime


def test_use_after_close_raises_value_error(host):
    s = started(host)
    s.close()
    assert s.closed
    s.close()  # twice is fine
    calls = [
        lambda: s.add_parameter("x", np.zeros(4, np.float32)),
        s.start,
        s.mask_gradients,
        s.step,
        lambda: s.needs_dense_gradients,
        lambda: s.mask("fc1"),
        lambda: s.changed_mask("fc1"),
        lambda: s.sparsity(),
        lambda: s.sparsity("fc1"),
        lambda: s.phase,
        lambda: s.steps,
        lambda: s.parameter_count,
        lambda: s.names,
        lambda: s.parameter_info(0),
        lambda: s.save("/tmp/never"),
        lambda: s.load("/tmp/never"),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="closed"):
            call()
    assert "closed" in repr(s)


def test_context_manager_closes(host):
    with started(host) as s:
        assert not s.closed
    assert s.closed
    with pytest.raises(ValueError):
        s.step()


def test_registered_arrays_stay_alive_until_close():
    s = make(method="static", sparsity=0.5)
    w = np.ones(100, np.float32)
    alive = weakref.ref(w)
    s.add_parameter("w", w)
    del w
    gc.collect()
    assert alive() is not None
    s.start()
    s.step()
    assert (alive() == 0).sum() == 50
    s.close()
    gc.collect()
    assert alive() is None


def test_garbage_collection_of_open_sparsifiers_is_safe(host):
    for _ in range(20):
        s = started(host)
        del s
    gc.collect()
    # A half-constructed object (constructor failed) is also safe to collect.
    with pytest.raises(coppice.CoppiceError):
        make(sparsity=2.0)
    gc.collect()


def test_repr(host):
    s = started(host)
    assert "cgap" in repr(s) and "4 parameters" in repr(s)


def _pgap_machine(seed=0, workers=2):
    """One 'machine' of a host-run P-GaP: its own host buffers and sparsifier."""
    host = TinyHost(seed=seed)
    s = coppice.Sparsifier(
        method="pgap", sparsity=0.8, partitions=workers, rounds=2, gap_step_length=3,
        total_steps=10, seed=5,
    )
    host.register(s)
    s.start()
    return host, s


@pytest.mark.parametrize("workers", [2, 3])
def test_host_run_pgap_on_several_machines_agrees_and_hits_targets(workers):
    # 3 workers: the layout of examples/python/pgap_host.py (one process per partition).
    machines = [_pgap_machine(workers=workers) for _ in range(workers)]
    assert machines[0][1].pgap_status == (workers, 0, 2)
    for round_ in range(2):
        exported = []
        for worker, (host, s) in enumerate(machines):
            s.begin_worker(worker)
            for step in range(3):  # "training": a deterministic update per worker
                for name, w in host.weights.items():
                    w += np.float32(0.01 * (worker + 1) * (step + 1))
                s.mask_gradients()
                s.step()
            exported.append(s.export_partition(worker))
            weights, masks = exported[-1]
            assert weights.size == s.partition_size(worker) and masks.dtype == np.uint8
        for host, s in machines:
            for worker, (weights, _) in enumerate(exported):
                s.import_partition(worker, weights)
            s.finish_round()
        assert machines[0][1].pgap_status == (workers, round_ + 1, 2)
        a = machines[0]
        for name in TinyHost.SHAPES:
            for b in machines[1:]:
                assert np.array_equal(a[0].weights[name], b[0].weights[name]), name
                assert np.array_equal(a[1].mask(name), b[1].mask(name)), name
            mask = a[1].mask(name)
            assert int((mask == 0).sum()) == exact_zeros(mask.size, 0.8), name
            assert np.all(a[0].weights[name][mask == 0] == 0), name
    assert machines[0][1].phase == "fine-tune"
    with pytest.raises(coppice.CoppiceError) as info:
        machines[0][1].begin_worker(0)
    assert "finished" in str(info.value)


def test_host_run_pgap_errors():
    host, s = _pgap_machine()
    with pytest.raises(coppice.CoppiceError) as info:
        s.begin_worker(2)
    assert info.value.name == "COPPICE_INVALID_ARGUMENT"
    s.begin_worker(1)
    with pytest.raises(coppice.CoppiceError) as info:
        s.finish_round()  # partition 0 never imported
    assert info.value.name == "COPPICE_INVALID_STATE" and "partition 0" in str(info.value)
    with pytest.raises(coppice.CoppiceError) as info:
        s.import_partition(0, np.zeros(3, np.float32))
    assert info.value.name == "COPPICE_SHAPE_MISMATCH"
    bad = np.full(s.partition_size(0), np.nan, np.float32)
    with pytest.raises(coppice.CoppiceError) as info:
        s.import_partition(0, bad)
    assert info.value.name == "COPPICE_INVALID_ARGUMENT"
    other = coppice.Sparsifier(method="cgap", total_steps=10)
    TinyHost().register(other)
    other.start()
    with pytest.raises(coppice.CoppiceError) as info:
        other.begin_worker(0)
    assert info.value.name == "COPPICE_INVALID_STATE"


def test_numpy_mlp_host_with_momentum_and_weight_decay_ends_exact():
    """A host like examples/python/sparsify_numpy_mlp.py: LeNet-300-100 weights (biases dense),
    SGD with momentum and weight decay whose velocity is zeroed where changed_mask says, C-GaP at
    90% over 3 partitions: every weight ends at exactly round(n·0.9) masked entries, zero in the
    host's own arrays."""
    rng = np.random.default_rng(0)
    sizes = (784, 300, 100, 10)
    weights = {
        f"fc{i}.weight": rng.uniform(-0.1, 0.1, (fan_out, fan_in)).astype(np.float32)
        for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:]), start=1)
    }
    grads = {name: np.zeros_like(w) for name, w in weights.items()}
    velocity = {name: np.zeros_like(w) for name, w in weights.items()}
    steps_per_epoch = 16  # 2000 samples in batches of 128
    s = coppice.Sparsifier(
        method="cgap", sparsity=0.9, total_steps=steps_per_epoch, steps_per_epoch=steps_per_epoch,
        partitions=3, rounds=1, seed=0,
    )
    for name, w in weights.items():
        s.add_parameter(name, w, grads[name])
    s.start()
    changes = 0
    for _ in range(steps_per_epoch):
        for g in grads.values():
            g[...] = rng.standard_normal(g.shape).astype(np.float32) * 0.01
        s.mask_gradients()
        for name, w in weights.items():
            v = velocity[name]
            v *= 0.9
            v += grads[name] + 5e-4 * w
            w -= 0.05 * v
        if s.step():
            changes += 1
            for name in weights:
                velocity[name][s.changed_mask(name).astype(bool)] = 0
    assert changes > 0
    for name, w in weights.items():
        mask = s.mask(name)
        assert int((mask == 0).sum()) == exact_zeros(w.size, 0.9), name
        assert np.all(w[mask == 0] == 0), name
        assert s.sparsity(name) == exact_zeros(w.size, 0.9) / w.size, name
    s.close()
