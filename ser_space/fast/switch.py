"""The one switch of the fast path (:mod:`ser_space.fast`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["ENV_VAR", "enabled", "set_enabled", "switched"]

ENV_VAR = "SER_NAS_FAST"
"""``SER_NAS_FAST=0`` (or ``off``, ``false``, ``no``) starts a process with the fast path off."""

_enabled = os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "off", "false", "no")


def enabled() -> bool:
    """Whether the fast path is on (the default; ``SER_NAS_FAST=0`` starts it off)."""
    return _enabled


def set_enabled(on: bool) -> bool:
    """Turn the fast path on or off for this process; returns the previous setting.

    It takes effect for models accelerated afterwards (:func:`ser_space.fast.accelerate`)
    and for the next forward pass of every DARTS supernet cell.
    """
    global _enabled
    previous, _enabled = _enabled, bool(on)
    return previous


@contextmanager
def switched(on: bool) -> Iterator[None]:
    """``with switched(False): ...`` runs the block with the fast path off (or on)."""
    previous = set_enabled(on)
    try:
        yield
    finally:
        set_enabled(previous)
