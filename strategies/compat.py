"""Compatibility fixes for NNI 3.0 on today's torch, Lightning and Python.

NNI 3.0 is the last NNI release and its repository is archived, so its defects are ours
to work around. Every fix lives in this module, is applied by :func:`apply` (idempotent,
called by every entry point of this package) and is guarded by ``tests/test_compat.py``.
Nothing here copies or forks NNI code; each fix changes a default or a warning filter.

Fixes
-----
1. **Channel payload cut by comment stripping.** ``nni.load`` passes
   ``ignore_comments=True`` to json_tricks, whose comment stripper counts quotes with a
   regular expression that miscounts escaped quotes. A message holding a string with an
   escaped quote followed by ``//`` or ``#`` (a Windows path, a URL, a pickled ``__main__``
   class in base64, a note in a config) is cut mid-string; in the experiment process the
   websocket receiver thread dies and the experiment hangs forever. NNI's messages are
   machine-written JSON without comments, so :func:`apply` makes ``ignore_comments=False``
   the default of ``nni.common.serializer.load`` (the function object itself, so every
   module that imported it by name gets the fix). Trials run in fresh processes started by
   NNI's training service; :func:`configure_experiment` makes their command
   ``python -m strategies.compat -m nni.nas.execution.training_service trial``, which
   applies the fixes and then runs NNI's trial entry point unchanged.
2. **Console noise.** NNI 3.0 scans ``torch.nn`` at import time and warns that
   ``torch.nn.Buffer`` and other new non-module classes are "not a nn.Module"; Lightning 2.0
   raises a ``FutureWarning`` about torch's ``LeafSpec`` and a torchmetrics
   ``DeprecationWarning`` on every epoch; NNI logs "Validation dataloaders are missing",
   "Checkpoint callback is found to be None" and "will be ignored for sequential execution
   engine" about settings it then handles; gym prints a four-line "unmaintained" banner on
   import; NNI colours its console lines even in a file or pipe. None is ours to act on.
   Each is silenced where it starts (a warning filter by message, a logging filter on the
   NNI logger that emits it, gym imported once with that banner caught, NNI's own
   colourless formatter on its console handler when stdout is not a terminal), unless
   ``$SER_NAS_VERBOSE`` is 1 (``ser-nas --verbose``).
3. **ENAS and Lightning.** NNI 3.0's ENAS unpacks ``x, y = batch`` in its training step,
   which breaks on Lightning >= 2.1 (the batch arrives with a dataloader index). We pin
   ``pytorch-lightning<2.1`` (pyproject.toml) instead of patching NNI; :func:`check_stack`
   reports a clear error when an incompatible Lightning is installed.
4. **The manager listens on every network interface.** NNI's REST server
   (``nni_node/common/restServer.js``) defaults to ``hostName = '0.0.0.0'`` and NNI's entry
   point (``nni_node/main.js``) never passes another, so anyone who can reach the machine
   can read and change a running experiment through NNI's unauthenticated API.
   :func:`apply` adds ``--require strategies/nni_preload.js`` to ``NODE_OPTIONS`` (Node's
   documented preload hook; every NNI manager is a ``node`` child of this process), and that
   script makes a server asked to listen on all interfaces listen on
   ``$SER_NAS_MANAGER_HOST`` instead: the loopback address unless :func:`manager_host` says
   otherwise. Only the loopback address or all interfaces can work: NNI's own Python client
   dials ``localhost:PORT`` (``nni/experiment/rest.py``).
5. **An interrupted start orphans the manager.** ``nni.experiment.launcher.start_experiment``
   kills the manager it started when starting fails with an ``Exception``, but not on
   ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM in our CLI) while it waits for the manager to
   answer; ``Experiment`` has no handle on it yet, so ``stop()`` cannot end it and the node
   process keeps its port. :func:`manager_host` wraps every start: a manager started inside
   the block that is still running when an exception leaves it is terminated.
6. **TPE cannot read a cell's input choices.** Fixed in the space's own package, where a plain
   NNI experiment gets it too: ``ser_space/nni_fixes.py`` (applied when ``ser_space`` is
   imported).
7. **A manager that starts slowly is given up after 3 seconds.** ``start_experiment`` asks
   the new manager for ``/check-status`` three times, one second apart
   (``nni.experiment.launcher._check_rest_server(port, retry=3)``), and then raises
   ``ConnectionError``, leaving the experiment unstarted. On a loaded 2-core machine (a
   comparison's other job, a training beside it) Node needs longer than that to load NNI's
   manager. :func:`apply` raises the default to :data:`MANAGER_START_SECONDS` tries: a
   manager that answers sooner is found as soon as it does, and one that died still fails,
   with NNI's error, after that time.
8. **A killed command orphans its manager and trials.** When the process that started an
   experiment dies without stopping it (SIGKILL, the out-of-memory killer, a scheduler's hard
   limit), NNI's node manager is re-parented to init and keeps its port, and its trials keep
   training into the run folder. :func:`apply` makes this process the owner of what it starts
   (:mod:`strategies.lifeline`: ``SER_NAS_OWNER`` in the environment every child inherits); the
   manager's preload (``strategies/nni_preload.js``) and every trial started through this
   module's entry point (:func:`_trial_main`) watch the owner and end when it is gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import runpy
import sys
import warnings
from collections.abc import Iterator
from typing import Any

from . import lifeline

logger = logging.getLogger(__name__)

__all__ = ["verbose", "apply", "configure_experiment", "check_stack", "manager_host", "check_manager_host", "is_loopback", "LOOPBACK", "MANAGER_START_SECONDS",
           "TRIAL_ENTRY_MODULE"]

#: How many seconds a new NNI manager has to answer (fix 7; NNI's default is 3).
MANAGER_START_SECONDS = 30

#: Module that NNI's training service runs as the trial's Python (see fix 1).
TRIAL_ENTRY_MODULE = "strategies.compat"

_applied = False
#: Where NNI managers listen unless a user opts in to more (fix 4).
LOOPBACK = "127.0.0.1"
#: The environment variable that strategies/nni_preload.js reads (fix 4).
MANAGER_HOST_VARIABLE = "SER_NAS_MANAGER_HOST"
_LISTEN_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nni_preload.js")
_ALL_INTERFACES = ("0.0.0.0", "::")
# Set by configure_experiment in the trial command line only (never read by the library).
_SEED_VARIABLE = "SER_NAS_TRIAL_SEED"


#: Set to 1 (``ser-nas --verbose`` does) to see every other package's warnings again (fix 2).
VERBOSE_VARIABLE = "SER_NAS_VERBOSE"

# fix 2: warnings other packages raise on every run, about their own internals, by message
_NOISE_WARNINGS = (
    (r".*is found to be not a nn\.Module.*", RuntimeWarning),  # NNI's scan of torch.nn
    # Lightning 2.0 on every tiny run: advice, not problems, drowning the per-epoch metrics
    (r".*does not have many workers.*", Warning),
    (r".*is smaller than the logging interval.*", Warning),
    (r".*pkg_resources is deprecated.*", Warning),
    (r".*declare_namespace.*", DeprecationWarning),
    # Lightning 2.0's _pytree on torch >= 2.5: its own use of torch's LeafSpec
    (r".*isinstance\(treespec, LeafSpec\).*", FutureWarning),
    # Lightning on Ctrl-C / SIGTERM; the CLI says what was interrupted and what resumes
    (r".*Detected KeyboardInterrupt, attempting graceful shutdown.*", Warning),
    # torchmetrics on Lightning 2.0: Lightning reads a property torchmetrics renamed
    (r".*Use `Metric\.updated_called` instead.*", DeprecationWarning),
)
# fix 2: NNI log records about settings it then handles itself, by logger and message
_NOISE_RECORDS = {
    "nni.nas.experiment.config.experiment": "will be ignored for sequential execution engine",
    "nni.nas.evaluator.pytorch.lightning": "Validation dataloaders are missing",
    "nni.nas.oneshot.pytorch.strategy": "Checkpoint callback is found to be None",
}


class _DropRecord(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def verbose() -> bool:
    """Whether other packages' warnings are shown (``$SER_NAS_VERBOSE`` is 1)."""
    return os.environ.get(VERBOSE_VARIABLE, "") == "1"


def _quiet_console() -> None:
    """Fix 2: the console carries our messages, not other packages' noise (unless verbose)."""
    if verbose():
        return
    for message, category in _NOISE_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    if not _applied:
        for name, text in _NOISE_RECORDS.items():
            logging.getLogger(name).addFilter(_DropRecord(text))
        # gym prints a four-line "unmaintained" banner on import (a print, not a warning):
        # import it once here, that banner caught (tianshou, for NNI's ENAS, needs gym's spaces)
        if "gym" not in sys.modules:
            import contextlib
            import importlib.util
            import io

            if importlib.util.find_spec("gym") is not None:
                with contextlib.redirect_stderr(io.StringIO()):
                    import gym  # noqa: F401
        # NNI colours its console lines even when they go to a file or a pipe: not there
        if not (hasattr(sys.stdout, "isatty") and sys.stdout.isatty()):
            from nni.runtime import log as nni_log

            handler = nni_log._handlers.get("_stdout_")
            if handler is not None:
                handler.setFormatter(nni_log._LogFileFormatter())


def apply() -> None:
    """Apply every fix of this module (idempotent)."""
    global _applied
    _quiet_console()
    if _applied:
        return
    from nni.common import serializer

    kwdefaults = serializer.load.__kwdefaults__ or {}
    if "ignore_comments" not in kwdefaults:  # pragma: no cover - a future NNI changed load()
        raise RuntimeError("nni.common.serializer.load has no ignore_comments argument; "
                           "strategies.compat needs updating for this NNI release")
    kwdefaults["ignore_comments"] = False
    serializer.load.__kwdefaults__ = kwdefaults
    lifeline.claim()  # fix 8: what this process starts watches it (unless it was started for another owner)
    _preload_listen_script()
    _patient_manager_start()
    _applied = True
    logger.debug("NNI compatibility fixes applied")


def _patient_manager_start() -> None:
    """Fix 7: a new manager has :data:`MANAGER_START_SECONDS` to answer, not 3 seconds."""
    from nni.experiment import launcher

    defaults = launcher._check_rest_server.__defaults__
    if not defaults or not isinstance(defaults[0], int):  # pragma: no cover - a future NNI changed it
        raise RuntimeError("nni.experiment.launcher._check_rest_server has no retry argument; "
                           "strategies.compat needs updating for this NNI release")
    launcher._check_rest_server.__defaults__ = (max(defaults[0], MANAGER_START_SECONDS),) + defaults[1:]


def _preload_listen_script() -> None:
    """Fixes 4 and 8: make every node process started from here preload strategies/nni_preload.js."""
    if not os.path.isfile(_LISTEN_SCRIPT):  # pragma: no cover - a broken install
        raise RuntimeError(f"{_LISTEN_SCRIPT} is missing; reinstall ser-nas")
    option = f'--require "{_LISTEN_SCRIPT}"'
    current = os.environ.get("NODE_OPTIONS", "")
    if option not in current:
        os.environ["NODE_OPTIONS"] = f"{current} {option}".strip()


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_manager_host(host: str) -> str:
    """``host`` if an NNI manager can listen there, else a one-line ValueError.

    The loopback address (the default) or every interface (``0.0.0.0``, ``::``) only: NNI's
    own client reaches its manager at ``localhost``, so a manager bound to one other address
    would lock NNI out of its own experiment.
    """
    host = str(host).strip()
    if host in _ALL_INTERFACES or is_loopback(host):
        return host
    raise ValueError(f"web UI host {host!r}: NNI reaches its manager at localhost, so it can listen on "
                     f"{LOOPBACK} (the default) or on every interface (0.0.0.0) only")


@contextlib.contextmanager
def manager_host(host: str | None = None, port: int | None = None) -> Iterator[str]:
    """NNI managers started inside this block listen on ``host`` (default: the loopback address).

    Every interface (``0.0.0.0``) logs a one-line warning: NNI's API has no authentication, and
    an SSH tunnel reaches a loopback manager safely.
    """
    apply()
    host = check_manager_host(host or LOOPBACK)
    if host in _ALL_INTERFACES:
        shown = port if port else "PORT"
        logger.warning("the NNI web UI listens on every network interface (%s): its API has no authentication, "
                       "so anyone who reaches this machine can read and change the experiment; to view it "
                       "from elsewhere, keep the default and tunnel: ssh -L %s:127.0.0.1:%s THIS_HOST",
                       host, shown, shown)
    previous = os.environ.get(MANAGER_HOST_VARIABLE)
    os.environ[MANAGER_HOST_VARIABLE] = host
    before = _manager_processes()
    try:
        yield host
    except BaseException:  # fix 5: end the managers this block started and nobody will stop
        _terminate([p for pid, p in _manager_processes().items() if pid not in before])
        raise
    finally:
        if previous is None:
            os.environ.pop(MANAGER_HOST_VARIABLE, None)
        else:
            os.environ[MANAGER_HOST_VARIABLE] = previous


def _manager_processes() -> dict[int, Any]:
    """This process's NNI manager children (``node ... main.js``), by pid."""
    import psutil

    found = {}
    for child in psutil.Process().children(recursive=False):
        try:
            if any(part.endswith("main.js") for part in child.cmdline()):
                found[child.pid] = child
        except psutil.Error:
            continue
    return found


def _terminate(processes: list[Any]) -> None:
    """Terminate NNI managers and their trial processes; kill what is left after 10 s."""
    import psutil

    family = []
    for process in processes:
        try:
            family += [process, *process.children(recursive=True)]
        except psutil.Error:
            continue
    for process in family:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(family, timeout=10)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    if family:
        logger.debug("stopped %d NNI manager / trial process(es) left by an interrupted start", len(family))


def configure_experiment(experiment: Any, seed: int | None = None, threads: int | None = None) -> None:
    """Make an ``NasExperiment``'s trials start through this module (fix 1).

    NNI only lets the trial command's ``{envs}`` and ``{python}`` parts vary; we keep NNI's
    own trial entry point and prefix it with this module, which applies the fixes first.
    With ``seed``, every trial seeds Python, NumPy and torch with it before NNI builds the
    trial's model, so a trial's weights do not depend on the process it landed in. With
    ``threads``, every trial runs torch with that many threads (strategies.threads).
    """
    from .threads import THREADS_VARIABLE

    params = dict(getattr(experiment.config, "_trial_command_params", None) or {})
    params["python"] = f"{sys.executable} -m {TRIAL_ENTRY_MODULE}"
    envs = []
    if seed is not None:
        envs.append(f"{_SEED_VARIABLE}={int(seed)}")
    if threads is not None:
        envs += [f"{name}={int(threads)}" for name in (THREADS_VARIABLE, "OMP_NUM_THREADS", "MKL_NUM_THREADS")]
    if envs:
        params["envs"] = " ".join(envs)
    experiment.config._trial_command_params = params


def check_stack() -> None:
    """Raise a one-line error when the installed stack cannot run all strategies."""
    import pytorch_lightning

    major, minor = (int(p) for p in pytorch_lightning.__version__.split(".")[:2])
    if (major, minor) >= (2, 1):
        raise RuntimeError(
            f"pytorch-lightning {pytorch_lightning.__version__} is installed, but NNI 3.0's ENAS "
            "needs pytorch-lightning<2.1: pip install 'pytorch-lightning>=2.0.9,<2.1'"
        )


def _trial_main(argv: list[str]) -> None:
    """Run ``python -m MODULE ARGS...`` after applying the fixes (trial processes)."""
    if len(argv) < 2 or argv[0] != "-m":
        raise SystemExit("usage: python -m strategies.compat -m MODULE [ARGS...]")
    apply()
    lifeline.watch_owner()  # fix 8: end with the command that started this trial
    from .threads import THREADS_VARIABLE, use_threads

    threads = os.environ.get(THREADS_VARIABLE, "")
    if threads.isdigit() and int(threads) >= 1:
        use_threads(int(threads))  # the share its parent gave this trial
    seed = os.environ.get(_SEED_VARIABLE)
    if seed is not None:
        import pytorch_lightning

        pytorch_lightning.seed_everything(int(seed), workers=True)
    module = argv[1]
    sys.argv = [module, *argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    _trial_main(sys.argv[1:])
