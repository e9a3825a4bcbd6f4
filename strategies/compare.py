"""Compare NAS strategies on one corpus: every strategy x seed x fold, equal budgets, one report.

:func:`run_compare` runs the search -> retrain -> test pipeline (:func:`strategies.pipeline.run_fold`)
for each (strategy, seed, fold) job and for a hand-designed baseline, under the same data,
space, weight training and retraining, so the strategies differ only in how they search:

- one-shot strategies (DARTS, ENAS, ...) train their supernet for ``epochs`` epochs;
- multi-trial strategies (Random, ...) get the same number of training passes through
  :func:`strategies.search.equal_budget`: ``trials * trial_epochs ~= 2 * epochs``;
- a seed changes the search seed (weights, batch order, sampling) and the retraining seed,
  never the folds (the data split comes from the data config alone);
- every found architecture is retrained with the same retraining config and tested once on
  its fold's held-out speakers.

Comparison folder::

    <output_dir>/<time>-<dataset>-compare/
      compare.json  versions.json
      <strategy>-seed<s>/          one run folder per (strategy, seed): config.json, summary.json
        fold-<k>/                  as written by run_fold (metrics.json, architecture.json, ...)
      baseline-<name>-seed<s>/     the hand-designed baseline, same layout
      results.csv  table.csv  table.md  report.json
      ua_vs_cost.png  validation_curves.png  cells_<strategy>.png

Every sub-run is an ordinary run folder (``ser-nas evaluate``, ``ser-nas predict`` work on
it). A fold folder is renamed into place only when finished, so ``run_compare(...,
resume=compare_dir)`` skips every finished (strategy, seed, fold) and runs the rest. The
report is always rebuilt from the run folders' ``metrics.json`` files (:func:`build_report`),
never from values held in memory.

Web UI. Multi-trial searches appear in NNI's web UI as experiments (their ids are listed in
``report.json``); one-shot searches run in this process and do not. The jobs are built by
:func:`compare_jobs` as a plain list, so a runner that shows each job as an NNI trial (the
planned ``strategies.trials.run_jobs_as_trials``) can take them instead of the sequential loop
in :func:`run_compare`; see the ``HOOK`` comment there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ser_space import SpaceConfig

from ser_space.dictconfig import DictConfig
from ser_space.io import write_atomically

from . import compat, lifeline
from .baselines import BASELINES
from .data.config import DataConfig
from .data.prepare import PreparedData, prepare_data
from .evaluator import TrainConfig
from .pipeline import run_fold, summarize_folds
from .recipes import SYNTHETIC_COMPARE_RETRAIN, SYNTHETIC_SEARCH_TRAIN, RunConfig
from .reference import is_reference, parse_reference
from .progress import bar
from .progress import shown as progress_shown
from .threads import fair_share, threads_for_run, use_threads
from .runs import RunError, new_run_dir, package_versions, read_json, write_json, writer_lock
from .search import SearchConfig, equal_budget, get_strategy
from .stats import fold_means, paired_difference, paired_text

logger = logging.getLogger(__name__)

__all__ = ["CompareConfig", "CompareJob", "compare_jobs", "run_compare", "build_report", "markdown_table"]

COMPARE_FORMAT = 1


def default_references() -> tuple[str, ...]:
    """The reference baselines a comparison adds by default: ``mfcc_stats``, and the openSMILE
    sets ``egemaps`` and ``compare2016`` where the ``opensmile`` extra is installed."""
    import importlib.util

    if importlib.util.find_spec("opensmile") is None:
        return ("mfcc_stats",)
    return ("mfcc_stats", "egemaps", "compare2016")


@dataclass(frozen=True)
class CompareConfig(DictConfig):
    """A comparison of NAS strategies; written to ``compare.json`` of the comparison folder.

    ``seeds`` may be given as a count ``n`` (seeds ``0 .. n-1``) or as a tuple of seeds.
    """

    strategies: tuple[str, ...] = ("darts", "enas", "random")  # registry names, in table order
    seeds: tuple[int, ...] | int = (0,)  # search and retraining seeds (a count n means 0..n-1)
    folds: tuple[int, ...] | None = (0,)  # fold indices; None = every fold of the corpus
    baseline: str | None = "cnn_lstm"  # hand-designed architecture added as a row; None = none
    references: tuple[str, ...] = field(default_factory=default_references)  # reference baselines added as rows (strategies.reference)
    epochs: int = 5  # search budget: one-shot supernet epochs (multi-trial: equal_budget of it)
    trial_epochs: int = 2  # multi-trial: epochs per trial (trials = round(2 * epochs / trial_epochs))
    data: DataConfig = field(default_factory=DataConfig)  # corpus, folds, features
    space: SpaceConfig = field(default_factory=SpaceConfig.tiny)  # search space (shape and classes follow the data)
    search: SearchConfig = field(default_factory=SearchConfig)  # other search settings; strategy, budget and seed are set per job
    search_train: TrainConfig = field(default_factory=lambda: SYNTHETIC_SEARCH_TRAIN)  # weight training during search
    retrain: TrainConfig = field(default_factory=lambda: SYNTHETIC_COMPARE_RETRAIN)  # retraining, the same for every job

    def __post_init__(self) -> None:
        seeds = self.seeds
        if isinstance(seeds, int):
            if seeds < 1:
                raise ValueError(f"seeds: a count must be >= 1, got {seeds}")
            seeds = tuple(range(seeds))
        seeds = tuple(int(s) for s in seeds)
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct and at least one, got {seeds}")
        object.__setattr__(self, "seeds", seeds)
        strategies = tuple(self.strategies)
        references = tuple(self.references)
        for name in references:
            parse_reference(name)  # a clear error for an unknown name
        if len(set(references)) != len(references):
            raise ValueError(f"references must be distinct, got {references}")
        object.__setattr__(self, "references", references)
        if not strategies and not self.baseline and not references:
            raise ValueError("nothing to compare: no strategy, no baseline and no reference")
        if len(set(strategies)) != len(strategies):
            raise ValueError(f"strategies must be distinct, got {strategies}")
        for name in strategies:
            get_strategy(name)  # a clear error for an unknown name
        object.__setattr__(self, "strategies", strategies)
        if self.baseline is not None and self.baseline not in BASELINES:
            raise ValueError(f"unknown baseline {self.baseline!r}; available: {', '.join(BASELINES)} (or none)")
        if self.epochs < 1 or self.trial_epochs < 1:
            raise ValueError("epochs and trial_epochs must be >= 1")
        if self.folds is not None:
            object.__setattr__(self, "folds", tuple(int(f) for f in self.folds))

    def to_dict(self) -> dict[str, Any]:
        return {"format": COMPARE_FORMAT, **super().to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompareConfig:
        data = dict(data)
        if data.pop("format", COMPARE_FORMAT) != COMPARE_FORMAT:
            raise RunError("compare.json: unsupported comparison format")
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise RunError(f"compare.json: unknown field(s) {', '.join(unknown)}")
        data.setdefault("references", [])  # comparisons written before references: none
        return super().from_dict(data)

    def search_for(self, strategy: str, seed: int) -> SearchConfig:
        """The search config of one job: equal budget, this seed."""
        base = self.search.replace(strategy=strategy, epochs=self.epochs, seed=seed)
        if get_strategy(strategy).kind == "multi":
            return equal_budget(base, trial_epochs=self.trial_epochs)
        return base

    def run_config(self, method: str, seed: int) -> RunConfig:
        """The :class:`RunConfig` of the sub-run ``method`` (a strategy, or ``baseline-<name>``)."""
        common = dict(data=self.data, space=self.space, folds=self.folds,
                      search_train=self.search_train.replace(seed=seed), retrain=self.retrain.replace(seed=seed))
        if method.startswith("baseline-"):
            return RunConfig(search=self.search.replace(seed=seed), baseline=method[len("baseline-"):], **common)
        return RunConfig(search=self.search_for(method, seed), **common)

    @property
    def methods(self) -> tuple[str, ...]:
        """Row names of the table: the strategies, ``baseline-<name>``, then ``baseline-<reference>``."""
        return (self.strategies + ((f"baseline-{self.baseline}",) if self.baseline else ())
                + tuple(f"baseline-{name}" for name in self.references))


@dataclass(frozen=True)
class CompareJob:
    """One (method, seed, fold) run of a comparison."""

    method: str  # strategy name or baseline-<name>
    seed: int  # search and retraining seed
    fold: int  # fold index
    run_name: str  # sub-run folder name, <method>-seed<seed>
    config: RunConfig  # the sub-run's config


def compare_jobs(config: CompareConfig, prepared: PreparedData) -> list[CompareJob]:
    """Every (method, seed, fold) job of a comparison, in run order (fold-major per sub-run)."""
    indices = range(len(prepared.folds)) if config.folds is None else config.folds
    for index in indices:
        if not 0 <= index < len(prepared.folds):
            raise RunError(f"fold {index} does not exist: {prepared.config.dataset} has "
                           f"{len(prepared.folds)} folds (0..{len(prepared.folds) - 1})")
    jobs = []
    for method in config.methods:
        for seed in config.seeds:  # type: ignore[union-attr]
            run_config = config.run_config(method, seed)
            for index in indices:
                jobs.append(CompareJob(method, seed, index, f"{method}-seed{seed}", run_config))
    return jobs


def run_compare(config: CompareConfig | None, output_dir: str | Path = "runs", data_dir: str | Path | None = None,
                resume: str | Path | None = None, progress: bool = True,
                trainer_kwargs: dict[str, Any] | None = None, webui: bool = False,
                webui_host: str | None = None, jobs: int = 1,
                threads: int | None = None, dispatch: str = "processes",
                service: Any | None = None) -> tuple[Path, dict[str, Any]]:
    """Run (or resume) a comparison; see the module docstring.

    Parameters
    ----------
    config
        The comparison; ignored (may be None) with ``resume``, which reads ``compare.json``.
    output_dir
        Where the comparison folder ``<time>-<dataset>-compare`` is created.
    data_dir
        Prepared-data cache (default: :func:`strategies.data.paths.cache_root`).
    resume
        An existing comparison folder: finished (method, seed, fold) runs are kept, the rest run.
    trainer_kwargs
        Passed to Lightning's Trainer in every search and retraining.
    webui
        Afterwards, show every finished run as a trial of one NNI experiment
        (:func:`publish_to_webui`; the CLI does this unless ``--no-webui``).
    webui_host
        Where that experiment's NNI manager listens: the loopback address (default) or ``0.0.0.0``.
    jobs
        Runs at once, each (with ``jobs`` > 1) in its own process with its share of the cores
        (:func:`strategies.threads.fair_share`); a run's result depends on its config, seed and
        thread count only, never on what ran beside it.
    threads
        Torch threads of each run (default: the cores divided by ``jobs``); recorded per fold.
    dispatch
        ``processes`` (this machine: in this process, or ``jobs`` processes), or ``trials``:
        every pending run is a trial of one NNI experiment (``compare_dir/trials/nni/<id>``),
        ``jobs`` at once, on ``service``'s training service, shown in the web UI while it runs
        (:func:`strategies.trials.run_jobs_as_trials`). A failed run is logged and the others go on.
    service
        A :class:`~strategies.search.SearchConfig` whose training-service fields say where
        ``trials`` run (default: this machine). Remote trial machines need this package, the
        corpus and the comparison folder at the same paths (a shared filesystem).

    Returns
    -------
    The comparison folder and the report (also in ``report.json``; see :func:`build_report`).
    """
    compat.apply()
    if webui_host is not None:
        compat.check_manager_host(webui_host)  # before hours of work, not after
    if jobs < 1:
        raise ValueError(f"--jobs {jobs}: give 1 or more runs at once")
    if dispatch not in ("processes", "trials"):
        raise ValueError(f"--dispatch {dispatch!r}: choose processes or trials")
    if service is not None and dispatch != "trials":
        raise ValueError("a training service runs a comparison's jobs only with --dispatch trials")
    if threads is not None and threads < 1:
        raise ValueError(f"--threads {threads}: give 1 or more")
    with contextlib.ExitStack() as stack:
        if resume is not None:
            compare_dir = Path(resume)
            if not (compare_dir / "compare.json").is_file():
                raise RunError(f"{compare_dir}: not a comparison folder (no compare.json)")
            stack.enter_context(writer_lock(compare_dir))  # one writer of a comparison at a time
            config = CompareConfig.from_dict(read_json(compare_dir / "compare.json"))
        elif config is None:
            raise ValueError("run_compare needs a config or resume")
        prepared = prepare_data(config.data, data_dir=data_dir, progress=progress)
        all_jobs = compare_jobs(config, prepared)
        pending = [job for job in all_jobs if resume is None
                   or not (Path(resume) / job.run_name / f"fold-{job.fold}" / "metrics.json").is_file()]
        if jobs > 1 and jobs > len(pending):  # checked before anything is written
            raise ValueError(f"--jobs {jobs}: only {len(pending)} run(s) left to do; give --jobs {max(1, len(pending))} "
                             "or fewer")
        if resume is None:
            compare_dir = new_run_dir(output_dir, f"{config.data.dataset}-compare")
            stack.enter_context(writer_lock(compare_dir))
            write_json(compare_dir / "compare.json", config.to_dict())
            write_json(compare_dir / "versions.json", package_versions())
        logger.info("comparison folder %s: %d runs (%s x %d seed(s) x %d fold(s))", compare_dir, len(all_jobs),
                    ", ".join(config.methods), len(config.seeds), len({j.fold for j in all_jobs}))  # type: ignore[arg-type]

        share = threads or (threads_for_run(None) if jobs == 1 else fair_share(jobs))
        for run_name, run_config in {j.run_name: j.config for j in all_jobs}.items():
            if not (compare_dir / run_name / "config.json").is_file():
                write_json(compare_dir / run_name / "config.json", run_config.to_dict())
        logger.info("%d of %d run(s) to do, %d at once, %d thread(s) each", len(pending), len(all_jobs), jobs, share)
        started = time.perf_counter()
        done = 0
        try:
            with progress_shown(progress):
                job_bar = bar(len(all_jobs), "compare", "run")
                job_bar.update(len(all_jobs) - len(pending))
                if dispatch == "trials" and pending:
                    trials = _run_as_trials(pending, compare_dir, data_dir, jobs, share, trainer_kwargs, webui_host,
                                            service)
                    for outcome in trials.pop("runs"):
                        if "error" in outcome:
                            logger.warning("%s: %s", outcome["job"], outcome["error"])
                        else:
                            done += 1
                        job_bar.update(1)
                elif jobs == 1:
                    use_threads(share)
                    for number, job in enumerate(pending, 1):
                        logger.info("[%d/%d] %s fold %d", number, len(pending), job.run_name, job.fold)
                        run_fold(job.config, prepared, prepared.folds[job.fold], compare_dir / job.run_name,
                                 trainer_kwargs)
                        done += 1
                        job_bar.update(1)
                else:
                    for outcome in _run_in_processes(pending, compare_dir, data_dir, jobs, share, trainer_kwargs):
                        if "error" in outcome:
                            logger.warning("%s fold %d failed: %s", outcome["run_name"], outcome["fold"], outcome["error"])
                        else:
                            done += 1
                            logger.info("[%d/%d] %s fold %d: test UA %.4f (%.0f s)", done, len(pending),
                                        outcome["run_name"], outcome["fold"], outcome["test_ua"], outcome["seconds"])
                        job_bar.update(1)
                job_bar.close()
        except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM / SIGHUP in the CLI: name what resumes
            interrupt.resume_dir = compare_dir  # type: ignore[attr-defined]
            raise
        logger.info("%d run(s) done in %.0f s (%d already finished)", done, time.perf_counter() - started,
                    len(all_jobs) - len(pending))
        for run_name, run_config in {j.run_name: j.config for j in all_jobs}.items():
            _write_run_summary(compare_dir / run_name, run_config, prepared)
        report = build_report(compare_dir)
        if webui and dispatch == "trials" and done == len(all_jobs):
            # every run was a trial of one experiment already: that is the comparison's web UI
            report["webui"] = trials
        elif webui:
            report["webui"] = publish_to_webui(compare_dir, host=webui_host)
        return compare_dir, report


def _job_process_init(threads: int) -> None:
    """A comparison job's process: its share of the cores, the NNI fixes, SIGTERM as Ctrl-C, quiet logs."""
    import signal

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # unwinds as Ctrl-C does: NNI managers and trials are stopped

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops the jobs
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s W %(name)s: %(message)s", datefmt="%H:%M:%S")
    use_threads(threads)
    compat.apply()
    lifeline.watch_owner()  # end with the comparison that started this process, however it ends


def run_comparison_job(task: tuple[dict[str, Any], int, str, str | None, dict[str, Any] | None]) -> dict[str, Any]:
    """One (method, seed, fold) run in a job process; its outcome, or the error that stopped it."""
    config_dict, fold, run_dir, data_dir, trainer_kwargs = task
    started = time.perf_counter()
    outcome: dict[str, Any] = {"run_name": Path(run_dir).name, "fold": fold}
    try:
        config = RunConfig.from_dict(config_dict)
        prepared = prepare_data(config.data, data_dir=data_dir, progress=False)
        metrics = run_fold(config, prepared, prepared.folds[fold], Path(run_dir), trainer_kwargs)
        outcome.update(test_ua=metrics["test_ua"], seconds=time.perf_counter() - started)
    except Exception as error:  # one failed run never costs the others; its folder stays unfinished
        outcome["error"] = str(error).splitlines()[0] if str(error) else type(error).__name__
    return outcome


def _run_in_processes(jobs: list[CompareJob], compare_dir: Path, data_dir: str | Path | None, processes: int,
                      threads: int, trainer_kwargs: dict[str, Any] | None) -> Any:
    """Run ``jobs`` ``processes`` at a time in worker processes with ``threads`` threads each
    (a worker takes its next job when one finishes, as ``--jobs 1`` runs them one after another
    in one process: no fresh interpreter's imports per job); yield each outcome as it finishes.
    On Ctrl-C (or SIGTERM) the job processes are stopped."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # no fork of a process holding threads
    tasks = [(job.config.to_dict(), job.fold, str(compare_dir / job.run_name),
              None if data_dir is None else str(data_dir), trainer_kwargs) for job in jobs]
    pool = context.Pool(processes, initializer=_job_process_init, initargs=(threads,))
    try:
        yield from pool.imap_unordered(run_comparison_job, tasks)
        pool.close()
    except BaseException:
        pool.terminate()  # SIGTERM to every job process: each stops its NNI experiment
        raise
    finally:
        pool.join()


def _run_as_trials(jobs: list[CompareJob], compare_dir: Path, data_dir: str | Path | None, concurrency: int,
                   threads: int, trainer_kwargs: dict[str, Any] | None, host: str | None,
                   service: Any | None) -> dict[str, Any]:
    """Run ``jobs`` as the trials of one NNI experiment (job kind ``run`` of :mod:`strategies.trial_job`)."""
    from .data.paths import cache_root
    from .trials import run_jobs_as_trials

    specs = [{"id": f"{job.run_name}-fold{job.fold}", "kind": "run", "config": job.config.to_dict(),
              "fold": job.fold, "run_dir": str((compare_dir / job.run_name).resolve()),
              "data_dir": str(Path(data_dir or cache_root()).resolve()),
              "trainer_kwargs": dict(trainer_kwargs or {})} for job in jobs]
    results = run_jobs_as_trials(specs, compare_dir / "trials", experiment_name=f"ser-nas compare {compare_dir.name}",
                                 concurrency=max(1, min(concurrency, len(specs))), host=host, service=service,
                                 keep_going=True, threads=threads)
    info = {"experiment_id": results[0]["experiment_id"], "experiment_dir": results[0]["experiment_dir"],
            "trials": {r["job"]: r.get("trial_id") for r in results}}
    write_json(compare_dir / "webui.json", info)
    logger.info("%d run(s) were trials of NNI experiment %s (threads each: %d): ser-nas view %s", len(specs),
                info["experiment_id"], threads, compare_dir)
    return {**info, "runs": results}


def publish_to_webui(compare_dir: str | Path, port: int = 0, concurrency: int = 4,
                     host: str | None = None) -> dict[str, Any]:
    """Show every finished run of a comparison together, as the trials of one NNI experiment.

    Each trial replays one run folder (:mod:`strategies.trial_job`, kind ``replay``): the
    retraining's validation curve as intermediate results, the test figures as the final
    result; its trial parameter names the run (``job`` = ``<method>-seed<s>-fold<k>``). The
    experiment lives in ``compare_dir/webui/nni/<id>``; ``ser-nas view compare_dir`` reopens
    it. Returns ``{"experiment_id", "experiment_dir", "trials"}`` (also in ``webui.json``).
    """
    from .trials import run_jobs_as_trials

    compare_dir = Path(compare_dir)
    folders = sorted(p.parent for p in compare_dir.glob("*-seed*/fold-*/metrics.json"))
    if not folders:
        raise RunError(f"{compare_dir}: no finished run to show")
    jobs = [{"id": f"{folder.parent.name}-fold{folder.name.split('-')[1]}", "kind": "replay",
             "fold_dir": str(folder.resolve()), "label": f"{folder.parent.name}/{folder.name}"}
            for folder in folders]
    results = run_jobs_as_trials(jobs, compare_dir / "webui", port=port,
                                 experiment_name=f"ser-nas compare {compare_dir.name}",
                                 concurrency=max(1, min(concurrency, len(jobs))), host=host)
    info = {"experiment_id": results[0]["experiment_id"], "experiment_dir": results[0]["experiment_dir"],
            "trials": {r["job"]: r["trial_id"] for r in results}}
    write_json(compare_dir / "webui.json", info)
    logger.info("all %d runs are trials of NNI experiment %s: ser-nas view %s", len(jobs), info["experiment_id"],
                compare_dir)
    return info


def _write_run_summary(run_dir: Path, config: RunConfig, prepared: PreparedData) -> None:
    """``summary.json`` of a sub-run, as :func:`strategies.pipeline.run_pipeline` writes it."""
    metrics = _fold_metrics(run_dir)
    if not metrics:
        return
    summary = {"method": config.method, "dataset": prepared.config.dataset, "classes": list(prepared.classes),
               "per_fold": [{k: m[k] for k in ("fold", "test_ua", "test_wa", "test_f1", "parameters",
                                                 "search_seconds", "retrain_seconds")} for m in metrics],
               **summarize_folds(metrics)}
    write_json(run_dir / "summary.json", summary)


def _fold_metrics(run_dir: Path) -> list[dict[str, Any]]:
    folders = sorted((p for p in run_dir.glob("fold-*") if (p / "metrics.json").is_file()),
                     key=lambda p: int(p.name.split("-")[1]))
    return [read_json(p / "metrics.json") for p in folders]


# ----------------------------------------------------------------------------- report

_RESULT_COLUMNS = ("method", "kind", "seed", "fold", "test_ua", "test_wa", "test_f1", "val_ua", "parameters",
                   "multiply_adds", "search_seconds", "retrain_seconds", "run")


def _kind(method: str) -> str:
    if method.startswith("baseline-"):
        return "reference" if is_reference(method[len("baseline-"):]) else "hand-designed"
    try:
        return "one-shot" if get_strategy(method).kind == "oneshot" else "multi-trial"
    except ValueError:
        return "unknown"


def _budget(run_config: dict[str, Any], method: str) -> str:
    if method.startswith("baseline-"):
        return "no search"
    search = run_config["search"]
    if _kind(method) == "multi-trial":
        return f"{search['trials']} trials x {search['trial_epochs']} epochs"
    return f"{search['epochs']} epochs"


def build_report(compare_dir: str | Path) -> dict[str, Any]:
    """Rebuild the comparison report from the run folders' ``metrics.json`` files.

    Reads every ``<method>-seed<s>/fold-<k>/metrics.json`` under ``compare_dir`` and writes
    ``results.csv`` (one row per run), ``table.csv`` and ``table.md`` (per method: mean and
    sample standard deviation over seeds x folds), ``report.json`` and the figures. Unfinished
    runs are listed as missing. Returns the report dictionary.
    """
    import pandas as pd

    compare_dir = Path(compare_dir)
    if not (compare_dir / "compare.json").is_file():
        raise RunError(f"{compare_dir}: not a comparison folder (no compare.json)")
    config = CompareConfig.from_dict(read_json(compare_dir / "compare.json"))

    rows: list[dict[str, Any]] = []
    searches: dict[str, list[dict[str, Any]]] = {}
    budgets: dict[str, str] = {}
    for run_dir in sorted(p for p in compare_dir.iterdir() if p.is_dir() and (p / "config.json").is_file()):
        run_config = read_json(run_dir / "config.json")
        method = f"baseline-{run_config['baseline']}" if run_config.get("baseline") else run_config["search"]["strategy"]
        seed = int(run_config["retrain"]["seed"])
        budgets.setdefault(method, _budget(run_config, method))
        for metrics in _fold_metrics(run_dir):
            rows.append({"method": method, "kind": _kind(method), "seed": seed, "fold": int(metrics["fold"]),
                         **{k: metrics.get(k) for k in ("test_ua", "test_wa", "test_f1", "val_ua", "parameters",
                                                        "multiply_adds", "search_seconds", "retrain_seconds")},
                         "run": f"{run_dir.name}/fold-{metrics['fold']}"})
            search_file = run_dir / f"fold-{metrics['fold']}" / "search.json"
            if search_file.is_file():
                search = read_json(search_file)
                searches.setdefault(method, []).append({"seed": seed, "fold": int(metrics["fold"]),
                                                        "history": search.get("history") or [],
                                                        "experiment_id": search.get("experiment_id")})

    order = list(config.methods) + sorted({r["method"] for r in rows} - set(config.methods))
    rows.sort(key=lambda r: (order.index(r["method"]), r["seed"], r["fold"]))
    results = pd.DataFrame(rows, columns=list(_RESULT_COLUMNS))
    write_atomically(compare_dir / "results.csv", lambda h: results.to_csv(h, index=False))

    table_rows = []
    for method in order:
        metrics = [r for r in rows if r["method"] == method]
        if not metrics:
            continue
        summary = summarize_folds(metrics)
        macs = [m["multiply_adds"] for m in metrics if m.get("multiply_adds") is not None]
        table_rows.append({
            "method": method, "kind": _kind(method), "budget": budgets.get(method, ""), "runs": len(metrics),
            **{f"{key}_{stat}": summary[key][stat]
               for key in ("test_ua", "test_wa", "test_f1", "parameters", "search_seconds", "retrain_seconds")
               for stat in ("mean", "std")},
            # a network's cost per window (reference baselines have none)
            "multiply_adds_mean": float(np.mean(macs)) if macs else None,
        })
    _pair_with_best_hand_designed(table_rows, rows)
    table = pd.DataFrame([{k: v for k, v in r.items() if k != "paired"} for r in table_rows])
    write_atomically(compare_dir / "table.csv", lambda h: table.to_csv(h, index=False))
    missing = _missing_runs(compare_dir, config, rows)
    expected = len(rows) + len(missing)
    markdown = markdown_table(table_rows)
    dataset = config.data.dataset
    folds_text = "all folds" if config.folds is None else f"fold(s) {', '.join(map(str, config.folds))}"
    header = (f"Test UA / WA on {dataset}, {folds_text}, seed(s) {', '.join(map(str, config.seeds))}: "  # type: ignore[arg-type]
              f"mean +- sample std over seeds x folds; seconds are wall-clock means per run. The paired column is "
              f"each row's test UA minus the best hand-designed row's, fold by fold (each side averaged over its "
              f"seeds first): the mean, its 95 % t interval over the folds and the Wilcoxon p. Folds differ far "
              f"more than methods, so read a ranking from that column, not from mean +- std.\n\n")
    note = "" if not missing else f"\nUnfinished runs: {', '.join(missing)}\n"
    text = header + markdown + note
    write_atomically(compare_dir / "table.md", lambda h: h.write(text.encode()))

    figures = []
    try:
        figures.append(str(_plot_ua_vs_cost(table_rows, compare_dir / "ua_vs_cost.png")))
        figures.append(str(_plot_validation_curves(searches, compare_dir / "validation_curves.png")))
        figures.extend(str(p) for p in _draw_found_cells(compare_dir, rows))
    except Exception as error:  # a picture must never fail a report
        logger.warning("could not draw the comparison figures: %s", error)

    report = {"compare_dir": str(compare_dir), "dataset": dataset, "runs": len(rows), "expected_runs": expected,
              "missing": missing, "table": table_rows, "markdown": markdown, "figures": figures,
              "nni_experiments": {m: [s["experiment_id"] for s in v if s["experiment_id"]] for m, v in searches.items()
                                  if any(s["experiment_id"] for s in v)}}
    write_json(compare_dir / "report.json", report)
    return report


def _pair_with_best_hand_designed(table_rows: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    """Add to every table row its test UA minus the best hand-designed row's, paired over folds
    (:func:`strategies.stats.paired_difference`): ``paired`` (the dict) and its columns."""
    by_method = {row["method"]: fold_means((r["fold"], r["test_ua"]) for r in rows if r["method"] == row["method"])
                 for row in table_rows}
    hand = [row for row in table_rows if row["kind"] == "hand-designed"]
    best = max(hand, key=lambda row: row["test_ua_mean"])["method"] if hand else None
    for row in table_rows:
        diff = None if best is None or row["method"] == best else paired_difference(by_method[row["method"]],
                                                                                    by_method[best])
        row.update(paired=diff, paired_against=best, paired_mean=None if diff is None else diff["mean"],
                   paired_low=None if diff is None else diff["ci95"][0],
                   paired_high=None if diff is None else diff["ci95"][1],
                   paired_p=None if diff is None else diff["wilcoxon_p"])


def _missing_runs(compare_dir: Path, config: CompareConfig, rows: list[dict[str, Any]]) -> list[str]:
    if config.folds is None:
        folds: set[int] = {r["fold"] for r in rows}
        if not folds:
            return []
    else:
        folds = set(config.folds)
    have = {(r["method"], r["seed"], r["fold"]) for r in rows}
    return [f"{m}-seed{s}/fold-{f}" for m in config.methods for s in config.seeds  # type: ignore[union-attr]
            for f in sorted(folds) if (m, s, f) not in have]


def _format_mean_std(mean: float | None, std: float | None, digits: int = 3, scale: float = 1.0) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    return f"{mean * scale:.{digits}f} ± {(std or 0.0) * scale:.{digits}f}"


def markdown_table(table_rows: Sequence[dict[str, Any]]) -> str:
    """The per-method table in Markdown (UA / WA as fractions, mean ± sample std; each row minus
    the best hand-designed row, paired over folds, where there is one)."""
    best = next((row.get("paired_against") for row in table_rows if row.get("paired_against")), None)
    against = f"minus {best}, paired over folds: mean [95 % CI], p" if best else "minus the best hand-designed row"
    lines = [f"| method | kind | search budget | runs | test UA | {against} | test WA | test F1 | parameters "
             f"| multiply-adds per window | search s | retrain s |",
             "|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for row in table_rows:
        paired = paired_text(row.get("paired")) or ("(best)" if best and row["method"] == best else "-")
        lines.append(
            f"| {row['method']} | {row['kind']} | {row['budget']} | {row['runs']} "
            f"| {_format_mean_std(row['test_ua_mean'], row['test_ua_std'])} | {paired} "
            f"| {_format_mean_std(row['test_wa_mean'], row['test_wa_std'])} "
            f"| {_format_mean_std(row['test_f1_mean'], row['test_f1_std'])} "
            f"| {row['parameters_mean']:,.0f} "
            f"| {'-' if row.get('multiply_adds_mean') is None else format(row['multiply_adds_mean'] / 1e6, ',.1f') + ' M'} "
            f"| {_format_mean_std(row['search_seconds_mean'], row['search_seconds_std'], digits=0)} "
            f"| {_format_mean_std(row['retrain_seconds_mean'], row['retrain_seconds_std'], digits=0)} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- figures

def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def _save(fig: Any, path: Path) -> Path:
    return write_atomically(path, lambda h: fig.savefig(h, format="png", bbox_inches="tight"))


def _plot_ua_vs_cost(table_rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Test UA against search seconds, one point per method, error bars = std over runs."""
    fig = _figure(6.0, 4.0)
    ax = fig.add_subplot()
    for row in table_rows:
        marker = "s" if row["kind"] == "hand-designed" else "o" if row["kind"] == "one-shot" else "^"
        ax.errorbar(row["search_seconds_mean"], row["test_ua_mean"], xerr=row["search_seconds_std"],
                    yerr=row["test_ua_std"], fmt=marker, capsize=4, label=f"{row['method']} ({row['runs']})")
    ax.set_xlabel("search time per run (s)")
    ax.set_ylabel("test UA")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("test UA vs search cost (mean ± std over seeds x folds)", fontsize=9)
    return _save(fig, path)


def _plot_validation_curves(searches: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """Left: per-epoch validation UA of one-shot searches; right: multi-trial trial finals."""
    fig = _figure(10.0, 3.6)
    oneshot, multi = fig.subplots(1, 2)
    colors = {m: f"C{i}" for i, m in enumerate(searches)}
    for method, runs in searches.items():
        for number, run in enumerate(runs):
            history = run["history"]
            label = method if number == 0 else None
            if history and "epoch" in history[0]:
                oneshot.plot([e["epoch"] + 1 for e in history], [_nan(e.get("val_ua")) for e in history],
                             "-o", markersize=3, color=colors[method], alpha=0.8, label=label)
            elif history:
                finals = [_nan((e.get("final") or {}).get("default") if isinstance(e.get("final"), dict)
                               else e.get("final")) for e in history]
                trials = np.arange(1, len(finals) + 1)
                multi.plot(trials, finals, "o", markersize=4, color=colors[method], alpha=0.8, label=label)
                multi.plot(trials, np.fmax.accumulate(np.nan_to_num(finals, nan=-np.inf)), "-",
                           color=colors[method], alpha=0.5)
    oneshot.set_title("one-shot: validation UA per search epoch", fontsize=9)
    oneshot.set_xlabel("epoch")
    multi.set_title("multi-trial: final validation UA per trial (line: best so far)", fontsize=9)
    multi.set_xlabel("trial")
    from matplotlib.ticker import MaxNLocator

    for ax in (oneshot, multi):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("validation UA")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return _save(fig, path)


def _nan(value: Any) -> float:
    try:
        return float(value) if value is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def _draw_found_cells(compare_dir: Path, rows: Sequence[dict[str, Any]]) -> list[Path]:
    """``cells_<method>.png``: the architecture of each method's first run (lowest seed, fold)."""
    from ser_space import draw_cells, load_architecture

    paths = []
    first: dict[str, str] = {}
    for row in rows:  # sorted by method, seed, fold
        first.setdefault(row["method"], row["run"])
    for method, run in first.items():
        path = compare_dir / f"cells_{method}.png"
        draw_cells(load_architecture(compare_dir / run / "architecture.json"), path)
        paths.append(path)
    return paths
