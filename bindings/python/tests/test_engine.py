"""coppice.Model and coppice.Dataset: the engine from Python, on tiny data."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest

import coppice
from conftest import describe_exit, have_idx, run_isolated

INVALID_ARGUMENT, SHAPE_MISMATCH, NOT_FOUND, IO_ERROR, INVALID_FILE = 1, 2, 3, 4, 5

needs_idx = pytest.mark.skipif(not have_idx(), reason="Fashion-MNIST IDX files not installed")


def synthetic(count=256, seed=0, shape=(28, 28)):
    """Separable toy images: class c lights up row band c."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, count)
    images = rng.standard_normal((count,) + shape).astype(np.float32) * 0.1
    for i, c in enumerate(labels):
        images[i, 2 * c : 2 * c + 2, :] += 2.0
    return images, labels


@pytest.fixture(scope="module")
def data():
    images, labels = synthetic(256)
    test_images, test_labels = synthetic(128, seed=1)
    return coppice.Dataset(images, labels), coppice.Dataset(test_images, test_labels)


# ------------------------------------------------------------------ models


def test_reference_models_and_parameter_counts():
    mlp = coppice.Model("mlp")
    assert mlp.parameter_count == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert "mlp" in repr(mlp)
    assert mlp.classes == 10 and mlp.input_shape == (1, 28, 28)
    five = coppice.Model("mlp", classes=5)
    assert five.parameter_count == mlp.parameter_count - 5 * 101 and five.classes == 5
    assert coppice.Model("cnn").parameter_count > 1_000_000
    assert coppice.Model("resnet20").parameter_count > 200_000


def test_model_errors():
    with pytest.raises(coppice.CoppiceError) as info:
        coppice.Model("transformer")
    assert info.value.status == NOT_FOUND and "transformer" in info.value.message
    with pytest.raises(coppice.CoppiceError) as info:
        coppice.Model("mlp", classes=1)
    assert info.value.status == INVALID_ARGUMENT
    with pytest.raises(TypeError):
        coppice.Model(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        coppice.Model("mlp", seed=-1)
    with pytest.raises(ValueError):
        coppice.Model("mlp", classes=2**31)


# ------------------------------------------------------------------ datasets


def test_dataset_from_numpy_in_both_layouts():
    images, labels = synthetic(32)
    a = coppice.Dataset(images, labels)
    b = coppice.Dataset(images.reshape(32, 1, 28, 28), labels.astype(np.int32))
    assert a.count == len(b) == 32
    assert "32 samples" in repr(a)


@pytest.mark.parametrize(
    "images, labels, error",
    [
        (None, np.zeros(2, int), TypeError),
        (np.zeros((2, 28, 28)), np.zeros(2, int), TypeError),  # float64
        (np.zeros((2, 784), np.float32), np.zeros(2, int), ValueError),  # 2-D
        (np.zeros((2, 3, 28, 28), np.float32), np.zeros(2, int), ValueError),  # 3 channels
        (np.zeros((2, 28, 28), np.float32)[:, :, ::-1], np.zeros(2, int), ValueError),
        (np.zeros((2, 28, 28), np.float32), None, TypeError),
        (np.zeros((2, 28, 28), np.float32), np.zeros(3, int), ValueError),
        (np.zeros((2, 28, 28), np.float32), np.zeros(2, float), TypeError),
        (np.zeros((2, 28, 28), np.float32), np.zeros((2, 1), int), ValueError),
    ],
)
def test_dataset_argument_errors(images, labels, error):
    with pytest.raises(error):
        coppice.Dataset(images, labels)


@pytest.mark.parametrize(
    "images, labels",
    [
        (np.zeros((2, 28, 28), np.float32), np.array([0, 10])),  # label >= classes
        (np.zeros((2, 28, 28), np.float32), np.array([0, -1])),
        (np.full((2, 28, 28), np.nan, np.float32), np.array([0, 1])),
        (np.zeros((0, 28, 28), np.float32), np.zeros(0, int)),
    ],
)
def test_dataset_values_rejected_by_the_library(images, labels):
    with pytest.raises(coppice.CoppiceError) as info:
        coppice.Dataset(images, labels)
    assert info.value.status == INVALID_ARGUMENT


@needs_idx
def test_load_idx_with_limit():
    train = coppice.Dataset.load_idx(limit=100)
    test = coppice.Dataset.load_idx(split="t10k", limit=50)
    assert len(train) == 100 and len(test) == 50


def test_load_idx_errors(tmp_path):
    with pytest.raises(coppice.CoppiceError) as info:
        coppice.Dataset.load_idx(tmp_path / "nowhere", limit=10)
    assert info.value.status == IO_ERROR
    with pytest.raises(coppice.CoppiceError) as info:
        coppice.Dataset.load_idx(split="validation")
    assert info.value.status == INVALID_ARGUMENT
    with pytest.raises(TypeError):
        coppice.Dataset.load_idx(split=None)  # type: ignore[arg-type]
    bad_files = {
        "not-idx": b"definitely not IDX",
        "truncated": b"\x00\x00\x08\x03\x00\x00\x00\x02",
        "short-data": b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00\x02abc",
    }
    for label, content in bad_files.items():
        directory = tmp_path / label
        directory.mkdir()
        for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
            with gzip.open(directory / name, "wb") as f:
                f.write(content)
        with pytest.raises(coppice.CoppiceError) as info:
            coppice.Dataset.load_idx(directory)
        assert info.value.status == INVALID_FILE, label
        assert "train-" in info.value.message, label  # the message names the file
    not_gzip = tmp_path / "not-gzip"
    not_gzip.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        (not_gzip / name).write_bytes(b"\x1f\x8b garbage that claims to be gzip")
    with pytest.raises(coppice.CoppiceError) as info:
        coppice.Dataset.load_idx(not_gzip)
    assert info.value.status in (IO_ERROR, INVALID_FILE)


def test_idx_header_with_huge_dimensions_is_an_error_not_a_crash(tmp_path):
    """Dimensions whose product overflows (3 × 0xFFFFFFFF) must be INVALID_FILE."""
    header = b"\x00\x00\x08\x03" + b"\xff\xff\xff\xff" * 3
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        with gzip.open(tmp_path / name, "wb") as f:
            f.write(header + b"\x00" * 64)
    result = run_isolated(
        "import coppice, sys\n"
        "try:\n"
        f"    coppice.Dataset.load_idx({str(tmp_path)!r})\n"
        "except coppice.CoppiceError as e:\n"
        "    print(e.status); sys.exit(0 if e.status == 5 else 3)\n"
        "sys.exit(4)\n"
    )
    assert result.returncode == 0, describe_exit(result)


# ------------------------------------------------------------------ training


def test_train_cgap_reports_epochs_and_sparsity(data):
    train, test = data
    model = coppice.Model("mlp", seed=1)
    seen = []
    result = model.train(
        train, test, epochs=2, method="cgap", sparsity=0.9, partitions=3, rounds=1,
        gap_step_length=1, batch_size=32, callback=seen.append,
    )
    assert isinstance(result, coppice.TrainResult)
    assert result.epochs == 2 and len(result.history) == 2 and seen == result.history
    assert [e.epoch for e in seen] == [1, 2]
    assert result.sparsity == pytest.approx(0.9, abs=1e-3)
    assert result.test_accuracy == seen[-1].test_accuracy
    assert all(math.isfinite(e.train_loss) and e.seconds >= 0 for e in seen)


def test_cgap_model_predict_argmax_scores_the_trained_accuracy(data):
    # What examples/python/train_engine.py shows: the sparse model's logits on numpy images.
    train, test = data
    model = coppice.Model("mlp", seed=0)
    result = model.train(
        train, test, epochs=2, method="cgap", sparsity=0.9, partitions=3, rounds=1,
        gap_step_length=1, batch_size=32,
    )
    images, labels = synthetic(128, seed=1)
    accuracy = 100.0 * float(np.mean(model.predict(images).argmax(axis=1) == labels))
    assert abs(accuracy - result.test_accuracy) < 1e-6
    model.close()


def test_train_dense_learns_and_evaluate_agrees_with_predict(data):
    train, test = data
    model = coppice.Model("mlp")
    result = model.train(train, test, epochs=3, method="dense", batch_size=32)
    assert result.sparsity == 0 and result.test_accuracy > 50
    accuracy = model.evaluate(test)
    assert accuracy == pytest.approx(result.test_accuracy)
    images, labels = synthetic(128, seed=1)
    logits = model.predict(images)
    assert logits.shape == (128, 10) and logits.dtype == np.float32
    assert 100 * np.mean(logits.argmax(1) == labels) == pytest.approx(accuracy)
    out = np.empty((128, 10), np.float32)
    assert model.predict(images.reshape(128, 1, 28, 28), out=out) is out
    np.testing.assert_allclose(out, logits, rtol=1e-5, atol=1e-5)


def test_warmup_epochs_reach_the_engine(data):
    """coppice_train's warm-up (the sparsifier config's warmup_epochs, coppice_train only): the
    first epoch trains at a ramping rate, so the run differs from one without warm-up; the same
    warm-up twice gives the same run; a negative warm-up is refused."""
    train, test = data

    def losses(**options):
        model = coppice.Model("mlp", seed=3)
        result = model.train(train, test, epochs=2, method="dense", batch_size=32,
                             lr_schedule="constant", **options)
        model.close()
        return [e.train_loss for e in result.history]

    plain, warm, again = losses(), losses(warmup_epochs=1), losses(warmup_epochs=1)
    assert warm == again and warm[0] != plain[0]
    with pytest.raises(coppice.CoppiceError, match="warmup"):
        losses(warmup_epochs=-1)


def test_callback_can_stop_training_and_its_errors_propagate(data):
    train, test = data
    model = coppice.Model("mlp")
    result = model.train(train, test, epochs=5, method="dense", callback=lambda e: e.epoch >= 2)
    assert result.epochs == 2

    def explode(_stats):
        raise KeyError("from the callback")

    with pytest.raises(KeyError, match="from the callback"):
        model.train(train, test, epochs=3, method="dense", callback=explode)
    with pytest.raises(TypeError):
        model.train(train, test, epochs=1, callback=3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "options",
    [
        {"method": "nope"},
        {"optimizer": "lion"},
        {"lr_schedule": "wavy"},
        {"epochs": 0},
        {"method": "cgap", "sparsity": 1.0},
        {"method": "cgap", "sparsity": float("nan")},
        {"method": "rigl", "sparsity": -0.5},
        {"method": "cgap", "partitions": 0},
        {"batch_size": 0},
    ],
)
def test_bad_training_options_are_invalid_argument(data, options):
    train, test = data
    with pytest.raises(coppice.CoppiceError) as info:
        coppice.Model("mlp").train(train, test, **{"epochs": 1, **options})
    assert info.value.status == INVALID_ARGUMENT


def test_training_argument_errors(data):
    train, test = data
    model = coppice.Model("mlp")
    with pytest.raises(TypeError):
        model.train(None, test)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        model.train(train, "test")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="total_steps"):
        model.train(train, test, total_steps=5)
    with pytest.raises(TypeError, match="unknown"):
        model.train(train, test, colour="green")
    with pytest.raises(TypeError):
        model.train(train, test, epochs="1")  # type: ignore[arg-type]
    small = coppice.Dataset(np.zeros((4, 20, 20), np.float32), np.zeros(4, int))
    with pytest.raises(coppice.CoppiceError) as info:
        model.train(small, test, epochs=1)
    assert info.value.status == SHAPE_MISMATCH
    with pytest.raises(coppice.CoppiceError) as info:
        model.evaluate(small)
    assert info.value.status == SHAPE_MISMATCH
    with pytest.raises(TypeError):
        model.evaluate(None)  # type: ignore[arg-type]


def test_predict_errors():
    model = coppice.Model("mlp")
    with pytest.raises(TypeError):
        model.predict(None)
    with pytest.raises(TypeError):
        model.predict(np.zeros((2, 28, 28)))
    with pytest.raises(ValueError):
        model.predict(np.zeros((2, 3, 28, 28), np.float32))
    with pytest.raises(ValueError):
        model.predict(np.zeros((2, 28, 28), np.float32), out=np.zeros((2, 9), np.float32))
    with pytest.raises(coppice.CoppiceError) as info:
        model.predict(np.zeros((2, 28, 27), np.float32))
    assert info.value.status == SHAPE_MISMATCH
    with pytest.raises(coppice.CoppiceError) as info:
        model.predict(np.zeros((0, 28, 28), np.float32))
    assert info.value.status == INVALID_ARGUMENT


def test_use_after_close(data):
    train, test = data
    model = coppice.Model("mlp")
    model.close()
    for call in (lambda: model.parameter_count, lambda: model.classes, lambda: model.input_shape,
                 lambda: model.train(train, test, epochs=1),
                 lambda: model.evaluate(test), lambda: model.predict(np.zeros((1, 28, 28), np.float32))):
        with pytest.raises(ValueError, match="closed"):
            call()
    images, labels = synthetic(8)
    with coppice.Dataset(images, labels) as closed:
        pass
    with pytest.raises(ValueError, match="closed"):
        len(closed)
    live = coppice.Model("mlp")
    with pytest.raises(ValueError, match="closed"):
        live.train(closed, test, epochs=1)
    with pytest.raises(ValueError, match="closed"):
        live.evaluate(closed)
    assert "closed" in repr(model) and "closed" in repr(closed)


def test_log_callback_sees_schedule_events(data):
    train, test = data
    messages = []
    coppice.set_log_callback(lambda level, text: messages.append((level, text)))
    try:
        coppice.Model("mlp").train(
            train, test, epochs=2, method="cgap", partitions=3, rounds=1, gap_step_length=2,
            batch_size=64,
        )
        s = coppice.Sparsifier(method="static", total_steps=1)
        s.add_parameter("w", np.ones(10, np.float32))
        s.start()
    finally:
        coppice.set_log_callback(None)
    texts = [text for _, text in messages]
    assert any("prune partition" in t for t in texts), texts
    assert all(level in (coppice.DEBUG, coppice.INFO, coppice.WARNING) for level, _ in messages)
    count = len(messages)
    s2 = coppice.Sparsifier(method="static", total_steps=1)
    s2.add_parameter("w", np.ones(10, np.float32))
    s2.start()
    assert len(messages) == count  # logging stopped


def test_log_callback_gets_every_gap_event_of_coppice_train(data):
    """Boundaries in the middle of an epoch are logged too, not only the epoch's last step."""
    train, test = data
    messages = []
    coppice.set_log_callback(lambda level, text: messages.append(text))
    try:
        coppice.Model("mlp").train(  # 256 samples / 64 = 4 steps per epoch; boundaries 1, 2, 3
            train, test, epochs=1, method="cgap", partitions=3, rounds=1, gap_step_length=1,
            batch_size=64,
        )
    finally:
        coppice.set_log_callback(None)
    for step in (1, 2, 3):
        assert any(text.startswith(f"step {step}:") for text in messages), messages


def test_log_callback_errors_do_not_cross_the_library(capsys):
    import sys

    hooked = []
    old = sys.unraisablehook
    sys.unraisablehook = hooked.append
    try:
        coppice.set_log_callback(lambda level, text: 1 / 0)
        s = coppice.Sparsifier(method="static", total_steps=1)
        s.add_parameter("w", np.ones(10, np.float32))
        s.start()  # logs; the callback's ZeroDivisionError must not escape
    finally:
        coppice.set_log_callback(None)
        sys.unraisablehook = old
    assert hooked and isinstance(hooked[0].exc_value, ZeroDivisionError)
    with pytest.raises(TypeError):
        coppice.set_log_callback("print")  # type: ignore[arg-type]


def test_model_save_load_round_trip_and_safetensors_layout(tmp_path):
    import json
    import struct

    import numpy as np

    a = coppice.Model("mlp", seed=1)
    b = coppice.Model("mlp", seed=2)
    images = np.random.default_rng(0).standard_normal((4, 28, 28)).astype(np.float32)
    path = tmp_path / "mlp.safetensors"
    a.save(path)
    b.load(path)
    assert np.array_equal(a.predict(images), b.predict(images))
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    entry = header["fc1.weight"]
    assert entry["dtype"] == "F32" and entry["shape"] == [300, 784]
    start, end = entry["data_offsets"]
    weights = np.frombuffer(raw[8 + n + start : 8 + n + end], dtype="<f4").reshape(300, 784)
    assert np.isfinite(weights).all()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(coppice.CoppiceError) as info:
        b.load(path)
    assert info.value.name == "COPPICE_INVALID_FILE"
    assert np.array_equal(a.predict(images), b.predict(images))  # unchanged by the bad load
