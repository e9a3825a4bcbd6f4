"""Faster forwards for the plain modules of a model while it trains (CPU): :func:`accelerate`.

A model of :mod:`ser_space` is made of stock PyTorch modules. While it trains on a CPU,
:func:`accelerate` gives some of its module instances a faster forward that computes the
same function, and :func:`restore` takes them away again (the classes, parameters and
state dict never change; an accelerated model is saved, copied and loaded as a plain one):

``Stem``
    the input and the stem's output in channels-last memory on CPU (same values): oneDNN's
    depthwise convolutions, 1x1 convolutions and poolings run several times faster in it,
    and every later CNN op inherits the layout (docs/performance.md).
dilated depthwise convolutions (``dil_conv``)
    at stride == dilation an undilated convolution of the strided sub-grid, at stride 1 and
    dilation 2 (channels-last CPU maps with even sides) of the four parity sub-grids stacked
    on the batch axis (:func:`subgrid_mode`): oneDNN's dilated depthwise backward pass is
    about 10x slower on a 2-core CPU.
the cells' output dropout (``CellPostprocessor.dropout``)
    the CPU training mask from 16 random bits per element, kept as bools (3x faster on
    the op than ``nn.Dropout``'s float draw); the same distribution up to ``p`` rounded to
    a multiple of 1/65536.

Nothing here runs unless the fast path is on (:func:`ser_space.fast.enabled`): an accelerated
module checks the switch at every call and takes its plain forward when it is off.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import MethodType
from typing import Any

import torch
from torch import nn

from ..cells import CellPostprocessor, Stem
from .kernels import batch_to_space, is_channels_last, space_to_batch, subgrids
from .switch import enabled

__all__ = ["accelerate", "restore", "accelerated", "is_accelerated", "subgrid_mode"]

_MARK = "_ser_fast_forwards"
"""Instance attribute listing the forwards :func:`accelerate` set on a module."""


def accelerate(model: nn.Module) -> nn.Module:
    """Give ``model``'s modules their fast forwards (in place; returns ``model``).

    A no-op when the fast path is off, and for modules that already have them.
    """
    if not enabled():
        return model
    for module in model.modules():
        if _MARK in module.__dict__:
            continue
        if isinstance(module, Stem):
            _set(module, "forward", _stem_forward)
        elif isinstance(module, CellPostprocessor) and type(module.dropout) is nn.Dropout:
            if _MARK not in module.dropout.__dict__:
                _set(module.dropout, "forward", _dropout_forward)
        elif _is_dilated_depthwise(module):
            _set(module, "_conv_forward", _depthwise_conv_forward)
    return model


def restore(model: nn.Module) -> nn.Module:
    """Take :func:`accelerate`'s forwards away again (in place; returns ``model``)."""
    for module in model.modules():
        for name in module.__dict__.pop(_MARK, ()):
            module.__dict__.pop(name, None)
    return model


def is_accelerated(model: nn.Module) -> bool:
    """Whether any module of ``model`` has a fast forward."""
    return any(_MARK in module.__dict__ for module in model.modules())


@contextmanager
def accelerated(model: nn.Module) -> Iterator[nn.Module]:
    """``with accelerated(model): ...``: :func:`accelerate` for the block, then :func:`restore`."""
    accelerate(model)
    try:
        yield model
    finally:
        restore(model)


def _set(module: nn.Module, name: str, function: Any) -> None:
    module.__dict__[name] = MethodType(function, module)
    module.__dict__[_MARK] = (*module.__dict__.get(_MARK, ()), name)


# --------------------------------------------------------------------------------------
# the stem: channels-last on CPU
# --------------------------------------------------------------------------------------


def _stem_forward(self: Stem, x: torch.Tensor) -> torch.Tensor:
    if not enabled() or x.device.type != "cpu" or x.dim() != 4:
        return nn.Sequential.forward(self, x)
    if not is_channels_last(x):
        # in channels-last strides from the start, so the convolution and the batch norm run in it
        # too (PyTorch keeps a 1-channel NCHW input, which counts as both layouts, in NCHW;
        # converting their output instead cost 2.5x the stem's time)
        x = torch.empty_like(x, memory_format=torch.channels_last).copy_(x)
    return nn.Sequential.forward(self, x).contiguous(memory_format=torch.channels_last)


# --------------------------------------------------------------------------------------
# dilated depthwise convolutions on sub-grids
# --------------------------------------------------------------------------------------


def _is_dilated_depthwise(module: nn.Module) -> bool:
    return (type(module) is nn.Conv2d and module.groups == module.in_channels == module.out_channels
            and module.dilation != (1, 1))


def subgrid_mode(conv: nn.Conv2d, input: torch.Tensor) -> str | None:
    """How a dilated depthwise convolution can run undilated on sub-grids of ``input``.

    ``"strided"``: stride == dilation (DARTS' ``dil_conv`` at stride 2) with the padding a
    multiple of it: every tap reads a row and a column of the same parity, so the op is the
    undilated convolution of ``input[..., ::s, ::s]`` with padding ``padding / s``::

        conv(x, w, stride 2, dilation 2, pad p) == conv(x[:, :, ::2, ::2], w, pad p / 2)

    ``"space_to_batch"``: stride 1, dilation 2, even sides: the undilated convolution of the
    four parity grids (:func:`~ser_space.fast.kernels.space_to_batch`) with padding
    ``padding / 2``, interleaved back. ``None``: neither applies.
    """
    (dilation, dilation_w), (stride, stride_w) = conv.dilation, conv.stride
    pad, pad_w = conv.padding if isinstance(conv.padding, tuple) else (-1, -1)
    if not (dilation > 1 and dilation == dilation_w and stride == stride_w and pad == pad_w
            and pad % dilation == 0 and conv.padding_mode == "zeros" and input.dim() == 4):
        return None
    if stride == dilation and _same_size(conv, input, pad):
        return "strided"
    if stride == 1 and dilation == 2 and input.size(2) % 2 == 0 and input.size(3) % 2 == 0:
        return "space_to_batch"
    return None


def _same_size(conv: nn.Conv2d, input: torch.Tensor, pad: int) -> bool:
    # The sub-grid convolution gives ceil(n / s) per side; so must the dilated one.
    (k, _), s, d = conv.kernel_size, conv.stride[0], conv.dilation[0]
    return all((n + 2 * pad - d * (k - 1) - 1) // s + 1 == -(-n // s) for n in input.shape[2:])


def _depthwise_conv_forward(self: nn.Conv2d, input: torch.Tensor, weight: torch.Tensor,
                            bias: torch.Tensor | None) -> torch.Tensor:
    mode = subgrid_mode(self, input) if enabled() else None
    stride, pad = self.stride[0], self.padding[0]
    if mode == "strided":
        (grid,) = subgrids(input, ((0, 0),), stride)
        return nn.functional.conv2d(grid, weight, bias, padding=pad // stride, groups=self.groups)
    if (mode == "space_to_batch" and input.device.type == "cpu"
            and input.is_contiguous(memory_format=torch.channels_last)):
        y = nn.functional.conv2d(space_to_batch(input), weight, bias, padding=pad // 2, groups=self.groups)
        return batch_to_space(y, input.size(0))
    return nn.Conv2d._conv_forward(self, input, weight, bias)


# --------------------------------------------------------------------------------------
# the cells' output dropout
# --------------------------------------------------------------------------------------


def _dropout_forward(self: nn.Dropout, input: torch.Tensor) -> torch.Tensor:
    if (not enabled() or not self.training or self.inplace or not 0.0 < self.p < 1.0 or input.device.type != "cpu"
            or not input.is_floating_point()):
        return nn.Dropout.forward(self, input)
    return _FastDropout.apply(input, self.p)


class _FastDropout(torch.autograd.Function):
    """``x * mask / (1 - p)``, ``mask`` kept where 16 random bits fall above ``p`` (a bool mask)."""

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
