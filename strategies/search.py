"""Run one NAS strategy over ``SERSpace`` with the shared evaluator and export its architecture.

One entry point, :func:`run_search`, for every registered strategy. One-shot strategies
(DARTS, ENAS, ...) train a supernet in this process; multi-trial strategies (Random, ...)
train one architecture per trial in subprocesses through NNI's manager and local training
service, whose experiment folder is kept inside the run folder (``nni/``). With
``SearchConfig.webui`` a one-shot search runs as the single trial of an NNI experiment, so it
appears in the NNI web UI with per-epoch curves (:mod:`strategies.webui`, docs/webui.md).

Budgets. ``epochs`` is the one-shot supernet's training epochs; a multi-trial strategy gets
``trials`` architectures of ``trial_epochs`` epochs each. :func:`equal_budget` sizes a
multi-trial search to the same number of passes over the training data as a one-shot search
(documented in docs/strategies.md).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch

from ser_space import SERSpace, SpaceConfig, validate_architecture

from . import compat
from .evaluator import SERModule, TrainConfig, make_lightning
from .oneshot import EpochValidation, plain_value
from .registry import get_strategy
from .search_split import architecture_split
from .threads import fair_share
from .trials import epoch_reporter, free_port
from .training_service import check_oneshot_devices, configure_training_service, manager_listen_host

logger = logging.getLogger(__name__)

__all__ = ["SearchConfig", "SearchResult", "run_search", "equal_budget"]


@dataclass(frozen=True)
class SearchConfig:
    """How the architecture search runs (the strategy and its budget)."""

    strategy: str = "darts"  # registry name: darts, enas, gumbel_darts, random_oneshot, random, evolution, tpe, grid, policy_rl
    epochs: int = 50  # one-shot: supernet training epochs
    arc_learning_rate: float = 3e-4  # DARTS architecture (alpha) Adam learning rate
    gradient_clip: float | None = 5.0  # one-shot weight-step gradient clipping
    warmup_epochs: int = 0  # one-shot epochs before architecture updates start
    order: Literal["first", "second"] = "first"  # DARTS approximation order
    smoothing: float = 0.0  # darts: SDARTS-RS, the largest uniform perturbation of the architecture weights (after the softmax) in each weight step, ramped up from a tenth of it over the search (SDARTS: 0.3); 0 = plain DARTS
    candidates: int = 16  # random_oneshot: random paths scored on the validation split after each epoch; the best is kept
    genotype: Literal["best", "last"] = "last"  # one-shot: last epoch's architecture (DARTS) or best val UA (authors)
    arch_speakers: int | None = None  # speakers whose utterances steer the architecture (alphas, rewards, trial scores): None = the fold's validation speakers; more move seeded training speakers over from the weights (strategies.search_split)
    rotate_arch_speakers: bool = False  # one-shot: a different group of speakers (arch_speakers of them, or the fold's validation count) steers the architecture in each epoch, every non-test speaker in turn; the others train the weights
    channels: int | None = None  # supernet width C while searching (DARTS searches narrower than it retrains); None = the space's
    trials: int = 8  # multi-trial: architectures trained
    trial_epochs: int = 5  # multi-trial: epochs per architecture
    trial_concurrency: int = 1  # multi-trial: trials run at once
    training_service: str = "local"  # multi-trial: NNI training service, local or remote (others: training_service_config)
    trial_gpu_number: int = 0  # multi-trial: GPUs given to each trial (0 = CPU-only trials)
    remote_machines: tuple[str, ...] = ()  # remote: trial machines, each user@host:port
    remote_ssh_key: str | None = None  # remote: SSH private key file; None = ~/.ssh/id_rsa
    remote_python: str | None = None  # remote: Python interpreter path on the trial machines; None = this one's
    nni_manager_ip: str | None = None  # remote/cluster: this machine's address as trial machines reach it; None = auto
    training_service_config: str | None = None  # JSON/YAML file with an NNI training-service config (kubeflow, ...)
    port: int = 0  # NNI web UI port; 0 = a free port
    webui_host: str | None = None  # where the NNI manager listens: None = 127.0.0.1 (or what remote trials need); 0.0.0.0 = every interface, unauthenticated
    webui: bool = False  # one-shot: run the search as a trial of an NNI experiment, shown in the web UI (CLI: on)
    seed: int = 2  # seed of the run: the search (supernet weights, batch order, sampling) and, on the command line, both trainings too unless --search-train-seed or --retrain-seed says otherwise

    def __post_init__(self) -> None:
        get_strategy(self.strategy)
        if self.epochs < 1 or self.trials < 1 or self.trial_epochs < 1 or self.candidates < 1:
            raise ValueError("epochs, trials, trial_epochs and candidates must be >= 1")
        if self.channels is not None and (self.channels < 2 or self.channels % 2):
            raise ValueError(f"channels must be an even number >= 2 or None, got {self.channels}")
        if self.webui_host is not None:
            compat.check_manager_host(self.webui_host)
        if self.order not in ("first", "second"):
            raise ValueError(f"order must be 'first' or 'second', got {self.order!r}")
        if self.order == "second" and self.strategy != "darts":
            raise ValueError("order='second' is only available for the darts strategy")
        if isinstance(self.smoothing, bool) or not isinstance(self.smoothing, (int, float)) or not 0 <= self.smoothing < 1:
            raise ValueError(f"--smoothing must be a perturbation bound in [0, 1), got {self.smoothing!r}")
        if self.smoothing and self.strategy != "darts":
            raise ValueError(f"--smoothing (SDARTS-RS) is an option of the darts strategy, not {self.strategy}")
        if self.genotype not in ("best", "last"):
            raise ValueError(f"genotype must be 'best' or 'last', got {self.genotype!r}")
        if self.arch_speakers is not None and (isinstance(self.arch_speakers, bool) or not isinstance(
                self.arch_speakers, int) or self.arch_speakers < 1):
            raise ValueError(f"--arch-speakers must be a whole number of speakers >= 1, got {self.arch_speakers!r}")
        if self.rotate_arch_speakers and get_strategy(self.strategy).kind != "oneshot":
            raise ValueError(f"--rotate-arch-speakers: {self.strategy} trains one architecture per trial, scored once; "
                             f"a rotation needs a one-shot strategy (darts, gumbel_darts, enas, random_oneshot)")
        self._check_training_service()

    def _check_training_service(self) -> None:
        from .training_service import PLATFORMS, parse_machine

        # JSON round trips give lists; keep the field a tuple (hashable, as typed)
        object.__setattr__(self, "remote_machines", tuple(self.remote_machines or ()))
        if self.trial_concurrency < 1:
            raise ValueError(f"trial_concurrency must be >= 1, got {self.trial_concurrency}")
        if self.trial_gpu_number < 0:
            raise ValueError(f"trial_gpu_number must be >= 0, got {self.trial_gpu_number}")
        if self.training_service_config is None and self.training_service not in PLATFORMS:
            raise ValueError(f"training_service {self.training_service!r}: choose local or remote, or give "
                             f"training_service_config (a JSON/YAML NNI training-service config file)")
        if self.training_service == "remote" and self.training_service_config is None and not self.remote_machines:
            raise ValueError("training_service 'remote' needs remote_machines (user@host:port,...)")
        for machine in self.remote_machines:
            parse_machine(machine)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown SearchConfig field(s): {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes: Any) -> SearchConfig:
        return SearchConfig(**{**self.to_dict(), **changes})


def equal_budget(config: SearchConfig, trial_epochs: int | None = None) -> SearchConfig:
    """A multi-trial config with as many training passes as ``config.epochs`` one-shot epochs.

    A DARTS epoch makes one weight pass over the training split and one architecture pass
    over the validation split through a supernet that evaluates every candidate; counting
    it as two passes, ``trials * trial_epochs ~= 2 * epochs``.
    """
    per_trial = trial_epochs or config.trial_epochs
    return config.replace(trial_epochs=per_trial, trials=max(1, round(2 * config.epochs / per_trial)))


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


ZERO_OP = "none"


def searched_space(space_config: SpaceConfig, strategy: str) -> SpaceConfig:
    """The space a strategy samples from: without the zero op, unless it is differentiable.

    The zero op (``none``) is DARTS's relaxation device: a supernet weight for "no edge",
    never part of a found network (the DARTS derivation skips it). A strategy that samples
    whole architectures (ENAS, Random, evolution, TPE) would otherwise pick it as an op, and an
    edge set to zero can cut a cell, or the sequence part, off the classifier: on EmoDB, ENAS
    exported such networks and they tested at chance. Without it every strategy chooses from
    the same final networks. The labels stay the same, so what is found is a point of the
    full space and validates against it.
    """
    spec = get_strategy(strategy)
    if spec.kind == "oneshot" and not spec.sampling:
        return space_config
    changes = {name: tuple(op for op in getattr(space_config, name) if op != ZERO_OP)
               for name in ("cnn_ops", "seq_ops") if ZERO_OP in getattr(space_config, name)}
    return space_config.replace(**changes) if changes else space_config


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
    # which speakers steer the architecture and which train the weights (strategies.search_split)
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
    from .trials import run_jobs_as_trials, search_job

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
