"""Where the toolkit keeps its caches: one root for prepared data, feature caches and the generated corpus."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]


def cache_root() -> Path:
    """``$SER_NAS_HOME`` or ``$XDG_CACHE_HOME/ser-nas`` (``~/.cache/ser-nas``): caches only.

    Only where prepared data, feature caches and the generated corpus are kept depends on the
    environment; the data, the folds and the features never do.
    """
    home = os.environ.get("SER_NAS_HOME")
    if home:
        return Path(home)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ser-nas"
