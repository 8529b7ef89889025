"""Issue 15 through the C ABI: input a host can give must never crash the process, corrupt a
file or be silently accepted. Concurrent saves to one path (threads on separate handles),
paths and names that are not UTF-8, forged sparsifier states, ERK with a huge power, and one
run per checkpoint directory.

COPPICE_SAVE_RACE_SECONDS sets how long the concurrent-save test runs (default 2)."""

from __future__ import annotations

import ctypes
import json
import os
import threading
import time

import numpy as np
import pytest

import coppice
from coppice._capi import capi

from test_engine import synthetic

INVALID_ARGUMENT = 1


def last_error() -> str:
    return capi.coppice_last_error().decode()


def test_threads_saving_to_one_path_always_leave_a_whole_file(tmp_path):
    """Two threads save different models to one path while a third loads it: every save
    completes, every load sees a whole model (the temporary name used to be per process)."""
    path = os.fsencode(str(tmp_path / "model.cpx"))
    writers = [coppice.Model("mlp", seed=seed) for seed in (1, 2)]
    writers[0].save(path)
    seconds = float(os.environ.get("COPPICE_SAVE_RACE_SECONDS", "2"))
    deadline = time.monotonic() + seconds
    counts = {"saves": 0, "save_failures": [], "loads": 0, "load_failures": []}
    lock = threading.Lock()

    def save(model):
        while time.monotonic() < deadline:
            status = capi.coppice_model_save(model._live(), path)
            with lock:
                if status == 0:
                    counts["saves"] += 1
                else:
                    counts["save_failures"].append(last_error())

    def load():
        reader = coppice.Model("mlp", seed=3)
        while time.monotonic() < deadline:
            status = capi.coppice_model_load(reader._live(), path)
            with lock:
                counts["loads"] += 1
                if status != 0:
                    counts["load_failures"].append(last_error())

    threads = [threading.Thread(target=save, args=(m,)) for m in writers]
    threads.append(threading.Thread(target=load))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(
        f"{seconds:.0f} s: {counts['saves']} saves, {len(counts['save_failures'])} failed; "
        f"{counts['loads']} loads, {len(counts['load_failures'])} failed"
    )
    assert counts["save_failures"] == []
    assert counts["load_failures"] == []
    assert counts["saves"] > 10 and counts["loads"] > 10
    assert os.listdir(tmp_path) == ["model.cpx"]  # no temporary file left behind


def test_paths_and_names_that_are_not_utf8_are_refused(tmp_path):
    model = coppice.Model("mlp", seed=0)
    bad = os.fsencode(str(tmp_path)) + b"/model\xe9.cpx"
    for call in (capi.coppice_model_save, capi.coppice_model_load):
        assert call(model._live(), bad) == INVALID_ARGUMENT
        assert "not valid UTF-8" in last_error()
    assert capi.coppice_model_export(model._live(), bad, None, None) != 0
    assert os.listdir(tmp_path) == []  # nothing written under a rewritten name
    with open(bad, "wb") as f:  # an existing file of that name: refused, not "missing"
        f.write(b"x")
    assert capi.coppice_model_load(model._live(), bad) == INVALID_ARGUMENT
    assert "not valid UTF-8" in last_error()

    s = coppice.Sparsifier(method="static", sparsity=0.5, total_steps=10)
    shape = (ctypes.c_int64 * 2)(4, 4)
    weights = [np.ones((4, 4), np.float32) for _ in range(2)]
    for name, w in zip((b"w\xff", b"w\xfe"), weights):  # used to collide as "w\ufffd"
        status = capi.coppice_sparsifier_add_parameter(
            s._live(), name, w.ctypes.data, shape, 2, None, 0.0
        )
        assert status == INVALID_ARGUMENT
        assert "not valid UTF-8" in last_error()
    assert s.parameter_count == 0



def test_forged_sparsifier_state_counters_are_refused(tmp_path):
    w = np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32)
    s = coppice.Sparsifier(method="static", sparsity=0.5, total_steps=100)
    s.add_parameter("w", w)
    s.start()
    s.step()
    state = tmp_path / "state.json"
    s.save(state)
    saved = json.loads(state.read_text())
    for steps in (2**63 - 1, 2**62, 2**40 + 1, -1):
        forged = dict(saved, steps_completed=steps)
        state.write_text(json.dumps(forged))
        fresh = coppice.Sparsifier(method="static", sparsity=0.5, total_steps=100)
        fresh.add_parameter("w", w.copy())
        with pytest.raises(coppice.CoppiceError, match="step count"):
            fresh.load(state)


def test_erk_with_a_huge_power_starts(tmp_path):
    """A [1, 1] parameter (dims sum 2 > product 1) with erk_power 1100 overflowed pow and
    trapped converting NaN to Int in coppice_sparsifier_start."""
    s = coppice.Sparsifier(
        method="static", sparsity=0.5, total_steps=10, distribution="erk", erk_power=1100.0
    )
    weights = {name: np.ones(shape, np.float32) for name, shape in
               (("a", (1, 1)), ("b", (1, 2)), ("c", (1, 3)), ("d", (40, 40)))}
    for name, w in weights.items():
        s.add_parameter(name, w)
    s.start()
    total = sum(w.size for w in weights.values())
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    assert zeros == round(total * 0.5)


def test_absurd_flops_per_weight_is_refused():
    """flops_per_weight = 1e308 made partition sums inf/NaN and a partition empty."""
    s = coppice.Sparsifier(method="cgap", sparsity=0.5, total_steps=10, partitions=2)
    for value in (1e308, float("inf"), float("nan")):
        with pytest.raises(coppice.CoppiceError) as error:
            s.add_parameter("w", np.ones((4, 4), np.float32), flops_per_weight=value)
        assert error.value.status == INVALID_ARGUMENT and "flops_per_weight" in str(error.value)
    s.add_parameter("w", np.ones((4, 4), np.float32), flops_per_weight=1e6)


def test_non_finite_weights_are_refused_at_start():
    for bad in (float("nan"), float("inf")):
        s = coppice.Sparsifier(method="static", sparsity=0.5, total_steps=10)
        w = np.ones((3, 5), np.float32)
        w[1, 2] = bad
        s.add_parameter("w", w)
        with pytest.raises(coppice.CoppiceError) as error:
            s.start()
        assert error.value.status == INVALID_ARGUMENT and "non-finite" in str(error.value)
        assert int((w == 0).sum()) == 0  # nothing was masked


def test_a_diverged_model_is_not_saved_or_exported_until_reloaded(tmp_path):
    """After coppice_train reported divergence the model held weights ~1e28 and save/export
    still succeeded."""
    images, labels = synthetic(256, seed=3)
    data = coppice.Dataset(images, labels)
    model = coppice.Model("mlp", seed=1)
    good = tmp_path / "good.safetensors"
    model.save(good)
    with pytest.raises(coppice.CoppiceError) as error:
        model.train(data, data, epochs=3, learning_rate=1e12, momentum=0.0, weight_decay=0.0)
    assert "diverged" in str(error.value).lower()
    for write in (lambda: model.save(tmp_path / "bad.safetensors"),
                  lambda: model.export(tmp_path / "bad.cpx")):
        with pytest.raises(coppice.CoppiceError) as error:
            write()
        assert error.value.status == 6 and "diverged" in str(error.value)  # INVALID_STATE
    assert not (tmp_path / "bad.safetensors").exists() and not (tmp_path / "bad.cpx").exists()
    model.load(good)
    model.save(tmp_path / "again.safetensors")


def test_a_state_from_other_settings_is_refused(tmp_path):
    """A state saved with partitions=2, sparsity 0.5 loaded into partitions=1, sparsity 0.9 and
    the schedule went on."""
    def make(partitions, sparsity):
        s = coppice.Sparsifier(method="cgap", sparsity=sparsity, total_steps=20,
                               partitions=partitions, gap_step_length=2)
        for name in ("a", "b"):
            s.add_parameter(name, np.ones((8, 8), np.float32))
        return s
    saved = make(2, 0.5)
    saved.start()
    saved.step()
    path = tmp_path / "state.json"
    saved.save(path)
    other = make(1, 0.9)
    with pytest.raises(coppice.CoppiceError) as error:
        other.load(path)
    assert "saved with" in str(error.value) and "sparsity 0.5" in str(error.value)
    same = make(2, 0.5)
    same.load(path)
    assert same.steps == 1


def test_a_sparsity_that_prunes_whole_layers_is_reported():
    """--sparsity 0.99999999 zeroed every weight without a word."""
    lines = []
    coppice.set_log_callback(lambda level, text: lines.append(text))
    try:
        s = coppice.Sparsifier(method="static", sparsity=0.99999999, total_steps=4)
        s.add_parameter("w", np.ones((4, 4), np.float32))
        s.start()
    finally:
        coppice.set_log_callback(None)
    assert any("w: sparsity" in line and "prunes all 16" in line for line in lines), lines


def test_a_checkpoint_directory_serves_one_run_at_a_time(tmp_path):
    images, labels = synthetic(128)
    train = coppice.Dataset(images, labels)
    test = coppice.Dataset(*synthetic(64, seed=1))
    options = dict(epochs=2, batch_size=32, method="static", sparsity=0.5, seed=1)
    directory = tmp_path / "run"
    errors = []

    def second_run(stats):  # runs while the first holds the directory
        if stats.epoch == 1:
            with pytest.raises(coppice.CoppiceError, match="in use by another run") as e:
                coppice.Model("mlp", seed=2).train(train, test, checkpoint_dir=directory, **options)
            errors.append(str(e.value))
        return False

    coppice.Model("mlp", seed=1).train(
        train, test, checkpoint_dir=directory, callback=second_run, **options
    )
    assert len(errors) == 1, errors
    files = sorted(p for p in os.listdir(directory) if p.startswith("checkpoint-"))
    before = {p: (directory / p).read_bytes() for p in files}
    with pytest.raises(coppice.CoppiceError, match="already holds checkpoints"):
        coppice.Model("mlp", seed=1).train(train, test, checkpoint_dir=directory, **options)
    assert {p: (directory / p).read_bytes() for p in files} == before
    coppice.Model("mlp", seed=1).train(
        train, test, checkpoint_dir=directory, resume=True, **options
    )
