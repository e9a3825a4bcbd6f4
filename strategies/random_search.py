"""Random search through NNI's multi-trial ``Random`` strategy.

Each trial is one architecture sampled uniformly from the space, trained from scratch by the
shared evaluator in its own process, started by NNI's manager and local training service;
trials and their per-epoch validation UA appear in the NNI web UI. ``dedup`` is on: no
architecture is trained twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nni.nas.strategy import Strategy

    from .search import SearchConfig


def build(config: SearchConfig) -> Strategy:
    from nni.nas.strategy import Random

    return Random(dedup=True, seed=config.seed)
