"""The engine: reference models built, trained and run by the runtime, and their datasets."""

from __future__ import annotations

import ctypes
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from ._arrays import as_float_buffer, as_label_array, c_float_value, c_int_value, c_string
from ._capi import (
    EPOCH_CALLBACK,
    SHAPE_MISMATCH,
    CheckpointConfig,
    TrainConfig,
    TrainResult as _CTrainResult,
    capi,
)
from ._handle import Handle
from ._library import check
from .sparsifier import fill_sparsifier_config

__all__ = ["Dataset", "Model", "EpochStats", "TrainResult", "MODELS", "inspect"]

#: Reference model names of coppice_model_create.
MODELS = ("mlp", "cnn", "resnet20")

PathLike = Union[str, bytes, "os.PathLike[str]"]


def _image_shape(shape: Tuple[int, ...], name: str) -> Tuple[int, int, int]:
    """(count, height, width) of images shaped [N, H, W] or [N, 1, H, W]."""
    if len(shape) == 3:
        return shape[0], shape[1], shape[2]
    if len(shape) == 4 and shape[1] == 1:
        return shape[0], shape[2], shape[3]
    raise ValueError(f"{name} must have shape [N, H, W] or [N, 1, H, W], got {shape}")


class Dataset(Handle):
    """An in-memory dataset of 1×H×W float32 images and integer labels (coppice_dataset).

    `Dataset(images, labels, classes=10)` copies `images` (C-contiguous float32, [N, H, W] or
    [N, 1, H, W], already normalised) and `labels` (N integers in [0, classes)).
    `Dataset.load_idx(directory, split, limit)` reads Fashion-MNIST-style IDX files and
    normalises them (mean 0.2860, std 0.3530).
    """

    def __init__(self, images: Any, labels: Any, classes: int = 10) -> None:
        buffer = as_float_buffer(images, "images")
        count, height, width = _image_shape(buffer.shape, "images")
        label_array = as_label_array(labels, "labels", count)
        classes = c_int_value(classes, "classes")
        height = c_int_value(height, "height")
        width = c_int_value(width, "width")
        handle = ctypes.c_void_p()
        check(
            capi.coppice_dataset_create(
                buffer.address,
                label_array.ctypes.data,
                count,
                height,
                width,
                classes,
                ctypes.byref(handle),
            )
        )
        self._adopt(handle, capi.coppice_dataset_destroy)
        #: Image size and class count (None when unknown, e.g. after load_idx).
        self.height: Optional[int] = height
        self.width: Optional[int] = width
        self.classes: Optional[int] = classes

    @classmethod
    def load_idx(
        cls, directory: Optional[PathLike] = None, split: str = "train", limit: int = 0
    ) -> "Dataset":
        """Loads IDX files ("train" or "t10k" split) from `directory` (None: the default
        /usr/share/datasets/fashion-mnist), the first `limit` samples (<= 0: all)."""
        if split is None or not isinstance(split, str):
            raise TypeError(f"split must be a str, got {type(split).__name__}")
        encoded_directory = c_string(directory, "directory", allow_none=True)
        encoded_split = c_string(split, "split")
        limit = c_int_value(limit, "limit", 64)
        handle = ctypes.c_void_p()
        check(
            capi.coppice_dataset_load_idx(
                encoded_directory, encoded_split, limit, ctypes.byref(handle)
            )
        )
        dataset = cls.__new__(cls)
        dataset._adopt(handle, capi.coppice_dataset_destroy)
        dataset.height = dataset.width = None  # the header has no query for them
        dataset.classes = 10
        return dataset

    @property
    def count(self) -> int:
        """Number of samples."""
        out = ctypes.c_int64()
        check(capi.coppice_dataset_count(self._live(), ctypes.byref(out)))
        return out.value

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        if self.closed:
            return "<coppice.Dataset (closed)>"
        if self.height is None:
            return f"<coppice.Dataset {self.count} samples>"
        return f"<coppice.Dataset {self.count} samples of 1x{self.height}x{self.width}>"


@dataclass(frozen=True)
class EpochStats:
    """One epoch of Model.train, as reported by the library's epoch callback."""

    epoch: int
    train_loss: float
    test_accuracy: float
    sparsity: float
    seconds: float


@dataclass(frozen=True)
class TrainResult:
    """The result of Model.train (coppice_train_result) plus the per-epoch history."""

    test_accuracy: float
    sparsity: float
    train_seconds: float
    epochs: int
    history: List[EpochStats] = field(default_factory=list)


EpochCallback = Callable[[EpochStats], Optional[bool]]


class Model(Handle):
    """A reference model of the engine (coppice_model): "mlp" (LeNet-300-100), "cnn" or
    "resnet20", for 1×28×28 inputs and `classes` outputs, initialised from `seed`."""

    def __init__(self, name: str = "mlp", seed: int = 0, classes: int = 10) -> None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        encoded = c_string(name, "name")
        seed = c_int_value(seed, "seed", 64, unsigned=True)
        classes = c_int_value(classes, "classes")
        handle = ctypes.c_void_p()
        check(capi.coppice_model_create(encoded, seed, classes, ctypes.byref(handle)))
        self._adopt(handle, capi.coppice_model_destroy)
        self.name = name

    def _shape(self) -> Tuple[int, int, int]:
        classes, height, width = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        check(
            capi.coppice_model_shape(
                self._live(), ctypes.byref(classes), ctypes.byref(height), ctypes.byref(width)
            )
        )
        return classes.value, height.value, width.value

    @property
    def classes(self) -> int:
        """Number of outputs."""
        return self._shape()[0]

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        """The input of one sample, (1, height, width)."""
        _, height, width = self._shape()
        return (1, height, width)

    @property
    def parameter_count(self) -> int:
        """Number of trainable parameters."""
        out = ctypes.c_int64()
        check(capi.coppice_model_parameter_count(self._live(), ctypes.byref(out)))
        return out.value

    def save(self, path: "str | os.PathLike[str]") -> None:
        """Save parameters and normalisation statistics as a safetensors file (atomic)."""
        check(capi.coppice_model_save(self._live(), os.fsencode(path)))

    def load(self, path: "str | os.PathLike[str]") -> None:
        """Load parameters from a file of `save`, a training checkpoint or an `export`.

        Checksums are verified; masks in the file are attached, so sparse layers run the sparse
        kernels. Raises CoppiceError for a bad, corrupted or mismatched file (the model is then
        unchanged)."""
        check(capi.coppice_model_load(self._live(), os.fsencode(path)))

    def export(self, path: "str | os.PathLike[str]") -> Tuple[int, int]:
        """Write the model for inference with sparse weights in CSR form (safetensors).

        Returns (file bytes, bytes of the same weights stored dense). `load` reads it back."""
        size, dense = ctypes.c_int64(), ctypes.c_int64()
        check(
            capi.coppice_model_export(
                self._live(), os.fsencode(path), ctypes.byref(size), ctypes.byref(dense)
            )
        )
        return size.value, dense.value

    def train(
        self,
        train_data: Dataset,
        test_data: Dataset,
        *,
        epochs: Optional[int] = None,
        method: Optional[str] = None,
        sparsity: Optional[float] = None,
        callback: Optional[EpochCallback] = None,
        batch_size: Optional[int] = None,
        learning_rate: Optional[float] = None,
        optimizer: Optional[str] = None,
        momentum: Optional[float] = None,
        weight_decay: Optional[float] = None,
        lr_schedule: Optional[str] = None,
        warmup_epochs: Optional[int] = None,
        seed: Optional[int] = None,
        checkpoint_dir: "str | os.PathLike[str] | None" = None,
        checkpoint_every: int = 1,
        keep_checkpoints: int = 3,
        resume: bool = False,
        **sparsity_options: Any,
    ) -> TrainResult:
        """Trains on `train_data`, evaluating on `test_data` after every epoch.

        Options left at None keep coppice_train_config_init's defaults: epochs 10,
        batch_size 128, learning_rate 0.05, optimizer "sgd" (or "adamw"), momentum 0.9,
        weight_decay 5e-4, lr_schedule "cosine" (or "constant"), warmup_epochs 0 (a linear
        learning-rate warm-up; with restart_lr_per_step and restart_warmup_per_step every GaP
        restart has it too), seed 0, method "dense",
        sparsity 0.9, rounds 1. `method` ("dense", "static", "oneshot", "gmp", "set", "rigl",
        "cgap", "pgap"), `sparsity` and the other Sparsifier keywords (partitions, rounds,
        gap_step_length, distribution, ...) configure sparse training; here gap_step_length 0
        means one epoch, so C-GaP needs partitions × rounds epochs before its fine-tune.
        `seed` also seeds the sparsifier.
        `callback(stats: EpochStats)` is called after every epoch; returning True stops
        training early. An exception raised by the callback stops training and is re-raised.
        With `checkpoint_dir`, a checkpoint (safetensors) is written there every
        `checkpoint_every` epochs, at the end and when training stops early, keeping the newest
        `keep_checkpoints`; `resume=True` continues bit-exactly from the newest one (same
        settings and data), and `history` then holds only the epochs run by this call.
        """
        handle = self._live()
        for name, data in (("train_data", train_data), ("test_data", test_data)):
            if not isinstance(data, Dataset):
                raise TypeError(f"{name} must be a coppice.Dataset, got {type(data).__name__}")
        train_handle, test_handle = train_data._live(), test_data._live()
        if callback is not None and not callable(callback):
            raise TypeError("callback must be callable")
        for forbidden in ("total_steps", "steps_per_epoch"):
            if forbidden in sparsity_options:
                raise TypeError(f"{forbidden} is computed by train(); do not pass it")

        config = TrainConfig()
        capi.coppice_train_config_init(ctypes.byref(config))
        keep: List[Any] = []
        if epochs is not None:
            config.epochs = c_int_value(epochs, "epochs")
        if batch_size is not None:
            config.batch_size = c_int_value(batch_size, "batch_size")
        if learning_rate is not None:
            config.learning_rate = c_float_value(learning_rate, "learning_rate")
        if momentum is not None:
            config.momentum = c_float_value(momentum, "momentum")
        if weight_decay is not None:
            config.weight_decay = c_float_value(weight_decay, "weight_decay")
        for name, value in (("optimizer", optimizer), ("lr_schedule", lr_schedule)):
            if value is not None:
                encoded = c_string(value, name)
                keep.append(encoded)
                setattr(config, name, encoded)
        if warmup_epochs is not None:
            config.sparsity.warmup_epochs = c_int_value(warmup_epochs, "warmup_epochs")
        if seed is not None:
            config.seed = c_int_value(seed, "seed", 64, unsigned=True)
            sparsity_options.setdefault("seed", seed)
        fill_sparsifier_config(
            config.sparsity, keep, method=method, sparsity=sparsity, **sparsity_options
        )

        history: List[EpochStats] = []
        failure: List[BaseException] = []

        def on_epoch(epoch: int, loss: float, accuracy: float, spars: float, seconds: float, _user: Any) -> int:
            stats = EpochStats(epoch, loss, accuracy, spars, seconds)
            history.append(stats)
            if callback is None:
                return 0
            try:
                return 1 if callback(stats) else 0
            except BaseException as error:  # stop training; re-raised after coppice_train
                failure.append(error)
                return 1

        c_callback = EPOCH_CALLBACK(on_epoch)
        config.on_epoch = c_callback
        result = _CTrainResult()
        if checkpoint_dir is None:
            if resume:
                raise ValueError("resume=True needs checkpoint_dir")
            status = capi.coppice_train(
                handle, train_handle, test_handle, ctypes.byref(config), ctypes.byref(result)
            )
        else:
            checkpoints = CheckpointConfig()
            capi.coppice_checkpoint_config_init(ctypes.byref(checkpoints))
            directory = os.fsencode(checkpoint_dir)
            checkpoints.directory = directory
            checkpoints.every_epochs = c_int_value(checkpoint_every, "checkpoint_every")
            checkpoints.keep = c_int_value(keep_checkpoints, "keep_checkpoints")
            checkpoints.resume = 1 if resume else 0
            status = capi.coppice_train_checkpointed(
                handle,
                train_handle,
                test_handle,
                ctypes.byref(config),
                ctypes.byref(checkpoints),
                ctypes.byref(result),
            )
        if failure:
            raise failure[0]
        check(status)
        return TrainResult(
            test_accuracy=result.test_accuracy,
            sparsity=result.sparsity,
            train_seconds=result.train_seconds,
            epochs=result.epochs,
            history=history,
        )

    def evaluate(self, data: Dataset) -> float:
        """Accuracy on `data`, in percent."""
        handle = self._live()
        if not isinstance(data, Dataset):
            raise TypeError(f"data must be a coppice.Dataset, got {type(data).__name__}")
        out = ctypes.c_double()
        check(capi.coppice_evaluate(handle, data._live(), ctypes.byref(out)))
        return out.value

    def predict(self, images: Any, out: Any = None) -> Any:
        """Logits [N, classes] for float32 images [N, H, W] or [N, 1, H, W] (normalised like
        the training data). `out` (writable float32 [N, classes]) is allocated when None."""
        handle = self._live()
        buffer = as_float_buffer(images, "images")
        count, height, width = _image_shape(buffer.shape, "images")
        classes = self.classes
        if out is None:
            out = np.empty((count, classes), dtype=np.float32)
        logits = as_float_buffer(out, "out", writable=True, shape=(count, classes))
        check(
            capi.coppice_predict(
                handle,
                buffer.address,
                count,
                c_int_value(height, "height"),
                c_int_value(width, "width"),
                logits.address,
                logits.size,
            )
        )
        return out

    def __repr__(self) -> str:
        if self.closed:
            return f"<coppice.Model {self.name} (closed)>"
        return f"<coppice.Model {self.name}, {self.parameter_count} parameters>"


def inspect(path: "str | os.PathLike[str]") -> Dict[str, Any]:
    """What a Coppice file (model, checkpoint or export) holds, as `coppice inspect --json`:
    kind, model, tensors (name, storage, shape, count, nonzeros, bytes) and a checkpoint's
    run state. Raises CoppiceError for a bad or corrupted file."""
    encoded = os.fsencode(path)
    needed = ctypes.c_size_t()
    status = capi.coppice_file_inspect(encoded, None, 0, ctypes.byref(needed))
    if status != SHAPE_MISMATCH:  # anything but "buffer too small"
        check(status)
    buffer = ctypes.create_string_buffer(needed.value)
    check(capi.coppice_file_inspect(encoded, buffer, needed.value, ctypes.byref(needed)))
    return json.loads(buffer.value.decode())
