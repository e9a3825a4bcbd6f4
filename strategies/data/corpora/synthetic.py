"""The embedded synthetic corpus (espeak-ng voices as speakers, emotions as prosody): its
description (``SPEC``), options and scanner.

Unlike the other corpora it is made, not found: :func:`load_manifest` asks ``SPEC.generate``
for the folder, which writes the corpus there on first use (or into a cache folder when no
root is given; :mod:`strategies.data.synthetic` is the generator). Its options are the
common ones and the generator's recipe, the fields of
:class:`~strategies.data.synthetic.SyntheticConfig` (``num_speakers``, ``emotions``,
``clips_per_emotion``, ...).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from ..errors import DataError
from ..synthetic import EMOTION_PROFILES, SyntheticConfig, ensure_synthetic_corpus, load_synthetic_manifest
from .base import CorpusSpec, LoadOptions, as_tuple, manifest_rows

_RECIPE = [(f.name, f.type, dataclasses.field(default=f.default)) for f in dataclasses.fields(SyntheticConfig)]


def _post_init(self: LoadOptions) -> None:
    LoadOptions.__post_init__(self)
    # emotions as "neu,ang,sad" too (the command line's --option emotions=neu,ang,sad)
    object.__setattr__(self, "emotions", as_tuple(self.emotions))


SyntheticOptions = dataclasses.make_dataclass("SyntheticOptions", _RECIPE, bases=(LoadOptions,), frozen=True,
                                              namespace={"__post_init__": _post_init})
SyntheticOptions.__module__ = __name__
SyntheticOptions.__doc__ = """The common options and the generator's recipe (the fields of ``SyntheticConfig``)."""


def recipe(options: LoadOptions) -> SyntheticConfig:
    """The generator's config of these options (a ``ValueError`` of it is a one-line error)."""
    try:
        return SyntheticConfig(**{name: getattr(options, name) for name, _, _ in _RECIPE})
    except ValueError as exc:
        raise DataError(f"synthetic corpus: {exc}") from None


def _generate(root: Path | None, options: LoadOptions) -> Path:
    return ensure_synthetic_corpus(root, recipe(options))


def _scan_synthetic(root: Path, options: LoadOptions) -> pd.DataFrame:
    manifest = load_synthetic_manifest(root)
    source = str(root / "manifest.csv")
    return manifest_rows([{"utt_id": row.utt_id, "path": row.path, "speaker": row.speaker, "gender": row.gender,
                   "session": row.session, "label": row.emotion, "source": source}
                  for row in manifest.itertuples(index=False)])


SPEC = CorpusSpec(
    name="synthetic",
    description="the embedded synthetic corpus: 8 espeak-ng voices, 4 emotions as prosody, generated on first use",
    url="(generated; no download)",
    layout="manifest.csv, corpus.json and wav/<speaker>/<utt_id>.wav, written by the generator",
    emotion_map={profile.emotion: profile.emotion for profile in EMOTION_PROFILES},
    default_classes=None,
    protocol="loso",
    scan=_scan_synthetic,
    options=SyntheticOptions,
    generate=_generate,
)
