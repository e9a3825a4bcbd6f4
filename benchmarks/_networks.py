"""Named reference networks that are not points of ``SERSpace``, trained by the toolkit's own evaluator.

Not a library module: ``benchmarks/recipe_ablation.py`` imports it by path. A row of that
script with ``"network": NAME`` trains ``NETWORKS[NAME]`` on the same folds, features and
training recipe as every other row (:func:`strategies.pipeline.fold_datasets`,
:func:`strategies.pipeline.train_model`, :func:`strategies.evaluator.evaluate_model`), so the
only difference to a row of the space is the network.

- ``plain_cnn``: issue 30's four-block CNN: 3x3 convolution, batch norm, ReLU, 2x2 max pooling;
  16-32-64-64 channels; global average pooling; dropout 0.3; a linear classifier (61 k
  parameters for 7 classes).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from ser_space import SpaceConfig, count_parameters
from strategies.data.prepare import prepare_data
from strategies.evaluator import evaluate_model
from strategies.pipeline import adapt_space, fold_datasets, summarize_folds
from strategies.recipes import RunConfig
from strategies.training import train_model


class PlainCNN(nn.Module):
    """Blocks of 3x3 convolution, batch norm, ReLU and 2x2 max pooling, then the global mean."""

    def __init__(self, num_classes: int, channels: tuple[int, ...] = (16, 32, 64, 64), in_channels: int = 1,
                 dropout: float = 0.3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width in channels:
            layers += [nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2)]
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x).mean(dim=(2, 3))))


NETWORKS = {"plain_cnn": lambda space: PlainCNN(space.num_classes, in_channels=space.in_channels)}


def run_network(name: str, config: RunConfig, run_dir: Path) -> dict[str, Any]:
    """Train network ``name`` on every fold of ``config`` with its retraining recipe and test it once.

    Writes ``run_dir/summary.json`` in the layout of a run folder's (``per_fold`` with test UA,
    WA, F1, parameters, seconds), which the ablation reads like any other run.
    """
    prepared = prepare_data(config.data, progress=False)
    space: SpaceConfig = adapt_space(config.space, prepared)
    folds = prepared.folds if config.folds is None else [prepared.folds[i] for i in config.folds]
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps({**config.to_dict(), "network": name}, indent=1))
    metrics = []
    for fold in folds:
        datasets, _ = fold_datasets(prepared, fold)
        started = time.perf_counter()
        pl.seed_everything(config.retrain.seed, workers=True)
        model = NETWORKS[name](space)
        parameters = count_parameters(model)
        model, history, selected = train_model(model, config.retrain, datasets["train"], datasets["val"],
                                               space.num_classes)
        test = evaluate_model(model, DataLoader(datasets["test"], batch_size=64, shuffle=False), space.num_classes)
        entry = next((e for e in history if e["epoch"] == selected), history[-1] if history else {})
        metrics.append({"fold": fold.index, "test_ua": test["ua"], "test_wa": test["wa"], "test_f1": test["f1"],
                        "val_ua": entry.get("val_ua"), "parameters": parameters, "search_seconds": 0.0,
                        "retrain_seconds": time.perf_counter() - started, "history": history})
    summary = {"method": f"network-{name}", "dataset": config.data.dataset,
               "per_fold": [{k: m[k] for k in ("fold", "test_ua", "test_wa", "test_f1", "val_ua", "parameters",
                                               "search_seconds", "retrain_seconds")} for m in metrics],
               **summarize_folds(metrics)}
    (run_dir / "history.json").write_text(json.dumps({str(m["fold"]): m["history"] for m in metrics}))
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
