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
2. **Harmless warnings.** NNI 3.0 scans ``torch.nn`` at import time and warns that
   ``torch.nn.Buffer`` and other new non-module classes are "not a nn.Module"; they are
   not layers and the warning is noise. Filtered by message, for NNI's module only.
3. **ENAS and Lightning.** NNI 3.0's ENAS unpacks ``x, y = batch`` in its training step,
   which breaks on Lightning >= 2.1 (the batch arrives with a dataloader index). We pin
   ``pytorch-lightning<2.1`` (pyproject.toml) instead of patching NNI; :func:`check_stack`
   reports a clear error when an incompatible Lightning is installed.
4. **The manager listens on every network interface.** NNI's REST server
   (``nni_node/common/restServer.js``) defaults to ``hostName = '0.0.0.0'`` and NNI's entry
   point (``nni_node/main.js``) never passes another, so anyone who can reach the machine
   can read and change a running experiment through NNI's unauthenticated API.
   :func:`apply` adds ``--require strategies/nni_listen.js`` to ``NODE_OPTIONS`` (Node's
   documented preload hook; every NNI manager is a ``node`` child of this process), and that
   script makes a server asked to listen on all interfaces listen on
   ``$SER_NAS_MANAGER_HOST`` instead: the loopback address unless :func:`manager_host` says
   otherwise. Only the loopback address or all interfaces can work: NNI's own Python client
   dials ``localhost:PORT`` (``nni/experiment/rest.py``).
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

logger = logging.getLogger(__name__)

__all__ = ["apply", "configure_experiment", "check_stack", "manager_host", "check_manager_host", "is_loopback", "LOOPBACK",
           "TRIAL_ENTRY_MODULE"]

#: Module that NNI's training service runs as the trial's Python (see fix 1).
TRIAL_ENTRY_MODULE = "strategies.compat"

_applied = False
#: Where NNI managers listen unless a user opts in to more (fix 4).
LOOPBACK = "127.0.0.1"
#: The environment variable that strategies/nni_listen.js reads (fix 4).
MANAGER_HOST_VARIABLE = "SER_NAS_MANAGER_HOST"
_LISTEN_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nni_listen.js")
_ALL_INTERFACES = ("0.0.0.0", "::")
# Set by configure_experiment in the trial command line only (never read by the library).
_SEED_VARIABLE = "SER_NAS_TRIAL_SEED"


def _quiet_warnings() -> None:
    warnings.filterwarnings(
        "ignore",
        message=r".*is found to be not a nn\.Module.*",
        category=RuntimeWarning,
    )
    # Lightning 2.0 warns about few batches / workers on every tiny run; these are advice,
    # not problems, and drown the per-epoch metrics we print.
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*is smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=r".*pkg_resources is deprecated.*")


def apply() -> None:
    """Apply every fix of this module (idempotent)."""
    global _applied
    _quiet_warnings()
    if _applied:
        return
    from nni.common import serializer

    kwdefaults = serializer.load.__kwdefaults__ or {}
    if "ignore_comments" not in kwdefaults:  # pragma: no cover - a future NNI changed load()
        raise RuntimeError("nni.common.serializer.load has no ignore_comments argument; "
                           "strategies.compat needs updating for this NNI release")
    kwdefaults["ignore_comments"] = False
    serializer.load.__kwdefaults__ = kwdefaults
    _preload_listen_script()
    _applied = True
    logger.debug("NNI compatibility fixes applied")


def _preload_listen_script() -> None:
    """Fix 4: make every node process started from here preload strategies/nni_listen.js."""
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
    try:
        yield host
    finally:
        if previous is None:
            os.environ.pop(MANAGER_HOST_VARIABLE, None)
        else:
            os.environ[MANAGER_HOST_VARIABLE] = previous


def configure_experiment(experiment: Any, seed: int | None = None) -> None:
    """Make an ``NasExperiment``'s trials start through this module (fix 1).

    NNI only lets the trial command's ``{envs}`` and ``{python}`` parts vary; we keep NNI's
    own trial entry point and prefix it with this module, which applies the fixes first.
    With ``seed``, every trial seeds Python, NumPy and torch with it before NNI builds the
    trial's model, so a trial's weights do not depend on the process it landed in.
    """
    params = dict(getattr(experiment.config, "_trial_command_params", None) or {})
    params["python"] = f"{sys.executable} -m {TRIAL_ENTRY_MODULE}"
    if seed is not None:
        params["envs"] = f"{_SEED_VARIABLE}={int(seed)}"
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
    seed = os.environ.get(_SEED_VARIABLE)
    if seed is not None:
        import pytorch_lightning

        pytorch_lightning.seed_everything(int(seed), workers=True)
    module = argv[1]
    sys.argv = [module, *argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    _trial_main(sys.argv[1:])
