"""Second-order (unrolled) DARTS: the hypergradient against exact double backpropagation.

The unit tests use a two-op mixed layer in float64, where the exact second-order gradient
of DARTS (eq. 7 of Liu et al. 2019) is computable by differentiating through the virtual
step. The end-to-end test searches the tiny SER space through NNI's ``NasExperiment``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from strategies.search.unrolled import SecondOrderDARTS, SecondOrderDartsLightningModule, unrolled_arch_gradient

import tiny_search

XI = 1.0  # large virtual step so the Hessian term is a sizeable part of the gradient
MOMENTUM = 0.9
WEIGHT_DECAY = 3e-4


class _MixedNet(nn.Module):
    """softmax(alpha)-weighted sum of a linear op and a tanh-linear op, then a linear head."""

    def __init__(self, batch_norm: bool = False) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor([0.3, -0.2]))
        self.op_linear = nn.Linear(3, 4)
        self.op_tanh = nn.Linear(3, 4)
        self.norm = nn.BatchNorm1d(4) if batch_norm else nn.Identity()
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.softmax(self.alpha, dim=0)
        h = a[0] * self.op_linear(x) + a[1] * torch.tanh(self.op_tanh(x))
        return self.head(torch.tanh(self.norm(h)))


def _setup(batch_norm: bool = False) -> tuple[_MixedNet, dict[str, torch.Tensor], list[torch.Tensor]]:
    torch.manual_seed(0)
    model = _MixedNet(batch_norm).double()
    g = torch.Generator().manual_seed(1)
    data = {
        "xt": torch.randn(16, 3, generator=g, dtype=torch.float64),
        "yt": torch.randint(0, 3, (16,), generator=g),
        "xv": torch.randn(16, 3, generator=g, dtype=torch.float64),
        "yv": torch.randint(0, 3, (16,), generator=g),
    }
    weights = [p for n, p in model.named_parameters() if n != "alpha"]
    buffers = [0.1 * torch.randn(w.shape, generator=g, dtype=torch.float64) for w in weights]
    return model, data, buffers


def _loss_fns(model: nn.Module, data: dict[str, torch.Tensor]) -> tuple[Callable[[], torch.Tensor], ...]:
    return (lambda: F.cross_entropy(model(data["xt"]), data["yt"]),
            lambda: F.cross_entropy(model(data["xv"]), data["yv"]))


def _exact(model: _MixedNet, data: dict[str, torch.Tensor], buffers: list[torch.Tensor],
           xi: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact dL_val(w'(alpha), alpha)/dalpha by double backprop, and the first-order term alone."""
    names = [n for n, _ in model.named_parameters() if n != "alpha"]
    w = [p.detach().clone().requires_grad_() for n, p in model.named_parameters() if n != "alpha"]
    alpha = model.alpha.detach().clone().requires_grad_()

    def loss(weights: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        params = {**dict(zip(names, weights)), "alpha": alpha}
        return F.cross_entropy(functional_call(model, params, (x,)), y)

    g = torch.autograd.grad(loss(w, data["xt"], data["yt"]), w, create_graph=True)
    w_virtual = [wi - xi * (gi + WEIGHT_DECAY * wi + MOMENTUM * vi) for wi, gi, vi in zip(w, g, buffers)]
    exact = torch.autograd.grad(loss(w_virtual, data["xv"], data["yv"]), alpha)[0]
    w_fixed = [wi.detach().requires_grad_() for wi in w_virtual]
    first_term = torch.autograd.grad(loss(w_fixed, data["xv"], data["yv"]), alpha)[0]
    return exact, first_term


def _authors(model: _MixedNet, data: dict[str, torch.Tensor], buffers: list[torch.Tensor],
             xi: float) -> torch.Tensor:
    """pt.darts' architect (as forked by the authors) with its ``(p - n) / 2. * eps``."""
    loss_train, loss_val = _loss_fns(model, data)
    weights = [p for n, p in model.named_parameters() if n != "alpha"]
    w0 = [w.detach().clone() for w in weights]
    g = torch.autograd.grad(loss_train(), weights)
    with torch.no_grad():
        for w, gi, v in zip(weights, g, buffers):
            w.sub_(xi * (MOMENTUM * v + gi + WEIGHT_DECAY * w))
    grads = torch.autograd.grad(loss_val(), [model.alpha, *weights])
    d_alpha, dw = grads[0], grads[1:]
    eps = 0.01 / torch.cat([d.flatten() for d in dw]).norm()
    with torch.no_grad():
        for w, w_init, d in zip(weights, w0, dw):
            w.copy_(w_init + eps * d)
    p = torch.autograd.grad(loss_train(), model.alpha)[0]
    with torch.no_grad():
        for w, w_init, d in zip(weights, w0, dw):
            w.copy_(w_init - eps * d)
    n = torch.autograd.grad(loss_train(), model.alpha)[0]
    with torch.no_grad():
        for w, w_init in zip(weights, w0):
            w.copy_(w_init)
    hessian = (p - n) / 2. * eps  # the bug: should be (p - n) / (2 * eps)
    return d_alpha - xi * hessian


def _ours(model: _MixedNet, data: dict[str, torch.Tensor], buffers: list[torch.Tensor] | None,
          xi: float, **kwargs: Any) -> torch.Tensor:
    loss_train, loss_val = _loss_fns(model, data)
    weights = [p for n, p in model.named_parameters() if n != "alpha"]
    (grad,) = unrolled_arch_gradient(model, [model.alpha], weights, loss_train, loss_val, xi,
                                     momentum_buffers=buffers, weight_decay=WEIGHT_DECAY,
                                     momentum=MOMENTUM, **kwargs)
    return grad


def test_matches_exact_double_backprop() -> None:
    model, data, buffers = _setup()
    exact, first_term = _exact(model, data, buffers, XI)
    # the Hessian term is a sizeable part of the gradient, so this test can tell them apart
    assert (exact - first_term).norm() > 0.2 * exact.norm()
    ours = _ours(model, data, buffers, XI)
    torch.testing.assert_close(ours, exact, rtol=1e-4, atol=1e-9)


def test_authors_formula_does_not_match() -> None:
    model, data, buffers = _setup()
    exact, first_term = _exact(model, data, buffers, XI)
    buggy = _authors(model, data, buffers, XI)
    assert (buggy - exact).norm() > 0.2 * exact.norm()
    # ... because its Hessian term is eps^2 times the true one: it is nearly the first-order
    # term at w' (here ||dL_val/dw'|| is small, so eps = 0.01 / ||.|| is not tiny)
    assert (buggy - first_term).norm() < 0.1 * (exact - first_term).norm()


def test_error_shrinks_with_eps() -> None:
    # central differences: the error is O(eps^2), so a 10x smaller eps is much closer
    model, data, buffers = _setup()
    exact, _ = _exact(model, data, buffers, XI)
    err_coarse = (_ours(model, data, buffers, XI, eps_scale=1.0) - exact).norm()
    err_fine = (_ours(model, data, buffers, XI, eps_scale=0.1) - exact).norm()
    assert err_fine < err_coarse / 20


def test_zero_step_is_first_order() -> None:
    model, data, _ = _setup()
    expected = torch.autograd.grad(F.cross_entropy(model(data["xv"]), data["yv"]), model.alpha)[0]
    torch.testing.assert_close(_ours(model, data, None, 0.0), expected)


def test_leaves_weights_buffers_and_grads_untouched() -> None:
    model, data, buffers = _setup(batch_norm=True)
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grad = _ours(model, data, buffers, XI)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    for key, value in model.state_dict().items():  # weights, alpha, BN running stats
        assert torch.equal(value, state[key]), key
    assert all(p.grad is None for p in model.parameters())


def test_rejects_alpha_among_weights() -> None:
    model, data, _ = _setup()
    loss_train, loss_val = _loss_fns(model, data)
    with pytest.raises(ValueError, match="architecture"):
        unrolled_arch_gradient(model, [model.alpha], list(model.parameters()), loss_train, loss_val, 0.1)


def test_strategy_builds_second_order_module() -> None:
    strategy = SecondOrderDARTS(unrolled_lr=0.01, finite_difference_eps=0.02, arc_learning_rate=1e-3,
                                gradient_clip_val=5.0, warmup_epochs=1)
    module = strategy.configure_oneshot_module(pl.LightningModule())
    assert isinstance(module, SecondOrderDartsLightningModule)
    assert (module.unrolled_lr, module.finite_difference_eps) == (0.01, 0.02)
    assert (module.arc_learning_rate, module.gradient_clip_val, module.warmup_epochs) == (1e-3, 5.0, 1)
    with pytest.raises(ValueError):
        SecondOrderDARTS(finite_difference_eps=0.0)


# ----------------------------------------------------------------------------- end to end

class _AlphaRecorder(pl.Callback):
    """Architecture parameters by name at the start and end of the search."""

    def __init__(self) -> None:
        self.start: dict[str, torch.Tensor] = {}
        self.end: dict[str, torch.Tensor] = {}

    @staticmethod
    def _alphas(pl_module: Any) -> dict[str, torch.Tensor]:
        arch_ids = {id(p) for p in pl_module.arch_parameters()}
        return {n: p.detach().clone() for n, p in pl_module.model.named_parameters() if id(p) in arch_ids}

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.start = self._alphas(pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.end = self._alphas(pl_module)


@pytest.mark.slow
def test_search_tiny_space_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nni.nas.strategy import DARTS

    from ser_space import SpaceConfig, choice_labels, validate_architecture

    space = SpaceConfig.tiny()
    features = tiny_search.features(tmp_path, monkeypatch)
    second, first = _AlphaRecorder(), _AlphaRecorder()
    arch = tiny_search.search(SecondOrderDARTS(arc_learning_rate=0.1), features, second)
    tiny_search.search(DARTS(arc_learning_rate=0.1), features, first)

    assert set(arch) == set(choice_labels(space))
    validate_architecture(arch, space)
    assert second.start and set(second.start) == set(second.end) == set(first.end)
    for name in second.start:  # same seed: same initial alphas
        torch.testing.assert_close(second.start[name], first.start[name])
    moved = [name for name in second.start if not torch.equal(second.start[name], second.end[name])]
    assert len(moved) == len(second.start)
    # the second-order step is a different step from the first-order one
    differs = [name for name in second.end if not torch.allclose(second.end[name], first.end[name],
                                                                 rtol=1e-3, atol=1e-6)]
    assert differs
