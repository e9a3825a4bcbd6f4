"""Errors raised by the data layer.

The CLI prints ``error: <message>`` for a :class:`DataError` and exits with status 2, so every
message is one line that names the file or folder concerned and says what is wrong with it.
"""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """A corpus, manifest or fold file that cannot be used as given (user-facing, one line)."""
