"""The DARTS step that :mod:`strategies.darts` runs: NNI's, computing only the gradients it uses.

With ``smoothing`` > 0 it is smoothed DARTS by random smoothing (SDARTS-RS, Chen and Hsieh,
ICML 2020): in every weight step the architecture weights (after the softmax) are perturbed by
uniform noise, so the supernet's weights learn to do well in a neighbourhood of the current
architecture and the landscape of the architecture loss flattens; the architecture step and
the export are NNI's, unperturbed. The noise enters through the softmax module NNI's DARTS
asks its strategy for (:meth:`LeanDARTS.configure_softmax`), so nothing of NNI is changed.

Heavy imports (NNI's one-shot modules, Lightning) live here, not in :mod:`strategies.darts`,
which the registry imports for every command.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import pytorch_lightning as pl
import torch
from nni.nas.oneshot.pytorch.base_lightning import BaseOneShotLightningModule
from nni.nas.oneshot.pytorch.differentiable import DartsLightningModule
from nni.nas.strategy import DARTS
from torch import nn, optim

__all__ = ["frozen", "PerturbedSoftmax", "LeanDartsLightningModule", "LeanDARTS"]


@contextlib.contextmanager
def frozen(parameters: Iterable[nn.Parameter]) -> Iterator[None]:
    """``requires_grad = False`` on ``parameters`` inside the block, restored after.

    Autograd then neither computes nor keeps anything for their gradients: no weight
    gradients of convolutions, and no saved activations that only those need.
    """
    changed = [p for p in parameters if p.requires_grad]
    for p in changed:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in changed:
            p.requires_grad_(True)


class PerturbedSoftmax(nn.Softmax):
    """``softmax(alpha)``, plus noise drawn uniformly from ``[-epsilon, epsilon]`` per weight while
    ``epsilon`` > 0 (SDARTS-RS's perturbation of the normalised architecture weights).

    One instance is shared by every mixed op of a supernet; the DARTS step sets ``epsilon``
    for its weight phase only and puts it back to 0.
    """

    def __init__(self, dim: int = -1) -> None:
        super().__init__(dim=dim)
        self.epsilon = 0.0

    def forward(self, alpha: torch.Tensor) -> torch.Tensor:
        weights = super().forward(alpha)
        if self.epsilon > 0:
            weights = weights + torch.empty_like(weights).uniform_(-self.epsilon, self.epsilon)
        return weights


@contextlib.contextmanager
def perturbed(softmax: nn.Module | None, epsilon: float) -> Iterator[None]:
    """The block's forwards through ``softmax`` (a :class:`PerturbedSoftmax`) perturbed by ``epsilon``."""
    if not isinstance(softmax, PerturbedSoftmax) or epsilon <= 0:
        yield
        return
    softmax.epsilon = epsilon
    try:
        yield
    finally:
        softmax.epsilon = 0.0


def smoothing_at(smoothing: float, epoch: int, epochs: int) -> float:
    """SDARTS-RS's perturbation bound in ``epoch``: from a tenth of ``smoothing`` to all of it,
    linearly over the search (their 0.03 to 0.3)."""
    if smoothing <= 0:
        return 0.0
    return smoothing * (0.1 + 0.9 * epoch / max(1, epochs - 1))


def loss_of(output: Any) -> Any:
    """The loss of an evaluator's ``training_step`` output (a dict with ``loss``, or the loss)."""
    return output["loss"] if isinstance(output, dict) else output


class LeanDartsLightningModule(DartsLightningModule):
    """NNI's first-order DARTS step, computing only the gradients each phase uses.

    NNI's :class:`DartsLightningModule` backpropagates the architecture loss into every
    parameter and the weight loss into the alphas too; the weight gradients of the first
    pass are then zeroed by the weight optimizer unused, and the alpha gradients of the
    second by the next architecture step. Here the weights are frozen during the
    architecture phase and the alphas during the weight phase (:func:`frozen`), which on
    the paper's supernet saves about 40 % of the architecture phase (no convolution weight
    gradients) and the activations kept only for them. Every update is NNI's: same losses,
    same optimizers, same order, same BN statistics, same logging
    (``tests/test_darts_step.py`` compares both modules step by step).

    ``smoothing`` > 0 perturbs the architecture weights in every weight step (SDARTS-RS, the
    module docstring; ``softmax`` is the :class:`PerturbedSoftmax` the supernet's mixed ops share).
    """

    def __init__(self, training_module: pl.LightningModule, *, smoothing: float = 0.0,
                 softmax: nn.Module | None = None, **kwargs: Any) -> None:
        super().__init__(training_module, **kwargs)
        self.smoothing = float(smoothing)
        self.softmax = softmax

    def weight_parameters(self) -> list[nn.Parameter]:
        """Supernet parameters that are trained by the weight step (not architecture ones)."""
        arch_ids = {id(p) for p in self.arch_parameters()}
        return [p for p in self.model.parameters() if id(p) not in arch_ids]

    def architecture_optimizer(self) -> optim.Optimizer:
        """The one optimizer of the alphas (NNI's DARTS configures exactly one)."""
        arc_optim = self.architecture_optimizers()
        if not isinstance(arc_optim, optim.Optimizer):
            raise TypeError(f"Expect arc_optim to be a single Optimizer, but found: {arc_optim}")
        return arc_optim

    def validation_loss(self, val_batch: Any, batch_idx: int) -> Any:
        """The architecture loss on ``val_batch``: the training loss, plus NNI's penalty if any (logged)."""
        loss = loss_of(self.training_module.training_step(val_batch, 2 * batch_idx))
        if self.penalty is not None:
            loss, details = self.penalty(loss, self.export_probs())
            self.log_dict({f"penalty/{k}": v for k, v in details.items()})
        return loss

    def architecture_phase(self, trn_batch: Any, val_batch: Any, batch_idx: int) -> None:
        """Phase 1: the architecture step on ``val_batch`` (after warm-up), as NNI's."""
        arc_optim = self.architecture_optimizer()
        self.resample()
        arc_optim.zero_grad()
        with frozen(self.weight_parameters()):
            self.manual_backward(self.validation_loss(val_batch, batch_idx))
        arc_optim.step()

    def weight_phase(self, trn_batch: Any, batch_idx: int) -> Any:
        """Phase 2: the weight step on ``trn_batch``, schedulers and logging, as NNI's."""
        self.resample()
        epsilon = smoothing_at(self.smoothing, self.trainer.current_epoch, self.trainer.max_epochs or 1)
        with frozen(self.arch_parameters()), perturbed(self.softmax, epsilon):
            loss_and_metrics = self.training_module.training_step(trn_batch, 2 * batch_idx + 1)
            self.advance_optimization(loss_of(loss_and_metrics), batch_idx, self.gradient_clip_val)
        self.advance_lr_schedulers(batch_idx)
        if batch_idx % self.log_prob_every_n_step == 0:
            self.log_probs(self.export_probs())
        return loss_and_metrics

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        trn_batch, val_batch = batch["train"], batch["val"]
        if self.warmup_epochs == 0 or self.trainer.current_epoch >= self.warmup_epochs:
            self.architecture_phase(trn_batch, val_batch, batch_idx)
        return self.weight_phase(trn_batch, batch_idx)


class LeanDARTS(DARTS):
    """NNI's :class:`~nni.nas.strategy.DARTS` with :class:`LeanDartsLightningModule` as its step.

    The same strategy in every other respect (search space support, mutation hooks,
    optimizers, export); accepts every keyword of NNI's ``DARTS``.
    """

    module_class: type[LeanDartsLightningModule] = LeanDartsLightningModule
    """The Lightning module of the step (subclasses, e.g. second-order DARTS, take their own)."""

    def __init__(self, *, smoothing: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if smoothing < 0:
            raise ValueError(f"smoothing must be >= 0, got {smoothing}")
        self.smoothing = float(smoothing)
        # one softmax for every mixed op, so the step can perturb them all (SDARTS-RS)
        self.softmax: nn.Module = PerturbedSoftmax() if self.smoothing > 0 else nn.Softmax(dim=-1)

    def configure_softmax(self) -> nn.Module:
        return self.softmax

    def module_kwargs(self) -> dict[str, Any]:
        """Keywords of :attr:`module_class`: NNI's DARTS settings of this strategy, and the smoothing."""
        return dict(arc_learning_rate=self.arc_learning_rate, gradient_clip_val=self.gradient_clip_val,
                    log_prob_every_n_step=self.log_prob_every_n_step, warmup_epochs=self.warmup_epochs,
                    penalty=self.penalty, smoothing=self.smoothing, softmax=self.softmax)

    def configure_oneshot_module(self, training_module: pl.LightningModule) -> BaseOneShotLightningModule:
        return self.module_class(training_module, **self.module_kwargs())
