"""Runs in the NNI web UI: one-shot searches as trials of an NNI experiment, and ``view``.

NNI 3.0 runs one-shot strategies (DARTS, ENAS) in the calling process with no NNI manager,
so they never appear in the web UI. :func:`run_jobs_as_trials` wraps such work in a plain
NNI HPO experiment: its search space is one choice over job ids, GridSearch hands each id
to one trial, and the trial (:mod:`strategies.trial_job`) runs the job in a fresh process
started by NNI's local training service. The shared evaluator reports every validation
epoch as an intermediate result (``default`` = validation UA) and the selected epoch as the
final result, so the trial shows per-epoch curves like any multi-trial run.

:func:`view` reopens finished experiments. NNI's own ``nnictl view`` / ``Experiment.view``
load the stored config into the experiment class it was created with, and a NAS experiment's
config class rejects its own stored ``search_space`` ("search_space field can not be
customized in NAS experiment"). In view mode the NNI manager reads the experiment profile
from the experiment's database and ignores the posted config, so :class:`ViewServer` starts
the manager through ``nni.experiment.launcher`` with a plain placeholder config; this works
for NAS and HPO experiments alike and needs no entry in NNI's experiment manifest.

Every NNI manager started here listens on the loopback address only, unless the caller
passes ``host="0.0.0.0"`` (NNI itself would listen on every interface; the fix is
:func:`strategies.compat.manager_host`, fix 4). The URLs we print and query are loopback
(``127.0.0.1``).
"""

from __future__ import annotations

import atexit
import json
import logging
import shlex
import socket
import sys
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

from . import compat
from .runs import RunError, read_json, write_json

logger = logging.getLogger(__name__)

__all__ = ["run_jobs_as_trials", "find_experiments", "ViewServer", "view", "describe", "free_port",
           "relocate_experiments",
           "TRIAL_JOB_MODULE"]

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


# ----------------------------------------------------------------------------- view

def find_experiments(path: str | Path) -> list[Path]:
    """NNI experiment folders (those with ``db/nni.sqlite``) at or under ``path``, sorted.

    Raises
    ------
    RunError
        ``path`` does not exist, or holds no NNI experiment.
    """
    path = Path(path)
    if not path.exists():
        raise RunError(f"{path}: no such run folder")
    if (path / "db" / "nni.sqlite").is_file():
        return [path.resolve()]
    if not path.is_dir():
        raise RunError(f"{path}: not a run folder or NNI experiment folder")
    found = sorted({db.parent.parent.resolve() for db in path.glob("**/db/nni.sqlite")})
    if not found:
        raise RunError(f"{path}: no NNI experiment here (run with the web UI on, or a multi-trial strategy)")
    return found


def _select(experiments: list[Path], experiment: str | None, path: str | Path) -> Path:
    if experiment is None:
        return experiments[0]
    for folder in experiments:
        if folder.name == experiment:
            return folder
    ids = ", ".join(f.name for f in experiments)
    raise RunError(f"{path}: no NNI experiment {experiment!r}; found {ids}")


class ViewServer:
    """The NNI manager serving one finished experiment read-only (web UI and REST API).

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, experiment_dir: str | Path, port: int = 8080, host: str | None = None) -> None:
        self.experiment_dir = Path(experiment_dir).resolve()
        self.experiment_id = self.experiment_dir.name
        self.port = int(port) or free_port()
        self.host = compat.check_manager_host(host or compat.LOOPBACK)  # where the manager listens
        self._proc: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ViewServer:
        from nni.experiment import ExperimentConfig, RunMode, launcher

        # a placeholder: in view mode the manager reads the stored profile, not this config
        config = ExperimentConfig("local")
        config.experiment_name = f"view {self.experiment_id}"
        config.search_space = {}
        config.trial_command = "true"
        config.trial_concurrency = 1
        config.tuner.name = "Random"
        config.experiment_working_directory = str(self.experiment_dir.parent)
        try:
            with compat.manager_host(self.host, self.port):
                self._proc = launcher.start_experiment("view", self.experiment_id, config.canonical_copy(),
                                                       self.port, False, RunMode.Detach, None)
        except Exception as error:
            self._proc = None
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            hint = "; another web UI may hold it: give --port 0 for a free port" if "idle" in reason.lower() else ""
            raise RunError(f"{self.experiment_dir}: could not start the NNI web UI on port {self.port}: "
                           f"{reason}{hint}") from error
        atexit.register(self.stop)  # never leave a manager behind, even if the caller forgets
        logger.info("NNI web UI for experiment %s (view): %s", self.experiment_id, self.url)
        return self

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Stop the NNI manager (gracefully through its REST API, killed if that fails)."""
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        if proc is None:
            return
        from nni.experiment import rest

        try:
            if proc.poll() is None:
                rest.delete(self.port, "/experiment")
            proc.wait(timeout=20)
        except Exception as error:  # a manager that does not stop is killed
            logger.warning("NNI manager did not stop gracefully (%s); killing it", error)
            proc.kill()
            proc.wait(timeout=10)
        _forget(self.experiment_id)

    def __enter__(self) -> ViewServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _forget(experiment_id: str) -> None:
    """Mark the viewed experiment stopped in NNI's manifest (as ``Experiment.stop`` does)."""
    try:
        from nni.tools.nnictl.config_utils import Experiments

        experiments = Experiments()
        if experiment_id in experiments.get_all_experiments():
            experiments.update_experiment(experiment_id, "status", "STOPPED")
    except Exception as error:  # pragma: no cover - the manifest is informative only
        logger.debug("could not update NNI's experiment manifest: %s", error)


def view(path: str | Path, port: int = 8080, timeout: float | None = None, experiment: str | None = None,
         on_ready: Callable[[ViewServer, list[Path]], None] | None = None, host: str | None = None) -> Path:
    """Serve a finished run's NNI experiment in the web UI until Ctrl-C or ``timeout`` seconds.

    Parameters
    ----------
    path : path
        A run folder (its experiments are found under it, e.g. ``fold-0/search/nni/<id>/``)
        or one NNI experiment folder.
    port : int
        Web UI port; 0 picks a free one.
    timeout : float, optional
        Stop after this many seconds; None serves until Ctrl-C.
    experiment : str, optional
        Which experiment id to serve when there are several (default: for a comparison folder
        the one of all its runs, ``webui.json``; otherwise the first, sorted by path).
    on_ready : callable, optional
        Called with the running :class:`ViewServer` and every experiment folder found (the
        CLI prints the URL and the list).
    host : str, optional
        Where the NNI manager listens: the loopback address (default) or ``0.0.0.0``.

    Returns
    -------
    Path
        The experiment folder served.
    """
    experiments = find_experiments(path)
    summary = Path(path) / "webui.json"
    if experiment is None and summary.is_file():
        # a comparison folder: open the experiment that shows all its runs together
        experiment = str(read_json(summary).get("experiment_id") or "") or None
    chosen = _select(experiments, experiment, path)
    with ViewServer(chosen, port, host=host) as server:
        logger.debug("serving %s at %s", chosen, server.url)
        if on_ready is not None:
            on_ready(server, experiments)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while deadline is None or time.monotonic() < deadline:
                if not server.running():
                    raise RunError(f"{chosen}: the NNI manager exited; see {chosen / 'log'}")
                time.sleep(0.2)
        except KeyboardInterrupt as interrupt:
            logger.info("stopping the NNI web UI")
            if type(interrupt) is not KeyboardInterrupt:
                raise  # a subclass: stopped by SIGTERM / SIGHUP (the CLI), not Ctrl-C; the manager stops first
    return chosen


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


def describe(experiment_dir: str | Path) -> dict[str, Any]:
    """Id, name and folder of an NNI experiment, read from its stored profile when possible."""
    folder = Path(experiment_dir)
    info: dict[str, Any] = {"id": folder.name, "dir": str(folder), "name": None}
    try:
        import sqlite3

        with sqlite3.connect(f"file:{folder / 'db' / 'nni.sqlite'}?mode=ro", uri=True) as db:
            row = db.execute("SELECT params FROM ExperimentProfile ORDER BY revision DESC LIMIT 1").fetchone()
        if row:
            info["name"] = json.loads(row[0]).get("experimentName")
    except Exception:  # pragma: no cover - the name is informative only
        pass
    return info
