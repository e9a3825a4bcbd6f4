"""A one-shot search of the tiny space on random features, for the strategy tests.

Not a test module: ``tests/test_unrolled.py`` and ``tests/test_darts_step.py`` import it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytorch_lightning as pl
import torch


def features(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """24 random feature maps of the tiny space's shape; NNI's experiment folder under tmp_path."""
    from ser_space import SpaceConfig

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))  # NNI's experiment folder
    space = SpaceConfig.tiny()
    path = tmp_path / "features.npy"
    rng = np.random.default_rng(0)
    np.save(path, rng.standard_normal((24, space.n_mfcc, space.frames)).astype(np.float32))
    return path


def search(strategy: Any, path: Path, callback: pl.Callback, max_epochs: int = 1) -> dict[str, Any]:
    """Search ``SERSpace(SpaceConfig.tiny())`` with ``strategy`` (seed 2); the exported architecture."""
    from nni.nas.experiment import NasExperiment

    from ser_space import SERSpace, SpaceConfig
    from strategies.data.dataset import FeatureDataset
    from strategies.evaluator import SERModule, TrainConfig, make_lightning

    num_classes = SpaceConfig.tiny().num_classes
    labels = [i % num_classes for i in range(24)]
    train = FeatureDataset(str(path), rows=range(12), labels=labels[:12])
    val = FeatureDataset(str(path), rows=range(12, 24), labels=labels[12:])
    config = TrainConfig(max_epochs=max_epochs, batch_size=6, accelerator="cpu", gradient_clip=None, seed=2)
    torch.manual_seed(config.seed)
    evaluator = make_lightning(SERModule.from_config(config, num_classes), config, train, val,
                               callbacks=[callback])
    experiment = NasExperiment(SERSpace(SpaceConfig.tiny()), evaluator, strategy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        experiment.run()
    arch = experiment.export_top_models(formatter="dict")[0]
    experiment.stop()
    return arch
