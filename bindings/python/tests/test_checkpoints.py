"""Checkpoints and sparse exports through the C ABI, read back with the `safetensors` package."""

from __future__ import annotations

import os

import numpy as np
import pytest

import coppice

from test_engine import synthetic

safetensors_numpy = pytest.importorskip("safetensors.numpy")
from safetensors import safe_open  # noqa: E402


@pytest.fixture(scope="module")
def data():
    images, labels = synthetic(256)
    test_images, test_labels = synthetic(128, seed=1)
    return coppice.Dataset(images, labels), coppice.Dataset(test_images, test_labels)


OPTIONS = dict(
    epochs=4, batch_size=32, method="cgap", sparsity=0.8, partitions=2, rounds=1, seed=3
)


def checkpoints(directory):
    return sorted(p for p in os.listdir(directory) if p.startswith("checkpoint-"))


def test_checkpoint_loads_with_safetensors_and_matches_the_model(tmp_path, data):
    train, test = data
    model = coppice.Model("mlp", seed=1)
    model.train(train, test, checkpoint_dir=tmp_path / "run", keep_checkpoints=2, **OPTIONS)
    files = checkpoints(tmp_path / "run")
    assert files == ["checkpoint-000000024.safetensors", "checkpoint-000000032.safetensors"]
    last = tmp_path / "run" / files[-1]
    tensors = safetensors_numpy.load_file(str(last))
    model.save(tmp_path / "model.safetensors")
    saved = safetensors_numpy.load_file(str(tmp_path / "model.safetensors"))
    for name in ("fc1.weight", "fc1.bias", "fc2.weight", "fc3.weight", "fc3.bias"):
        assert np.array_equal(tensors[name], saved[name]), name
    for name in ("fc1.weight", "fc2.weight", "fc3.weight"):
        mask = tensors[name + ".mask"]
        assert mask.dtype == np.uint8 and mask.shape == tensors[name].shape
        weights = tensors[name]
        assert np.all(weights[mask == 0] == 0), f"{name}: pruned weights must be zero"
        zeros = int((mask == 0).sum())
        assert zeros == int(np.floor(mask.size * 0.8 + 0.5)), name
        assert "optimizer." + name + ".momentum" in tensors
    with safe_open(str(last), "np") as f:
        meta = f.metadata()
    assert meta["format"] == "coppice" and meta["kind"] == "checkpoint"
    assert meta["model"] == "mlp" and meta["checksum"].startswith("crc32:")
    info = coppice.inspect(last)
    assert info["kind"] == "checkpoint" and info["checksum"] == "verified"
    assert info["run"]["stepsTaken"] == 32 and info["run"]["method"] == "cgap"


def test_resume_continues_exactly(tmp_path, data):
    train, test = data
    full = coppice.Model("mlp", seed=1)
    full.train(train, test, checkpoint_dir=tmp_path / "full", **OPTIONS)

    stopped = coppice.Model("mlp", seed=1)
    result = stopped.train(
        train, test, checkpoint_dir=tmp_path / "part", callback=lambda s: s.epoch == 2, **OPTIONS
    )
    assert result.epochs == 2
    resumed = coppice.Model("mlp", seed=1)
    result = resumed.train(train, test, checkpoint_dir=tmp_path / "part", resume=True, **OPTIONS)
    assert [s.epoch for s in result.history] == [3, 4]
    a = safetensors_numpy.load_file(str(tmp_path / "full" / checkpoints(tmp_path / "full")[-1]))
    b = safetensors_numpy.load_file(str(tmp_path / "part" / checkpoints(tmp_path / "part")[-1]))
    assert a.keys() == b.keys()
    for name in a:
        assert np.array_equal(a[name], b[name]), name


def test_resume_with_other_settings_is_refused_by_name(tmp_path, data):
    train, test = data
    coppice.Model("mlp", seed=1).train(train, test, checkpoint_dir=tmp_path, **OPTIONS)
    other = dict(OPTIONS, learning_rate=0.2)
    with pytest.raises(coppice.CoppiceError) as info:
        coppice.Model("mlp", seed=1).train(train, test, checkpoint_dir=tmp_path, resume=True, **other)
    assert info.value.name == "COPPICE_INVALID_FILE"
    assert "learningRate" in str(info.value)
    with pytest.raises(ValueError):
        coppice.Model("mlp").train(train, test, resume=True, epochs=1)


def test_export_is_small_loads_back_and_predicts_the_same(tmp_path, data):
    train, test = data
    model = coppice.Model("mlp", seed=1)
    model.train(train, test, **OPTIONS)
    size, dense = model.export(tmp_path / "export.safetensors")
    assert size < 0.35 * dense  # 80% sparse: 6 bytes per kept weight instead of 4 per weight
    tensors = safetensors_numpy.load_file(str(tmp_path / "export.safetensors"))
    values = tensors["fc1.weight.csr.values"]
    indptr = tensors["fc1.weight.csr.indptr"]
    assert indptr.dtype == np.int32 and indptr.shape == (301,) and indptr[-1] == values.size
    assert tensors["fc1.weight.csr.indices"].dtype == np.uint16
    copy = coppice.Model("mlp", seed=9)
    copy.load(tmp_path / "export.safetensors")
    images = np.random.default_rng(0).standard_normal((16, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(copy.predict(images), model.predict(images), rtol=1e-5, atol=1e-5)
    info = coppice.inspect(tmp_path / "export.safetensors")
    assert info["kind"] == "sparse-export"
    assert {t["name"] for t in info["tensors"] if t["storage"] == "CSR"} == {
        "fc1.weight",
        "fc2.weight",
        "fc3.weight",
    }


def test_damaged_files_give_clear_errors(tmp_path, data):
    model = coppice.Model("mlp", seed=1)
    path = tmp_path / "m.safetensors"
    model.save(path)
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    path.write_bytes(bytes(raw))
    for call in (lambda: model.load(path), lambda: coppice.inspect(path)):
        with pytest.raises(coppice.CoppiceError) as info:
            call()
        assert info.value.name == "COPPICE_INVALID_FILE"
        assert "checksum mismatch" in str(info.value)
    with pytest.raises(coppice.CoppiceError) as info:
        coppice.inspect(tmp_path / "missing.safetensors")
    assert info.value.name == "COPPICE_IO_ERROR"
