"""Paired comparisons of two methods over the same folds.

On a corpus of a few speakers the test UA of one method moves far more between folds (one
held-out speaker each) than between methods, so a ranking by mean +- std reads noise. Paired
over folds, the fold's difficulty cancels: :func:`paired_difference` averages each side over
its seeds per fold first, then gives the mean difference, its 95 % t interval over the folds
and the Wilcoxon signed-rank p (6 folds cannot give p below 0.03: read the interval).
``ser-nas compare`` and ``benchmarks/recipe_ablation.py`` report it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = ["fold_means", "paired_difference", "paired_text"]


def fold_means(values: Iterable[tuple[Any, float]]) -> dict[str, float]:
    """``{fold: mean}`` of ``(fold, value)`` pairs (a method's runs: several seeds per fold)."""
    folds: dict[str, list[float]] = {}
    for fold, value in values:
        folds.setdefault(str(fold), []).append(float(value))
    return {fold: float(np.mean(v)) for fold, v in folds.items()}


def paired_difference(row: Mapping[str, float], base: Mapping[str, float]) -> dict[str, Any] | None:
    """``row - base`` over the folds both have (``{fold: value averaged over seeds}`` each).

    Returns ``{"folds", "mean", "ci95": [low, high], "wilcoxon_p"}``, or None with fewer than
    two common folds.
    """
    from scipy import stats

    common = sorted(set(row) & set(base), key=lambda f: (len(f), f))
    if len(common) < 2:
        return None
    d = np.asarray([row[f] - base[f] for f in common], dtype=np.float64)
    half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    p = float(stats.wilcoxon(d).pvalue) if np.any(d != 0) else 1.0
    return {"folds": len(d), "mean": float(d.mean()), "ci95": [float(d.mean() - half), float(d.mean() + half)],
            "wilcoxon_p": p}


def paired_text(diff: Mapping[str, Any] | None) -> str:
    """``+0.024 [-0.032, +0.080], p = 0.31`` for a :func:`paired_difference` result; empty for None."""
    if diff is None:
        return ""
    return f"{diff['mean']:+.3f} [{diff['ci95'][0]:+.3f}, {diff['ci95'][1]:+.3f}], p = {diff['wilcoxon_p']:.2f}"
