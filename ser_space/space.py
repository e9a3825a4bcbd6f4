"""``SERSpace``: the joint CNN + sequence search space as an NNI 3.0 ``ModelSpace``.

This is the only module that creates choices (``Cell``, ``LayerChoice``)::

    x (B, in_channels, n_mfcc, T)
      -> Stem: Conv3x3 -> BN                               (B, 3C, n_mfcc, T)
      -> CNN cell 0 .. num_cells-1                         normal: cnn/normal/*, reduce: cnn/reduce/*
         (reduction cells: stride 2, channels x2)          (B, C' = 2^r C num_nodes, F', T')
      -> ToSequence (pool_freq | flatten)                  (B, T', C' | C' F')
      -> Linear -> hidden_size                             (B, T', H)
      -> sequence cell, seq_num_nodes nodes                rnn/op_*, rnn/input_*   (B, T', H)
      -> time pooling                                      rnn/pool                (B, H)
      -> Dropout -> Linear(num_classes)                    (B, num_classes)

Label scheme (a pure function of the config; ``choice_labels`` lists them)::

    cnn/normal/op_{i}_{k}      CNN op of edge k (0, 1) into node i of every normal cell
    cnn/normal/input_{i}_{k}   its input: [j], j < i; 0 = c_{k-2}, 1 = c_{k-1}, 2.. = nodes
    cnn/reduce/op_{i}_{k}      the same for every reduction cell
    cnn/reduce/input_{i}_{k}
    rnn/op_{i}                 sequence op of node i (i = 1 .. seq_num_nodes); written
                               rnn/op_{i}_0 (NNI Cell naming, one op per node)
    rnn/input_{i}_0            its input: [j], j < i; 0 = the projected CNN sequence
    rnn/pool                   time pooling

with i = 2 .. num_nodes + 1 in CNN cells. All normal cells share one set of choices and
all reduction cells another (one genotype per cell kind, as DARTS), because NNI treats
mutables with the same label as one choice. Labels with no normal (or no reduction) cell
are absent.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import torch
from nni.mutable import label_scope
from nni.nas.nn.pytorch import Cell, LayerChoice, ModelSpace
from nni.nas.space import model_context
from torch import nn

from .cells import (
    NUM_OPS_PER_NODE,
    NUM_PREDECESSORS,
    SEQ_NUM_OPS_PER_NODE,
    SEQ_NUM_PREDECESSORS,
    CellPostprocessor,
    CellPreprocessor,
    SeqCellPostprocessor,
    Stem,
    ToSequence,
    cnn_edge_factories,
    pool_candidates,
    seq_edge_factories,
)
from .config import SpaceConfig
from .fast.cell import DartsMixedCell
from .ops import DropPath

__all__ = ["SERSpace", "as_config", "choice_labels", "set_drop_path_prob"]

_logger = logging.getLogger(__name__)


def as_config(config: SpaceConfig | dict[str, Any] | None) -> SpaceConfig:
    """A ``SpaceConfig`` from a config, its ``to_dict()`` / JSON form, or ``None`` (defaults)."""
    if config is None:
        return SpaceConfig()
    if isinstance(config, SpaceConfig):
        return config
    if isinstance(config, dict):
        return SpaceConfig.from_dict(config)
    raise TypeError(f"expected a SpaceConfig, a dict or None, got {type(config).__name__}")


class SERSpace(ModelSpace):
    """Joint CNN + sequence search space for speech emotion recognition.

    Parameters
    ----------
    config
        A :class:`SpaceConfig`, its ``to_dict()`` (lists allowed), or ``None`` for defaults.

    Notes
    -----
    The init arguments NNI records (``trace_kwargs``) are ``{"config": <JSON-able dict>}``,
    so ``nni.dump`` / ``nni.load`` and NNI's multi-trial engine rebuild the space from plain
    data, with no pickled objects. Frozen models (``freeze`` / ``model_context``) are plain
    PyTorch modules with the same forward.

    Input of ``forward``: (batch, in_channels, n_mfcc, frames), any ``frames`` in
    ``[min_frames, max_frames]`` and any batch size (batch 1 needs eval mode for BN).
    Output: logits (batch, num_classes).
    """

    def __init__(self, config: SpaceConfig | dict[str, Any] | None = None) -> None:
        super().__init__()
        config = as_config(config)
        self.config = config
        # Record plain JSON data, not the dataclass, as the init arguments: NNI would
        # otherwise pickle the object into the serialized space.
        self.trace_args = ()
        self.trace_kwargs = {"config": json.loads(json.dumps(config.to_dict()))}

        c = config.channels
        self.stem = Stem(config.in_channels, 3 * c)

        pprev_channels = prev_channels = 3 * c
        cell_channels = c
        last_cell_reduce = False
        self.cells = nn.ModuleList()
        with label_scope("cnn"):
            for index in range(config.num_cells):
                reduction = index in config.reduction_cells
                if reduction:
                    cell_channels *= 2
                cell = Cell(
                    cnn_edge_factories(config.cnn_ops, cell_channels, reduction, config.affine,
                                       config.drop_path_prob),
                    config.num_nodes,
                    num_ops_per_node=NUM_OPS_PER_NODE,
                    num_predecessors=NUM_PREDECESSORS,
                    merge_op="all",
                    preprocessor=CellPreprocessor(pprev_channels, prev_channels, cell_channels,
                                                  last_cell_reduce, affine=config.affine),
                    postprocessor=CellPostprocessor(config.cell_dropout),
                    concat_dim=1,
                    label="reduce" if reduction else "normal",
                )
                self.cells.append(cell)
                pprev_channels, prev_channels = prev_channels, cell_channels * config.num_nodes
                last_cell_reduce = reduction

        self.to_sequence = ToSequence(config.seq_input)
        self.seq_proj = nn.Linear(config.seq_input_size, config.hidden_size)
        self.seq_cell = Cell(
            seq_edge_factories(config.seq_ops, config.hidden_size, config.seq_residual),
            config.seq_num_nodes,
            num_ops_per_node=SEQ_NUM_OPS_PER_NODE,
            num_predecessors=SEQ_NUM_PREDECESSORS,
            merge_op="all",
            postprocessor=SeqCellPostprocessor(config.seq_num_nodes, config.hidden_size),
            concat_dim=2,
            label="rnn",
        )
        with label_scope("rnn"):
            self.pool = LayerChoice(pool_candidates(config.pool_ops, config.hidden_size), label="pool")
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (batch, num_classes) for MFCC maps (batch, in_channels, n_mfcc, frames)."""
        if x.dim() != 4 or x.size(1) != self.config.in_channels or x.size(2) != self.config.n_mfcc:
            raise ValueError(
                f"expected input (batch, {self.config.in_channels}, {self.config.n_mfcc}, frames), "
                f"got {tuple(x.shape)}")
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = cell([s0, s1])
        h = self.seq_proj(self.to_sequence(s1))
        h = self.seq_cell([h])
        h = self.pool(h)
        return self.classifier(self.dropout(h))

    def extra_oneshot_hooks(self, strategy: Any) -> list[Any]:
        """NNI one-shot mutation hooks of this space (speed only; same supernet function).

        For DARTS-family strategies (NNI ``DARTS``, ``GumbelDARTS`` and their subclasses,
        Proxyless excepted) the cells become :class:`~ser_space.fast.cell.DartsMixedCell`, NNI's
        differentiable cell with a forward that needs far less memory and time. Other
        strategies get NNI's default modules.
        """
        from nni.nas.oneshot.pytorch.strategy import DARTS, Proxyless

        if isinstance(strategy, DARTS) and not isinstance(strategy, Proxyless):
            return [DartsMixedCell.mutate]
        return []

    def freeze(self, sample: dict[str, Any]) -> nn.Module:
        """A fixed model for ``sample`` (``{label: value}``), freshly initialised.

        The whole model is rebuilt under ``model_context`` (as NNI's NASNet does), because
        the cells' ops depend on the chosen inputs (stride in reduction cells).
        """
        with model_context(sample):
            return SERSpace(self.config)


def choice_labels(config: SpaceConfig | dict[str, Any] | None = None) -> list[str]:
    """The labels of every choice of ``SERSpace(config)``, in construction order."""
    return list(SERSpace(config).simplify())


def set_drop_path_prob(model: nn.Module, drop_prob: float) -> int:
    """Set the drop-path probability of every ``DropPath`` in ``model``; returns their count.

    Only a model built with ``SpaceConfig.drop_path_prob > 0`` has ``DropPath`` modules.
    """
    count = 0
    for module in model.modules():
        if isinstance(module, DropPath):
            module.drop_prob = drop_prob
            count += 1
    return count
