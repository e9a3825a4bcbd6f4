"""DARTS (Liu et al. 2019) through NNI's one-shot ``DARTS`` strategy, with the paper's settings; and GumbelDARTS.

Defaults follow ../shared/PAPER.md section 5: architecture Adam lr 3e-4, betas (0.5, 0.999),
weight decay 1e-3 (NNI's own values), gradient clipping 5 on the weight step. First order
is NNI's algorithm, run by :class:`strategies.search.darts_step.LeanDARTS` (NNI's strategy, with a
step that computes only the gradients it uses); ``order="second"`` selects
:class:`strategies.search.unrolled.SecondOrderDARTS` (the unrolled step with the correct finite
difference). ``smoothing`` > 0 makes either SDARTS-RS (random smoothing of the architecture
weights in the weight steps; :mod:`strategies.search.darts_step`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nni.nas.strategy import Strategy

    from .config import SearchConfig


def build_darts(config: SearchConfig) -> Strategy:
    """NNI's DARTS, first order (:class:`~strategies.search.darts_step.LeanDARTS`) or second order."""
    kwargs = dict(arc_learning_rate=config.arc_learning_rate, gradient_clip_val=config.gradient_clip,
                  warmup_epochs=config.warmup_epochs, smoothing=config.smoothing)
    if config.order == "second":
        from .unrolled import SecondOrderDARTS

        return SecondOrderDARTS(**kwargs)
    from .darts_step import LeanDARTS

    return LeanDARTS(**kwargs)


def build_gumbel_darts(config: SearchConfig) -> Strategy:
    """NNI's GumbelDARTS: DARTS with Gumbel-softmax samples of the architecture weights."""
    from nni.nas.strategy import GumbelDARTS

    return GumbelDARTS(arc_learning_rate=config.arc_learning_rate, gradient_clip_val=config.gradient_clip,
                       warmup_epochs=config.warmup_epochs)
