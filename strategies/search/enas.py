"""ENAS (Pham et al. 2018) through NNI's one-shot ``ENAS`` strategy.

The controller's reward is the per-batch validation accuracy that the shared evaluator logs
as ``val_acc_step``. Runs on pytorch-lightning < 2.1 (see strategies.compat).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nni.nas.strategy import Strategy

    from .config import SearchConfig


def build_enas(config: SearchConfig) -> Strategy:
    """NNI's ENAS, rewarded by the shared evaluator's per-batch validation accuracy."""
    from nni.nas.strategy import ENAS

    return ENAS(reward_metric_name="val_acc_step", warmup_epochs=config.warmup_epochs)
