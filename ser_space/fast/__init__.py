"""The fast path of the SER space on CPU: every speed rewrite in one place, behind one switch.

The rest of :mod:`ser_space` is plain PyTorch: a found network is a stock model, and a
reader recognises every op. This subpackage makes training on a CPU several times
faster without changing what is computed (the same functions up to float rounding,
checked against NNI's supernet and plain PyTorch by tests/test_benchmarks.py,
tests/test_kernels.py and tests/test_fast.py):

:mod:`~ser_space.fast.cell`
    :class:`~ser_space.fast.cell.DartsMixedCell`, NNI's differentiable cell with a leaner
    forward (the cell of every DARTS-family supernet of ``SERSpace``); with the switch on,
    its nodes on CPU run through the fused kernels.
:mod:`~ser_space.fast.kernels`
    the fused autograd functions of those nodes (batch norms from moments, one convolution
    per candidate and node, depthwise convolutions with faster backward passes).
:mod:`~ser_space.fast.modules`
    :func:`accelerate`: faster forwards for a model's stem (channels-last memory),
    dilated depthwise convolutions (sub-grids) and cell dropout while it trains; the
    shared evaluator accelerates every model it trains and :func:`restore` removes them.

The switch: :func:`enabled`, :func:`set_enabled`, ``with switched(False): ...``, or
``SER_NAS_FAST=0`` in the environment. Off, everything runs as plain PyTorch (slower on
CPU; the same results up to rounding, and other dropout masks for the same seed).
Figures: docs/performance.md.
"""

from .modules import accelerate, accelerated, is_accelerated, restore
from .switch import ENV_VAR, enabled, set_enabled, switched

__all__ = ["ENV_VAR", "accelerate", "accelerated", "enabled", "is_accelerated", "restore", "set_enabled",
           "switched"]
