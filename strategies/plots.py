"""Figures for run folders and reports (matplotlib, no display; files written atomically)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ser_space.io import write_atomically

__all__ = ["plot_confusion", "plot_history"]


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def _save(fig: Any, path: str | Path) -> Path:
    return write_atomically(path, lambda h: fig.savefig(h, format="png", bbox_inches="tight"))


def plot_confusion(cm: np.ndarray, classes: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (recall per class) with the counts in each cell."""
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    fig = _figure(1.2 + 0.7 * len(classes), 1.0 + 0.7 * len(classes))
    ax = fig.add_subplot()
    ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{int(cm[i, j])}\n{norm[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def plot_history(history: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Training loss and validation UA / WA per epoch."""
    fig = _figure(6.0, 3.2)
    ax = fig.add_subplot()
    epochs = [e["epoch"] + 1 for e in history]
    for key, style in (("val_ua", "-o"), ("val_wa", "--s")):
        ax.plot(epochs, [e.get(key, np.nan) for e in history], style, markersize=3, label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation")
    ax.set_ylim(0, 1)
    twin = ax.twinx()
    twin.plot(epochs, [e.get("train_loss", np.nan) for e in history], ":", color="grey", label="train_loss")
    twin.set_ylabel("train loss")
    ax.legend(loc="lower right", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def plot_timeline(windows: Any, classes: Sequence[str], path: str | Path, title: str = "") -> Path:
    """The emotion over one recording: each class's probability per window (at the window's
    centre), windows with too little speech shaded and left out of the recording's answer."""
    fig = _figure(8.0, 3.2)
    ax = fig.add_subplot()
    centres = ((windows["start"] + windows["end"]) / 2).to_numpy()
    for name in classes:
        ax.plot(centres, windows[f"p_{name}"].to_numpy(), "-o", markersize=3, label=name)
    for start, end, used in zip(windows["start"], windows["end"], windows["used"]):
        if not used:
            ax.axvspan(start, end, color="grey", alpha=0.15, linewidth=0)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.set_title(title or "emotion over time (grey: too little speech, not used)", fontsize=9)
    return _save(fig, path)
