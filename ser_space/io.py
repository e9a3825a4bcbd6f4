"""Files written whole or not at all: the project's one atomic writer.

:func:`write_atomically` writes through a temporary file beside the target and renames it
into place, so a crash, a full disk or Ctrl-C never leaves a half-written architecture file,
run file, cache index or model; ``ser_space`` uses it for architecture files and
``strategies`` for everything it writes.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["write_atomically"]


def _umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting, then put back at once
    os.umask(mask)
    return mask


def write_atomically(path: str | os.PathLike[str], write: Any) -> Path:
    """Call ``write(binary_stream)`` on a temporary file beside ``path``, then rename it to ``path``.

    The project's one atomic writer (``ser_space`` and ``strategies`` import it from here): a unique
    temporary name in the same folder, fsync, ``os.replace``; ``path`` is either its old self
    or complete, never half-written, and the temporary file is removed if anything fails. The
    file gets the mode a plain ``open`` would give (``0o666`` less the umask), not the
    temporary file's private ``0o600``, so a shared run folder or cache stays readable.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(handle, 0o666 & ~_umask())
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())  # the data is on disk before the name points to it
        os.replace(temp, path)
    except BaseException as error:
        Path(temp).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.filename is None:  # a full disk mid-write: name the file
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
    return path
