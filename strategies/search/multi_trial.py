"""NNI's other multi-trial strategies: regularized evolution, TPE, grid search, policy-gradient RL.

Each trains one architecture per trial, through NNI's manager, as Random does
(:mod:`strategies.search.random_search`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nni.nas.strategy import Strategy

    from .config import SearchConfig


def build_evolution(config: SearchConfig) -> Strategy:
    """Regularized evolution, its population a fraction of the trials."""
    from nni.nas.strategy import RegularizedEvolution

    population = max(2, min(config.trials // 2, 20))
    return RegularizedEvolution(population_size=population, sample_size=max(2, population // 2),
                                dedup=True, seed=config.seed)


def build_tpe(config: SearchConfig) -> Strategy:
    """TPE over the space's choices."""
    from nni.nas.strategy import TPE

    return TPE()


def build_grid(config: SearchConfig) -> Strategy:
    """Grid search, shuffled: the first trials spread over the space instead of varying the last choice only."""
    from nni.nas.strategy import GridSearch

    return GridSearch(shuffle=True, seed=config.seed)


def build_policy_rl(config: SearchConfig) -> Strategy:
    """A policy-gradient controller; NNI's default updates the policy every 20 trials, which a budget
    of a few trials would never reach, so it learns from every few trials (at most 20)."""
    from nni.nas.strategy import PolicyBasedRL

    return PolicyBasedRL(samples_per_update=max(1, min(20, config.trials // 4)))
