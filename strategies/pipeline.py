"""Search -> retrain -> test, per speaker-independent fold, into one run folder.

For each selected fold of a prepared corpus:

1. **search** on the training speakers only: the strategy's weights learn on ``train``, its
   architecture choices (alphas, controller rewards, trial rankings) on ``val``, which holds
   other training speakers. The test speakers are not touched.
2. **retrain** the exported architecture from scratch on ``train``; the epoch (weights) kept
   is chosen on ``val`` (``model_selection``).
3. **test** once on the held-out speakers: UA, WA, macro F1, confusion matrix.

Run folder::

    <output_dir>/<time>-<dataset>-<strategy>/
      config.json  versions.json  summary.json  results.csv
      fold-<k>/  architecture.json  cells.png  search.json  retrain.csv  model.pt
                 metrics.json  confusion.png

A fold is built in a temporary sibling folder and renamed to ``fold-<k>`` when finished, so
an interrupted run keeps every finished fold intact; :func:`run_pipeline` with ``resume``
skips finished folds and redoes the rest.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from ser_space import (SpaceConfig, build_model, count_multiply_adds, count_parameters, draw_cells, export_architecture,
                       load_architecture, save_architecture, validate_architecture)
from ser_space.io import write_atomically

from . import compat
from .baselines import hand_designed_architecture
from .data.dataset import FeatureDataset
from .data.features import Normalizer, gain_level, standardise_per_speaker
from .data.folds import Fold
from .data.prepare import PreparedData, prepare_data
from .evaluator import evaluate_model
from .training import train_model
from .plots import plot_confusion, plot_history
from .threads import threads_for_run, use_threads
from .trials import relocate_experiments
from .progress import bar
from .recipes import RunConfig
from .progress import shown as progress_shown
from .reference import fit_reference, is_reference, parse_reference, reference_features
from .runs import RunError, new_run_dir, package_versions, read_json, save_model_bundle, write_json, writer_lock
from .search import SearchConfig, SearchResult, run_search
from .search.split import split_speakers

logger = logging.getLogger(__name__)

__all__ = ["run_pipeline", "run_fold", "fold_datasets", "adapt_space", "summarize_folds"]

def adapt_space(space: SpaceConfig, prepared: PreparedData) -> SpaceConfig:
    """The space config with the corpus's input shape and class count."""
    n_coefficients, frames = np.load(prepared.features_path, mmap_mode="r").shape[1:]
    changes: dict[str, Any] = {"n_mfcc": int(n_coefficients), "frames": int(frames),
                               "num_classes": len(prepared.classes)}
    changes["min_frames"] = min(space.min_frames, int(frames))
    changes["max_frames"] = max(space.max_frames, int(frames))
    return space.replace(**changes)


def fold_datasets(prepared: PreparedData, fold: Fold) -> tuple[dict[str, FeatureDataset], Normalizer]:
    """Train / val / test datasets of a fold, normalised with statistics of ``train`` only.

    With ``normalization = "per_speaker"`` every speaker (the validation and test speakers too)
    is standardised with its own utterances' statistics instead: no labels are read, but the
    test speaker's audio is (transductive; docs/features.md). With ``"per_utterance"`` every
    utterance is standardised with its own. The training split carries its gain level
    (:func:`~strategies.data.features.gain_level`) for gain augmentation.
    """
    rows = {part: prepared.rows(getattr(fold, part)) for part in ("train", "val", "test")}
    train_features = prepared.features()[rows["train"]]
    normalizer = Normalizer.fit(train_features, kind=prepared.config.features.normalization)
    datasets = {part: split_dataset(prepared, r, normalizer) for part, r in rows.items()}
    level = gain_level(prepared.config.features, normalizer, train_features, datasets["train"].speakers)
    if level is not None:
        datasets["train"].level = [float(v) for v in level]
    return datasets, normalizer


def split_dataset(prepared: PreparedData, rows: np.ndarray, normalizer: Normalizer) -> FeatureDataset:
    """Rows ``rows`` of ``prepared`` as a dataset, normalised as ``normalizer`` says (a
    ``per_speaker`` one: each speaker with its own statistics; a ``per_utterance`` one: each
    utterance with its own)."""
    speakers = prepared.manifest["speaker"].astype(str).to_numpy()[rows].tolist()
    return FeatureDataset(str(prepared.features_path), rows.tolist(), prepared.labels[rows].tolist(),
                          None if normalizer.mean is None else [float(v) for v in normalizer.mean],
                          None if normalizer.std is None else [float(v) for v in normalizer.std],
                          speakers=speakers, normalization=normalizer.kind)


def _select_folds(prepared: PreparedData, folds: tuple[int, ...] | None) -> list[Fold]:
    if folds is None:
        return list(prepared.folds)
    chosen = []
    for index in folds:
        if not 0 <= index < len(prepared.folds):
            raise RunError(f"fold {index} does not exist: {prepared.config.dataset} has "
                           f"{len(prepared.folds)} folds (0..{len(prepared.folds) - 1})")
        chosen.append(prepared.folds[index])
    return chosen


def _check_search_split(search: SearchConfig, prepared: PreparedData, folds: list[Fold]) -> None:
    """Every fold can be split as ``--arch-speakers`` / ``--rotate-arch-speakers`` ask (a one-line
    ``ValueError`` naming the flag otherwise; :mod:`strategies.search.split`)."""
    if search.arch_speakers is None and not search.rotate_arch_speakers:
        return
    speakers = prepared.manifest["speaker"].astype(str).to_numpy()
    for fold in folds:
        split_speakers(speakers[prepared.rows(fold.train)], speakers[prepared.rows(fold.val)], search.arch_speakers,
                       search.rotate_arch_speakers, what=f"fold {fold.index}")


def _architecture_file(config: RunConfig, fold: Fold) -> Path:
    """The architecture file fold ``fold`` retrains: ``config.architecture`` itself, or, when that
    is a run folder, the architecture that run found on the same fold.

    A run folder's fold must have finished and must have tested the same speakers: its search
    saw every other speaker, so on any other split it may have been steered by this fold's test
    speakers."""
    source = Path(config.architecture)
    if not source.is_dir():
        return source
    folder = source / f"fold-{fold.index}"
    path = folder / "architecture.json"
    if not path.is_file() or not (folder / "metrics.json").is_file():
        raise RunError(f"{source}: fold {fold.index} has no finished architecture ({folder.name}/architecture.json "
                       f"and metrics.json); run that fold there first or choose --folds")
    tested = read_json(folder / "metrics.json").get("test_speakers")
    if sorted(tested or []) != sorted(fold.test_speakers):
        raise RunError(f"{folder}: tested speakers {', '.join(tested or []) or 'unknown'}, not fold {fold.index}'s "
                       f"{', '.join(fold.test_speakers)}; its search may have seen this fold's test speakers")
    return path


def _architecture_for(config: RunConfig, space: SpaceConfig, source: Path | None, datasets: dict[str, FeatureDataset],
                      workdir: Path, trainer_kwargs: dict[str, Any] | None,
                      progress: str | None = None,
                      experiment_name: str | None = None) -> tuple[dict[str, Any], SearchResult | None]:
    """The fold's architecture: read from ``source`` (see :func:`_architecture_file`), the
    baseline's, or searched."""
    if source is not None:
        return load_architecture(source, expected_config=space, resize=True).sample, None
    if config.baseline:
        return hand_designed_architecture(config.baseline, space), None
    # the search may run a narrower supernet (search.channels); the choices do not depend on the
    # width, so the architecture it finds is a point of the full-width space that is retrained
    search_space = space if config.search.channels is None else space.replace(channels=config.search.channels)
    result = run_search(search_space, config.search, config.search_train, datasets["train"], datasets["val"],
                        workdir, num_classes=space.num_classes,
                        train_labels=datasets["train"].labels.tolist(), trainer_kwargs=trainer_kwargs,
                        progress=progress, experiment_name=experiment_name)
    return validate_architecture(result.architecture, space), result


def run_fold(config: RunConfig, prepared: PreparedData, fold: Fold, run_dir: Path,
             trainer_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Search, retrain and test one fold; returns its metrics (also in ``fold-<k>/metrics.json``).

    The space of ``config`` is adapted to the corpus (input shape, classes) here, once per fold.
    """
    space = adapt_space(config.space, prepared)
    final = run_dir / f"fold-{fold.index}"
    work = run_dir / f".fold-{fold.index}.partial"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    try:
        return _run_fold_into(config, prepared, space, fold, work, final, trainer_kwargs)
    except OSError as error:
        if error.errno == errno.ENOSPC:  # a full disk: only finished folds stay, and the space goes back
            shutil.rmtree(work, ignore_errors=True)
        raise


def _run_fold_into(config: RunConfig, prepared: PreparedData, space: SpaceConfig, fold: Fold, work: Path, final: Path,
                   trainer_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """:func:`run_fold`'s work, in the fold's partial folder ``work`` (renamed to ``final`` when done)."""
    logger.info("fold %d (%s): train %d, val %d, test %d utterances; test speakers %s",
                fold.index, fold.name, len(fold.train), len(fold.val), len(fold.test), ", ".join(fold.test_speakers))
    _check_fold_classes(prepared, fold, config.retrain.batch_size)
    if is_reference(config.baseline):
        metrics = run_reference_fold(config, prepared, fold, work)
        return _finish_fold(work, final, metrics)
    datasets, normalizer = fold_datasets(prepared, fold)

    started = time.perf_counter()
    # the web UI names the experiment after the fold's folder as it will be, not its .partial one
    source = _architecture_file(config, fold) if config.architecture else None
    sample, search = _architecture_for(config, space, source, datasets, work / "search", trainer_kwargs,
                                       progress=f"fold-{fold.index} search",
                                       experiment_name=f"ser-nas {config.method} {final.resolve()}")
    search_seconds = time.perf_counter() - started
    meta = {"method": config.method, "dataset": prepared.config.dataset, "fold": fold.index,
            "search_seconds": search_seconds}
    if source is not None:
        meta["source"] = str(source)
    save_architecture(work / "architecture.json", sample, space, meta=meta)
    try:
        draw_cells(load_architecture(work / "architecture.json"), work / "cells.png")
    except Exception as error:  # a picture must never fail a run
        logger.warning("could not draw the cells: %s", error)
    if search is not None:
        experiment_dir = search.experiment_dir
        if experiment_dir and Path(experiment_dir).resolve().is_relative_to(work.resolve()):
            # where it will be once this fold's folder is renamed into place
            experiment_dir = str(final.resolve() / Path(experiment_dir).resolve().relative_to(work.resolve()))
        write_json(work / "search.json", {"strategy": search.strategy, "seconds": search.seconds,
                                          "history": search.history, "experiment_id": search.experiment_id,
                                          "experiment_dir": experiment_dir,
                                          "last_architecture": search.last_architecture,
                                          "best_architecture": search.best_architecture})

    started = time.perf_counter()
    # as in DARTS: batch norm without affine parameters while searching, with them when retraining
    retrain_space = space.replace(affine=True, drop_path_prob=config.retrain.drop_path_prob)
    pl.seed_everything(config.retrain.seed, workers=True)
    model = build_model(sample, retrain_space)
    parameters = count_parameters(model)
    # the cost of one window's forward pass, beside the accuracy (ser-nas compare shows both)
    multiply_adds = count_multiply_adds(model, (1, space.in_channels, space.n_mfcc, space.frames))
    # train_on_val: the validation speakers join the training data (their metrics below are then
    # in-sample; nothing is selected on them, the last epoch is kept); the test fold stays untouched
    retrain_data = _with_val(datasets) if config.retrain.train_on_val else datasets["train"]
    model, history, selected_epoch = train_model(model, config.retrain, retrain_data, datasets["val"],
                                                 space.num_classes, trainer_kwargs,
                                                 progress=f"fold-{fold.index} retrain")
    retrain_seconds = time.perf_counter() - started
    _write_history_csv(work / "retrain.csv", history)
    _picture(plot_history, history, work / "retrain.png", title=f"retrain, fold {fold.index}")

    from torch.utils.data import DataLoader

    test_loader = DataLoader(datasets["test"], batch_size=64, shuffle=False)
    test = evaluate_model(model, test_loader, space.num_classes)  # the one and only look at the test fold
    _picture(plot_confusion, np.asarray(test["confusion_matrix"]), list(prepared.classes), work / "confusion.png",
             title=f"{config.method}, fold {fold.index}: UA {test['ua']:.3f}")
    # the bundle's architecture carries the retraining space config (affine BN, drop path)
    save_model_bundle(work / "model.pt", model.state_dict(), export_architecture(sample, retrain_space, meta=meta),
                      list(prepared.classes),
                      prepared.config.features.to_dict(), normalizer.to_dict())
    selected = next((e for e in history if e["epoch"] == selected_epoch), history[-1] if history else {})
    if config.retrain.average_last:  # the kept weights are no epoch's: their own validation figures
        val = evaluate_model(model, DataLoader(datasets["val"], batch_size=64, shuffle=False), space.num_classes)
        selected = {"val_ua": val["ua"], "val_wa": val["wa"]}
    metrics = {
        "fold": fold.index,
        "fold_name": fold.name,
        "test_speakers": list(fold.test_speakers),
        "val_speakers": list(fold.val_speakers),
        "method": config.method,
        "test_ua": test["ua"],
        "test_wa": test["wa"],
        "test_f1": test["f1"],
        "test_loss": test["loss"],
        "test_utterances": test["num_utterances"],
        "confusion_matrix": test["confusion_matrix"],
        "classes": list(prepared.classes),
        "val_ua": selected.get("val_ua"),
        "val_wa": selected.get("val_wa"),
        "val_in_training": config.retrain.train_on_val,
        "search_val_ua": None if search is None else search.val_ua,  # what the search saw of its choice
        "selected_epoch": selected_epoch,
        "parameters": parameters,
        "multiply_adds": multiply_adds,
        "search_seconds": search_seconds,
        "retrain_seconds": retrain_seconds,
    }
    return _finish_fold(work, final, metrics)


def _with_val(datasets: dict[str, FeatureDataset]) -> FeatureDataset:
    """The training split with the validation split's utterances added (same normalisation)."""
    return datasets["train"].joined(datasets["val"])


def _check_fold_classes(prepared: PreparedData, fold: Fold, batch_size: int) -> None:
    """One warning line per split that lacks a class, and for classes rarer than a batch in training."""
    labels = prepared.labels
    for part in ("train", "val", "test"):
        counts = np.bincount(labels[prepared.rows(getattr(fold, part))], minlength=len(prepared.classes))
        missing = [name for name, n in zip(prepared.classes, counts) if n == 0]
        if missing:
            consequence = {"train": "the network never sees them and cannot predict them",
                           "val": "validation UA averages the other classes",
                           "test": "test UA averages the other classes"}[part]
            logger.warning("fold %d (%s): no %s utterance of class(es) %s: %s", fold.index, fold.name, part,
                           ", ".join(missing), consequence)
        if part == "train":
            rare = [f"{name} ({n})" for name, n in zip(prepared.classes, counts) if 0 < n < batch_size]
            if rare:
                logger.warning("fold %d (%s): class(es) %s have fewer training utterances than a batch of %d; "
                               "class weights make up for it, but expect noisy figures", fold.index, fold.name,
                               ", ".join(rare), batch_size)


def _finish_fold(work: Path, final: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    # the web UI shows the NNI experiments' stored paths: the folder's name once renamed
    relocate_experiments(work, work.resolve(), final.resolve())
    metrics = {**metrics, "threads": torch.get_num_threads()}  # what the figures ran with (strategies.threads)
    write_json(work / "metrics.json", metrics)  # written last: a fold folder with it is complete
    if final.exists():
        shutil.rmtree(final)
    work.rename(final)
    logger.info("fold %d: test UA %.4f  WA %.4f  F1 %.4f  (%d parameters; search %.0f s, retrain %.0f s)",
                metrics["fold"], metrics["test_ua"], metrics["test_wa"], metrics["test_f1"], metrics["parameters"],
                metrics["search_seconds"], metrics["retrain_seconds"])
    return metrics


def run_reference_fold(config: RunConfig, prepared: PreparedData, fold: Fold, work: Path) -> dict[str, Any]:
    """A reference baseline (strategies.reference) on one fold: features, C on val, test once.

    ``search_seconds`` is the feature extraction (cached: near 0 after the first fold),
    ``retrain_seconds`` the choice of C and the fit; ``parameters`` the classifier's weights.
    """
    baseline = parse_reference(config.baseline or "")
    data_dir = prepared.folder.parent.parent
    started = time.perf_counter()
    features = reference_features(prepared.manifest, baseline.features, data_dir, progress=True)
    search_seconds = time.perf_counter() - started
    started = time.perf_counter()
    rows = {part: prepared.rows(getattr(fold, part)) for part in ("train", "val", "test")}
    normalization = prepared.config.features.normalization
    if normalization == "per_speaker":  # as the networks' features: each speaker by its own statistics
        features = standardise_per_speaker(features, prepared.manifest["speaker"].astype(str).to_numpy())
    result = fit_reference(baseline, features, prepared.labels, rows, len(prepared.classes), seed=config.retrain.seed,
                           refit_on_val=config.retrain.train_on_val)
    retrain_seconds = time.perf_counter() - started
    classes = len(prepared.classes)
    parameters = int(features.shape[1] * classes + classes)
    write_json(work / "reference.json", {"baseline": baseline.name, "features": baseline.features,
                                         "classifier": baseline.classifier, "dimensions": result["dimensions"],
                                         "normalization": normalization, "refit_on_val": config.retrain.train_on_val,
                                         "c": result["c"], "val_ua_by_c": result["val_ua_by_c"]})
    _picture(plot_confusion, np.asarray(result["confusion_matrix"]), list(prepared.classes), work / "confusion.png",
             title=f"{config.method}, fold {fold.index}: UA {result['ua']:.3f}")
    return {
        "fold": fold.index, "fold_name": fold.name, "test_speakers": list(fold.test_speakers),
        "val_speakers": list(fold.val_speakers), "method": config.method,
        "test_ua": result["ua"], "test_wa": result["wa"], "test_f1": result["f1"], "test_loss": None,
        "test_utterances": int(len(rows["test"])), "confusion_matrix": result["confusion_matrix"],
        "classes": list(prepared.classes), "val_ua": result["val_ua"], "val_wa": None, "selected_epoch": None,
        "parameters": parameters, "search_seconds": search_seconds, "retrain_seconds": retrain_seconds,
    }


def _picture(draw: Any, *args: Any, **kwargs: Any) -> None:
    """Draw a figure; a picture must never fail a run (the numbers are in the JSON/CSV files)."""
    try:
        draw(*args, **kwargs)
    except Exception as error:
        logger.warning("could not draw %s: %s", args[-1] if args else "a figure", error)


def _write_history_csv(path: Path, history: list[dict[str, Any]]) -> None:
    import pandas as pd

    frame = pd.DataFrame([{k: v for k, v in e.items() if k != "architecture"} for e in history])
    write_atomically(path, lambda h: frame.to_csv(h, index=False))


def summarize_folds(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and (sample) standard deviation over folds of the test and cost figures."""
    summary: dict[str, Any] = {"folds": len(metrics)}
    for key in ("test_ua", "test_wa", "test_f1", "parameters", "search_seconds", "retrain_seconds"):
        values = np.asarray([m[key] for m in metrics], dtype=np.float64)
        summary[key] = {"mean": float(values.mean()) if len(values) else None,
                        "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
    return summary


def run_pipeline(config: RunConfig, output_dir: str | Path = "runs", data_dir: str | Path | None = None,
                 resume: str | Path | None = None, progress: bool = True,
                 trainer_kwargs: dict[str, Any] | None = None,
                 threads: int | None = None) -> tuple[Path, dict[str, Any]]:
    """Run (or resume) search -> retrain -> test over the selected folds; see the module docstring.

    ``threads``: torch / OpenMP threads (default: :func:`strategies.threads.threads_for_run`,
    all cores unless a parent or ``$OMP_NUM_THREADS`` says otherwise); each fold records its
    count in ``metrics.json``. Returns the run folder and the summary (also in ``summary.json``).
    """
    compat.apply()
    use_threads(threads_for_run(threads))
    with contextlib.ExitStack() as stack:
        if resume is not None:
            run_dir = Path(resume)
            if not (run_dir / "config.json").is_file():
                raise RunError(f"{run_dir}: not a run folder (no config.json)")
            # one writer at a time: this folder, and the comparison it belongs to if any
            stack.enter_context(writer_lock(run_dir, also=[run_dir.parent] if _in_comparison(run_dir) else []))
            config = RunConfig.from_dict(read_json(run_dir / "config.json"))
        run_dir, summary = _run_folds(config, stack, output_dir, data_dir, run_dir if resume is not None else None,
                                      progress, trainer_kwargs)
    return run_dir, summary


def _in_comparison(run_dir: Path) -> bool:
    """Whether ``run_dir`` is one run of a ``ser-nas compare`` folder."""
    return (run_dir.parent / "compare.json").is_file()


def _run_folds(config: RunConfig, stack: contextlib.ExitStack, output_dir: str | Path, data_dir: str | Path | None,
               run_dir: Path | None, progress: bool,
               trainer_kwargs: dict[str, Any] | None) -> tuple[Path, dict[str, Any]]:
    """:func:`run_pipeline` once its folder (``run_dir``, None for a new one) is settled and locked."""
    prepared = prepare_data(config.data, data_dir=data_dir, progress=progress)
    space = adapt_space(config.space, prepared)
    # every input checked before anything is written: a bad fold or architecture file leaves no folder
    folds = _select_folds(prepared, config.folds)
    if config.architecture:
        for fold in folds:
            load_architecture(_architecture_file(config, fold), expected_config=space, resize=True)
    elif not config.baseline:
        _check_search_split(config.search, prepared, folds)
    if run_dir is None:
        run_dir = new_run_dir(output_dir, f"{config.data.dataset}-{config.method}")
        stack.enter_context(writer_lock(run_dir))
        write_json(run_dir / "config.json", config.to_dict())
        write_json(run_dir / "versions.json", package_versions())
    logger.info("run folder %s", run_dir)

    metrics: list[dict[str, Any]] = []
    try:
        with progress_shown(progress):
            fold_bar = bar(len(folds), config.method, "fold")
            for fold in folds:
                done = run_dir / f"fold-{fold.index}" / "metrics.json"
                if done.is_file():
                    logger.info("fold %d already finished: skipped", fold.index)
                    metrics.append(read_json(done))
                else:
                    metrics.append(run_fold(config, prepared, fold, run_dir, trainer_kwargs))
                fold_bar.update(1)
            fold_bar.close()
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM / SIGHUP in the CLI: name what resumes
        interrupt.resume_dir = run_dir  # type: ignore[attr-defined]
        raise
    except OSError as error:
        if error.errno == errno.ENOSPC:  # a full disk: one line naming the file, and what completes the run
            raise RunError(f"{error.filename or run_dir}: no space left on the device; the run folder keeps its "
                           f"finished folds: free some space and run ser-nas search --resume {run_dir}") from None
        raise

    summary = {"method": config.method, "dataset": config.data.dataset, "classes": list(prepared.classes),
               "per_fold": [{**{k: m[k] for k in ("fold", "test_ua", "test_wa", "test_f1", "parameters",
                                                   "search_seconds", "retrain_seconds")},
                             **{k: m.get(k) for k in ("val_ua", "search_val_ua", "multiply_adds")}} for m in metrics],
               **summarize_folds(metrics)}
    write_json(run_dir / "summary.json", summary)
    _write_results_csv(run_dir / "results.csv", metrics)
    return run_dir, summary


def _write_results_csv(path: Path, metrics: list[dict[str, Any]]) -> None:
    import pandas as pd

    columns = ("fold", "fold_name", "method", "test_ua", "test_wa", "test_f1", "val_ua", "search_val_ua",
               "selected_epoch", "parameters", "multiply_adds", "search_seconds", "retrain_seconds")
    frame = pd.DataFrame([{c: m.get(c) for c in columns} for m in metrics])
    write_atomically(path, lambda h: frame.to_csv(h, index=False))
