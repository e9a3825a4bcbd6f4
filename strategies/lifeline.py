"""Nothing a command starts outlives it: every process it starts watches the process that owns the run.

The owner (the ``ser-nas`` process, or whichever Python process first applies the NNI fixes,
:func:`strategies.compat.apply`) writes its identity into the environment, ``SER_NAS_OWNER=
PID:START``, and every process it starts inherits it: NNI's node managers (of a search, a
comparison or ``ser-nas view``), their trial processes, a comparison's job processes. Each of
them watches the owner twice a second and ends when it is gone, whatever ended it, SIGKILL
included:

- an NNI manager's preload (``strategies/nni_preload.js``) raises SIGTERM in the manager, so NNI
  shuts down as on ``kill`` (stopping its trials), and exits at the latest 5 s later;
- trial and job processes (:func:`watch_owner`, called by the trial entry point of
  :mod:`strategies.compat` and by a comparison's job processes) kill their own children and exit.

``START`` is the owner's start time as Linux's ``/proc/PID/stat`` gives it (clock ticks since
boot), so a PID that the system has reused for another process is not mistaken for the owner.
Without ``/proc`` (macOS, Windows) the watch compares the PID alone: a reused PID keeps the
children alive until that process ends too. Trials that NNI runs on other machines (the remote
training service) are NNI's to reap: this watch only reaches processes on this machine.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

logger = logging.getLogger(__name__)

__all__ = ["OWNER_VARIABLE", "claim", "identity", "is_alive", "watch_owner"]

OWNER_VARIABLE = "SER_NAS_OWNER"
"""Environment variable naming the process that owns every process started for a command."""

WATCH_SECONDS = 0.5
"""How often a watcher looks at its owner."""

_watching: threading.Thread | None = None


def _start_ticks(pid: int) -> str:
    """The start time of ``pid`` in clock ticks since boot (``/proc/PID/stat`` field 22), or ""."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return ""
    # the command name (field 2) may hold spaces and parentheses: the fields resume after its last ')'
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else ""


def identity(pid: int | None = None) -> str:
    """``PID:START`` of a process (this one by default); START is empty without ``/proc``."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{_start_ticks(pid)}"


def claim(force: bool = False) -> str:
    """Make this process the owner of what it starts, unless it was started for another owner.

    ``force``: own it even so (a ``ser-nas`` command owns its processes, whoever started it).
    Returns the owner's identity (``os.environ[OWNER_VARIABLE]``).
    """
    if force:
        os.environ[OWNER_VARIABLE] = identity()
    else:
        os.environ.setdefault(OWNER_VARIABLE, identity())
    return os.environ[OWNER_VARIABLE]


def is_alive(owner: str) -> bool:
    """Whether the process named by ``owner`` (``PID:START``) still runs."""
    pid_text, _, start = owner.partition(":")
    try:
        pid = int(pid_text)
    except ValueError:
        return True  # not ours to judge: never end a process over a malformed value
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    except OSError:  # Windows: os.kill(pid, 0) is not a probe there
        return _exists_elsewhere(pid)
    return not start or _start_ticks(pid) in ("", start)


def _exists_elsewhere(pid: int) -> bool:
    try:
        import psutil

        return psutil.pid_exists(pid)
    except ImportError:  # pragma: no cover - NNI depends on psutil
        return True


def _end_this_process() -> None:
    """The owner is gone: kill this process's children, then end it (no cleanup handlers run:
    whatever it was writing is a partial fold, which the next ``--resume`` redoes)."""
    try:
        import psutil

        children = psutil.Process().children(recursive=True)
        for child in children:
            try:
                child.kill()
            except psutil.Error:
                pass
    except Exception:  # pragma: no cover - nothing may stop this process from ending
        pass
    sys.stderr.write(f"ser-nas: the process that started this one ({os.environ.get(OWNER_VARIABLE)}) is gone; "
                     f"stopping\n")
    sys.stderr.flush()
    os._exit(1)


def watch_owner(interval: float = WATCH_SECONDS) -> threading.Thread | None:
    """In a process started for an owner: end this process (and its children) once the owner is gone.

    A daemon thread, started once per process; None when this process is the owner itself or
    has none.
    """
    global _watching
    owner = os.environ.get(OWNER_VARIABLE)
    if not owner or owner.partition(":")[0] == str(os.getpid()):
        return None
    if _watching is not None and _watching.is_alive():
        return _watching

    def watch() -> None:
        while is_alive(owner):
            time.sleep(interval)
        _end_this_process()

    _watching = threading.Thread(target=watch, name="ser-nas-owner-watch", daemon=True)
    _watching.start()
    logger.debug("watching owner %s", owner)
    return _watching
