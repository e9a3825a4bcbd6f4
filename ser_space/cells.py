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

import logging
from functools import partial

import torch
from torch import nn

from .ops import (
    CNN_OPS,
    POOL_OPS,
    SEQ_OPS,
    DropPath,
    FactorizedReduce,
    Identity,
    ReLUConvBN,
    SeqOpFactory,
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

    While a model trains on CPU, :func:`ser_space.fast.accelerate` runs it in channels-last
    memory (same values), which every later CNN op inherits.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )


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
        self.dropout = nn.Dropout(dropout)

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
