"""Shared fixtures: Chromium, and Keras with data for the Keras/TensorFlow tests (tests marked ``tf``)."""

from __future__ import annotations

import os
import sys
import types
import uuid
from collections.abc import Iterator

import pytest

from support import chromium_path, require_module

# Before anything imports TensorFlow: keep its C++ INFO/WARNING lines out of the test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run ``tf`` tests last: once TensorFlow is imported it stays in ``sys.modules`` (and makes every
    ``gc.collect()`` slower), and the pure-Python tests should see the process as a non-Keras user would."""
    items.sort(key=lambda item: item.get_closest_marker("tf") is not None)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Headless Chromium's path (skipped only where it is missing and CI is not set)."""
    return chromium_path()


@pytest.fixture(scope="session")
def keras_mod():
    """The ``keras`` module (skips the test where Keras is not installed)."""
    return require_module("keras")


@pytest.fixture(scope="session")
def mnist_like():
    """``(x, y)``: 512 samples of 784 float32 features and one-hot labels of 10 classes that a linear teacher
    assigns, so an MLP can learn them. Stands in for MNIST (no network here); made once per session."""
    np = require_module("numpy")
    rng = np.random.default_rng(20240611)
    x = rng.standard_normal((512, 784), dtype=np.float32)
    teacher = rng.standard_normal((784, 10), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[np.argmax(x @ teacher, axis=1)]
    return x, y


@pytest.fixture
def tmpmod() -> Iterator[types.ModuleType]:
    """A fresh module registered in sys.modules (its globals are roots, like a program's), removed afterwards."""
    name = f"_ct_mod_{uuid.uuid4().hex[:8]}"
    mod = types.ModuleType(name)
    sys.modules[name] = mod
    try:
        yield mod
    finally:
        del sys.modules[name]
        mod.__dict__.clear()
