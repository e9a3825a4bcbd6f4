"""The explicit strategy registry: name -> how to build it and how it runs.

``oneshot`` strategies train a supernet in this process (DARTS, ENAS, GumbelDARTS);
``multi`` strategies train one sampled architecture per trial through NNI's manager (Random,
RegularizedEvolution, TPE). Every one of them is trained and scored by the same evaluator
(:mod:`strategies.evaluator`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from . import darts, enas, random_search

if TYPE_CHECKING:
    from nni.nas.strategy import Strategy

    from .search import SearchConfig

__all__ = ["StrategySpec", "STRATEGIES", "get_strategy"]


@dataclass(frozen=True)
class StrategySpec:
    """How one NAS strategy is built and run."""

    name: str  # registry key, used on the command line and in run folders
    kind: Literal["oneshot", "multi"]  # supernet in-process, or one trial per architecture
    build: Callable[[SearchConfig], Strategy]  # factory from the search config
    description: str  # one line for --help and reports
    sampling: bool = False  # one-shot strategy that trains one sampled path per step (ENAS)


def _gumbel(config: SearchConfig) -> Strategy:
    from nni.nas.strategy import GumbelDARTS

    return GumbelDARTS(arc_learning_rate=config.arc_learning_rate, gradient_clip_val=config.gradient_clip,
                       warmup_epochs=config.warmup_epochs)


def _evolution(config: SearchConfig) -> Strategy:
    from nni.nas.strategy import RegularizedEvolution

    population = max(2, min(config.trials // 2, 20))
    return RegularizedEvolution(population_size=population, sample_size=max(2, population // 2),
                                dedup=True, seed=config.seed)


def _tpe(config: SearchConfig) -> Strategy:
    from nni.nas.strategy import TPE

    return TPE()


STRATEGIES: dict[str, StrategySpec] = {
    "darts": StrategySpec("darts", "oneshot", darts.build, "DARTS, first order (NNI) or second order (ours)"),
    "enas": StrategySpec("enas", "oneshot", enas.build, "ENAS: RL controller over a weight-sharing supernet",
                         sampling=True),
    "random": StrategySpec("random", "multi", random_search.build, "random search, one trial per architecture"),
    "gumbel_darts": StrategySpec("gumbel_darts", "oneshot", _gumbel, "GumbelDARTS (NNI)"),
    "evolution": StrategySpec("evolution", "multi", _evolution, "regularized evolution (NNI), one trial each"),
    "tpe": StrategySpec("tpe", "multi", _tpe, "TPE (NNI), one trial per architecture"),
}


def get_strategy(name: str) -> StrategySpec:
    """The registered strategy ``name``; a clear error lists the others."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; available: {', '.join(STRATEGIES)}") from None
