"""The DARTS supernet cell of :class:`~ser_space.SERSpace`: NNI's differentiable cell, leaner.

:class:`DartsMixedCell` always evaluates the plain algebra leanly (in-place sums, zero
candidates skipped, shared ReLUs and poolings); with the fast path on
(:func:`ser_space.fast.enabled`) its nodes on CPU run through :mod:`ser_space.fast.kernels`.
Each op is read by name (``DilConv.depthwise``, ``SepConv.second.norm``, ...), never by
position.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..cells import CellPreprocessor
from ..ops import DilConv, FactorizedReduce, ReLUConvBN, SepConv, SeqZero, Zero
from . import kernels
from .modules import subgrid_mode
from .switch import enabled

__all__ = ["DartsMixedCell"]


@functools.cache
def _differentiable_cell_class() -> type:
    # NNI's one-shot modules import Lightning: only pay for it when a supernet is built.
    from nni.nas.oneshot.pytorch.supermodule.differentiable import DifferentiableMixedCell

    class _DartsMixedCell(DifferentiableMixedCell):
        __doc__ = DartsMixedCell.__doc__
        forward = DartsMixedCell.forward
        _uses_fused = DartsMixedCell._uses_fused
        _candidates = DartsMixedCell._candidates
        _node = DartsMixedCell._node
        _fused_node = DartsMixedCell._fused_node

    _DartsMixedCell.__name__ = _DartsMixedCell.__qualname__ = "DartsMixedCell"
    _DartsMixedCell.__module__ = __name__
    return _DartsMixedCell


class DartsMixedCell:
    """NNI's ``DifferentiableMixedCell`` with a leaner forward, for DARTS supernets of ``SERSpace``.

    Node ``i`` is, as in NNI (and DARTS)::

        s_i = sum_{j < i} sum_k softmax(alpha_ij)_k * op_k(s_j)

    where ``alpha_ij`` has one entry per candidate plus NNI's extra "not chosen" entry,
    whose op is zero. NNI evaluates this by stacking every candidate's output, appending a
    zero tensor, multiplying and summing: four full copies of the edge's outputs, the
    largest ones (cat and product) kept for the backward pass. Here instead:

    - outputs are accumulated in place (``acc += w_k * op_k(s_j)``): no stack, no cat;
    - candidates whose output is zero (``none``, NNI's extra entry) are skipped: their
      term is ``w_k * 0``. The softmax still runs over every entry, so their alphas still
      get the gradient of the normalisation, exactly as before (``d/d alpha`` of a zero
      term is zero);
    - the candidates that start with a ReLU (``sep_conv``, ``dil_conv``, ``FactorizedReduce``)
      share one ``relu(s_j)`` per state, and the dilated ones one space-to-batch copy of it;
    - the poolings (``max_pool_3x3``, ``avg_pool_3x3``: no parameters, deterministic) of a
      state are computed once and shared by every node that reads that state: per cell 5
      of each instead of 14, and their outputs (and max-pool indices) kept once;
    - with the fast path on (:mod:`ser_space.fast`; on CPU, in training mode, for
      channels-last maps) the node is one :func:`ser_space.fast.kernels.mixed_sum` over the candidates' last 1x1 convolutions,
      each candidate's closing batch norm, weight and sum done by one convolution whose
      kernel carries them; the convolutions inside the candidates are
      :mod:`ser_space.fast.kernels`' too. Batch statistics come from the second moments of the
      convolutions' inputs, so their outputs are never stored, and the ReLU between a
      separable convolution's halves is recomputed in the backward pass. Less memory and
      time than the plain evaluation (figures in docs/performance.md).

    The parameters (names, shapes, alphas), the BN running statistics and the function are
    NNI's; only floating-point rounding differs (tests/test_benchmarks.py checks loss and
    every gradient). Built by :meth:`ser_space.SERSpace.extra_oneshot_hooks` for
    DARTS-family strategies (NNI ``DARTS``, ``GumbelDARTS``, our second-order DARTS).
    """

    @classmethod
    def mutate(cls, module: nn.Module, name: str, memo: dict, mutate_kwargs: dict) -> nn.Module | None:
        """NNI mutation hook: replace a ``Cell`` as ``DifferentiableMixedCell.mutate`` would."""
        return _differentiable_cell_class().mutate(module, name, memo, mutate_kwargs)

    def _uses_fused(self, x: torch.Tensor) -> bool:
        # the kernels apply on CPU, in training mode with gradients, to channels-last float
        # maps without autocast (the stem makes them channels-last when the model is accelerated)
        return (enabled() and self.training and torch.is_grad_enabled() and x.device.type == "cpu" and x.dim() == 4
                and x.dtype in (torch.float32, torch.float64)
                and x.is_contiguous(memory_format=torch.channels_last)
                and not torch.is_autocast_enabled("cpu"))

    def _candidates(self, states: list[torch.Tensor], i: int, ops: list[dict[str, nn.Module]]
                    ) -> tuple[list[tuple[int, torch.Tensor, nn.Module]], torch.Tensor | None]:
        """Node ``i``'s non-zero candidates as (input state, softmax weight, op), and a zero
        map shaped like the node (from a ``none`` op) for when there are none."""
        candidates = []
        zero_like: torch.Tensor | None = None
        for j in range(i):
            weights = self._softmax(self._arch_alpha[f"{self.label}/{i}_{j}"])
            for k, op in enumerate(ops[j].values()):
                if isinstance(op, (Zero, SeqZero)):
                    zero_like = op(states[j]) if zero_like is None else zero_like
                else:
                    candidates.append((j, weights[k], op))
        if not candidates and zero_like is None:
            raise RuntimeError(f"{self.label}: node {i} has no candidate op")
        return candidates, zero_like

    def _node(self, states: list[torch.Tensor], i: int, ops: list[dict[str, nn.Module]],
              shared: _SharedInputs) -> torch.Tensor:
        candidates, zero_like = self._candidates(states, i, ops)
        acc: torch.Tensor | None = None
        for j, weight, op in candidates:
            if isinstance(op, (SepConv, DilConv, FactorizedReduce)):
                out = op.forward_activated(shared.relu(j))
            elif type(op) in _PARAMETER_FREE:
                out = shared.pool(j, op)
            else:
                out = op(states[j])
            if acc is None:
                acc = out * weight
            else:
                acc = acc.addcmul_(out, weight) if not _needs_new(acc, out) else acc + out * weight
        # every candidate zero: the node is zero (shaped like a zero op's output)
        return acc if acc is not None else zero_like

    def _fused_node(self, states: list[torch.Tensor], i: int, ops: list[dict[str, nn.Module]],
                    shared: _SharedInputs) -> torch.Tensor:
        candidates, zero_like = self._candidates(states, i, ops)
        middles = _separable_middles(candidates, shared)
        conv_terms: list[kernels.ConvTerm] = []
        plain_terms: list[tuple[torch.Tensor, torch.Tensor]] = []
        shape: tuple[int, ...] | None = None
        for index, (j, weight, op) in enumerate(candidates):
            term = _conv_term(op, j, weight, shared, middles.get(index))
            if term is not None:
                conv_terms.append(term)
                term_shape = _term_shape(term)
            else:
                out = shared.pool(j, op) if type(op) in _PARAMETER_FREE else op(states[j])
                plain_terms.append((weight, out))
                term_shape = tuple(out.shape)
            if shape is not None and term_shape != shape:
                raise RuntimeError(f"{self.label}: node {i} mixes shapes {shape} and {term_shape}")
            shape = term_shape
        if shape is None:
            return zero_like
        return kernels.mixed_sum(shape, conv_terms, plain_terms)

    def forward(self, *inputs: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        from nni.nas.nn.pytorch.cell import preprocess_cell_inputs

        processed_inputs = preprocess_cell_inputs(self.num_predecessors, *inputs)
        fused = self._uses_fused(processed_inputs[-1])
        states = _fused_preprocess(self.preprocessor, processed_inputs) if fused else None
        if states is None:
            states = self.preprocessor(processed_inputs)
        node = self._fused_node if fused else self._node
        shared = _SharedInputs(states)
        for i, ops in enumerate(self.ops, start=self.num_predecessors):
            states.append(node(states, i, ops, shared))
        this_cell = torch.cat(states[self.num_predecessors:], self.concat_dim)
        return self.postprocessor(this_cell, processed_inputs)


class _SharedInputs:
    """What every edge leaving a state can share: its ReLU, its poolings, its sub-grids."""

    def __init__(self, states: list[torch.Tensor]) -> None:
        self.states = states
        self._cache: dict[tuple[Any, ...], torch.Tensor] = {}

    def _get(self, key: tuple[Any, ...], make: Callable[[], torch.Tensor]) -> torch.Tensor:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def relu(self, j: int) -> torch.Tensor:
        return self._get(("relu", j), lambda: torch.relu(self.states[j]))

    def pool(self, j: int, op: nn.Module) -> torch.Tensor:
        # the same pooling of s_j feeds every node: compute (and keep) it once
        return self._get(("pool", j, repr(op)), lambda: op(self.states[j]))

    def grid(self, j: int) -> torch.Tensor:
        """relu(s_j) as space-to-batch sub-grids (for dilation 2 at stride 1)."""
        return self._get(("grid", j), lambda: kernels.space_to_batch(self.relu(j)).contiguous(
            memory_format=torch.channels_last))

    def even(self, j: int) -> torch.Tensor:
        """relu(s_j)[..., ::2, ::2] (a dilation-2, stride-2 convolution's sub-grid)."""
        return self._get(("even", j), lambda: kernels.subgrids(self.relu(j), ((0, 0),))[0])

    def parities(self, j: int) -> torch.Tensor:
        """relu(s_j)[..., ::2, ::2] and [..., 1::2, 1::2] stacked on channels (FactorizedReduce).

        The odd grid is zero-padded at the end to the even one's size (odd sides), as
        ``FactorizedReduce`` pads its shifted branch.
        """
        def make() -> torch.Tensor:
            even, odd = kernels.subgrids(self.relu(j), ((0, 0), (1, 1)))
            if odd.shape != even.shape:
                odd = nn.functional.pad(odd, (0, even.size(3) - odd.size(3), 0, even.size(2) - odd.size(2)))
            return torch.cat([even, odd], dim=1).contiguous(memory_format=torch.channels_last)
        return self._get(("parities", j), make)


def _fused_preprocess(preprocessor: nn.Module, inputs: list[torch.Tensor]) -> list[torch.Tensor] | None:
    """``CellPreprocessor`` through :func:`~ser_space.fast.kernels.pointwise_bn`, or None if it is not one."""
    if not isinstance(preprocessor, CellPreprocessor) or len(inputs) != 2:
        return None
    states = []
    for module, x in zip((preprocessor.pre0, preprocessor.pre1), inputs):
        if (isinstance(module, ReLUConvBN) and module.conv.kernel_size == (1, 1) and module.conv.stride == (1, 1)
                and module.conv.padding == (0, 0)):
            states.append(kernels.pointwise_bn(torch.relu(x), module.conv.weight, module.norm))
        elif isinstance(module, FactorizedReduce):
            states.append(kernels.pointwise_bn(_SharedInputs([x]).parities(0), _reduce_kernel(module), module.bn))
        else:
            return None
    return states


def _closing_norm(op: nn.Module) -> nn.Module | None:
    """The batch norm a candidate ends in, where :func:`_conv_term` can fuse it (affine-free), or None."""
    closing = op.second.norm if isinstance(op, SepConv) else op.norm if isinstance(op, DilConv) else \
        op.bn if isinstance(op, FactorizedReduce) else None
    # mixed_sum takes affine-free closing norms (the supernet's, SpaceConfig.affine)
    return None if closing is None or closing.affine else closing


def _separable_middles(candidates: list[tuple[int, torch.Tensor, nn.Module]],
                       shared: _SharedInputs) -> dict[int, torch.Tensor]:
    """``{candidate index: depthwise(relu(BN(conv1x1(depthwise(relu(s_j))))))}`` of a node's
    separable convolutions, the middles evaluated by one :func:`~ser_space.fast.kernels.pointwise_bns`."""
    indices, terms = [], []
    for index, (j, _, op) in enumerate(candidates):
        if isinstance(op, SepConv) and _closing_norm(op) is not None:
            first, second = op.first, op.second
            z = _depthwise(first.depthwise, shared.relu(j))
            indices.append(index)
            terms.append((z, first.pointwise.weight, first.norm, second.depthwise))
    return dict(zip(indices, kernels.pointwise_bns(terms, relu=True)))


def _conv_term(op: nn.Module, j: int, weight: torch.Tensor, shared: _SharedInputs,
               middle: torch.Tensor | None = None) -> Any:
    """The candidate as a :class:`~ser_space.fast.kernels.ConvTerm` (its inner ops evaluated), or None.

    ``middle``: for a separable convolution, its input to its last 1x1 convolution, from
    :func:`_separable_middles`.
    """
    ConvTerm = kernels.ConvTerm
    if _closing_norm(op) is None:
        return None
    if isinstance(op, SepConv):
        if middle is None:
            raise ValueError("a separable convolution's term takes its middle from _separable_middles")
        return ConvTerm(weight, middle, op.second.pointwise.weight, op.second.norm)
    if isinstance(op, DilConv):
        dw = op.depthwise
        x = shared.relu(j)
        mode, stride, pad = subgrid_mode(dw, x), dw.stride[0], dw.padding[0]
        if mode == "space_to_batch":
            z = kernels.depthwise_conv(shared.grid(j), dw.weight, 1, pad // 2)
            return ConvTerm(weight, z, op.pointwise.weight, op.norm, grid=True)
        if mode == "strided" and stride == 2:
            z = kernels.depthwise_conv(shared.even(j), dw.weight, 1, pad // stride)
            return ConvTerm(weight, z, op.pointwise.weight, op.norm)
        return ConvTerm(weight, _depthwise(dw, x), op.pointwise.weight, op.norm)
    if isinstance(op, FactorizedReduce):
        return ConvTerm(weight, shared.parities(j), _reduce_kernel(op), op.bn)
    return None


def _reduce_kernel(op: FactorizedReduce) -> torch.Tensor:
    """FactorizedReduce's two 1x1 convolutions as one block-diagonal kernel over the stacked
    parity grids (:meth:`_SharedInputs.parities`): (C, 2 C_in, 1, 1)."""
    half, channels = op.conv_1.weight.shape[:2]
    kernel = torch.block_diag(op.conv_1.weight.view(half, channels), op.conv_2.weight.view(half, channels))
    return kernel.view(2 * half, 2 * channels, 1, 1)


def _depthwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    (s, _), (p, _), (d, _) = conv.stride, conv.padding, conv.dilation
    return kernels.depthwise_conv(x, conv.weight, s, p, d)


def _term_shape(term: Any) -> tuple[int, ...]:
    z, channels = term.input, term.kernel.size(0)
    if term.grid:
        return (z.size(0) // 4, channels, 2 * z.size(2), 2 * z.size(3))
    return (z.size(0), channels, z.size(2), z.size(3))


_PARAMETER_FREE = (nn.MaxPool2d, nn.AvgPool2d)
"""Deterministic, parameter-free candidates: equal modules on the same state give the same output."""


def _needs_new(acc: torch.Tensor, out: torch.Tensor) -> bool:
    # In-place accumulation needs the same shape (and no broadcasting up of ``acc``).
    return acc.shape != out.shape or acc.dtype != out.dtype
