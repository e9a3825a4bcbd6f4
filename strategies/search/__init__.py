"""The search concern: which strategy searches ``SERSpace``, with what budget, and how it runs.

- :mod:`~strategies.search.config`: :class:`SearchConfig`, the budget rule (:func:`equal_budget`)
  and the space a strategy samples from (:func:`searched_space`);
- :mod:`~strategies.search.registry`: the one registry of strategies (:data:`STRATEGIES`), each
  built by a function of its family's module (:mod:`~strategies.search.darts` with its step
  :mod:`~strategies.search.darts_step` and second-order gradient :mod:`~strategies.search.unrolled`,
  :mod:`~strategies.search.enas`, :mod:`~strategies.search.random_search`,
  :mod:`~strategies.search.multi_trial`);
- :mod:`~strategies.search.split`: which speakers steer the architecture;
- :mod:`~strategies.search.oneshot`: per-epoch validation and genotypes of one-shot searches;
- :mod:`~strategies.search.runner`: :func:`run_search`, the one-shot and multi-trial runners.

It sits above the data, the evaluator and the NNI plumbing and below the applications
(docs/architecture.md).
"""

from .config import SearchConfig, equal_budget, searched_space
from .registry import REFUSED, STRATEGIES, StrategySpec, get_strategy
from .runner import SearchResult, run_search

__all__ = ["SearchConfig", "SearchResult", "run_search", "equal_budget", "searched_space", "STRATEGIES", "REFUSED",
           "StrategySpec", "get_strategy"]
