"""Random search: NNI's multi-trial ``Random`` strategy, and with weight sharing, ``RandomOneShot``.

Each trial is one architecture sampled uniformly from the space, trained from scratch by the
shared evaluator in its own process, started by NNI's manager and local training service;
trials and their per-epoch validation UA appear in the NNI web UI. ``dedup`` is on: no
architecture is trained twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nni.nas.strategy import Strategy

    from .config import SearchConfig


def build_random(config: SearchConfig) -> Strategy:
    """NNI's Random: one trial per architecture, none twice."""
    from nni.nas.strategy import Random

    return Random(dedup=True, seed=config.seed)


def build_random_oneshot(config: SearchConfig) -> Strategy:
    """NNI's RandomOneShot: a supernet trained on random paths (the best of ``candidates`` random
    paths on validation is exported; strategies.search.oneshot)."""
    from nni.nas.strategy import RandomOneShot

    return RandomOneShot()
