"""NNI trials of the toolkit's own jobs: the job specs, the reporter, and running jobs as trials.

NNI 3.0 runs one-shot strategies (DARTS, ENAS) in the calling process with no NNI manager,
so they never appear in the web UI. :func:`run_jobs_as_trials` wraps such work in a plain
NNI HPO experiment: its search space is one choice over job ids, GridSearch hands each id
to one trial, and the trial (``python -m strategies.compat -m strategies.trial_job JOBS_DIR``,
:mod:`strategies.trial_job`) runs the job in a fresh process started by NNI's local training
service. The shared evaluator reports every validation epoch as an intermediate result
(``default`` = validation UA, :func:`nni_metric`) and the selected epoch as the final
result, so the trial shows per-epoch curves like any multi-trial run.

Why the reports do not go through ``nni.report_*_result``: NNI 3.0 runs a one-shot strategy
in its sequential execution engine, which swaps in its own trial command channel for the
duration of the search, so the evaluator's reports land in NNI's in-process model record
and never reach the manager. :class:`TrialReporter` keeps the trial's real channel (taken
before the search starts) and sends to it directly; :func:`reporting` makes it the current
one for the job that runs, and :func:`epoch_reporter` reads it.

This module is NNI plumbing beneath the search and the applications: it imports neither.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import compat
from .runs import read_json, write_json

logger = logging.getLogger(__name__)

__all__ = ["JOB_FORMAT", "TRIAL_JOB_MODULE", "TrialReporter", "reporting", "current_reporter", "epoch_reporter",
           "nni_metric", "dataset_spec", "search_job", "run_jobs_as_trials", "free_port", "relocate_experiments"]

#: Module run by every wrapper trial (through :mod:`strategies.compat`, so NNI fixes apply).
TRIAL_JOB_MODULE = "strategies.trial_job"

_FAILED = ("FAILED", "USER_CANCELED", "SYS_CANCELED", "EARLY_STOPPED")
_POLL_SECONDS = 1.0


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _trial_log(experiment_dir: Path, trial_id: str) -> tuple[Path, str]:
    """The trial's log file (or folder) and the last line of its stderr (the error, usually)."""
    for folder in sorted(experiment_dir.glob(f"**/trials/{trial_id}")):
        log = folder / "trial.log"
        last = ""
        try:
            lines = [line.strip() for line in (folder / "trial.stderr").read_text(errors="replace").splitlines()]
            last = next((line for line in reversed(lines) if line), "")
        except OSError:
            pass
        return (log if log.exists() else folder), last
    return experiment_dir / "trials" / trial_id, ""


# ----------------------------------------------------------------------------- jobs as trials

def run_jobs_as_trials(jobs: list[dict[str, Any]], workdir: str | Path, port: int = 0,
                       experiment_name: str = "ser-nas", concurrency: int = 1,
                       host: str | None = None, progress: tuple[str, int] | None = None,
                       service: Any | None = None, keep_going: bool = False,
                       threads: int | None = None) -> list[dict[str, Any]]:
    """Run each job as one trial of an NNI experiment (shown in the web UI); return their results.

    Parameters
    ----------
    jobs : list of dict
        JSON-serialisable job specs for :mod:`strategies.trial_job`, each with a ``kind`` and
        optionally an ``id`` (default ``job-<index>``; ids must be unique).
    workdir : path
        Where the job specs and results (``jobs/``) and the NNI experiment folder
        (``nni/<experiment id>/``) are written.
    port : int
        Web UI port; 0 picks a free one.
    experiment_name : str
        Name shown in the web UI.
    concurrency : int
        Trials run at once.
    host : str, optional
        Where the NNI manager listens: the loopback address (default) or ``0.0.0.0``.
    progress : (str, int), optional
        A bar's name and total: the trials' intermediate results (one per epoch) counted as
        they arrive (shown inside :func:`strategies.progress.shown`).
    service : strategies.search.SearchConfig, optional
        Run the trials on its training service (``training_service``, ``remote_*``,
        ``nni_manager_ip``, ``training_service_config``; :func:`strategies.training_service.configure_training_service`)
        instead of this machine. Trial machines must see ``workdir`` at the same path (a
        shared filesystem: the job specs and results are files there) and have this package.
    threads : int, optional
        Torch threads of each trial (default: this process's threads divided by ``concurrency``).
    keep_going : bool
        A failed trial does not stop the others: its job's entry has ``error`` (the trial's
        last stderr line and log) instead of ``result``.

    Returns
    -------
    list of dict
        One per job, in the order of ``jobs``: ``{"job", "trial_id", "experiment_id",
        "experiment_dir", "result"}``, ``result`` being what the job returned (or ``error``
        with ``keep_going``).

    Raises
    ------
    RuntimeError
        A trial failed (the message names its log) or a trial wrote no result (without ``keep_going``).
    """
    from nni.experiment import Experiment

    if not jobs:
        return []
    workdir = Path(workdir).resolve()
    jobs_dir = workdir / "jobs"
    ids = [str(job.get("id", f"job-{i}")) for i, job in enumerate(jobs)]
    if len(set(ids)) != len(ids):
        raise ValueError(f"job ids must be unique, got {ids}")
    for job_id, job in zip(ids, jobs):
        write_json(jobs_dir / f"{job_id}.json", {**job, "id": job_id})
        (jobs_dir / f"{job_id}.result.json").unlink(missing_ok=True)

    experiment = Experiment("local")
    config = experiment.config
    python = sys.executable
    if service is not None:
        from .training_service import configure_training_service, manager_listen_host, trial_python

        configure_training_service(experiment, service, code_directory=workdir)
        python = trial_python(service, getattr(config.training_service, "platform", "local"))
        host = manager_listen_host(config, host)
    config.experiment_name = experiment_name
    config.search_space = {"job": {"_type": "choice", "_value": ids}}
    config.tuner.name = "GridSearch"
    config.max_trial_number = len(jobs)
    config.trial_concurrency = max(1, int(concurrency))
    config.trial_code_directory = str(workdir)
    # each trial gets its share of this process's cores (strategies.threads)
    import torch

    from .threads import THREADS_VARIABLE, fair_share

    threads = threads or fair_share(config.trial_concurrency, torch.get_num_threads())
    config.trial_command = (f"{THREADS_VARIABLE}={threads} OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} "
                            f"{shlex.quote(python)} -m strategies.compat -m {TRIAL_JOB_MODULE} "
                            f"{shlex.quote(str(jobs_dir))}")
    config.experiment_working_directory = str(workdir / "nni")
    if service is None:
        config.training_service.use_active_gpu = True  # a GPU busy with the main process is still usable
    experiment_dir = workdir / "nni" / experiment.id
    port = port or free_port()
    logger.info("NNI web UI: http://127.0.0.1:%d  (experiment %s, %d trial(s))", port, experiment.id, len(jobs))
    try:
        with compat.manager_host(host, port):
            experiment.start(port=port)
        failed = _wait(experiment, experiment_dir, len(jobs), progress, keep_going)
    finally:
        experiment.stop()
    results = []
    for job_id in ids:
        path = jobs_dir / f"{job_id}.result.json"
        if not path.is_file():
            message = failed.get(job_id) or f"job {job_id} wrote no result ({path}); see the trial logs under {experiment_dir}"
            if not keep_going:
                raise RuntimeError(message)
            results.append({"job": job_id, "experiment_id": experiment.id, "experiment_dir": str(experiment_dir),
                            "error": message})
            continue
        results.append({**read_json(path), "experiment_dir": str(experiment_dir)})
    return results


def _wait(experiment: Any, experiment_dir: Path, expected: int, progress: tuple[str, int] | None = None,
          keep_going: bool = False) -> dict[str, str]:
    """Poll until every trial ended; a failed trial raises with its log path, or with
    ``keep_going`` is recorded: returns ``{job id: message}`` of the failed ones."""
    from .progress import bar, enabled

    counter = bar(progress[1], progress[0], "epoch") if progress and enabled() else None
    try:
        return _poll(experiment, experiment_dir, expected, counter, keep_going)
    finally:
        if counter is not None:
            counter.close()


def _poll(experiment: Any, experiment_dir: Path, expected: int, counter: Any,
          keep_going: bool = False) -> dict[str, str]:
    failed: dict[str, str] = {}
    while True:
        if counter is not None:
            try:
                metrics = experiment.get_job_metrics()
                done = sum(m.type == "PERIODICAL" for trial in metrics.values() for m in trial)
                counter.update(max(0, min(done, counter.total) - counter.n))
            except Exception:  # pragma: no cover - a bar must never fail a search
                pass
        trials = experiment.list_trial_jobs()
        for trial in trials:
            if trial.status in _FAILED:
                log, error = _trial_log(experiment_dir, trial.trialJobId)
                message = (f"NNI trial {trial.trialJobId} {trial.status}"
                           f"{': ' + error[:300] if error else ''}; see {log}")
                if not keep_going:
                    raise RuntimeError(message)
                job = _trial_job_id(trial)
                if job not in failed:
                    failed[job] = message
                    logger.warning("job %s: %s", job, message)
        status = experiment.get_status()
        succeeded = sum(t.status == "SUCCEEDED" for t in trials)
        if succeeded + len(failed) >= expected:
            return failed
        if status in ("DONE", "STOPPED", "ERROR") and succeeded + len(failed) < expected:
            raise RuntimeError(f"NNI experiment {experiment.id} ended ({status}) with {succeeded} of {expected} "
                               f"trial(s) finished; see {experiment_dir / 'log'}")
        time.sleep(_POLL_SECONDS)


def _trial_job_id(trial: Any) -> str:
    """The job id a trial ran (its tuner parameter ``job``), or the trial id when unknown."""
    for parameters in trial.hyperParameters or []:
        if "job" in (parameters.parameters or {}):
            return str(parameters.parameters["job"])
    return str(trial.trialJobId)



JOB_FORMAT = 1


class TrialReporter:
    """Sends metrics of this NNI trial to the NNI manager over the trial's own command channel."""

    def __init__(self) -> None:
        import nni
        from nni.runtime.env_vars import trial_env_vars
        from nni.runtime.trial_command_channel import get_default_trial_command_channel

        self.channel = get_default_trial_command_channel()
        self.parameter_id = (nni.trial._params or {}).get("parameter_id")
        self.trial_job_id = trial_env_vars.NNI_TRIAL_JOB_ID
        self.sequence = 0

    def intermediate(self, entry: dict[str, Any]) -> None:
        """Report one validation epoch (a history entry of the shared evaluator)."""
        self._send("PERIODICAL", entry, self.sequence)
        self.sequence += 1

    def final(self, entry: dict[str, Any]) -> None:
        """Report the final result (the history entry of the exported architecture)."""
        self._send("FINAL", entry, 0)

    def _send(self, kind: str, entry: dict[str, Any], sequence: int) -> None:
        self.send(kind, nni_metric(entry), sequence)

    def send(self, kind: str, value: dict[str, float], sequence: int) -> None:
        """Send one metric dict (``default`` is what the web UI plots) as PERIODICAL or FINAL."""
        self.channel.send_metric(type=kind, parameter_id=self.parameter_id, trial_job_id=self.trial_job_id,
                                 sequence=sequence, value=value)


#: The reporter of the job running in this NNI trial (:func:`reporting`), or None.
_current: TrialReporter | None = None


@contextlib.contextmanager
def reporting(reporter: TrialReporter) -> Iterator[TrialReporter]:
    """Make ``reporter`` the current one for the block (a job running in an NNI trial)."""
    global _current
    previous, _current = _current, reporter
    try:
        yield reporter
    finally:
        _current = previous


def current_reporter() -> TrialReporter | None:
    """The reporter of the job running in this NNI trial, or None outside one."""
    return _current


def epoch_reporter(module: Any) -> Any | None:
    """A Lightning callback reporting ``module``'s newest validation epoch to NNI, or None outside a job trial.

    Added after :class:`~strategies.search.oneshot.EpochValidation`, so the epoch is recorded when it runs.
    """
    reporter = current_reporter()
    if reporter is None:
        return None
    import pytorch_lightning as pl

    class _ReportEpoch(pl.Callback):
        reported = 0

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            for entry in module.history[self.reported:]:
                reporter.intermediate(entry)
            self.reported = len(module.history)

    return _ReportEpoch()


def dataset_spec(dataset: Any) -> dict[str, Any] | None:
    """``FeatureDataset`` arguments as plain values, or None for any other dataset."""
    from .data.dataset import FeatureDataset

    if not isinstance(dataset, FeatureDataset):
        return None
    return {**dataset.spec(), "features_path": str(Path(dataset.features_path).resolve())}


def search_job(space_config: Any, search: Any, train: Any, train_dataset: Any, val_dataset: Any,
               workdir: str | Path, num_classes: int | None, train_labels: list[int] | None,
               trainer_kwargs: dict[str, Any] | None) -> dict[str, Any] | None:
    """The job spec of a search, or None when its datasets or trainer options are not plain values."""
    datasets = {"train": dataset_spec(train_dataset), "val": dataset_spec(val_dataset)}
    if any(spec is None for spec in datasets.values()):
        return None
    job = {
        "format": JOB_FORMAT,
        "kind": "search",
        "space": space_config.to_dict(),
        "search": search.replace(webui=False).to_dict(),
        "train": train.to_dict(),
        "datasets": datasets,
        "workdir": str(Path(workdir).resolve()),
        "num_classes": num_classes,
        "train_labels": None if train_labels is None else [int(y) for y in train_labels],
        "trainer_kwargs": dict(trainer_kwargs or {}),
    }
    try:
        json.dumps(job)
    except (TypeError, ValueError):
        return None
    return job


def nni_metric(entry: dict[str, Any]) -> dict[str, float]:
    """A validation epoch of the shared evaluator (its ``history`` entry) as an NNI metric: ``default``
    is the validation UA (what the web UI plots), then WA, F1, loss and the training loss."""
    metric = {"default": float(entry["val_ua"]), "val_wa": float(entry["val_wa"]),
              "val_f1": float(entry["val_f1"]), "val_loss": float(entry["val_loss"])}
    train_loss = float(entry.get("train_loss", float("nan")))
    if math.isfinite(train_loss):  # the learning curve beside the validation one, in the web UI too
        metric["train_loss"] = train_loss
    return metric


def relocate_experiments(folder: str | Path, old: str | Path, new: str | Path) -> int:
    """Point the stored NNI experiments under ``folder`` from paths under ``old`` to ``new``.

    A fold is written in ``.fold-k.partial/`` and renamed to ``fold-k/`` when complete; NNI's
    database keeps the paths the experiment ran with (its name, working and log folders, the
    trial logs), which the web UI shows. Called just before the rename; returns the number of
    experiments updated. The experiments must not be running.
    """
    import sqlite3

    old, new = str(old), str(new)
    count = 0
    for database in sorted(Path(folder).glob("**/db/nni.sqlite")):
        connection = sqlite3.connect(database)
        try:
            with connection:
                connection.execute("UPDATE ExperimentProfile SET params = replace(params, ?, ?), "
                                   "logDir = replace(logDir, ?, ?)", (old, new, old, new))
                connection.execute("UPDATE TrialJobEvent SET logPath = replace(logPath, ?, ?), "
                                   "data = replace(data, ?, ?)", (old, new, old, new))
        except sqlite3.Error as error:  # the web UI shows old paths; the results are not affected
            logger.warning("%s: could not update NNI's stored paths (%s)", database, error)
            continue
        finally:
            connection.close()
        count += 1
    return count
