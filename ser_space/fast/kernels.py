"""Fused CPU building blocks of the DARTS supernet (speed and memory only; same functions).

PyTorch evaluates a DARTS mixed op as dozens of separate passes over full-size maps, each
kept for the backward pass; on a 2-core CPU with the supernet's few channels (8-32) the
step is bound by that memory traffic and by oneDNN's cost per call. These autograd
functions compute the same values with fewer passes and keep less:

:func:`depthwise_conv`
    ``F.conv2d(x, w, groups=C)`` whose backward computes the weight gradient of a
    ``k x 5`` kernel at stride 1 as two ``k x 3`` ones (oneDNN's kernels for width 3 are
    several times faster), and keeps ``x`` only when the weight needs a gradient.
:func:`pointwise_bn`, :func:`pointwise_bns`
    ``[depthwise](ReLU?(BN(conv1x1(z, w))))`` in training mode: batch statistics from the
    moments of ``z`` (below), so the 1x1 convolution writes the normalised output in one
    call; with a following depthwise convolution its input is recomputed in the backward
    pass instead of kept. ``pointwise_bns`` takes several such terms of one map size (a
    node's separable convolutions) and batches their small algebra.
:func:`mixed_sum`
    A DARTS node, ``sum_t w_t BN_t(conv1x1(z_t, W_t)) + sum_u w_u T_u``: each candidate
    that ends in ``1x1 conv -> BN`` is one convolution whose kernel carries its
    normalisation and weight, added into the node by oneDNN's fused conv + add; its
    backward reads the node's gradient directly, and the weights' gradients fall out of
    the moments it needs anyway.

Every function expects channels-last CPU tensors (float32; float64 works too, without
oneDNN's fused convolutions) in training mode (BN with batch statistics);
:class:`ser_space.fast.cell.DartsMixedCell` only calls them then. tests/test_kernels.py checks
values and gradients against the plain PyTorch modules.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "depthwise_conv",
    "pointwise_bn",
    "pointwise_bns",
    "mixed_sum",
    "ConvTerm",
    "pixel_rows",
    "space_to_batch",
    "batch_to_space",
    "subgrids",
    "is_channels_last",
]

_CL = torch.channels_last


def pixel_rows(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """A (pixels / k, k C) view of a channels-last map (B, C, H, W); ``k`` divides the pixels."""
    b, c, h, w = x.shape
    pixels = b * h * w
    k = math.gcd(pixels, 1 << max(0, (128 // c).bit_length() - 1))
    return x.permute(0, 2, 3, 1).reshape(pixels // k, k * c), k


def _channel_sums(rows: torch.Tensor, k: int) -> torch.Tensor:
    # column sums of a pixel_rows view, folded from (k C,) to (C,)
    return rows.sum(0).view(k, -1).sum(0)


def _cl(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=_CL)


def _grids_as_map(y: torch.Tensor, batch: int) -> torch.Tensor:
    # (4 B, C, H / 2, W / 2) sub-grids -> a (B, H / 2, 2, W / 2, 2, C) view in map order
    _, c, h2, w2 = y.shape
    return y.permute(0, 2, 3, 1).reshape(2, 2, batch, h2, w2, c).permute(2, 3, 0, 4, 1, 5)


def _add_from_grid_(out: torch.Tensor, y: torch.Tensor) -> None:
    # out (B, C, H, W) += batch_to_space(y) through a view of out; both channels-last
    b, c, h, w = out.shape
    out.permute(0, 2, 3, 1).view(b, h // 2, 2, w // 2, 2, c).add_(_grids_as_map(y, b))


def space_to_batch(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (4 B, C, H / 2, W / 2): the four parity sub-grids on the batch axis.

    Grid ``(a, b)`` (``x[..., a::2, b::2]``) is batch block ``2 a + b``. A dilation-2
    convolution of ``x`` equals the undilated one of every sub-grid (channels-last copy).
    """
    b, c, h, w = x.shape
    return (x.permute(0, 2, 3, 1).reshape(b, h // 2, 2, w // 2, 2, c)
            .permute(2, 4, 0, 1, 3, 5).reshape(4 * b, h // 2, w // 2, c).permute(0, 3, 1, 2))


def batch_to_space(y: torch.Tensor, batch: int) -> torch.Tensor:
    """Inverse of :func:`space_to_batch` (a copy)."""
    _, c, h2, w2 = y.shape
    return _grids_as_map(y, batch).reshape(batch, 2 * h2, 2 * w2, c).permute(0, 3, 1, 2)


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether a 4-D map is stored channels-last, channels innermost.

    A 1-channel NCHW map also passes ``is_contiguous(memory_format=channels_last)`` (a size-1
    dimension's stride does not count), and PyTorch's operators keep it NCHW; here it does
    not count as channels-last.
    """
    return x.dim() == 4 and x.is_contiguous(memory_format=_CL) and x.stride(1) == 1


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    return _CL if is_channels_last(x) else torch.contiguous_format


class _SubGrids(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, offsets: tuple[tuple[int, int], ...], step: int) -> tuple[torch.Tensor, ...]:
        ctx.shape, ctx.offsets, ctx.step = x.shape, offsets, step
        ctx.memory_format = _memory_format(x)
        return tuple(x[:, :, row::step, col::step].contiguous(memory_format=ctx.memory_format)
                     for row, col in offsets)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        step = ctx.step
        grad = None
        for (row, col), g in zip(ctx.offsets, grads):
            if g is None:
                continue
            if grad is None:
                grad = torch.empty(ctx.shape, dtype=g.dtype, device=g.device,
                                   memory_format=ctx.memory_format).zero_()
            grad[:, :, row::step, col::step] += g
        return grad, None, None


def subgrids(x: torch.Tensor, offsets: Sequence[tuple[int, int]], step: int = 2) -> tuple[torch.Tensor, ...]:
    """``x[:, :, r::step, c::step]`` for each ``(r, c)`` in ``offsets``: copies in ``x``'s memory format.

    The same values as the slices; the gradient is one map in ``x``'s memory format too (the
    slices' own backward builds contiguous NCHW maps, which made every later element-wise
    operator on a channels-last gradient several times slower; docs/performance.md).
    """
    return _SubGrids.apply(x, tuple((int(r), int(c)) for r, c in offsets), int(step))


# --------------------------------------------------------------------------------------
# depthwise convolution
# --------------------------------------------------------------------------------------


def _conv_backward(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int],
                   padding: tuple[int, int], dilation: tuple[int, int], groups: int,
                   mask: tuple[bool, bool]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
        grad, x, weight, None, list(stride), list(padding), list(dilation), False, [0, 0], groups,
        [mask[0], mask[1], False])
    return grad_x, grad_w


def _splits_wide_kernel(weight: torch.Tensor, stride: tuple[int, int], padding: tuple[int, int],
                        dilation: tuple[int, int]) -> bool:
    return weight.size(3) == 5 and stride[1] == 1 and dilation[1] == 1 and padding[1] == 2


def _shifted(grad: torch.Tensor, by: int) -> torch.Tensor:
    """``grad`` moved ``by`` columns to the left (right if negative), zeros coming in; channels-last."""
    out = torch.empty_like(grad, memory_format=_CL)
    width = grad.size(3)
    if by > 0:
        out[:, :, :, : width - by].copy_(grad[:, :, :, by:])
        out[:, :, :, width - by:].zero_()
    else:
        out[:, :, :, -by:].copy_(grad[:, :, :, : width + by])
        out[:, :, :, :-by].zero_()
    return out


def _depthwise_weight_grad(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                           stride: tuple[int, int], padding: tuple[int, int],
                           dilation: tuple[int, int]) -> torch.Tensor:
    groups = weight.size(0)
    if not _splits_wide_kernel(weight, stride, padding, dilation):
        return _conv_backward(grad, x, weight, stride, padding, dilation, groups, (False, True))[1]
    # Tap j of a width-5 kernel (padding 2) reads column w + j - 2; tap t of a width-3 one
    # (padding 1, the same output width) reads w + t - 1. With the gradient moved one
    # column left (g[w + 1] at w, zero at the end) the narrow kernel's taps 0, 1 are the
    # wide one's taps 0, 1; moved one column right, its taps 1, 2 are taps 3, 4. Its tap 2
    # in the first call is tap 2 less the one term the shift dropped, g[0] x[0] summed
    # down column 0: a 5 x 1 kernel's gradient on that column.
    narrow = weight[:, :, :, :3].contiguous()
    pad = (padding[0], 1)
    left, right = _shifted(grad, 1), _shifted(grad, -1)
    first = _conv_backward(left, x, narrow, stride, pad, dilation, groups, (False, True))[1]
    second = _conv_backward(right, x, narrow, stride, pad, dilation, groups, (False, True))[1]
    column = weight[:, :, :, :1].contiguous()
    edge = _conv_backward(_cl(grad[:, :, :, :1]), _cl(x[:, :, :, :1]), column, stride, (padding[0], 0),
                          dilation, groups, (False, True))[1]
    return torch.cat([first[:, :, :, :2], first[:, :, :, 2:] + edge, second[:, :, :, 1:]], dim=3)


def _depthwise_backward(grad: torch.Tensor, x: torch.Tensor | None, x_shape: torch.Size,
                        weight: torch.Tensor, conv: tuple[tuple[int, int], ...], need_x: bool,
                        need_w: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    stride, padding, dilation = conv
    groups = weight.size(0)
    grad = _cl(grad)
    if need_w and x is not None and not _splits_wide_kernel(weight, stride, padding, dilation):
        return _conv_backward(grad, x, weight, stride, padding, dilation, groups, (need_x, True))
    grad_x = grad_w = None
    if need_x:
        # the input's values are not read for the input gradient, only its shape
        shape_only = x if x is not None else torch.empty(x_shape, dtype=grad.dtype, device=grad.device,
                                                         memory_format=_CL)
        grad_x = _conv_backward(grad, shape_only, weight, stride, padding, dilation, groups, (True, False))[0]
    if need_w:
        grad_w = _depthwise_weight_grad(grad, x, weight, stride, padding, dilation)
    return grad_x, grad_w


class _DepthwiseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int],
                padding: tuple[int, int], dilation: tuple[int, int]) -> torch.Tensor:
        ctx.conv = (stride, padding, dilation)
        ctx.x_shape = x.shape
        # the input is only needed for the weight gradient
        ctx.save_for_backward(x if ctx.needs_input_grad[1] else None, weight)
        return F.conv2d(x, weight, None, stride, padding, dilation, weight.size(0))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        grad_x, grad_w = _depthwise_backward(grad, x, ctx.x_shape, weight, ctx.conv,
                                             ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        return grad_x, grad_w, None, None, None


def depthwise_conv(x: torch.Tensor, weight: torch.Tensor, stride: int = 1, padding: int = 0,
                   dilation: int = 1) -> torch.Tensor:
    """``F.conv2d(x, weight, stride=..., padding=..., dilation=..., groups=channels)``."""
    return _DepthwiseConv.apply(x, weight, (stride, stride), (padding, padding), (dilation, dilation))


# --------------------------------------------------------------------------------------
# batch norm of a 1x1 convolution, from the second moments of its input
# --------------------------------------------------------------------------------------
#
# For y = W z (a 1x1 convolution, W: C x Cin) the batch statistics of y follow from the
# sums s = sum_p z_p and the Gram matrix G = sum_p z_p z_p^T of its input (one read of z,
# oneDNN's 1x1 weight-gradient kernel for G):
#
#     mean_y = W s / n        E[y_c^2] = (W G W^T)_cc / n        var_y = E[y^2] - mean_y^2
#
# so w * BN(y) = K z + bias with K = diag(w gamma rstd) W is one convolution that writes
# the normalised, weighted output directly (y itself is never stored). Backward, with the
# upstream gradient g and the cross moments H = sum_p g_p z_p^T (one more read):
#
#     sum_p g y = rowdot(W, H)            dL/dy = a g + b y + c  (a, b, c per channel)
#     dL/dW = diag(a) H + diag(b) W G + c s^T
#     dL/dz = (diag(a) W)^T g + (W^T diag(b) W) z + W^T c        (two 1x1 convolutions)
#
# The small matrices are computed in float64 from the maps' moments.


@functools.cache
def _fused_conv_works() -> bool:
    # oneDNN's fused convolutions (inductor's CPU kernels): probed once; PyTorch builds
    # without them (or where they fail) take separate convolution and add / ReLU
    try:
        x = torch.ones(1, 2, 2, 2).contiguous(memory_format=_CL)
        w = torch.ones(2, 2, 1, 1)
        relu = torch.ops.mkldnn._convolution_pointwise(x, w, None, [0, 0], [1, 1], [1, 1], 1, "relu", [], "")
        out = torch.zeros_like(relu)
        torch.ops.mkldnn._convolution_pointwise_(out, x, w, None, [0, 0], [1, 1], [1, 1], 1,
                                                 "add", 1.0, None, [], None)
        return bool(torch.equal(relu, out) and torch.equal(out, torch.full_like(out, 2.0)))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def _conv1x1(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None = None,
             relu: bool = False) -> torch.Tensor:
    """``[relu](conv1x1(x, kernel) + bias)``; kernel (C_out, C_in) of x's dtype."""
    kernel = kernel.reshape(*kernel.shape, 1, 1)
    if relu and x.dtype == torch.float32 and _fused_conv_works():
        return torch.ops.mkldnn._convolution_pointwise(x, kernel, bias, [0, 0], [1, 1], [1, 1], 1,
                                                       "relu", [], "")
    out = F.conv2d(x, kernel, bias)
    return out.clamp_min_(0.0) if relu else out


def _conv1x1_add_(out: torch.Tensor, x: torch.Tensor, kernel: torch.Tensor,
                  bias: torch.Tensor | None = None) -> torch.Tensor:
    """``out += conv1x1(x, kernel) + bias`` (one fused pass where oneDNN offers it)."""
    kernel = kernel.reshape(*kernel.shape, 1, 1)
    if out.dtype == torch.float32 and out.is_contiguous(memory_format=_CL) and _fused_conv_works():
        return torch.ops.mkldnn._convolution_pointwise_(out, x, kernel, bias, [0, 0], [1, 1], [1, 1], 1,
                                                        "add", 1.0, None, [], None)
    return out.add_(F.conv2d(x, kernel, bias))


def _cross(g: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``sum_p g_p z_p^T`` (C_g x C_z, the maps' dtype) over every pixel of two maps of one size."""
    shape = torch.empty(g.size(1), z.size(1), 1, 1, dtype=z.dtype)
    return _conv_backward(g, z, shape, (1, 1), (0, 0), (1, 1), 1, (False, True))[1].view(g.size(1), z.size(1))


def _norm_affine(norm: nn.Module | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    if norm is None or not norm.affine:
        return None, None
    return norm.weight, norm.bias


_EXACT_RATIO = 1e-3
"""Statistics from moments only where var >= this x their rounding scale (float32: ~1e-4 relative)."""


class _Group:
    """``T`` terms ``w_t * BN_t(W_t z_t)`` with one input width, their small algebra batched.

    Everything here is (T, ...) float64 and tiny (C <= 128 channels): the statistics, the
    scaled kernels and biases of the forward pass, the coefficients of the backward pass.
    The maps themselves (z_t, g_t) are only read by oneDNN kernels.
    """

    def __init__(self, inputs: Sequence[torch.Tensor], kernels: Sequence[torch.Tensor],
                 norms: Sequence[nn.Module], weights: Sequence[torch.Tensor] | None) -> None:
        z = inputs[0]
        self.dtype = z.dtype
        self.count = z.size(0) * z.size(2) * z.size(3)
        self.kernel = torch.stack([w.detach().reshape(w.size(0), -1) for w in kernels]).double()
        self.sums = torch.stack([_channel_sums(*pixel_rows(x)) for x in inputs]).double()
        self.gram = torch.stack([_cross(x, x) for x in inputs]).double()
        n = self.count
        self.mean = (self.kernel @ self.sums.unsqueeze(-1)).squeeze(-1) / n
        square = ((self.kernel @ self.gram) * self.kernel).sum(-1) / n
        self.var = (square - self.mean * self.mean).clamp_min_(0.0)
        # The moments carry float32 rounding of the size of sum |W| |G| |W|; where the
        # variance is not well above it (a nearly constant channel, or one that cancels
        # large inputs) it is computed from y = W z itself, two-pass.
        scale = ((self.kernel.abs() @ self.gram.abs()) * self.kernel.abs()).sum(-1) / n
        self.exact = (self.var < _EXACT_RATIO * scale).any(-1).tolist()
        if any(self.exact):
            for t in [t for t, flag in enumerate(self.exact) if flag]:
                y = F.conv2d(inputs[t], kernels[t].detach().to(z.dtype)).double()
                var, mean = torch.var_mean(y, dim=(0, 2, 3), correction=0)
                self.mean[t], self.var[t] = mean, var
        eps = {norm.eps for norm in norms}
        eps_value = eps.pop() if len(eps) == 1 else torch.tensor([norm.eps for norm in norms]).double()[:, None]
        self.rstd = torch.rsqrt(self.var + eps_value)
        affine = [_norm_affine(norm) for norm in norms]
        self.affine = any(g is not None for g, _ in affine)
        if self.affine:
            ones, zeros = torch.ones(self.mean.size(1)), torch.zeros(self.mean.size(1))
            self.gamma = torch.stack([ones if g is None else g.detach() for g, _ in affine]).double()
            self.beta = torch.stack([zeros if b is None else b.detach() for _, b in affine]).double()
        self.weight = None if weights is None else torch.stack([w.detach() for w in weights]).double()
        gain = self.rstd if not self.affine else self.rstd * self.gamma
        if self.weight is not None:
            gain = gain * self.weight[:, None]
        self.gain = gain
        shift = -self.mean * gain
        if self.affine:
            shift = shift + self.beta * (1.0 if self.weight is None else self.weight[:, None])
        self.shift = shift
        _update_running(norms, self.mean, self.var, n)

    def scaled_kernels(self) -> torch.Tensor:
        """(T, C, C_in), the maps' dtype: ``w_t * BN_t(W_t z) = scaled_t z + shift_t``."""
        return (self.gain.unsqueeze(-1) * self.kernel).to(self.dtype)

    def backward(self, cross: torch.Tensor, sum_grad: torch.Tensor) -> dict[str, torch.Tensor]:
        """Gradients from ``cross`` (T, C, C_in) = sum_p g_t z_t^T and ``sum_grad`` (C,) or (T, C)."""
        n = self.count
        sum_grad_y = (self.kernel * cross).sum(-1)
        sum_grad_xhat = self.rstd * (sum_grad_y - self.mean * sum_grad)
        value = sum_grad_xhat * self.gamma + self.beta * sum_grad if self.affine else sum_grad_xhat
        w = 1.0 if self.weight is None else self.weight[:, None]
        a = self.gain
        b = -a * self.rstd * sum_grad_xhat / n
        c = -a * sum_grad / n - b * self.mean
        kernel_t = self.kernel.transpose(1, 2)
        return {
            "weight": value.sum(-1),
            "gamma": w * sum_grad_xhat,
            "beta": w * sum_grad * torch.ones_like(sum_grad_xhat),
            "kernel": (a.unsqueeze(-1) * cross + b.unsqueeze(-1) * (self.kernel @ self.gram)
                       + c.unsqueeze(-1) * self.sums.unsqueeze(1)).to(self.dtype),
            # dL/dz_t = scaled_t^T g_t + conv(z_t, self_kernel_t) + input_bias_t
            "self_kernel": (kernel_t @ (b.unsqueeze(-1) * self.kernel)).to(self.dtype),
            "input_bias": (kernel_t @ c.unsqueeze(-1)).squeeze(-1).to(self.dtype),
        }

    def exact_backward(self, t: int, grad: torch.Tensor, z: torch.Tensor,
                       kernel: torch.Tensor) -> dict[str, torch.Tensor]:
        """Term ``t``'s gradients through y = W z itself, for the terms ``exact`` flags.

        Where the moments cancel (see ``__init__``) the backward formulas from them would
        too; this is plain batch norm backward on the recomputed ``y``.
        """
        n = self.count
        weight = kernel.detach().to(grad.dtype)
        y = F.conv2d(z, weight)
        shape = (1, -1, 1, 1)
        xhat = (y - self.mean[t].to(y.dtype).view(shape)) * self.rstd[t].to(y.dtype).view(shape)
        sum_grad = grad.sum((0, 2, 3)).double()
        sum_grad_xhat = (grad * xhat).sum((0, 2, 3)).double()
        gamma = self.gamma[t] if self.affine else torch.ones_like(sum_grad)
        beta = self.beta[t] if self.affine else torch.zeros_like(sum_grad)
        w = 1.0 if self.weight is None else self.weight[t]
        gain = (w * gamma * self.rstd[t]).to(y.dtype).view(shape)
        grad_y = gain * (grad - (sum_grad / n).to(y.dtype).view(shape)
                         - xhat * (sum_grad_xhat / n).to(y.dtype).view(shape))
        grad_z, grad_kernel = _conv_backward(_cl(grad_y), z, weight, (1, 1), (0, 0), (1, 1), 1, (True, True))
        return {"weight": (gamma * sum_grad_xhat + beta * sum_grad).sum(), "gamma": w * sum_grad_xhat,
                "beta": w * sum_grad, "kernel": grad_kernel, "input": grad_z}


def _update_running(norms: Sequence[nn.Module], mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
    tracked = [(t, norm) for t, norm in enumerate(norms)
               if norm.track_running_stats and norm.running_mean is not None]
    if not tracked:
        return
    dtype = norms[0].running_mean.dtype if norms[0].running_mean is not None else torch.float32
    means = mean.to(dtype).unbind(0)
    variances = (var * (count / max(count - 1, 1))).to(dtype).unbind(0)
    with torch.no_grad():
        counters = [norm.num_batches_tracked for _, norm in tracked if norm.num_batches_tracked is not None]
        if counters:
            torch._foreach_add_(counters, 1)
        momenta = {norm.momentum for _, norm in tracked}
        if len(momenta) == 1 and None not in momenta:
            factor = momenta.pop()
            running_means = [norm.running_mean for _, norm in tracked]
            running_vars = [norm.running_var for _, norm in tracked]
            torch._foreach_mul_(running_means, 1.0 - factor)
            torch._foreach_add_(running_means, [means[t] for t, _ in tracked], alpha=factor)
            torch._foreach_mul_(running_vars, 1.0 - factor)
            torch._foreach_add_(running_vars, [variances[t] for t, _ in tracked], alpha=factor)
            return
        for t, norm in tracked:   # cumulative averages (momentum None) or mixed momenta
            factor = (1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum)
            norm.running_mean.mul_(1.0 - factor).add_(means[t], alpha=factor)
            norm.running_var.mul_(1.0 - factor).add_(variances[t], alpha=factor)


def _cross_and_transpose(grad: torch.Tensor, z: torch.Tensor, scaled: torch.Tensor,
                         need_z: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``sum_p g_p z_p^T`` (float64) and ``scaled^T g`` (the first part of dL/dz) in one call."""
    weight = scaled.view(*scaled.shape, 1, 1)
    part, cross = _conv_backward(grad, z, weight, (1, 1), (0, 0), (1, 1), 1, (need_z, True))
    return cross.view(scaled.shape).double(), part


def _input_grad_(part: torch.Tensor, z: torch.Tensor, grads: dict[str, torch.Tensor], t: int) -> torch.Tensor:
    """``part + conv(z, self_kernel_t) + input_bias_t`` in place: dL/dz_t."""
    return _conv1x1_add_(_cl(part), z, grads["self_kernel"][t], grads["input_bias"][t])


class _PointwiseBN(torch.autograd.Function):
    """``T`` terms ``[dw_t](relu?(BN_t(conv1x1(z_t, weight_t))))`` of one map size, their small
    algebra batched; with ``dw_t`` the ReLU output is recomputed in the backward pass, not kept."""

    @staticmethod
    def forward(ctx: Any, layout: tuple[Any, ...], *tensors: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        # layout: (norms, relu, per-term depthwise (stride, padding, dilation) or None);
        # tensors: per term z, weight, gamma, beta, depthwise weight (None where absent)
        norms, relu, dw_convs = layout
        count = len(norms)
        zs, weights = tensors[0::5], tensors[1::5]
        group = _Group(zs, weights, norms, None)
        kernels, shifts = group.scaled_kernels(), group.shift.to(zs[0].dtype)
        ctx.scaled = [(kernels[t], shifts[t]) for t in range(count)]
        ctx.layout, ctx.group = layout, group
        outputs, kept = [], []
        for t in range(count):
            h = _conv1x1(zs[t], *ctx.scaled[t], relu=relu)
            dw_weight = tensors[5 * t + 4]
            if dw_weight is None:
                outputs.append(h)
                kept.append(h if relu else None)
            else:
                stride, padding, dilation = dw_convs[t]
                outputs.append(F.conv2d(h, dw_weight, None, stride, padding, dilation, dw_weight.size(0)))
                kept.append(None)
        ctx.save_for_backward(*tensors, *kept)
        return tuple(outputs)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        norms, relu, dw_convs = ctx.layout
        count = len(norms)
        saved = ctx.saved_tensors
        needs = ctx.needs_input_grad[1:]
        group = ctx.group
        result: list[torch.Tensor | None] = [None] * (5 * count)
        moments: dict[int, tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]] = {}
        for t in range(count):
            z, weight, _, _, dw_weight = saved[5 * t: 5 * t + 5]
            grad, h = grads[t], saved[5 * count + t]
            if dw_weight is not None:
                h = _conv1x1(z, *ctx.scaled[t], relu=relu)          # recomputed, not kept
                grad, result[5 * t + 4] = _depthwise_backward(grad, h, h.shape, dw_weight, dw_convs[t], True,
                                                              needs[5 * t + 4])
            grad = _cl(grad)
            if relu:
                grad = torch.ops.aten.threshold_backward(grad, h, 0.0)
            del h
            if group.exact[t]:
                exact = group.exact_backward(t, grad, z, weight)
                result[5 * t: 5 * t + 4] = exact["input"], exact["kernel"], exact["gamma"], exact["beta"]
            else:
                cross, part = _cross_and_transpose(grad, z, ctx.scaled[t][0], needs[5 * t])
                moments[t] = (cross, part, _channel_sums(*pixel_rows(grad)).double())
        if moments:
            # terms whose statistics were exact take zero moments here; their rows are not used
            zero_cross = torch.zeros_like(next(iter(moments.values()))[0])
            zero_sum = torch.zeros_like(next(iter(moments.values()))[2])
            backward = group.backward(torch.stack([moments[t][0] if t in moments else zero_cross
                                                   for t in range(count)]),
                                      torch.stack([moments[t][2] if t in moments else zero_sum
                                                   for t in range(count)]))
            for t, (_, part, _) in moments.items():
                z = saved[5 * t]
                grad_z = _input_grad_(part, z, backward, t) if needs[5 * t] else None
                result[5 * t: 5 * t + 4] = grad_z, backward["kernel"][t], backward["gamma"][t], backward["beta"][t]
        for t in range(count):
            z, weight, gamma, beta, _ = saved[5 * t: 5 * t + 5]
            result[5 * t] = result[5 * t] if needs[5 * t] else None
            result[5 * t + 1] = result[5 * t + 1].view_as(weight) if needs[5 * t + 1] else None
            result[5 * t + 2] = result[5 * t + 2].to(z.dtype) if gamma is not None and needs[5 * t + 2] else None
            result[5 * t + 3] = result[5 * t + 3].to(z.dtype) if beta is not None and needs[5 * t + 3] else None
        return (None, *result)


def pointwise_bns(terms: Sequence[tuple[torch.Tensor, torch.Tensor, nn.Module, nn.Conv2d | None]],
                  relu: bool = False) -> tuple[torch.Tensor, ...]:
    """:func:`pointwise_bn` of several ``(z, weight, norm, depthwise)`` terms on maps of one size.

    The same values as one call per term; the statistics, scaled kernels and backward
    coefficients of all the terms are computed together (one set of small tensor operations
    instead of one per term), which is most of what a term costs on small maps.
    """
    if not terms:
        return ()
    norms, dw_convs, tensors = [], [], []
    for z, weight, norm, depthwise in terms:
        gamma, beta = _norm_affine(norm)
        norms.append(norm)
        if depthwise is None:
            dw_convs.append(None)
            tensors.extend((z, weight, gamma, beta, None))
        else:
            dw_convs.append((depthwise.stride, depthwise.padding, depthwise.dilation))
            tensors.extend((z, weight, gamma, beta, depthwise.weight))
    return _PointwiseBN.apply((tuple(norms), relu, tuple(dw_convs)), *tensors)


def pointwise_bn(z: torch.Tensor, weight: torch.Tensor, norm: nn.Module, relu: bool = False,
                 depthwise: nn.Conv2d | None = None) -> torch.Tensor:
    """``depthwise(relu(norm(F.conv2d(z, weight))))``, ``norm`` in training mode.

    Without ``relu`` (False) or ``depthwise`` (None) those steps are left out. ``norm`` is a
    ``BatchNorm2d``; its running statistics are updated as its own forward would. With a
    ``depthwise`` convolution (groups = channels) its input is recomputed in the backward
    pass instead of kept.
    """
    return pointwise_bns([(z, weight, norm, depthwise)], relu)[0]


# --------------------------------------------------------------------------------------
# the mixed sum of a DARTS node
# --------------------------------------------------------------------------------------


@dataclass
class ConvTerm:
    """``weight * norm(conv1x1(input, kernel))`` for :func:`mixed_sum`.

    ``grid``: ``input`` holds :func:`space_to_batch` sub-grids of the node's map (a dilated
    convolution evaluated on sub-grids); the term is added back in the node's layout.
    """

    weight: torch.Tensor        # 0-dim, the candidate's softmax weight
    input: torch.Tensor         # (B', C_in, H', W') channels-last
    kernel: torch.Tensor        # (C, C_in, 1, 1)
    norm: nn.Module             # BatchNorm2d over C channels, training mode
    grid: bool = False


def _term_groups(specs: Sequence[tuple[int, bool, nn.Module]]) -> list[list[int]]:
    # conv terms by input width (FactorizedReduce reads twice the channels)
    groups: dict[int, list[int]] = {}
    for t, (width, _, _) in enumerate(specs):
        groups.setdefault(width, []).append(t)
    return list(groups.values())


class _MixedSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, layout: tuple[Any, ...], *tensors: torch.Tensor) -> torch.Tensor:
        # layout: (shape, conv term specs (input width, grid, norm), number of plain terms);
        # tensors: per conv term weight, input, kernel; per plain term weight, map.
        shape, specs, num_plain = layout
        needs = ctx.needs_input_grad[1:]
        b, c, h, w = shape
        num_conv = len(specs)
        weights, inputs, kernels = tensors[0:3 * num_conv:3], tensors[1:3 * num_conv:3], tensors[2:3 * num_conv:3]
        groups = []
        scaled: list[torch.Tensor | None] = [None] * num_conv
        shift_total = torch.zeros(c, dtype=torch.float64)
        for members in _term_groups(specs):
            group = _Group([inputs[t] for t in members], [kernels[t] for t in members],
                           [specs[t][2] for t in members], [weights[t] for t in members])
            groups.append((members, group))
            for row, kernel in zip(members, group.scaled_kernels().unbind(0)):
                scaled[row] = kernel
            shift_total += group.shift.sum(0)
        out: torch.Tensor | None = None
        for t in range(num_conv):
            if specs[t][1]:
                continue
            if out is None:
                out = _conv1x1(inputs[t], scaled[t], shift_total.to(inputs[t].dtype))
            else:
                out = _conv1x1_add_(out, inputs[t], scaled[t])
        shift_pending = out is None
        pos = 3 * num_conv
        saved_plain: list[torch.Tensor | None] = []
        for _ in range(num_plain):
            weight, value = tensors[pos], _cl(tensors[pos + 1])
            if out is None:
                out = torch.mul(value, weight)
            else:
                out.addcmul_(value, weight)
            # the map is only needed for its weight's gradient
            saved_plain.extend((weight, value if needs[pos] else None))
            pos += 2
        if out is None:
            dtype = (inputs[0] if num_conv else tensors[pos - 1]).dtype
            out = torch.zeros(b, h, w, c, dtype=dtype).permute(0, 3, 1, 2)
        for t in range(num_conv):
            if specs[t][1]:
                _add_from_grid_(out, _conv1x1(inputs[t], scaled[t]))
        if shift_pending:
            rows, k = pixel_rows(out)
            rows.add_(shift_total.to(out.dtype).repeat(k))
        ctx.layout, ctx.groups, ctx.scaled = layout, groups, scaled
        ctx.save_for_backward(*tensors[:3 * num_conv], *saved_plain)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        shape, specs, num_plain = ctx.layout
        saved = ctx.saved_tensors
        needs = ctx.needs_input_grad[1:]
        num_conv = len(specs)
        grad = _cl(grad)
        rows, k = pixel_rows(grad)
        sum_grad = _channel_sums(rows, k).double()
        grad_grid = _cl(space_to_batch(grad)) if any(grid for _, grid, _ in specs) else None
        grads: list[torch.Tensor | None] = [None] * (3 * num_conv)
        for members, group in ctx.groups:
            if not any(any(needs[3 * t: 3 * t + 3]) for t in members):
                continue
            parts = []
            crosses = []
            for t in members:
                g = grad_grid if specs[t][1] else grad
                cross, part = _cross_and_transpose(g, saved[3 * t + 1], ctx.scaled[t], needs[3 * t + 1])
                crosses.append(cross)
                parts.append(part)
            result = group.backward(torch.stack(crosses), sum_grad)
            for row, (t, part) in enumerate(zip(members, parts)):
                weight, z, kernel = saved[3 * t: 3 * t + 3]
                if group.exact[row]:
                    exact = group.exact_backward(row, grad_grid if specs[t][1] else grad, z, kernel)
                    d_weight, d_input, d_kernel = exact["weight"], exact["input"], exact["kernel"]
                else:
                    d_weight, d_kernel = result["weight"][row], result["kernel"][row]
                    d_input = _input_grad_(part, z, result, row) if needs[3 * t + 1] else None
                if needs[3 * t]:
                    grads[3 * t] = d_weight.to(weight.dtype).reshape(weight.shape)
                if needs[3 * t + 1]:
                    grads[3 * t + 1] = d_input
                if needs[3 * t + 2]:
                    grads[3 * t + 2] = d_kernel.view_as(kernel)
        pos = 3 * num_conv
        for _ in range(num_plain):
            weight, value = saved[pos], saved[pos + 1]
            grads.append(torch.dot(rows.reshape(-1), pixel_rows(value)[0].reshape(-1)).reshape(weight.shape)
                         if needs[pos] else None)
            grads.append(grad * weight if needs[pos + 1] else None)
            pos += 2
        return (None, *grads)


def mixed_sum(shape: Sequence[int], conv_terms: Sequence[ConvTerm],
              plain_terms: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """``sum_t t.weight * t.norm(conv1x1(t.input, t.kernel)) + sum_u w_u * T_u``.

    Parameters
    ----------
    shape
        (B, C, H, W) of the node.
    conv_terms
        Candidates that end in a 1x1 convolution and a training-mode ``BatchNorm2d``; their
        norms' running statistics are updated as the norms' own forward would. The norms
        must be affine-free (the supernet's, ``SpaceConfig.affine``): their scale and shift
        would get no gradient here, so an affine one is refused.
    plain_terms
        ``(weight, map)`` pairs: any other candidate's output (poolings, skip), already
        computed, shaped like the node.
    """
    specs = []
    tensors: list[torch.Tensor] = []
    for term in conv_terms:
        if term.norm.affine:
            raise ValueError("mixed_sum takes affine-free batch norms; use the module for an affine one")
        specs.append((term.kernel.size(1), term.grid, term.norm))
        tensors.extend((term.weight, term.input, term.kernel))
    for weight, value in plain_terms:
        tensors.extend((weight, value))
    return _MixedSum.apply((tuple(shape), tuple(specs), len(plain_terms)), *tensors)
