"""Progress bars with an ETA for the long phases: folds, search epochs, retraining epochs, trials.

Bars are tqdm's, on stderr when it is a terminal, and shown only inside :func:`shown`
(``run_pipeline`` and ``run_compare`` open it unless ``progress=False``; the CLI's ``--quiet``
says so). Library calls and trial processes show none. Multi-trial searches show their
trials in the NNI web UI, not as a bar. While bars are shown, log lines go through tqdm so the
two never tear each other.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl

__all__ = ["shown", "enabled", "bar", "EpochBar"]

_SHOWN: contextvars.ContextVar[bool] = contextvars.ContextVar("ser_nas_progress", default=False)


@contextlib.contextmanager
def shown(flag: bool = True) -> Iterator[None]:
    """Show progress bars inside this block (``flag`` False: none, also in nested blocks)."""
    token = _SHOWN.set(bool(flag))
    try:
        if flag:
            from tqdm.contrib.logging import logging_redirect_tqdm

            with logging_redirect_tqdm():
                yield
        else:
            yield
    finally:
        _SHOWN.reset(token)


def enabled() -> bool:
    """Whether bars are shown here."""
    return _SHOWN.get()


def bar(total: int | None, desc: str, unit: str) -> Any:
    """A tqdm bar on stderr; it clears itself when closed. Disabled outside :func:`shown`, and
    when stderr is not a terminal (a log file or pipe gets the log lines, not bar redraws)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=None if enabled() else True, leave=False,
                file=sys.stderr, dynamic_ncols=True)


class EpochBar(pl.Callback):
    """One bar per training run: epochs done of ``max_epochs``, with the ETA, the last training loss
    and validation UA of ``module.history`` (the shared evaluator's per-epoch record)."""

    def __init__(self, desc: str, module: Any) -> None:
        self.desc = desc
        self.module = module
        self._bar: Any = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._bar = bar(trainer.max_epochs, self.desc, "epoch")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._bar is None:
            return
        history = getattr(self.module, "history", None)
        if history:
            last = history[-1]
            self._bar.set_postfix({k: f"{last[k]:.3f}" for k in ("train_loss", "val_ua") if k in last},
                                  refresh=False)
        self._bar.update(1)
        if self._bar.total is not None and self._bar.n >= self._bar.total:
            self._bar.refresh()  # the finished state is drawn even when epochs outran tqdm's redraw interval

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
