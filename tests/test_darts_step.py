"""``LeanDARTS``: NNI's first-order DARTS, computing only the gradients each phase uses.

The lean step must be NNI's step: the same alphas, weights and BN statistics after a short
search from the same seed, and the same logged losses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch

import tiny_search


class _Recorder(pl.Callback):
    """The supernet's state at the end of training, and every logged train loss."""

    def __init__(self) -> None:
        self.state: dict[str, torch.Tensor] = {}
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.state = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}


def test_lean_darts_step_equals_nni_darts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nni.nas.strategy import DARTS

    from strategies.search.darts_step import LeanDARTS, LeanDartsLightningModule

    features = tiny_search.features(tmp_path, monkeypatch)
    lean_strategy = LeanDARTS(arc_learning_rate=0.1, gradient_clip_val=5.0)
    lean, nni = _Recorder(), _Recorder()
    tiny_search.search(lean_strategy, features, lean, max_epochs=2)
    tiny_search.search(DARTS(arc_learning_rate=0.1, gradient_clip_val=5.0), features, nni, max_epochs=2)

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
    from strategies.search.darts_step import frozen

    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2), requires_grad=False)
    with frozen([a, b]):
        assert not a.requires_grad and not b.requires_grad
        loss = (a * 2).sum()
        assert not loss.requires_grad
    assert a.requires_grad and not b.requires_grad
    with pytest.raises(RuntimeError), frozen([a]):
        raise RuntimeError("inside")
    assert a.requires_grad


def test_perturbed_softmax_adds_bounded_noise_only_while_asked() -> None:
    from strategies.search.darts_step import PerturbedSoftmax, perturbed, smoothing_at

    softmax = PerturbedSoftmax()
    alpha = torch.randn(1000, 8)
    assert torch.equal(softmax(alpha), torch.softmax(alpha, dim=-1))
    with perturbed(softmax, 0.3):
        noise = softmax(alpha) - torch.softmax(alpha, dim=-1)
    assert noise.abs().max() <= 0.3 and noise.abs().max() > 0.25 and softmax.epsilon == 0.0
    assert smoothing_at(0.3, 0, 10) == pytest.approx(0.03) and smoothing_at(0.3, 9, 10) == pytest.approx(0.3)
    assert smoothing_at(0.0, 5, 10) == 0.0


def test_sdarts_perturbs_the_weight_steps_and_never_the_architecture_steps(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from strategies.search.darts_step import LeanDARTS, PerturbedSoftmax

    calls: list[tuple[float, bool]] = []  # (epsilon, alphas trainable) of every mixed-op softmax call
    original = PerturbedSoftmax.forward

    def recording(self: PerturbedSoftmax, alpha: torch.Tensor) -> torch.Tensor:
        calls.append((self.epsilon, alpha.requires_grad))
        return original(self, alpha)

    monkeypatch.setattr(PerturbedSoftmax, "forward", recording)
    strategy = LeanDARTS(arc_learning_rate=0.1, smoothing=0.3)
    tiny_search.search(strategy, tiny_search.features(tmp_path, monkeypatch), _Recorder(), max_epochs=2)
    weight_steps = {round(eps, 6) for eps, trainable in calls if not trainable}
    arch_steps = {eps for eps, trainable in calls if trainable}
    assert arch_steps == {0.0}  # the architecture loss sees the plain softmax
    assert weight_steps == {0.03, 0.3}  # the weights see it perturbed, the bound ramped over the 2 epochs
    with pytest.raises(ValueError, match="smoothing"):
        LeanDARTS(smoothing=-0.1)
    from strategies.search import SearchConfig

    with pytest.raises(ValueError, match="--smoothing must be a perturbation bound"):
        SearchConfig(smoothing=-0.1)
    with pytest.raises(ValueError, match="--smoothing .SDARTS-RS. is an option of the darts strategy, not enas"):
        SearchConfig(strategy="enas", smoothing=0.3)
