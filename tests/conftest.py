"""Shared test setup: isolated caches, the GPU marker, and small data helpers."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
EMODB_DEV = SHARED / "data" / "emodb-dev"

# Caches (prepared data, features, the synthetic corpus, NNI experiments) go to a folder of
# this test session, never to the user's ~/.cache.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="ser-nas-tests-"))
os.environ.setdefault("SER_NAS_HOME", str(_SESSION_HOME / "ser-nas"))
os.environ.setdefault("XDG_CACHE_HOME", str(_SESSION_HOME / "xdg-cache"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is present")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def write_random_features(folder: Path, num: int = 48, n_coefficients: int = 16, frames: int = 32,
                          num_classes: int = 4, seed: int = 0) -> tuple[Path, list[int]]:
    """A learnable random feature array (class shifts a band of coefficients) and its labels."""
    rng = np.random.default_rng(seed)
    labels = [i % num_classes for i in range(num)]
    x = rng.normal(size=(num, n_coefficients, frames)).astype(np.float32)
    for i, y in enumerate(labels):
        x[i, y * (n_coefficients // num_classes):(y + 1) * (n_coefficients // num_classes)] += 1.5
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "features.npy"
    np.save(path, x)
    return path, labels


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """A test that runs the CLI configures the root logger (level, handlers); the next test
    starts from the logging it found, as a fresh process would."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


# memory layouts and devices the op tests run in (tests/test_ops.py, tests/test_fast.py)
LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.fixture
def full_precision():
    """Compare in full fp32 on CUDA too (cuDNN's TF32 rounds to 10 mantissa bits)."""
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        yield
