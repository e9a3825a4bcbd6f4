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
"""

from __future__ import annotations

import logging
import os
import runpy
import sys
import warnings
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["apply", "configure_experiment", "check_stack", "TRIAL_ENTRY_MODULE"]

#: Module that NNI's training service runs as the trial's Python (see fix 1).
TRIAL_ENTRY_MODULE = "strategies.compat"

_applied = False
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
    _applied = True
    logger.debug("NNI compatibility fixes applied")


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
