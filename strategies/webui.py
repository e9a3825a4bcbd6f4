"""``ser-nas view``: reopen finished NNI experiments in the NNI web UI.

(How one-shot searches and comparison runs become trials of an NNI experiment, and so appear
in the web UI while they run: :mod:`strategies.trials`.)

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
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

from . import compat
from .runs import RunError, read_json
from .trials import free_port

logger = logging.getLogger(__name__)

__all__ = ["find_experiments", "ViewServer", "view", "describe"]

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
