"""MNIST-shaped data that needs no download, or the real MNIST where Keras has cached it.

The synthetic set is learnable: each class is a fixed random 28x28 pattern, and samples are that pattern with
noise, so accuracy and loss mean something (a model reaches >90% in one epoch).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MNIST_CACHE = Path("~/.keras/datasets/mnist.npz").expanduser()


@dataclass
class Dataset:
    x: Any  # float32 (n, 784) in [0, 1]
    y: Any  # float32 one-hot (n, 10)
    source: str  # "synthetic (seed N)" | "mnist (path)"


def synthetic(samples: int = 6000, seed: int = 0) -> Dataset:
    """``samples`` MNIST-shaped examples from 10 noisy class patterns."""
    import numpy as np

    rng = np.random.default_rng(seed)
    protos = (rng.random((10, 784)) < 0.2).astype(np.float32)
    labels = rng.integers(0, 10, samples)
    noise = rng.random((samples, 784), dtype=np.float32)
    x = np.clip(protos[labels] * 0.12 + noise * 0.9, 0.0, 1.0).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[labels]
    return Dataset(x=x, y=y, source=f"synthetic MNIST-shaped (seed {seed})")


def mnist(path: str | os.PathLike[str], samples: int | None = None) -> Dataset:
    """The real MNIST training set from an ``.npz`` with ``x_train``/``y_train`` (Keras's cache format)."""
    import numpy as np

    with np.load(path) as f:
        x, labels = f["x_train"], f["y_train"]
    if samples is not None:
        x, labels = x[:samples], labels[:samples]
    x = (x.reshape(len(x), 784) / 255.0).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[labels]
    return Dataset(x=x, y=y, source=f"mnist ({path})")


def load(path: str | None = None, samples: int = 6000, seed: int = 0) -> Dataset:
    """``path`` if given, else Keras's cached MNIST if present, else the synthetic set."""
    if path:
        return mnist(path, samples)
    if MNIST_CACHE.exists():
        return mnist(MNIST_CACHE, samples)
    return synthetic(samples, seed)
