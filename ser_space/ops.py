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

Op modules follow pt.darts: small, each documented by its diagram.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .kernels import avg_pool, batch_to_space, is_channels_last, space_to_batch, subgrids

__all__ = [
    "AvgPool2d",
    "DepthwiseConv2d",
    "ReLUConvBN",
    "SepConv",
    "DilConv",
    "FactorizedReduce",
    "Zero",
    "Identity",
    "Dropout",
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


class DepthwiseConv2d(nn.Conv2d):
    """A depthwise convolution (``groups == channels``) that computes dilated kernels faster.

    The same module as ``nn.Conv2d(channels, channels, k, stride, padding, dilation,
    groups=channels, bias=False)`` (same parameters, state dict and output up to float
    rounding); only how a dilated kernel is evaluated changes:

    - **stride == dilation** (DARTS' ``dil_conv`` at stride 2), with ``padding`` a multiple
      of the stride: every tap reads a row and a column of the same parity, so the op is an
      undilated ``k x k`` convolution of the strided sub-grid ``x[..., ::s, ::s]`` with
      padding ``padding / s``. A quarter of the work, and oneDNN's fast depthwise kernels
      instead of its dilated backward pass (10x slower on a 2-core CPU, see
      docs/performance.md)::

          y = conv(x, w, stride 2, dilation 2, pad p) == conv(x[:, :, ::2, ::2], w, pad p / 2)

    - **stride 1, dilation 2, channels-last on CPU, even height and width**: the four
      parity sub-grids of ``x`` are stacked on the batch axis (one copy), convolved
      undilated with padding ``padding / 2`` and interleaved back (space-to-batch).

    Every other case (and the GPU, where cuDNN has fast dilated kernels) is ``nn.Conv2d``'s.
    """

    def __init__(self, channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1) -> None:
        super().__init__(channels, channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=channels, bias=False)

    def subgrid(self, input: torch.Tensor) -> str | None:
        """How this dilated kernel can run undilated on sub-grids of ``input`` (any device).

        ``"strided"``: stride == dilation, on ``input[..., ::s, ::s]`` with padding
        ``padding / s``; ``"space_to_batch"``: stride 1, dilation 2, even sides, on the four
        parity grids (:func:`ser_space.kernels.space_to_batch`) with padding ``padding / 2``;
        ``None``: neither applies.
        """
        (dilation, dilation_w), (stride, stride_w) = self.dilation, self.stride
        pad, pad_w = self.padding if isinstance(self.padding, tuple) else (-1, -1)
        if not (dilation > 1 and dilation == dilation_w and stride == stride_w and pad == pad_w
                and pad % dilation == 0 and self.padding_mode == "zeros" and input.dim() == 4):
            return None
        if stride == dilation and self._same_size(input, pad):
            return "strided"
        if stride == 1 and dilation == 2 and input.size(2) % 2 == 0 and input.size(3) % 2 == 0:
            return "space_to_batch"
        return None

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor | None) -> torch.Tensor:
        mode = self.subgrid(input)
        stride, pad = self.stride[0], self.padding[0]
        if mode == "strided":
            (grid,) = subgrids(input, ((0, 0),), stride)
            return nn.functional.conv2d(grid, weight, bias, padding=pad // stride, groups=self.groups)
        if (mode == "space_to_batch" and input.device.type == "cpu"
                and input.is_contiguous(memory_format=torch.channels_last)):
            y = nn.functional.conv2d(space_to_batch(input), weight, bias, padding=pad // 2, groups=self.groups)
            return batch_to_space(y, input.size(0))
        return super()._conv_forward(input, weight, bias)

    def _same_size(self, input: torch.Tensor, pad: int) -> bool:
        # The sub-grid convolution gives ceil(n / s) per side; so must the dilated one.
        (k, _), s, d = self.kernel_size, self.stride[0], self.dilation[0]
        return all((n + 2 * pad - d * (k - 1) - 1) // s + 1 == -(-n // s) for n in input.shape[2:])


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
            DepthwiseConv2d(in_channels, kernel_size, stride=stride, padding=padding, dilation=dilation),
            nn.Conv2d(in_channels, out_channels, 1, padding=0, bias=False),
            nn.BatchNorm2d(out_channels, affine=affine),
        )

    def forward_activated(self, x: torch.Tensor) -> torch.Tensor:
        """The op on an input that already went through its leading ReLU.

        A DARTS supernet applies every candidate of an edge to the same state; the
        candidates that start with ReLU can share one ``relu(state)`` (see
        :class:`~ser_space.cells.DartsMixedCell`), which saves a full-size activation
        per op in memory and time. ``forward(x) == forward_activated(relu(x))``.
        """
        return self[3](self[2](self[1](x)))


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

    def forward_activated(self, x: torch.Tensor) -> torch.Tensor:
        """``forward(x) == forward_activated(relu(x))`` (see :meth:`DilConv.forward_activated`)."""
        return self[1](self[0].forward_activated(x))


class FactorizedReduce(nn.Module):
    """Halve height and width with two offset 1x1 convolutions (DARTS ``skip_connect`` at stride 2).

    ::

        x -> ReLU -+-> Conv(1x1, stride 2) on x ----------------+-> concat -> BN -> y
                   +-> Conv(1x1, stride 2) on x shifted by (1,1) +

    Each convolution gives half of ``out_channels``. The shifted branch pads one zero
    row and column at the end, so a side ``n`` becomes ``ceil(n / 2)`` on both branches.

    A strided 1x1 convolution reads only one parity sub-grid, so the forward pass takes
    the sub-grids ``x[::2, ::2]`` and ``x[1::2, 1::2]`` first and convolves them at
    stride 1 (the same values): half the copies, and it avoids a torch 2.13 CPU defect
    (the weight gradient of a stride-2 1x1 convolution in channels-last memory corrupts
    the heap with 2 threads, e.g. at batch 17 x 8 x 14 x 40; see docs/performance.md).

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
        even, odd = subgrids(x, ((0, 0), (1, 1)))
        if odd.shape != even.shape:
            # odd sides: the shifted branch's last row / column is the zero padding
            # (constant padding keeps the memory format)
            odd = nn.functional.pad(odd, (0, even.size(3) - odd.size(3), 0, even.size(2) - odd.size(2)))
        return self.bn(torch.cat([nn.functional.conv2d(even, self.conv_1.weight),
                                  nn.functional.conv2d(odd, self.conv_2.weight)], dim=1))


class AvgPool2d(nn.AvgPool2d):
    """``nn.AvgPool2d`` whose pass over a channels-last CPU map is a depthwise convolution.

    Same values to rounding (:func:`ser_space.kernels.avg_pool`: window sums by a kernel of
    ones, times the reciprocal window sizes), several times faster there at the cells' 8-16
    channels. Every other case (NCHW, GPU, autocast, ``ceil_mode``, ``divisor_override``,
    non-square windows) is ``nn.AvgPool2d``'s.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        kernel, stride, padding = (_square(v) for v in (self.kernel_size, self.stride, self.padding))
        if (None in (kernel, stride, padding) or self.ceil_mode or self.divisor_override is not None
                or input.device.type != "cpu" or input.dtype not in (torch.float32, torch.float64)
                or not is_channels_last(input) or torch.is_autocast_enabled("cpu")):
            return super().forward(input)
        return avg_pool(input, kernel, stride, padding, self.count_include_pad)


def _square(value: int | tuple[int, ...]) -> int | None:
    """``k`` for ``k`` or ``(k, k)``; None for a non-square value."""
    if isinstance(value, int):
        return value
    return value[0] if len(value) == 2 and value[0] == value[1] else None


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


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose CPU training pass draws its mask several times faster.

    PyTorch's CPU dropout draws one float per element (``bernoulli_``) and keeps a float
    mask for the backward pass; on the supernet's cell outputs that was 4 % of a DARTS
    step. Here each element takes 16 random bits (``randint``), is kept when they fall
    above ``p`` (``p`` is rounded to a multiple of 1/65536), and the backward pass keeps a
    bool mask (a quarter of the memory). Same distribution up to that rounding, same
    scaling ``1 / (1 - p)``, reproducible under ``torch.manual_seed``, and the same mask for
    a channels-last map as for its NCHW copy; every other case (evaluation, GPU, ``p`` of
    0 or 1, ``inplace``) is ``nn.Dropout``'s.

    ::

        x -> x * mask / (1 - p)      mask ~ Bernoulli(1 - p), one draw per element
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if (not self.training or self.inplace or not 0.0 < self.p < 1.0 or input.device.type != "cpu"
                or not input.is_floating_point()):
            return super().forward(input)
        return _FastDropout.apply(input, self.p)


class _FastDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, p: float) -> torch.Tensor:
        n = x.numel()
        threshold = min(32767, int(round(p * 65536)) - 32768)
        bits = torch.randint(-2**31, 2**31 - 1, ((n + 1) // 2,), dtype=torch.int32).view(torch.int16)[:n]
        # drawn in logical (NCHW) order: the same mask whatever x's memory layout, so a
        # channels-last model and an NCHW one drop the same elements
        mask = (bits >= threshold).view(x.shape)
        ctx.scale = 1.0 / (1.0 - p)
        ctx.save_for_backward(mask)
        return torch.mul(x, mask).mul_(ctx.scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (mask,) = ctx.saved_tensors
        return torch.mul(grad, mask).mul_(ctx.scale), None


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
    "avg_pool_3x3": lambda channels, stride, affine: AvgPool2d(
        3, stride=stride, padding=1, count_include_pad=False),
    # Identity at stride 1, FactorizedReduce at stride 2.
    "skip_connect": lambda channels, stride, affine: (
        Identity() if stride == 1 else FactorizedReduce(channels, channels, affine=affine)),
    "sep_conv_3x3": lambda channels, stride, affine: SepConv(channels, channels, 3, stride, 1, affine=affine),
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
