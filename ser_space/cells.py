"""Cell builders of the SER space: everything around NNI's ``Cell`` except the choices.

``space.py`` is the only module that creates ``Cell`` / ``LayerChoice`` / ``InputChoice``;
this module gives it the pieces: the per-edge op factories, the pre- and postprocessors
that chain DARTS cells, the stem, and the adapter from a CNN map to a sequence.

A CNN cell (DARTS, ``num_nodes`` = 4 shown)::

    c_{k-2} -> pre0 (1x1 ReLU-Conv-BN, or FactorizedReduce after a reduction) -> s0 --+
    c_{k-1} -> pre1 (1x1 ReLU-Conv-BN)                                        -> s1 --+
                                                                                     |
    node i (i = 2 .. 5) = op_a(s_j) + op_b(s_l), j, l < i       (2 ops, 1 input each)
    c_k = dropout(concat(node 2 .. node 5 over channels))

A sequence cell (``seq_num_nodes`` = n)::

    x (B, T, W) = s0
    node i (i = 1 .. n) = op(s_j), j < i                       (1 op, 1 input each)
    y = Linear(n W -> W)(concat(node 1 .. node n over features))   (no Linear when n = 1)
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn

from .ops import (
    CNN_OPS,
    POOL_OPS,
    SEQ_OPS,
    AvgPool2d,
    DilConv,
    Dropout,
    DropPath,
    FactorizedReduce,
    Identity,
    ReLUConvBN,
    SepConv,
    SeqOpFactory,
    SeqZero,
    Zero,
)

__all__ = [
    "CellPreprocessor",
    "CellPostprocessor",
    "SeqCellPostprocessor",
    "Stem",
    "ToSequence",
    "cnn_edge",
    "seq_edge",
    "cnn_edge_factories",
    "seq_edge_factories",
    "pool_candidates",
    "DartsMixedCell",
    "NUM_PREDECESSORS",
    "NUM_OPS_PER_NODE",
    "SEQ_NUM_PREDECESSORS",
    "SEQ_NUM_OPS_PER_NODE",
]

_logger = logging.getLogger(__name__)

NUM_PREDECESSORS = 2
"""Inputs of a CNN cell: the outputs of the two previous cells (c_{k-2}, c_{k-1})."""
NUM_OPS_PER_NODE = 2
"""Ops summed by each CNN cell node (DARTS keeps 2 incoming edges per node)."""
SEQ_NUM_PREDECESSORS = 1
"""Inputs of the sequence cell: the projected CNN sequence."""
SEQ_NUM_OPS_PER_NODE = 1
"""Ops per sequence node."""


class Stem(nn.Sequential):
    """The stem: a 3x3 convolution to 3C channels.

    ::

        x (B, in_channels, n_mfcc, frames) -> Conv(3x3, pad 1) -> BN -> (B, 3C, n_mfcc, frames)

    The output is in channels-last memory layout on CPU (same values, same shape) and
    every later CNN op inherits it: oneDNN's depthwise convolutions, 1x1 convolutions
    and pooling run several times faster in it than in NCHW on CPU (docs/performance.md).
    ``channels_last``: ``None`` (default) for channels-last on CPU only, ``True`` for
    every device, ``False`` for never. Not an architecture or config field: it changes
    speed only (``model.stem.channels_last = False`` turns it off).
    """

    def __init__(self, in_channels: int, out_channels: int, channels_last: bool | None = None) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last or (self.channels_last is None and x.device.type == "cpu"):
            from .kernels import is_channels_last

            if x.dim() == 4 and not is_channels_last(x):
                # in channels-last strides from the start, so the convolution and the batch norm run
                # in it too (PyTorch keeps a 1-channel NCHW input, which counts as both layouts, in
                # NCHW; converting their output instead cost 2.5x the stem's time)
                x = torch.empty_like(x, memory_format=torch.channels_last).copy_(x)
            return super().forward(x).contiguous(memory_format=torch.channels_last)
        return super().forward(x)


class CellPreprocessor(nn.Module):
    """Align the two cell inputs to ``channels`` channels and the same height and width.

    ::

        c_{k-2} -> FactorizedReduce (if the previous cell reduced) or 1x1 ReLU-Conv-BN -> s0
        c_{k-1} -> 1x1 ReLU-Conv-BN                                                     -> s1

    Parameters
    ----------
    pprev_channels, prev_channels
        Channels of c_{k-2} and c_{k-1}.
    channels
        Channels of every op in this cell.
    last_cell_reduce
        Whether the previous cell was a reduction cell (then c_{k-2} is twice as large).
    affine
        Learnable BN affine.
    """

    def __init__(self, pprev_channels: int, prev_channels: int, channels: int, last_cell_reduce: bool,
                 affine: bool = True) -> None:
        super().__init__()
        if last_cell_reduce:
            self.pre0: nn.Module = FactorizedReduce(pprev_channels, channels, affine=affine)
        else:
            self.pre0 = ReLUConvBN(pprev_channels, channels, 1, 1, 0, affine=affine)
        self.pre1 = ReLUConvBN(prev_channels, channels, 1, 1, 0, affine=affine)

    def forward(self, cells: list[torch.Tensor]) -> list[torch.Tensor]:
        pprev, prev = cells
        return [self.pre0(pprev), self.pre1(prev)]


class CellPostprocessor(nn.Module):
    """Dropout on the cell output, and pass on (c_{k-1}, c_k) so cells chain.

    ::

        (c_k, [c_{k-2}, c_{k-1}]) -> [c_{k-1}, dropout(c_k)]

    Parameters
    ----------
    dropout
        Dropout probability on the cell output (the authors' 0.3; plain DARTS has none).
    """

    def __init__(self, dropout: float) -> None:
        super().__init__()
        self.dropout = Dropout(dropout)

    def forward(self, this_cell: torch.Tensor, previous_cells: list[torch.Tensor]) -> list[torch.Tensor]:
        return [previous_cells[-1], self.dropout(this_cell)]


class SeqCellPostprocessor(nn.Module):
    """Project the concatenated sequence nodes back to the sequence width.

    ::

        (B, T, n W) -> Linear(n W -> W) -> (B, T, W)        (identity when n = 1)

    Parameters
    ----------
    num_nodes
        Nodes concatenated by the sequence cell.
    width
        Sequence feature width.
    """

    def __init__(self, num_nodes: int, width: int) -> None:
        super().__init__()
        self.project: nn.Module = nn.Linear(num_nodes * width, width) if num_nodes > 1 else nn.Identity()

    def forward(self, this_cell: torch.Tensor, previous: list[torch.Tensor]) -> torch.Tensor:
        return self.project(this_cell)


class ToSequence(nn.Module):
    """Turn a CNN map into a sequence over its time axis, per utterance.

    ::

        pool_freq:  (B, C, F, T) -> mean over F          -> (B, T, C)
        flatten:    (B, C, F, T) -> reshape (B, C F, T)  -> (B, T, C F)

    Parameters
    ----------
    mode
        ``"pool_freq"`` or ``"flatten"``.
    """

    def __init__(self, mode: str) -> None:
        super().__init__()
        if mode not in ("pool_freq", "flatten"):
            raise ValueError(f"unknown seq_input mode {mode!r}")
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "pool_freq":
            x = x.mean(dim=2)
        else:
            x = x.flatten(1, 2)
        return x.transpose(1, 2).contiguous()


def cnn_edge(node_index: int, op_index: int, input_index: int | None, *, op: str, channels: int,
             reduction: bool, affine: bool, drop_path_prob: float) -> nn.Module:
    """Build the CNN op ``op`` for one cell edge (NNI ``Cell`` op factory signature).

    In a reduction cell the edges leaving the cell inputs (``input_index`` 0 or 1) have
    stride 2. ``input_index`` is ``None`` while the search space is built (unknown input):
    stride 2 then, as NNI's NASNet does, since the supernet replaces those ops anyway.
    """
    stride = 2 if reduction and (input_index is None or input_index < NUM_PREDECESSORS) else 1
    module = CNN_OPS[op](channels, stride, affine)
    if drop_path_prob > 0 and not isinstance(module, Identity):
        # As DARTS: no drop-path on an identity skip connection.
        return nn.Sequential(module, DropPath(drop_path_prob))
    return module


def seq_edge(node_index: int, op_index: int, input_index: int | None, *, op: str, width: int,
             residual: bool = False) -> nn.Module:
    """Build the sequence op ``op`` for one sequence-cell edge (NNI ``Cell`` op factory)."""
    return SEQ_OPS[op](width, residual=residual)


def cnn_edge_factories(ops: tuple[str, ...], channels: int, reduction: bool, affine: bool,
                       drop_path_prob: float) -> dict[str, partial[nn.Module]]:
    """``{op name: Cell op factory}`` for one CNN cell."""
    return {
        op: partial(cnn_edge, op=op, channels=channels, reduction=reduction, affine=affine,
                    drop_path_prob=drop_path_prob)
        for op in ops
    }


def seq_edge_factories(ops: tuple[str, ...], width: int, residual: bool = False) -> dict[str, partial[nn.Module]]:
    """``{op name: Cell op factory}`` for the sequence cell."""
    return {op: partial(seq_edge, op=op, width=width, residual=residual) for op in ops}


def pool_candidates(ops: tuple[str, ...], width: int) -> dict[str, nn.Module]:
    """``{name: module}`` time pooling candidates."""
    factories: dict[str, SeqOpFactory] = POOL_OPS
    return {op: factories[op](width) for op in ops}


# --------------------------------------------------------------------------------------
# DARTS supernet cell (speed only; the same function as NNI's DifferentiableMixedCell)
# --------------------------------------------------------------------------------------


@functools.cache
def _differentiable_cell_class() -> type:
    # NNI's one-shot modules import Lightning: only pay for it when a supernet is built.
    from nni.nas.oneshot.pytorch.supermodule.differentiable import DifferentiableMixedCell

    class _DartsMixedCell(DifferentiableMixedCell):
        __doc__ = DartsMixedCell.__doc__
        forward = DartsMixedCell.forward
        fused = DartsMixedCell.fused
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
    - ``fused`` (the default on CPU, in training mode, for channels-last maps): the node is
      one :func:`ser_space.kernels.mixed_sum` over the candidates' last 1x1 convolutions,
      each candidate's closing batch norm, weight and sum done by one convolution whose
      kernel carries them; the convolutions inside the candidates are
      :mod:`ser_space.kernels`' too. Batch statistics come from the second moments of the
      convolutions' inputs, so their outputs are never stored, and the ReLU between a
      separable convolution's halves is recomputed in the backward pass. Less memory and
      time than the plain evaluation (figures in docs/performance.md).

    The parameters (names, shapes, alphas), the BN running statistics and the function are
    NNI's; only floating-point rounding differs (tests/test_benchmarks.py checks loss and
    every gradient). Built by :meth:`ser_space.SERSpace.extra_oneshot_hooks` for
    DARTS-family strategies (NNI ``DARTS``, ``GumbelDARTS``, our second-order DARTS).
    """

    fused: bool | None = None
    """Use :mod:`ser_space.kernels` for the nodes: ``None`` (default) where they apply (CPU,
    training mode with gradients, channels-last float32 or float64 maps, no autocast),
    ``False`` never. Class-wide: ``type(cell).fused = False``."""

    @classmethod
    def mutate(cls, module: nn.Module, name: str, memo: dict, mutate_kwargs: dict) -> nn.Module | None:
        """NNI mutation hook: replace a ``Cell`` as ``DifferentiableMixedCell.mutate`` would."""
        return _differentiable_cell_class().mutate(module, name, memo, mutate_kwargs)

    def _uses_fused(self, x: torch.Tensor) -> bool:
        if self.fused is False:
            return False
        return (self.training and torch.is_grad_enabled() and x.device.type == "cpu" and x.dim() == 4
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
        from .kernels import ConvTerm, mixed_sum

        candidates, zero_like = self._candidates(states, i, ops)
        middles = _separable_middles(candidates, shared)
        conv_terms: list[ConvTerm] = []
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
        return mixed_sum(shape, conv_terms, plain_terms)

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
        from .kernels import space_to_batch

        return self._get(("grid", j), lambda: space_to_batch(self.relu(j)).contiguous(
            memory_format=torch.channels_last))

    def even(self, j: int) -> torch.Tensor:
        """relu(s_j)[..., ::2, ::2] (a dilation-2, stride-2 convolution's sub-grid)."""
        from .kernels import subgrids

        return self._get(("even", j), lambda: subgrids(self.relu(j), ((0, 0),))[0])

    def parities(self, j: int) -> torch.Tensor:
        """relu(s_j)[..., ::2, ::2] and [..., 1::2, 1::2] stacked on channels (FactorizedReduce).

        The odd grid is zero-padded at the end to the even one's size (odd sides), as
        ``FactorizedReduce`` pads its shifted branch.
        """
        from .kernels import subgrids

        def make() -> torch.Tensor:
            even, odd = subgrids(self.relu(j), ((0, 0), (1, 1)))
            if odd.shape != even.shape:
                odd = nn.functional.pad(odd, (0, even.size(3) - odd.size(3), 0, even.size(2) - odd.size(2)))
            return torch.cat([even, odd], dim=1).contiguous(memory_format=torch.channels_last)
        return self._get(("parities", j), make)


def _fused_preprocess(preprocessor: nn.Module, inputs: list[torch.Tensor]) -> list[torch.Tensor] | None:
    """``CellPreprocessor`` through :func:`~ser_space.kernels.pointwise_bn`, or None if it is not one."""
    from .kernels import pointwise_bn

    if not isinstance(preprocessor, CellPreprocessor) or len(inputs) != 2:
        return None
    states = []
    for module, x in zip((preprocessor.pre0, preprocessor.pre1), inputs):
        if (isinstance(module, ReLUConvBN) and module[1].kernel_size == (1, 1) and module[1].stride == (1, 1)
                and module[1].padding == (0, 0)):
            states.append(pointwise_bn(torch.relu(x), module[1].weight, module[2]))
        elif isinstance(module, FactorizedReduce):
            states.append(pointwise_bn(_SharedInputs([x]).parities(0), _reduce_kernel(module), module.bn))
        else:
            return None
    return states


def _closing_norm(op: nn.Module) -> nn.Module | None:
    """The batch norm a candidate ends in, where :func:`_conv_term` can fuse it (affine-free), or None."""
    closing = op[1][3] if isinstance(op, SepConv) else op[3] if isinstance(op, DilConv) else \
        op.bn if isinstance(op, FactorizedReduce) else None
    # mixed_sum takes affine-free closing norms (the supernet's, SpaceConfig.affine)
    return None if closing is None or closing.affine else closing


def _separable_middles(candidates: list[tuple[int, torch.Tensor, nn.Module]],
                       shared: _SharedInputs) -> dict[int, torch.Tensor]:
    """``{candidate index: depthwise(relu(BN(conv1x1(depthwise(relu(s_j))))))}`` of a node's
    separable convolutions, the middles evaluated by one :func:`~ser_space.kernels.pointwise_bns`."""
    from .kernels import depthwise_conv, pointwise_bns

    indices, terms = [], []
    for index, (j, _, op) in enumerate(candidates):
        if isinstance(op, SepConv) and _closing_norm(op) is not None:
            first, second = op[0], op[1]
            z = _depthwise(first[1], shared.relu(j), depthwise_conv)
            indices.append(index)
            terms.append((z, first[2].weight, first[3], second[1]))
    return dict(zip(indices, pointwise_bns(terms, relu=True)))


def _conv_term(op: nn.Module, j: int, weight: torch.Tensor, shared: _SharedInputs,
               middle: torch.Tensor | None = None) -> Any:
    """The candidate as a :class:`~ser_space.kernels.ConvTerm` (its inner ops evaluated), or None.

    ``middle``: for a separable convolution, its input to its last 1x1 convolution, from
    :func:`_separable_middles`.
    """
    from .kernels import ConvTerm, depthwise_conv

    if _closing_norm(op) is None:
        return None
    if isinstance(op, SepConv):
        if middle is None:
            raise ValueError("a separable convolution's term takes its middle from _separable_middles")
        return ConvTerm(weight, middle, op[1][2].weight, op[1][3])
    if isinstance(op, DilConv):
        dw = op[1]
        x = shared.relu(j)
        mode, stride, pad = dw.subgrid(x), dw.stride[0], dw.padding[0]
        if mode == "space_to_batch":
            z = depthwise_conv(shared.grid(j), dw.weight, 1, pad // 2)
            return ConvTerm(weight, z, op[2].weight, op[3], grid=True)
        if mode == "strided" and stride == 2:
            z = depthwise_conv(shared.even(j), dw.weight, 1, pad // stride)
            return ConvTerm(weight, z, op[2].weight, op[3])
        return ConvTerm(weight, _depthwise(dw, x, depthwise_conv), op[2].weight, op[3])
    if isinstance(op, FactorizedReduce):
        return ConvTerm(weight, shared.parities(j), _reduce_kernel(op), op.bn)
    return None


def _reduce_kernel(op: FactorizedReduce) -> torch.Tensor:
    """FactorizedReduce's two 1x1 convolutions as one block-diagonal kernel over the stacked
    parity grids (:meth:`_SharedInputs.parities`): (C, 2 C_in, 1, 1)."""
    half, channels = op.conv_1.weight.shape[:2]
    kernel = torch.block_diag(op.conv_1.weight.view(half, channels), op.conv_2.weight.view(half, channels))
    return kernel.view(2 * half, 2 * channels, 1, 1)


def _depthwise(conv: nn.Conv2d, x: torch.Tensor, depthwise_conv: Callable[..., torch.Tensor]) -> torch.Tensor:
    (s, _), (p, _), (d, _) = conv.stride, conv.padding, conv.dilation
    return depthwise_conv(x, conv.weight, s, p, d)


def _term_shape(term: Any) -> tuple[int, ...]:
    z, channels = term.input, term.kernel.size(0)
    if term.grid:
        return (z.size(0) // 4, channels, 2 * z.size(2), 2 * z.size(3))
    return (z.size(0), channels, z.size(2), z.size(3))


_PARAMETER_FREE = (nn.MaxPool2d, nn.AvgPool2d, AvgPool2d)
"""Deterministic, parameter-free candidates: equal modules on the same state give the same output."""


def _needs_new(acc: torch.Tensor, out: torch.Tensor) -> bool:
    # In-place accumulation needs the same shape (and no broadcasting up of ``acc``).
    return acc.shape != out.shape or acc.dtype != out.dtype
