"""Candidate operations of the SER search space and their name -> factory registries.

Three registries, keyed by stable snake_case names that are part of the architecture
file format (never rename an entry; add new ones instead):

``CNN_OPS``
    ``name -> factory(channels, stride, affine)``: DARTS cell edges on CNN tensors
    (batch, channels, n_mfcc, frames). Every op maps C channels to C channels; at
    stride 2 every op maps a side of length ``n`` to ``ceil(n / 2)``, for odd and even
    ``n`` alike, so mixed ops and cell inputs always align.
``SEQ_OPS``
    ``name -> factory(width)``: sequence -> sequence ops on (batch, frames, features)
    with the same feature width in and out (so DARTS can mix them). Recurrences are
    ``batch_first`` and run over time, per utterance, never across the batch.
``POOL_OPS``
    ``name -> factory(width)``: time pooling (batch, frames, features) -> (batch, features).

Op modules follow pt.darts: small, each documented by its diagram, and plain PyTorch (the
faster forwards used while training on CPU live in :mod:`ser_space.fast`). Composite ops
are ``nn.Sequential`` (so their state dicts keep their keys) and name their parts
(``DilConv.depthwise``, ``SepConv.second``, ...).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

__all__ = [
    "ReLUConvBN",
    "SepConv",
    "DilConv",
    "FactorizedReduce",
    "Zero",
    "Identity",
    "DropPath",
    "Recurrent",
    "SeqZero",
    "SeqIdentity",
    "MeanPool",
    "MaxPool",
    "AttentionPool",
    "CNN_OPS",
    "SEQ_OPS",
    "POOL_OPS",
]

_logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------
# CNN ops: (batch, channels, n_mfcc, frames)
# --------------------------------------------------------------------------------------


class ReLUConvBN(nn.Sequential):
    """ReLU, convolution, batch norm.

    ::

        x -> ReLU -> Conv(k x k, stride) -> BN -> y

    Parameters
    ----------
    in_channels, out_channels
        Channels of ``x`` and ``y``.
    kernel_size, stride, padding
        Of the convolution.
    affine
        Learnable BN scale and shift (DARTS searches with ``False``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 padding: int, affine: bool = True) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(out_channels, affine=affine),
        )

    @property
    def conv(self) -> nn.Conv2d:
        return self[1]

    @property
    def norm(self) -> nn.BatchNorm2d:
        return self[2]


class DilConv(nn.Sequential):
    """Dilated depthwise-separable convolution.

    ::

        x -> ReLU -> depthwise Conv(k x k, stride, dilation) -> pointwise Conv(1x1) -> BN -> y

    Parameters
    ----------
    in_channels, out_channels
        Channels of ``x`` and ``y``.
    kernel_size, stride, padding, dilation
        Of the depthwise convolution.
    affine
        Learnable BN scale and shift.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 padding: int, dilation: int, affine: bool = True) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(in_channels, in_channels, kernel_size, stride=stride, padding=padding,
                      dilation=dilation, groups=in_channels, bias=False),
            nn.Conv2d(in_channels, out_channels, 1, padding=0, bias=False),
            nn.BatchNorm2d(out_channels, affine=affine),
        )

    @property
    def depthwise(self) -> nn.Conv2d:
        return self[1]

    @property
    def pointwise(self) -> nn.Conv2d:
        return self[2]

    @property
    def norm(self) -> nn.BatchNorm2d:
        return self[3]

    def forward_activated(self, x: torch.Tensor) -> torch.Tensor:
        """The op on an input that already went through its leading ReLU.

        A DARTS supernet applies every candidate of an edge to the same state; the
        candidates that start with ReLU can share one ``relu(state)`` (see
        :class:`~ser_space.fast.cell.DartsMixedCell`), which saves a full-size activation
        per op in memory and time. ``forward(x) == forward_activated(relu(x))``.
        """
        return self.norm(self.pointwise(self.depthwise(x)))


class SepConv(nn.Sequential):
    """Depthwise-separable convolution applied twice (DARTS ``sep_conv``).

    ::

        x -> ReLU -> dw Conv(k x k, stride) -> pw Conv(1x1) -> BN
          -> ReLU -> dw Conv(k x k, 1)      -> pw Conv(1x1) -> BN -> y

    Parameters
    ----------
    in_channels, out_channels
        Channels of ``x`` and ``y``.
    kernel_size, stride, padding
        Of the first depthwise convolution (the second has stride 1).
    affine
        Learnable BN scale and shift.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 padding: int, affine: bool = True) -> None:
        super().__init__(
            DilConv(in_channels, in_channels, kernel_size, stride, padding, 1, affine=affine),
            DilConv(in_channels, out_channels, kernel_size, 1, padding, 1, affine=affine),
        )

    @property
    def first(self) -> DilConv:
        return self[0]

    @property
    def second(self) -> DilConv:
        return self[1]

    def forward_activated(self, x: torch.Tensor) -> torch.Tensor:
        """``forward(x) == forward_activated(relu(x))`` (see :meth:`DilConv.forward_activated`)."""
        return self.second(self.first.forward_activated(x))


class FactorizedReduce(nn.Module):
    """Halve height and width with two offset 1x1 convolutions (DARTS ``skip_connect`` at stride 2).

    ::

        x -> ReLU -+-> Conv(1x1, stride 2) on x ----------------+-> concat -> BN -> y
                   +-> Conv(1x1, stride 2) on x shifted by (1,1) +

    Each convolution gives half of ``out_channels``. The shifted branch pads one zero
    row and column at the end, so a side ``n`` becomes ``ceil(n / 2)`` on both branches.

    A strided 1x1 convolution reads only one parity sub-grid, so the forward pass slices
    the sub-grids ``x[::2, ::2]`` and ``x[1::2, 1::2]`` first and convolves them at
    stride 1 (the same values). That also avoids a torch 2.13 CPU defect (the weight
    gradient of a stride-2 1x1 convolution in channels-last memory corrupts the heap with
    2 threads, e.g. at batch 17 x 8 x 14 x 40; see docs/performance.md).

    Parameters
    ----------
    in_channels, out_channels
        Channels of ``x`` and ``y``; ``out_channels`` must be even.
    affine
        Learnable BN scale and shift.
    """

    def __init__(self, in_channels: int, out_channels: int, affine: bool = True) -> None:
        super().__init__()
        if out_channels % 2:
            raise ValueError(f"FactorizedReduce needs an even out_channels, got {out_channels}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(in_channels, out_channels // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(in_channels, out_channels // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_activated(self.relu(x))

    def forward_activated(self, x: torch.Tensor) -> torch.Tensor:
        """``forward(x) == forward_activated(relu(x))`` (see :meth:`DilConv.forward_activated`)."""
        even = x[:, :, ::2, ::2]
        # the shifted branch reads x padded by one zero row and column at the end: on an odd side
        # its last row / column is that padding, on an even side the padding is never read. No
        # branch on the input's shape, so a traced export (ONNX) is right for any size; constant
        # padding keeps the memory format.
        odd = nn.functional.pad(x, (0, 1, 0, 1))[:, :, 1::2, 1::2]
        return self.bn(torch.cat([nn.functional.conv2d(even, self.conv_1.weight),
                                  nn.functional.conv2d(odd, self.conv_2.weight)], dim=1))


class Zero(nn.Module):
    """The ``none`` op: zeros shaped like the op's output.

    ::

        x -> 0 * x[..., ::stride, ::stride] -> y

    Parameters
    ----------
    stride
        1 keeps the shape; 2 gives ``ceil(n / 2)`` per side, like the other ops.
    """

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class Identity(nn.Identity):
    """The ``skip_connect`` op at stride 1.

    ::

        x -> y
    """


class DropPath(nn.Module):
    """Drop a whole op output per sample (FractalNet drop-path), only in training.

    ::

        x -> x * mask / keep     mask ~ Bernoulli(keep), one draw per sample

    The probability is an attribute so a training loop can ramp it (``drop_prob``).

    Parameters
    ----------
    drop_prob
        Probability of dropping the path for a sample.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob <= 0.0:
            return x
        keep = 1.0 - self.drop_prob
        # One draw per sample, on x's device and dtype: device-agnostic.
        mask = torch.empty((x.size(0),) + (1,) * (x.dim() - 1), device=x.device, dtype=x.dtype)
        mask.bernoulli_(keep)
        return x * mask / keep


CnnOpFactory = Callable[[int, int, bool], nn.Module]

CNN_OPS: dict[str, CnnOpFactory] = {
    # 3x3 max pooling; padding 1 so a side n becomes ceil(n / stride).
    "max_pool_3x3": lambda channels, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    # 3x3 average pooling; padded cells are not counted in the mean.
    "avg_pool_3x3": lambda channels, stride, affine: nn.AvgPool2d(
        3, stride=stride, padding=1, count_include_pad=False),
    # Identity at stride 1, FactorizedReduce at stride 2.
    "skip_connect": lambda channels, stride, affine: (
        Identity() if stride == 1 else FactorizedReduce(channels, channels, affine=affine)),
    "sep_conv_3x3": lambda channels, stride, affine: SepConv(channels, channels, 3, stride, 1, affine=affine),
    # A plain (full, not separable) 3x3 convolution: ReLU -> Conv 3x3 -> BN, the layer of a plain CNN.
    "conv_3x3": lambda channels, stride, affine: ReLUConvBN(channels, channels, 3, stride, 1, affine=affine),
    "sep_conv_5x5": lambda channels, stride, affine: SepConv(channels, channels, 5, stride, 2, affine=affine),
    # Dilation 2: receptive field 5x5 and 9x9.
    "dil_conv_3x3": lambda channels, stride, affine: DilConv(channels, channels, 3, stride, 2, 2, affine=affine),
    "dil_conv_5x5": lambda channels, stride, affine: DilConv(channels, channels, 5, stride, 4, 2, affine=affine),
    "none": lambda channels, stride, affine: Zero(stride),
}
"""CNN cell edge candidates, in the paper's order: ``factory(channels, stride, affine)``."""


# --------------------------------------------------------------------------------------
# Sequence ops: (batch, frames, features)
# --------------------------------------------------------------------------------------


class Recurrent(nn.Module):
    """A recurrent layer stack over time, per utterance, keeping the feature width.

    ::

        unidirectional:  x (B, T, W) -> RNN(W -> W, num_layers)         -> y (B, T, W)
        bidirectional:   x (B, T, W) -> BiRNN(W -> W/2 per direction)   -> y (B, T, W)
                                        (forward and backward halves concatenated)
        residual:        y = x + RNN(x)

    ``batch_first=True``: each utterance is its own sequence, so an output never depends
    on the other utterances of the batch (the authors' code ran the LSTM across the batch).

    Parameters
    ----------
    width
        Feature width in and out; must be even when ``bidirectional``.
    mode
        ``"lstm"``, ``"gru"`` or ``"rnn"`` (tanh).
    num_layers
        Stacked recurrent layers.
    bidirectional
        Run both directions with ``width // 2`` hidden units each.
    residual
        Return ``x + RNN(x)``: the recurrence adds to its input instead of replacing it by
        tanh-bounded states (``SpaceConfig.seq_residual``).
    """

    _CLASSES: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}

    def __init__(self, width: int, mode: str, num_layers: int, bidirectional: bool = False,
                 residual: bool = False) -> None:
        super().__init__()
        if mode not in self._CLASSES:
            raise ValueError(f"unknown recurrent mode {mode!r}; expected one of {sorted(self._CLASSES)}")
        if bidirectional and width % 2:
            raise ValueError(f"a bidirectional op needs an even width, got {width}")
        hidden_size = width // 2 if bidirectional else width
        self.rnn = self._CLASSES[mode](width, hidden_size, num_layers=num_layers,
                                       batch_first=True, bidirectional=bidirectional)
        self.residual = residual

    def extra_repr(self) -> str:
        return "residual=True" if self.residual else ""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        if self.residual:
            return out + x
        # Contiguous so DARTS can stack and weight it with the other candidates.
        return out.contiguous()


class SeqZero(nn.Module):
    """The ``none`` sequence op.

    ::

        x (B, T, W) -> 0 * x -> y (B, T, W)
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class SeqIdentity(nn.Identity):
    """The ``skip_connect`` sequence op.

    ::

        x (B, T, W) -> y = x
    """


SeqOpFactory = Callable[..., nn.Module]


def _recurrent(mode: str, num_layers: int, bidirectional: bool = False) -> SeqOpFactory:
    def factory(width: int, residual: bool = False) -> nn.Module:
        return Recurrent(width, mode, num_layers, bidirectional, residual)
    return factory


SEQ_OPS: dict[str, SeqOpFactory] = {
    # <mode>_<layers>: unidirectional, hidden size = width.
    **{f"lstm_{n}": _recurrent("lstm", n) for n in (1, 2, 3, 4)},
    # bi<mode>_<layers>: bidirectional, width // 2 hidden units per direction.
    **{f"bilstm_{n}": _recurrent("lstm", n, True) for n in (1, 2)},
    **{f"gru_{n}": _recurrent("gru", n) for n in (1, 2)},
    **{f"rnn_{n}": _recurrent("rnn", n) for n in (1, 2, 3, 4)},
    **{f"birnn_{n}": _recurrent("rnn", n, True) for n in (1, 2)},
    "skip_connect": lambda width, residual=False: SeqIdentity(),
    "none": lambda width, residual=False: SeqZero(),
}
"""Sequence edge candidates: ``factory(width, residual=False)``, (B, T, W) -> (B, T, W);
``residual`` makes a recurrence return ``x + RNN(x)`` (the others ignore it)."""


# --------------------------------------------------------------------------------------
# Time pooling: (batch, frames, features) -> (batch, features)
# --------------------------------------------------------------------------------------


class MeanPool(nn.Module):
    """Mean over frames.

    ::

        x (B, T, W) -> mean over T -> y (B, W)
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)


class MaxPool(nn.Module):
    """Max over frames.

    ::

        x (B, T, W) -> max over T -> y (B, W)
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=1)


class AttentionPool(nn.Module):
    """Additive attention over frames, per utterance (Bahdanau-style scoring).

    ::

        x (B, T, W) -> e_t = v . tanh(W_a x_t + b) -> a = softmax_t(e)   (B, T), sums to 1 over T
                    -> y = sum_t a_t x_t                                  (B, W)

    Parameters
    ----------
    width
        Feature width ``W``.
    attention_size
        Width of the scoring layer; defaults to ``width``.
    """

    def __init__(self, width: int, attention_size: int | None = None) -> None:
        super().__init__()
        attention_size = attention_size or width
        self.project = nn.Linear(width, attention_size)
        self.score = nn.Linear(attention_size, 1, bias=False)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Attention weights (B, T); each row sums to 1."""
        return torch.softmax(self.score(torch.tanh(self.project(x))).squeeze(-1), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bt,btw->bw", self.weights(x), x)


POOL_OPS: dict[str, SeqOpFactory] = {
    "mean": lambda width: MeanPool(),
    "max": lambda width: MaxPool(),
    "attention": lambda width: AttentionPool(width),
}
"""Time pooling candidates: ``factory(width)``, (B, T, W) -> (B, W)."""
