"""The registry of corpora: one module per corpus, each with its ``SPEC``."""

from __future__ import annotations

from ..errors import DataError
from . import crema_d, csv_listing, emodb, folder, iemocap, msp_improv, msp_podcast, ravdess, synthetic
from .base import CorpusSpec

__all__ = ["CORPORA", "get_corpus"]

#: Every supported corpus by name, in the order the CLI lists them.
CORPORA: dict[str, CorpusSpec] = {
    module.SPEC.name: module.SPEC
    for module in (synthetic, iemocap, msp_improv, msp_podcast, ravdess, crema_d, emodb, folder, csv_listing)
}


def get_corpus(name: str) -> CorpusSpec:
    """The :class:`CorpusSpec` registered under ``name`` (case and ``_``/``-`` insensitive).

    Raises
    ------
    DataError
        If no corpus has that name; the message lists the available ones.
    """
    key = name.strip().lower().replace("_", "-")
    if key not in CORPORA:
        raise DataError(f"unknown corpus {name!r}; available: {', '.join(CORPORA)}")
    return CORPORA[key]
