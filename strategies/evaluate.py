"""Score the models of a finished run on their test folds again (``ser-nas evaluate``).

The run's config says which corpus, features and folds it used; the data is prepared again
(from the cache when present) and each fold's saved model is scored on that fold's test
speakers with the normalisation stored in the model file. The result must equal the
recorded ``metrics.json`` figures: a check that a run folder is self-contained.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from .data.dataset import FeatureDataset
from .data.prepare import PreparedData, prepare_data
from .evaluator import evaluate_model
from .pipeline import split_dataset
from .recipes import RunConfig
from .predict import Predictor
from .reference import is_reference
from .runs import RunError, load_model_bundle, read_json

__all__ = ["evaluate_run", "finished_folds", "fold_models"]


def evaluate_run(run: str | Path, data_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Per finished fold: test UA / WA / F1 recomputed, beside the recorded test UA."""
    run = Path(run)
    if not run.is_dir():
        raise RunError(f"{run}: no such run folder")
    config = RunConfig.from_dict(read_json(run / "config.json"))
    if is_reference(config.baseline):
        raise RunError(f"{run}: a reference baseline ({config.baseline}) keeps no network to score again; "
                       f"its test figures are in fold-*/metrics.json")
    if not finished_folds(run):
        raise RunError(f"{run}: no finished fold (no fold-*/metrics.json)")
    prepared = prepare_data(config.data, data_dir=data_dir, progress=False)
    rows_out = []
    for index, recorded, predictor, dataset in fold_models(run, prepared):
        metrics = evaluate_model(predictor.model, DataLoader(dataset, batch_size=64), len(prepared.classes))
        rows_out.append({"fold": index, "test_ua": metrics["ua"], "test_wa": metrics["wa"], "test_f1": metrics["f1"],
                         "recorded_test_ua": recorded["test_ua"]})
    return rows_out


def finished_folds(run: Path) -> list[Path]:
    """The run's ``fold-*`` folders with a ``metrics.json``, by fold number."""
    return sorted((p for p in run.glob("fold-*") if (p / "metrics.json").is_file()),
                  key=lambda p: int(p.name.split("-")[1]))


def fold_models(run: Path, prepared: PreparedData) -> Iterator[tuple[int, dict[str, Any], Predictor, FeatureDataset]]:
    """Per finished fold of ``run``: (fold index, recorded metrics, saved network, its test split
    normalised as the network expects), checked against ``prepared``."""
    for folder in finished_folds(run):
        recorded = read_json(folder / "metrics.json")
        index = int(recorded["fold"])
        if index >= len(prepared.folds):
            raise RunError(f"{folder}: fold {index} does not exist in the prepared data")
        predictor = Predictor(load_model_bundle(folder / "model.pt"), folder / "model.pt")
        if list(predictor.classes) != list(prepared.classes):
            raise RunError(f"{folder / 'model.pt'}: classes {predictor.classes} differ from the data's "
                           f"{list(prepared.classes)}")
        dataset = split_dataset(prepared, prepared.rows(prepared.folds[index].test), predictor.normalizer)
        yield index, recorded, predictor, dataset
