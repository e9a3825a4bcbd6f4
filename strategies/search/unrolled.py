"""Second-order (unrolled) DARTS, built on NNI 3.0's first-order DARTS.

NNI 3.0's :class:`~nni.nas.strategy.DARTS` updates the architecture with the first-order
approximation (the gradient of the validation loss at the current weights). This module
adds the second-order update of Liu et al. (2019), eq. 7-8, by subclassing NNI's strategy
and its Lightning module; nothing of NNI is copied.

With weights ``w``, architecture ``alpha`` and step size ``xi``, the unrolled weights are
the result of one virtual SGD step on the training loss (the step pt.darts takes, with the
weight optimizer's momentum buffer ``v`` and weight decay ``wd``)::

    w' = w - xi * (momentum * v + dL_train(w, alpha)/dw + wd * w)

and the architecture gradient is::

    dL_val(w', alpha)/dalpha - xi * H,
    H = [dL_train(w+, alpha)/dalpha - dL_train(w-, alpha)/dalpha] / (2 * eps),
    w+- = w +- eps * dL_val(w', alpha)/dw',   eps = eps_scale / ||dL_val(w', alpha)/dw'||

``H`` is the central finite difference of the mixed second derivative
``d2 L_train / dalpha dw`` applied to ``dL_val/dw'`` (error O(eps^2)). The authors' code
(a pt.darts fork) divides by ``2. * eps`` written as ``(p - n) / 2. * eps``, i.e. it
multiplies by ``eps / 2``: their Hessian term is ``eps^2`` (about 1e-4 / ||g||^2) too small,
which makes their "second-order" search first-order at ``w'`` in practice. Ours divides by
``2 * eps``; ``tests/test_unrolled.py`` checks it against exact double backpropagation.

The architecture step leaves the weights, their ``.grad`` and every buffer (BatchNorm
running statistics included) exactly as it found them: weights are copied and restored
around the virtual steps, gradients are taken with :func:`torch.autograd.grad` (never
``backward``), and buffers are saved and restored.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn, optim

from .darts_step import LeanDARTS, LeanDartsLightningModule, loss_of

logger = logging.getLogger(__name__)

__all__ = ["unrolled_arch_gradient", "SecondOrderDartsLightningModule", "SecondOrderDARTS"]


def _grads(loss: torch.Tensor, params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """d loss / d params, zeros for parameters the loss does not use; ``.grad`` untouched."""
    grads = torch.autograd.grad(loss, list(params), allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def _set_(params: Sequence[torch.Tensor], values: Sequence[torch.Tensor]) -> None:
    with torch.no_grad():
        for p, v in zip(params, values):
            p.copy_(v)


def unrolled_arch_gradient(
    model: nn.Module,
    arch_params: Sequence[torch.Tensor],
    weight_params: Sequence[torch.Tensor],
    loss_train_fn: Callable[[], torch.Tensor],
    loss_val_fn: Callable[[], torch.Tensor],
    xi: float,
    eps_scale: float = 0.01,
    momentum_buffers: Sequence[torch.Tensor | None] | None = None,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
) -> list[torch.Tensor]:
    """Second-order DARTS gradient of the validation loss w.r.t. the architecture.

    Parameters
    ----------
    model : nn.Module
        The network; its buffers (e.g. BatchNorm running statistics) are saved before and
        restored after, so the extra forward passes leave no trace.
    arch_params : sequence of Tensor
        Architecture parameters ``alpha`` (require grad).
    weight_params : sequence of Tensor
        Network weights ``w`` (require grad; must not include ``arch_params``).
    loss_train_fn, loss_val_fn : callable
        Zero-argument functions returning the training / validation loss of ``model`` with
        its parameters' current values (a forward pass on a fixed batch).
    xi : float
        Step size of the virtual step (pt.darts: the weight optimizer's current lr).
    eps_scale : float
        Finite-difference step is ``eps_scale / ||dL_val(w')/dw'||`` (DARTS: 0.01).
    momentum_buffers : sequence of (Tensor or None), optional
        The weight optimizer's momentum buffer per weight (None where it has none yet).
    weight_decay : float
        L2 coefficient added to the virtual step's gradient (``wd * w``).
    momentum : float
        Momentum factor multiplying ``momentum_buffers`` in the virtual step.

    Returns
    -------
    list of Tensor
        ``dL_val(w', alpha)/dalpha - xi * H`` per architecture parameter (see module doc).
        Neither the parameters' values nor their ``.grad`` are changed.
    """
    arch_params = list(arch_params)
    weight_params = list(weight_params)
    arch_ids = {id(a) for a in arch_params}
    if any(id(w) in arch_ids for w in weight_params):
        raise ValueError("weight_params must not contain architecture parameters")
    if momentum_buffers is not None and len(momentum_buffers) != len(weight_params):
        raise ValueError(f"{len(momentum_buffers)} momentum buffers for {len(weight_params)} weights")

    weights0 = [w.detach().clone() for w in weight_params]
    buffers0 = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        # 1. virtual step w' = w - xi * (momentum * v + dL_train/dw + wd * w)
        g_train = _grads(loss_train_fn(), weight_params)
        with torch.no_grad():
            for i, (w, g) in enumerate(zip(weight_params, g_train)):
                step = g + weight_decay * w if weight_decay else g
                v = None if momentum_buffers is None else momentum_buffers[i]
                if v is not None and momentum:
                    step = step + momentum * v
                w.sub_(xi * step)

        # 2. validation gradients at w': d/dalpha (first term) and d/dw' (direction of H)
        grads_val = _grads(loss_val_fn(), [*arch_params, *weight_params])
        d_alpha = grads_val[: len(arch_params)]
        d_weight = grads_val[len(arch_params):]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in d_weight])) \
            if d_weight else torch.tensor(0.0)
        if not torch.isfinite(norm) or norm.item() == 0.0:
            # no weight direction: the Hessian-vector product is zero
            return [g.detach() for g in d_alpha]
        eps = eps_scale / norm.item()

        # 3. central difference of dL_train/dalpha along d_weight, around the original w
        _set_(weight_params, [w0 + eps * d for w0, d in zip(weights0, d_weight)])
        d_alpha_pos = _grads(loss_train_fn(), arch_params)
        _set_(weight_params, [w0 - eps * d for w0, d in zip(weights0, d_weight)])
        d_alpha_neg = _grads(loss_train_fn(), arch_params)
        return [
            (da - xi * (p - n) / (2.0 * eps)).detach()
            for da, p, n in zip(d_alpha, d_alpha_pos, d_alpha_neg)
        ]
    finally:
        _set_(weight_params, weights0)
        with torch.no_grad():
            for b, b0 in buffers0:
                b.copy_(b0)


@contextlib.contextmanager
def _muted_logging(module: pl.LightningModule) -> Iterator[None]:
    """Silence ``log``/``log_dict`` of the evaluator module during the extra forward passes."""
    saved = {name: module.__dict__[name] for name in ("log", "log_dict") if name in module.__dict__}

    def _nothing(*args: Any, **kwargs: Any) -> None:
        return None

    module.log = _nothing  # type: ignore[method-assign]
    module.log_dict = _nothing  # type: ignore[method-assign]
    try:
        yield
    finally:
        for name in ("log", "log_dict"):
            if name in saved:
                setattr(module, name, saved[name])
            else:
                delattr(module, name)


class SecondOrderDartsLightningModule(LeanDartsLightningModule):
    """NNI's DARTS step (:class:`LeanDartsLightningModule`) with the unrolled architecture step.

    Each training step is: (1) architecture step with the gradient of
    :func:`unrolled_arch_gradient` on the ``train`` and ``val`` batches, then (2) NNI's
    weight step, learning-rate schedulers and probability logging, unchanged.

    The virtual step uses the weight optimizer's first parameter group: ``xi`` is its
    current ``lr`` (or ``unrolled_lr`` when given), and its ``momentum`` (SGD; 0 otherwise),
    momentum buffers and ``weight_decay``. Gradient clipping is not applied to the virtual
    step (as in DARTS and pt.darts). The validation loss is the evaluator's
    ``training_step(val_batch, 2 * batch_idx)``, as in NNI (logged, penalty included); the
    three extra training-loss passes call ``training_step(train_batch, 2 * batch_idx + 1)``
    with the evaluator's logging muted.

    Parameters
    ----------
    training_module : LightningModule
        The evaluator's module.
    unrolled_lr : float, optional
        Step size ``xi`` of the virtual step; None uses the weight optimizer's current lr.
    finite_difference_eps : float
        ``eps_scale`` of :func:`unrolled_arch_gradient` (DARTS: 0.01).
    **kwargs
        The keyword arguments of NNI's ``DartsLightningModule``.
    """

    def __init__(self, training_module: pl.LightningModule, *, unrolled_lr: float | None = None,
                 finite_difference_eps: float = 0.01, **kwargs: Any) -> None:
        super().__init__(training_module, **kwargs)
        if unrolled_lr is not None and unrolled_lr < 0:
            raise ValueError(f"unrolled_lr must be >= 0, got {unrolled_lr}")
        if finite_difference_eps <= 0:
            raise ValueError(f"finite_difference_eps must be > 0, got {finite_difference_eps}")
        self.unrolled_lr = unrolled_lr
        self.finite_difference_eps = finite_difference_eps

    def _weight_optimizer(self) -> optim.Optimizer:
        optimizers = self.optimizers()
        if not isinstance(optimizers, list):
            optimizers = [optimizers]
        weight_optimizers = [o for o in optimizers if not getattr(o, "is_arch_optimizer", False)]
        if len(weight_optimizers) != 1:
            raise ValueError(f"second-order DARTS needs exactly one weight optimizer, got {len(weight_optimizers)}")
        return getattr(weight_optimizers[0], "optimizer", weight_optimizers[0])

    def weight_parameters(self) -> list[nn.Parameter]:
        """Supernet parameters that are trained by the weight step (not architecture ones)."""
        arch_ids = {id(p) for p in self.arch_parameters()}
        return [p for p in self.model.parameters() if p.requires_grad and id(p) not in arch_ids]

    def unrolled_step_gradient(self, trn_batch: Any, val_batch: Any,
                               batch_idx: int) -> list[tuple[nn.Parameter, torch.Tensor]]:
        """``(alpha, gradient)`` pairs of the second-order step on one pair of batches."""
        # NNI's arch_parameters() goes through a set: take its order once
        arch_params = self.arch_parameters()
        weight_params = self.weight_parameters()
        w_optim = self._weight_optimizer()
        group = w_optim.param_groups[0]
        xi = float(group["lr"]) if self.unrolled_lr is None else self.unrolled_lr
        momentum = float(group.get("momentum", 0.0) or 0.0)
        weight_decay = float(group.get("weight_decay", 0.0) or 0.0)
        buffers = [w_optim.state.get(p, {}).get("momentum_buffer") for p in weight_params]

        def loss_train() -> torch.Tensor:
            with _muted_logging(self.training_module):
                return loss_of(self.training_module.training_step(trn_batch, 2 * batch_idx + 1))

        grads = unrolled_arch_gradient(
            self.model, arch_params, weight_params, loss_train,
            lambda: self.validation_loss(val_batch, batch_idx), xi,
            eps_scale=self.finite_difference_eps, momentum_buffers=buffers,
            weight_decay=weight_decay, momentum=momentum,
        )
        return list(zip(arch_params, grads))

    def architecture_phase(self, trn_batch: Any, val_batch: Any, batch_idx: int) -> None:
        """Phase 1: the unrolled architecture step (after warm-up, as in NNI's DARTS).

        Phase 2, the weight step with its schedulers and logging, is
        :meth:`LeanDartsLightningModule.weight_phase`: NNI's, with the alphas frozen.
        """
        arc_optim = self.architecture_optimizer()
        self.resample()
        arc_optim.zero_grad()
        for alpha, grad in self.unrolled_step_gradient(trn_batch, val_batch, batch_idx):
            alpha.grad = grad.to(alpha.dtype)
        arc_optim.step()


class SecondOrderDARTS(LeanDARTS):
    """NNI's DARTS with the second-order (unrolled) architecture gradient.

    A :class:`~strategies.search.darts_step.LeanDARTS` (NNI's DARTS: same search space support,
    mutation hooks, optimizers and export); only the architecture step differs (see
    :class:`SecondOrderDartsLightningModule`). It costs about three extra forward/backward
    passes per step (see docs/second_order.md).

    Parameters
    ----------
    unrolled_lr : float, optional
        Step size ``xi`` of the virtual weight step; None (default) uses the weight
        optimizer's current learning rate, as DARTS and pt.darts do.
    finite_difference_eps : float
        Scale of the finite-difference step, ``eps = finite_difference_eps / ||dL_val/dw'||``.
    **kwargs
        Every keyword of :class:`nni.nas.strategy.DARTS` (``arc_learning_rate``,
        ``gradient_clip_val``, ``log_prob_every_n_step``, ``warmup_epochs``, ``penalty``, ...).
    """

    def __init__(self, *, unrolled_lr: float | None = None, finite_difference_eps: float = 0.01,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if unrolled_lr is not None and unrolled_lr < 0:
            raise ValueError(f"unrolled_lr must be >= 0, got {unrolled_lr}")
        if finite_difference_eps <= 0:
            raise ValueError(f"finite_difference_eps must be > 0, got {finite_difference_eps}")
        self.unrolled_lr = unrolled_lr
        self.finite_difference_eps = finite_difference_eps

    module_class = SecondOrderDartsLightningModule

    def module_kwargs(self) -> dict[str, Any]:
        return {**super().module_kwargs(), "unrolled_lr": self.unrolled_lr,
                "finite_difference_eps": self.finite_difference_eps}
