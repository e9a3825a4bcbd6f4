"""``LeanDARTS``: NNI's first-order DARTS, computing only the gradients each phase uses.

The lean step must be NNI's step: the same alphas, weights and BN statistics after a short
search from the same seed, and the same logged losses.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytorch_lightning as pl
import torch


class _Recorder(pl.Callback):
    """The supernet's state at the end of training, and every logged train loss."""

    def __init__(self) -> None:
        self.state: dict[str, torch.Tensor] = {}
        self.losses: list[float] = []
        self.arch_grads_seen = 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.state = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}


def _search(strategy: Any, features: Path, num_classes: int) -> _Recorder:
    from nni.nas.experiment import NasExperiment

    from ser_space import SERSpace, SpaceConfig
    from strategies.data.dataset import FeatureDataset
    from strategies.evaluator import SERModule, TrainConfig, make_lightning

    labels = [i % num_classes for i in range(24)]
    train = FeatureDataset(str(features), rows=range(12), labels=labels[:12])
    val = FeatureDataset(str(features), rows=range(12, 24), labels=labels[12:])
    config = TrainConfig(max_epochs=2, batch_size=6, accelerator="cpu", gradient_clip=None, seed=2)
    recorder = _Recorder()
    torch.manual_seed(config.seed)
    evaluator = make_lightning(SERModule.from_config(config, num_classes), config, train, val,
                               callbacks=[recorder])
    experiment = NasExperiment(SERSpace(SpaceConfig.tiny()), evaluator, strategy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        experiment.run()
    experiment.stop()
    return recorder


def test_lean_darts_step_equals_nni_darts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nni.nas.strategy import DARTS

    from ser_space import SpaceConfig
    from strategies.darts_step import LeanDARTS, LeanDartsLightningModule

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))  # NNI's experiment folder
    space = SpaceConfig.tiny()
    features = tmp_path / "features.npy"
    rng = np.random.default_rng(0)
    np.save(features, rng.standard_normal((24, space.n_mfcc, space.frames)).astype(np.float32))

    lean_strategy = LeanDARTS(arc_learning_rate=0.1, gradient_clip_val=5.0)
    lean = _search(lean_strategy, features, space.num_classes)
    nni = _search(DARTS(arc_learning_rate=0.1, gradient_clip_val=5.0), features, space.num_classes)

    assert isinstance(lean_strategy.configure_oneshot_module(pl.LightningModule()), LeanDartsLightningModule)
    assert lean.losses and lean.losses == pytest.approx(nni.losses, rel=1e-5)
    assert set(lean.state) == set(nni.state)
    alphas = [k for k in lean.state if "_arch_alpha" in k]
    assert alphas
    for key in lean.state:
        torch.testing.assert_close(lean.state[key], nni.state[key], rtol=1e-4, atol=1e-6, msg=key)
    # the search moved the alphas (the comparison is not between two untouched supernets)
    moved = [k for k in alphas if lean.state[k].abs().max() > 1e-2]
    assert moved


def test_frozen_restores_only_what_it_froze() -> None:
    from strategies.darts_step import frozen

    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2), requires_grad=False)
    with frozen([a, b]):
        assert not a.requires_grad and not b.requires_grad
        loss = (a * 2).sum()
        assert not loss.requires_grad
    assert a.requires_grad and not b.requires_grad
    with pytest.raises(RuntimeError), frozen([a]):
        raise RuntimeError("inside")
    assert a.requires_grad
