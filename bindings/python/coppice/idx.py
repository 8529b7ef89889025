"""Reading Fashion-MNIST-style IDX files into numpy arrays (for hosts that train their own
models; the engine reads them itself with Dataset.load_idx)."""

from __future__ import annotations

import gzip
import os
from typing import Optional, Tuple, Union

import numpy as np

__all__ = ["DEFAULT_DIRECTORY", "MEAN", "STD", "read_idx", "load_fashion_mnist"]

#: Where Debian's dataset-fashion-mnist package installs the gzipped IDX files.
DEFAULT_DIRECTORY = "/usr/share/datasets/fashion-mnist"
#: Fashion-MNIST's pixel mean and standard deviation (pixels scaled to [0, 1]).
MEAN, STD = 0.2860, 0.3530

PathLike = Union[str, "os.PathLike[str]"]


def read_idx(path: PathLike) -> np.ndarray:
    """An unsigned-byte IDX file (gzipped or not) as a uint8 array of its dimensions.
    Raises ValueError for a malformed file (the message names it)."""
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file")
    if raw[2] != 0x08:
        raise ValueError(f"{path}: element type 0x{raw[2]:02x} is not unsigned byte")
    rank = raw[3]
    header = 4 + 4 * rank
    if rank < 1 or len(raw) < header:
        raise ValueError(f"{path}: bad or truncated header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
    count = int(np.prod(dims, dtype=np.int64)) if dims else 0
    if len(raw) - header != count:
        raise ValueError(f"{path}: header {dims} needs {count} bytes, file has {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _locate(directory: str, stem: str) -> str:
    for name in (stem + ".gz", stem):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"no {stem}[.gz] in {directory}")


def load_fashion_mnist(
    directory: Optional[PathLike] = None,
    split: str = "train",
    limit: int = 0,
    normalize: bool = True,
) -> Tuple[np.ndarray, np.ndarray]:
    """(images float32 [N, 28, 28], labels int64 [N]) of the "train" or "t10k" split, the first
    `limit` samples (<= 0: all), scaled to [0, 1] and normalised with MEAN/STD when asked."""
    if split not in ("train", "t10k"):
        raise ValueError(f'split must be "train" or "t10k", got {split!r}')
    directory = os.fspath(directory) if directory is not None else DEFAULT_DIRECTORY
    images = read_idx(_locate(directory, f"{split}-images-idx3-ubyte"))
    labels = read_idx(_locate(directory, f"{split}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"{directory}: images {images.shape} and labels {labels.shape} do not match")
    if limit > 0:
        images, labels = images[:limit], labels[:limit]
    x = images.astype(np.float32) / 255.0
    if normalize:
        x = (x - np.float32(MEAN)) / np.float32(STD)
    return np.ascontiguousarray(x, dtype=np.float32), labels.astype(np.int64)
