"""Train one fixed network with the shared evaluator, and choose which weights to keep.

:func:`train_model` is how every network the toolkit trains from scratch is trained: a found
architecture's retraining, a hand-designed baseline, a named network of a benchmark. It runs
the shared evaluator (:class:`~strategies.evaluator.SERModule` through NNI's ``Lightning``) and
keeps the weights the training config asks for: the last epoch's, the best validation
epoch's (:class:`KeepBest`), or their mean over the last epochs (:class:`AverageWeights`).
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Any

import pytorch_lightning as pl
import torch

from ser_space import fast

from .data.dataset import FeatureDataset
from .evaluator import SERModule, TrainConfig, make_lightning

logger = logging.getLogger(__name__)

__all__ = ["train_model", "KeepBest", "AverageWeights"]


class KeepBest(pl.Callback):
    """Keeps a copy of the weights of the epoch with the best validation UA."""

    def __init__(self, module: SERModule) -> None:
        self.module = module
        self.best_ua = -math.inf
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_epoch: int | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if not self.module.history:
            return
        entry = self.module.history[-1]
        ua = entry["val_ua"]
        if not math.isnan(ua) and ua > self.best_ua:
            self.best_ua = ua
            self.best_epoch = entry["epoch"]
            self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.module.model.state_dict().items()})


class AverageWeights(pl.Callback):
    """Running mean of the parameters at the ends of the epochs from ``first`` on (weight
    averaging over the tail of the schedule, as stochastic weight averaging does)."""

    def __init__(self, module: SERModule, first: int) -> None:
        self.module = module
        self.first = first
        self.count = 0
        self.mean: dict[str, torch.Tensor] | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if trainer.current_epoch < self.first:
            return
        params = {k: v.detach().cpu().clone() for k, v in self.module.model.named_parameters()}
        self.count += 1
        if self.mean is None:
            self.mean = params
        else:
            for name, value in params.items():
                self.mean[name] += (value - self.mean[name]) / self.count

    def apply(self, model: torch.nn.Module, train_dataset: FeatureDataset, batch_size: int) -> None:
        """Load the mean into ``model`` and recompute its batch-norm statistics on the training data."""
        from torch.utils.data import DataLoader

        assert self.mean is not None
        with torch.no_grad():
            for name, param in model.named_parameters():
                param.copy_(self.mean[name])
        # the averaged weights never ran: their batch-norm statistics come from one pass over
        # the (unaugmented) training utterances
        torch.optim.swa_utils.update_bn(DataLoader(train_dataset, batch_size=batch_size, shuffle=False), model)


def train_model(model: torch.nn.Module, config: TrainConfig, train_dataset: FeatureDataset,
                val_dataset: FeatureDataset, num_classes: int,
                trainer_kwargs: dict[str, Any] | None = None,
                progress: str | None = None) -> tuple[torch.nn.Module, list[dict[str, Any]], int]:
    """Train a fixed model with the shared evaluator; returns (model, history, selected epoch).

    ``progress`` names the epoch bar (shown inside :func:`strategies.progress.shown`)."""
    pl.seed_everything(config.seed, workers=True)
    module = SERModule.from_config(config, num_classes, train_dataset.labels.tolist(),
                                   level=getattr(train_dataset, "level", None))
    keep = KeepBest(module)
    callbacks: list[pl.Callback] = [keep]
    if config.average_last:
        average = AverageWeights(module, config.max_epochs - max(1, round(config.average_last * config.max_epochs)))
        callbacks.append(average)
    lightning = make_lightning(module, config, train_dataset, val_dataset, callbacks=callbacks, progress=progress,
                               **(trainer_kwargs or {}))
    lightning.evaluate(model)
    model = fast.restore(model.cpu())  # a plain PyTorch model again (SERModule accelerated it)
    selected = module.history[-1]["epoch"] if module.history else config.max_epochs - 1
    if config.model_selection == "best" and keep.best_state is not None:
        model.load_state_dict(keep.best_state)
        selected = int(keep.best_epoch or 0)
    if config.average_last and average.mean is not None:
        average.apply(model, train_dataset, config.batch_size)
        logger.info("kept the mean of the weights of the last %d epoch(s)", average.count)
    return model, module.history, selected
