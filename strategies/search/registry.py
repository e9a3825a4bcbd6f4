"""The explicit strategy registry: name -> how to build it and how it runs.

``oneshot`` strategies train a supernet in this process (DARTS, ENAS, GumbelDARTS,
RandomOneShot); ``multi`` strategies train one sampled architecture per trial through NNI's
manager (Random, RegularizedEvolution, TPE, GridSearch, PolicyBasedRL). One way to add a
strategy: a ``build_<name>(config) -> nni Strategy`` function in its family's module and one
:class:`StrategySpec` entry below; the CLI, the tests and ``ser-nas compare`` read this dict. Every one of them is
trained and scored by the same evaluator (:mod:`strategies.evaluator`). NNI's Proxyless cannot
search this space (:data:`REFUSED` says why).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from .darts import build_darts, build_gumbel_darts
from .enas import build_enas
from .multi_trial import build_evolution, build_grid, build_policy_rl, build_tpe
from .random_search import build_random, build_random_oneshot

if TYPE_CHECKING:
    from nni.nas.strategy import Strategy

    from .config import SearchConfig

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


STRATEGIES: dict[str, StrategySpec] = {spec.name: spec for spec in (
    StrategySpec("darts", "oneshot", build_darts, "DARTS, first order (NNI) or second order (ours)"),
    StrategySpec("enas", "oneshot", build_enas, "ENAS: RL controller over a weight-sharing supernet", sampling=True),
    StrategySpec("random", "multi", build_random, "random search, one trial per architecture"),
    StrategySpec("gumbel_darts", "oneshot", build_gumbel_darts, "GumbelDARTS (NNI)"),
    StrategySpec("random_oneshot", "oneshot", build_random_oneshot,
                 "random search with weight sharing (NNI RandomOneShot): a supernet trained on random paths, the "
                 "best of --candidates random paths on validation exported", sampling=True, random_paths=True),
    StrategySpec("evolution", "multi", build_evolution, "regularized evolution (NNI), one trial each"),
    StrategySpec("tpe", "multi", build_tpe, "TPE (NNI), one trial per architecture"),
    StrategySpec("grid", "multi", build_grid, "grid search (NNI), shuffled, one trial per architecture"),
    StrategySpec("policy_rl", "multi", build_policy_rl,
                 "policy-gradient RL controller (NNI PolicyBasedRL), one trial per architecture"),
)}


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
