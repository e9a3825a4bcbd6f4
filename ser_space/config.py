"""``SpaceConfig``: the geometry and candidate sets of the SER search space.

The config is a frozen dataclass of plain values (ints, floats, strings, tuples), so it
round-trips through JSON (``to_dict`` / ``from_dict`` of :class:`~ser_space.dictconfig.DictConfig`)
and is what the architecture file stores as ``space_config``. Labels of the space are a pure
function of it.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Literal, NamedTuple, get_args

from .dictconfig import DictConfig
from .ops import CNN_OPS, POOL_OPS, SEQ_OPS

__all__ = ["SpaceConfig", "SeqOpSet", "SEQ_OP_SETS", "PAPER_CNN_OPS", "RESIZABLE_FIELDS"]

_logger = logging.getLogger(__name__)

SeqInput = Literal["pool_freq", "flatten"]

PAPER_CNN_OPS: tuple[str, ...] = (
    "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
    "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5", "none",
)
"""The paper's 8 CNN candidates, in the paper's order."""


class SeqOpSet(NamedTuple):
    """A named sequence op set: recurrent candidates and time pooling candidates."""

    seq_ops: tuple[str, ...]
    pool_ops: tuple[str, ...]


_LSTM = ("lstm_1", "lstm_2", "lstm_3", "lstm_4")
_RNN = ("rnn_1", "rnn_2", "rnn_3", "rnn_4")
_TAIL = ("skip_connect", "none")

# SpaceConfig fields that set how wide a network is and how it is regularised, not which choices
# it has or what they mean: an architecture found at one setting of them is a point of the space
# at any other (DARTS searches a narrow supernet and retrains the cells at full width)
RESIZABLE_FIELDS: tuple[str, ...] = ("channels", "hidden_size", "dropout", "cell_dropout", "drop_path_prob")

SEQ_OP_SETS: dict[str, SeqOpSet] = {
    # The authors' op-set names (emoDARTS ablation). Their "_att" ops were a bidirectional
    # recurrence plus a feature gate they called attention; here attention is a real
    # attention over frames, so it is a time-pooling choice: an "_att" set is the plain set
    # plus the bidirectional recurrences, with "attention" among the pooling candidates.
    "lstm": SeqOpSet(_LSTM + _TAIL, ("mean",)),
    "lstm_att": SeqOpSet(_LSTM + ("bilstm_1", "bilstm_2") + _TAIL, ("mean", "attention")),
    "rnn": SeqOpSet(_RNN + _TAIL, ("mean",)),
    "rnn_att": SeqOpSet(_RNN + ("birnn_1", "birnn_2") + _TAIL, ("mean", "attention")),
    # 14 sequence ops, as the authors' "all".
    "all": SeqOpSet(_LSTM + ("bilstm_1", "bilstm_2") + _RNN + ("birnn_1", "birnn_2") + _TAIL,
                    ("mean", "attention")),
}
"""Sequence op sets by the emoDARTS names: ``name -> SeqOpSet(seq_ops, pool_ops)``."""


@dataclass(frozen=True)
class SpaceConfig(DictConfig):
    """Geometry and candidate sets of :class:`~ser_space.space.SERSpace`.

    Defaults are the paper's CNN geometry (input 1 x 128 x 128, C = 8, 4 cells with
    reductions at cells 1 and 2) with a per-utterance LSTM sequence part.
    """

    # Input height: MFCC coefficients (axis 2 of the input).
    n_mfcc: int = 128
    # Nominal input width in time frames (axis 3); used for documentation and summaries.
    frames: int = 128
    # Shortest input, in frames, the model must accept.
    min_frames: int = 16
    # Longest input, in frames, the model must accept.
    max_frames: int = 1024
    # Input channels (1 for an MFCC image).
    in_channels: int = 1
    # Output classes (logits).
    num_classes: int = 4
    # C: channels per op in the first cell; the stem gives 3C, each reduction doubles C.
    channels: int = 8
    # Number of CNN cells.
    num_cells: int = 4
    # Indices of reduction cells (stride 2, channels x2), 0-based.
    reduction_cells: tuple[int, ...] = (1, 2)
    # Intermediate nodes per CNN cell (each sums 2 ops, each op on one earlier state).
    num_nodes: int = 4
    # CNN edge candidates (names in ops.CNN_OPS).
    cnn_ops: tuple[str, ...] = PAPER_CNN_OPS
    # Dropout probability on each CNN cell output.
    cell_dropout: float = 0.3
    # Learnable BN affine in CNN candidate ops (DARTS searches with False).
    affine: bool = False
    # Drop-path probability on CNN cell ops (0 = off; retraining ramps it).
    drop_path_prob: float = 0.0
    # Sequence edge candidates (names in ops.SEQ_OPS).
    seq_ops: tuple[str, ...] = SEQ_OP_SETS["lstm"].seq_ops
    # Recurrent sequence ops add their input to their output (x + RNN(x)) instead of
    # replacing it; the authors' ops (False) replace it.
    seq_residual: bool = False
    # Searched sequence nodes (each is one op on one earlier state; outputs concatenated).
    seq_num_nodes: int = 1
    # Feature width of the sequence part.
    hidden_size: int = 128
    # CNN map -> sequence: mean over frequency, or flatten channels x frequency.
    seq_input: SeqInput = "pool_freq"
    # Time pooling candidates (names in ops.POOL_OPS).
    pool_ops: tuple[str, ...] = ("mean", "attention")
    # Dropout probability before the classifier.
    dropout: float = 0.3

    def __post_init__(self) -> None:
        def fail(message: str) -> None:
            raise ValueError(f"SpaceConfig: {message}")

        for name in ("n_mfcc", "frames", "min_frames", "max_frames", "in_channels", "num_classes",
                     "channels", "num_cells", "num_nodes", "seq_num_nodes", "hidden_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(f"{name} must be a positive int, got {value!r}")
        if self.num_classes < 2:
            fail(f"num_classes must be at least 2, got {self.num_classes}")
        if self.min_frames > self.max_frames:
            fail(f"min_frames ({self.min_frames}) must not exceed max_frames ({self.max_frames})")
        if not self.min_frames <= self.frames <= self.max_frames:
            fail(f"frames ({self.frames}) must lie in [min_frames, max_frames] = "
                 f"[{self.min_frames}, {self.max_frames}]")
        if self.channels % 2:
            # FactorizedReduce splits channels in two halves.
            fail(f"channels must be even, got {self.channels}")
        if self.hidden_size % 2:
            # Bidirectional ops use hidden_size // 2 units per direction.
            fail(f"hidden_size must be even, got {self.hidden_size}")

        for name in ("reduction_cells", "cnn_ops", "seq_ops", "pool_ops"):
            if not isinstance(getattr(self, name), tuple):
                fail(f"{name} must be a tuple, got {type(getattr(self, name)).__name__} "
                     f"(from_dict converts lists)")
        cells = self.reduction_cells
        if len(set(cells)) != len(cells) or list(cells) != sorted(cells):
            fail(f"reduction_cells must be strictly increasing, got {cells}")
        for index in cells:
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < self.num_cells:
                fail(f"reduction cell index {index!r} is outside 0..{self.num_cells - 1}")
        if len(cells) == self.num_cells:
            # Every cell reducing leaves no normal cell; allowed by DARTS but never meant here.
            _logger.debug("every cell is a reduction cell")

        for name, registry in (("cnn_ops", CNN_OPS), ("seq_ops", SEQ_OPS), ("pool_ops", POOL_OPS)):
            ops = getattr(self, name)
            if not ops:
                fail(f"{name} must not be empty")
            if len(set(ops)) != len(ops):
                fail(f"{name} has duplicates: {ops}")
            unknown = [op for op in ops if op not in registry]
            if unknown:
                fail(f"unknown {name} {unknown}; known: {sorted(registry)}")

        if self.seq_input not in get_args(SeqInput):
            fail(f"seq_input must be one of {get_args(SeqInput)}, got {self.seq_input!r}")
        for name in ("cell_dropout", "dropout", "drop_path_prob"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                fail(f"{name} must be a probability in [0, 1), got {value!r}")
        for name in ("affine", "seq_residual"):
            if not isinstance(getattr(self, name), bool):
                fail(f"{name} must be a bool, got {getattr(self, name)!r}")

        # Shortest input must survive every reduction with at least one frame (always true
        # since ceil(n / 2) >= 1), so only warn when the sequence gets very short.
        if self.min_sequence_length < 2:
            _logger.warning("min_frames=%d gives sequences of %d frame(s) after %d reductions",
                            self.min_frames, self.min_sequence_length, len(cells))

    # ---------------------------------------------------------------- derived values

    @property
    def num_reductions(self) -> int:
        """Number of reduction cells."""
        return len(self.reduction_cells)

    @property
    def min_sequence_length(self) -> int:
        """Frames reaching the sequence part for the shortest input."""
        return _reduced(self.min_frames, self.num_reductions)

    @property
    def cnn_out_channels(self) -> int:
        """Channels of the last CNN cell's output."""
        return self.channels * 2 ** self.num_reductions * self.num_nodes

    @property
    def cnn_out_height(self) -> int:
        """Frequency bins of the last CNN cell's output."""
        return _reduced(self.n_mfcc, self.num_reductions)

    @property
    def seq_input_size(self) -> int:
        """Feature width entering the sequence part, before projection to ``hidden_size``."""
        if self.seq_input == "pool_freq":
            return self.cnn_out_channels
        return self.cnn_out_channels * self.cnn_out_height

    # ---------------------------------------------------------------- presets

    @classmethod
    def paper(cls, seq_op_set: str | None = None) -> SpaceConfig:
        """The paper's geometry: 1 x 128 x 128 input, C = 8, 4 cells, reductions at 1 and 2.

        Equal to ``SpaceConfig()``: LSTM candidates with mean or attention pooling
        (the first paper's CNN-LSTM with attention).

        Parameters
        ----------
        seq_op_set
            Optional name in :data:`SEQ_OP_SETS` for the sequence part.
        """
        config = cls()
        return config if seq_op_set is None else config.with_seq_op_set(seq_op_set)

    @classmethod
    def tiny(cls) -> SpaceConfig:
        """A small space for fast tests and smoke runs (16 x 32 input, C = 4, 2 cells)."""
        return cls(
            n_mfcc=16, frames=32, min_frames=8, max_frames=256, channels=4, num_cells=2,
            reduction_cells=(1,), num_nodes=2,
            cnn_ops=("max_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3", "none"),
            seq_ops=("lstm_1", "bilstm_1", "gru_1", "skip_connect", "none"), seq_num_nodes=2,
            hidden_size=16, pool_ops=("mean", "attention"),
        )

    @classmethod
    def small(cls) -> SpaceConfig:
        """The paper's cell structure at a width that trains on 2 CPU cores (real speech).

        C = 8, 3 cells of 3 nodes with reductions at cells 0 and 1 (so the normal cell runs on
        a quarter of the input), the paper's 8 CNN candidates, LSTM candidates (or none, or
        identity) on a 32-wide sequence, mean or attention pooling. The recurrences are
        residual (``x + LSTM(x)``): on EmoDB a plain LSTM after the CNN trained slowly and cost
        the hand-designed CNN-LSTM 14 UA points against the CNN alone, the residual one about
        1 (docs/results.md). No dropout on the cell
        outputs: the authors' 0.3 sits in front of the next cell's batch norms, whose
        statistics then differ between training and evaluation, and on EmoDB it cost the
        hand-designed CNN about 25 UA points on some speakers (docs/results.md). About 30 k
        parameters for a hand-designed CNN on 64 x 100 log-mel; a retraining epoch of 200
        utterances takes about 1.5 s on 2 cores.
        """
        return cls.paper().replace(channels=8, num_cells=3, reduction_cells=(0, 1), num_nodes=3,
                                   hidden_size=32, seq_num_nodes=1, cell_dropout=0.0, seq_residual=True)

    @classmethod
    def preset(cls, name: str) -> SpaceConfig:
        """A named preset: ``tiny``, ``small`` or ``paper``."""
        presets = {"tiny": cls.tiny, "small": cls.small, "paper": cls.paper}
        if name not in presets:
            raise ValueError(f"unknown space preset {name!r}; known: {', '.join(presets)}")
        return presets[name]()

    def with_seq_op_set(self, name: str) -> SpaceConfig:
        """Copy with ``seq_ops`` and ``pool_ops`` from :data:`SEQ_OP_SETS` ``[name]``."""
        if name not in SEQ_OP_SETS:
            raise ValueError(f"unknown sequence op set {name!r}; known: {sorted(SEQ_OP_SETS)}")
        op_set = SEQ_OP_SETS[name]
        return dataclasses.replace(self, seq_ops=op_set.seq_ops, pool_ops=op_set.pool_ops)


def _reduced(length: int, reductions: int) -> int:
    # Every reduction maps n -> ceil(n / 2) (see ops.py).
    for _ in range(reductions):
        length = (length + 1) // 2
    return length
