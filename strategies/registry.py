"""The explicit strategy registry: name -> how to build it and how it runs.

``oneshot`` strategies train a supernet in this process (DARTS, ENAS, GumbelDARTS,
RandomOneShot); ``multi`` strategies train one sampled architecture per trial through NNI's
manager (Random, RegularizedEvolution, TPE, GridSearch, PolicyBasedRL). Every one of them is
trained and scored by the same evaluator (:mod:`strategies.evaluator`). NNI's Proxyless cannot
search this space (:data:`REFUSED` says why).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from . import darts, enas, random_search

if TYPE_CHECKING:
    from nni.nas.strategy import Strategy

    from .search import SearchConfig

__all__ = ["StrategySpec", "STRATEGIES", "REFUSED", "get_strategy"]


@dataclass(frozen=True)
class StrategySpec:
    """How one NAS strategy is built and run."""

    name: str  # registry key, used on the command line and in run folders
    kind: Literal["oneshot", "multi"]  # supernet in-process, or one trial per architecture
    build: Callable[[SearchConfig], Strategy]  # factory from the search config
    description: str  # one line for --help and reports
    sampling: bool = False  # one-shot strategy that trains one sampled path per step (ENAS)
    random_paths: bool = False  # one-shot strategy with nothing to export: SearchConfig.candidates random paths scored


def _gumbel(config: SearchConfig) -> Strategy:
    from nni.nas.strategy import GumbelDARTS

    return GumbelDARTS(arc_learning_rate=config.arc_learning_rate, gradient_clip_val=config.gradient_clip,
                       warmup_epochs=config.warmup_epochs)


def _random_oneshot(config: SearchConfig) -> Strategy:
    from nni.nas.strategy import RandomOneShot

    return RandomOneShot()


def _evolution(config: SearchConfig) -> Strategy:
    from nni.nas.strategy import RegularizedEvolution

    population = max(2, min(config.trials // 2, 20))
    return RegularizedEvolution(population_size=population, sample_size=max(2, population // 2),
                                dedup=True, seed=config.seed)


def _tpe(config: SearchConfig) -> Strategy:
    from nni.nas.strategy import TPE

    return TPE()


def _grid(config: SearchConfig) -> Strategy:
    from nni.nas.strategy import GridSearch

    # shuffled: the first trials spread over the space instead of varying the last choice only
    return GridSearch(shuffle=True, seed=config.seed)


def _policy_rl(config: SearchConfig) -> Strategy:
    from nni.nas.strategy import PolicyBasedRL

    # NNI's default updates the policy every 20 trials; a budget of a few trials would never
    # update it, so the policy learns from every few trials (at most 20)
    return PolicyBasedRL(samples_per_update=max(1, min(20, config.trials // 4)))


STRATEGIES: dict[str, StrategySpec] = {
    "darts": StrategySpec("darts", "oneshot", darts.build, "DARTS, first order (NNI) or second order (ours)"),
    "enas": StrategySpec("enas", "oneshot", enas.build, "ENAS: RL controller over a weight-sharing supernet",
                         sampling=True),
    "random": StrategySpec("random", "multi", random_search.build, "random search, one trial per architecture"),
    "gumbel_darts": StrategySpec("gumbel_darts", "oneshot", _gumbel, "GumbelDARTS (NNI)"),
    "random_oneshot": StrategySpec("random_oneshot", "oneshot", _random_oneshot,
                                   "random search with weight sharing (NNI RandomOneShot): a supernet trained on "
                                   "random paths, the best of --candidates random paths on validation exported",
                                   sampling=True, random_paths=True),
    "evolution": StrategySpec("evolution", "multi", _evolution, "regularized evolution (NNI), one trial each"),
    "tpe": StrategySpec("tpe", "multi", _tpe, "TPE (NNI), one trial per architecture"),
    "grid": StrategySpec("grid", "multi", _grid, "grid search (NNI), shuffled, one trial per architecture"),
    "policy_rl": StrategySpec("policy_rl", "multi", _policy_rl,
                              "policy-gradient RL controller (NNI PolicyBasedRL), one trial per architecture"),
}


#: NNI 3.0 strategies that cannot search SERSpace, and why (``get_strategy`` refuses them).
REFUSED: dict[str, str] = {
    "proxyless": (
        "NNI 3.0's Proxyless cannot search SERSpace: it has no hook for NNI's Cell, so it samples a cell's "
        "inputs apart from their ops, and a reduction cell's inputs differ in size (it fails in the first step); "
        "use darts or gumbel_darts (differentiable) or enas or random_oneshot (one sampled path per step)"),
}


def get_strategy(name: str) -> StrategySpec:
    """The registered strategy ``name``; a clear error lists the others, or says why NNI's cannot work."""
    if name in REFUSED:
        raise ValueError(f"strategy {name!r}: {REFUSED[name]}")
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; available: {', '.join(STRATEGIES)}") from None
