"""Run one NAS strategy over ``SERSpace`` with the shared evaluator and export its architecture.

One entry point, :func:`run_search`, for every registered strategy: the one-shot runner trains
a supernet in this process (DARTS, ENAS, ...); the multi-trial runner trains one
architecture per trial in subprocesses through NNI's manager and training service, whose
experiment folder is kept inside the run folder (``nni/``). With ``SearchConfig.webui`` a
one-shot search runs as the single trial of an NNI experiment, so it appears in the NNI web UI
with per-epoch curves (:mod:`strategies.trials`, docs/webui.md).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from ser_space import SERSpace, SpaceConfig, validate_architecture

from .. import compat
from ..evaluator import SERModule, TrainConfig, make_lightning
from ..threads import fair_share
from ..training_service import check_oneshot_devices, configure_training_service, manager_listen_host
from ..trials import epoch_reporter, free_port
from .config import SearchConfig, searched_space
from .oneshot import EpochValidation, plain_value
from .registry import get_strategy
from .split import architecture_split

logger = logging.getLogger(__name__)

__all__ = ["SearchResult", "run_search"]


@dataclass
class SearchResult:
    """What a search produced."""

    strategy: str
    architecture: dict[str, Any]  # {label: value}, validated against the space
    history: list[dict[str, Any]] = field(default_factory=list)  # per epoch (one-shot) or per trial (multi)
    seconds: float = 0.0  # wall-clock time of the search
    experiment_id: str | None = None  # NNI experiment id (multi-trial, or one-shot with webui)
    experiment_dir: str | None = None  # NNI experiment folder (multi-trial, or one-shot with webui)
    last_architecture: dict[str, Any] | None = None  # one-shot: the final epoch's architecture
    best_architecture: dict[str, Any] | None = None  # one-shot: the best validation epoch's architecture
    val_ua: float | None = None  # the search's own validation UA of what it chose (its architecture data: the supernet at the chosen epoch, or the best trial)


def _plain(sample: dict[str, Any]) -> dict[str, Any]:
    return {str(k): plain_value(v) for k, v in sample.items()}


def run_search(space_config: SpaceConfig, search: SearchConfig, train: TrainConfig, train_dataset: Any,
               val_dataset: Any, workdir: str | Path, num_classes: int | None = None,
               train_labels: list[int] | None = None, trainer_kwargs: dict[str, Any] | None = None,
               progress: str | None = None, experiment_name: str | None = None) -> SearchResult:
    """Search ``SERSpace(space_config)`` with ``search.strategy``; see the module docstring.

    ``train`` gives the weight optimisation (optimizer, learning rates, batch size, device);
    its ``max_epochs`` is replaced by the search budget. ``progress`` names the bar of a
    one-shot search's epochs (shown inside :func:`strategies.progress.shown`);
    ``experiment_name`` is the NNI experiment's name in the web UI (default: from ``workdir``).
    """
    from nni.nas.experiment import NasExperiment

    compat.apply()
    spec = get_strategy(search.strategy)
    if spec.kind == "oneshot":
        check_oneshot_devices(train)  # NNI 3.0's one-shot strategies train on one device
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if search.webui and spec.kind == "oneshot":
        result = _run_as_trial(space_config, search, train, train_dataset, val_dataset, workdir, num_classes,
                               train_labels, trainer_kwargs, progress, experiment_name)
        if result is not None:
            return result
    num_classes = num_classes or space_config.num_classes
    space_config = searched_space(space_config, search.strategy)
    # which speakers steer the architecture and which train the weights (strategies.search.split)
    train_dataset, val_dataset, rotation = architecture_split(train_dataset, val_dataset, search.arch_speakers,
                                                              search.rotate_arch_speakers, search.seed)
    if search.arch_speakers is not None or rotation is not None:
        train_labels = train_dataset.labels.tolist()  # the weights' speakers (this epoch's, when rotating)
    started = time.perf_counter()
    pl.seed_everything(search.seed, workers=True)  # before the space: its weights are initialised now
    space = SERSpace(space_config.to_dict())
    strategy = spec.build(search)
    if train.seed != search.seed:
        # --search-train-seed overrides the run's seed for the weight training: its batch order,
        # augmentation and (multi-trial) each trial's initial weights
        pl.seed_everything(train.seed, workers=True)

    if spec.kind == "oneshot":
        config = train.replace(max_epochs=search.epochs)
        module = SERModule.from_config(config, num_classes, train_labels, level=getattr(train_dataset, "level", None))
        # one loader for the callback, built like the evaluator's validation loader
        from torch.utils.data import DataLoader

        # each epoch's architecture utterances, once each (a rotation's change every epoch)
        val_loader = DataLoader(val_dataset if rotation is None else rotation.arch_exact,
                                batch_size=max(config.batch_size, 64), shuffle=False)
        callback = EpochValidation(val_loader, module, fix_exported_path=spec.sampling,
                                   differentiable=not spec.sampling,
                                   candidates=search.candidates if spec.random_paths else 0)
        callbacks: list[Any] = [callback] if rotation is None else [rotation, callback]
        reporter = epoch_reporter(module)  # inside a web UI trial: per-epoch results to the NNI manager
        if reporter is not None:
            callbacks.append(reporter)
        evaluator = make_lightning(module, config, train_dataset, val_dataset, callbacks=callbacks,
                                   default_root_dir=str(workdir), gradient_clip_val=None, progress=progress,
                                   **(trainer_kwargs or {}))
        experiment = NasExperiment(space, evaluator, strategy)
        experiment.config.experiment_working_directory = str((workdir / "nni").resolve())
        if experiment.run() is None:
            raise KeyboardInterrupt  # NNI's run() stops the experiment on Ctrl-C and returns None
        history = module.history
        # the derivation recorded after the last epoch (for DARTS: without the zero op)
        last = _plain(history[-1]["architecture"]) if history else \
            _plain(experiment.export_top_models(formatter="dict")[0])
        best = last
        if history:
            best_entry = max(history, key=lambda e: (e["val_ua"], -e["epoch"]))
            best = _plain(best_entry["architecture"])
        chosen = best if search.genotype == "best" else last
        chosen_entry = (best_entry if search.genotype == "best" else history[-1]) if history else {}
        experiment.stop()
        result = SearchResult(spec.name, validate_architecture(chosen, space_config), history,
                              time.perf_counter() - started, last_architecture=last, best_architecture=best,
                              val_ua=chosen_entry.get("val_ua"))
    else:
        config = train.replace(max_epochs=search.trial_epochs)
        module = SERModule.from_config(config, num_classes, train_labels, level=getattr(train_dataset, "level", None))
        evaluator = make_lightning(module, config, train_dataset, val_dataset, **(trainer_kwargs or {}))
        experiment = NasExperiment(space, evaluator, strategy)
        experiment.config.max_trial_number = search.trials
        experiment.config.experiment_working_directory = str((workdir / "nni").resolve())
        experiment.config.experiment_name = experiment_name or f"ser-nas {spec.name} {workdir.resolve()}"
        # local trials share this process's cores: trial_concurrency at once (strategies.threads)
        local = search.training_service == "local" and not search.training_service_config
        compat.configure_experiment(experiment, seed=train.seed,
                                    threads=fair_share(search.trial_concurrency, torch.get_num_threads())
                                    if local else None)
        # local / remote / pass-through service, concurrency, GPUs per trial (after compat: trial Python)
        configure_training_service(experiment, search)
        port = search.port or free_port()
        host = manager_listen_host(experiment.config, search.webui_host)
        logger.info("NNI web UI: http://127.0.0.1:%d  (experiment %s, %d trial(s))", port, experiment.id,
                    search.trials)
        with compat.manager_host(host, port):
            if experiment.run(port=port) is None:
                raise KeyboardInterrupt  # NNI's run() stops the experiment on Ctrl-C and returns None
        top = experiment.export_top_models(top_k=1, formatter="dict")
        history = _trial_history(experiment)
        experiment_id = experiment.id
        experiment.stop()
        if not top:
            raise RuntimeError(f"{spec.name}: no trial finished; see the trial logs under "
                               f"{workdir / 'nni' / experiment_id}")
        finals = [entry["final"] for entry in history if isinstance(entry.get("final"), dict)]
        result = SearchResult(spec.name, validate_architecture(_plain(top[0]), space_config), history,
                              time.perf_counter() - started, experiment_id=experiment_id,
                              experiment_dir=str(workdir / "nni" / experiment_id),
                              val_ua=max((f["default"] for f in finals if "default" in f), default=None))
    logger.info("%s search finished in %.1f s", spec.name, result.seconds)
    return result


def _run_as_trial(space_config: SpaceConfig, search: SearchConfig, train: TrainConfig, train_dataset: Any,
                  val_dataset: Any, workdir: Path, num_classes: int | None, train_labels: list[int] | None,
                  trainer_kwargs: dict[str, Any] | None, progress: str | None = None,
                  experiment_name: str | None = None) -> SearchResult | None:
    """A one-shot search run as the single trial of an NNI experiment (see strategies.webui).

    None when the datasets or trainer options cannot be shipped to a trial as plain values
    (the caller then searches in this process, outside the web UI).
    """
    from ..trials import run_jobs_as_trials, search_job

    job = search_job(space_config, search, train, train_dataset, val_dataset, workdir / "trial", num_classes,
                     train_labels, trainer_kwargs)
    if job is None:
        logger.warning("webui: the datasets are not FeatureDatasets (or trainer options are not plain "
                       "values); searching in this process, outside the NNI web UI")
        return None
    job["id"] = search.strategy
    name = experiment_name or f"ser-nas {search.strategy} {workdir.resolve()}"
    outcome = run_jobs_as_trials([job], workdir, port=search.port, experiment_name=name, host=search.webui_host,
                                 progress=(progress, search.epochs) if progress else None)[0]
    result = SearchResult(**outcome["result"])
    result.experiment_id = outcome["experiment_id"]
    result.experiment_dir = outcome["experiment_dir"]
    return result


def _trial_history(experiment: Any) -> list[dict[str, Any]]:
    """One entry per finished trial: its architecture and final / intermediate metrics."""
    history: list[dict[str, Any]] = []
    try:
        models = list(experiment.strategy.list_models(sort=False))  # every trained model
    except Exception:  # pragma: no cover - defensive: history is informative only
        return history
    for index, model in enumerate(models):
        metrics = getattr(model, "metrics", None)
        final = getattr(metrics, "final", None)
        intermediates = list(getattr(metrics, "intermediates", []) or [])
        history.append({
            "trial": index,
            "architecture": _plain(dict(getattr(model, "sample", {}) or {})),
            "final": _metric_value(final),
            "intermediates": [_metric_value(v) for v in intermediates],
            "status": str(getattr(model, "status", "")),
        })
    return history


def _metric_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: float(v) for k, v in value.items()}
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)
