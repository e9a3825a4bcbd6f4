"""Corpus descriptions and the one parametrized loader that turns a corpus folder into a manifest.

One module per corpus (``synthetic``, ``iemocap``, ``msp_improv``, ``msp_podcast``, ``ravdess``,
``crema_d``, ``emodb``, ``folder``, ``csv_listing``) holds its ``SPEC``, its options class and its scanner;
``base`` what they share, ``registry`` the :data:`CORPORA` that lists them, ``loader`` the one
loader (docs/datasets.md, "Adding a corpus"). Every supported corpus is a :class:`CorpusSpec`
in :data:`CORPORA`: where users get it, how its
raw labels map onto canonical class names, which classes are used by default, which fold
protocol is standard for it, and a ``scan`` function that reads the corpus's own layout and
label files into raw rows. :func:`load_manifest` does everything else the same way for all
corpora: option checks, label mapping, class selection, audio presence and header checks,
durations, sorting and validation.

The manifest (one row per utterance, sorted by ``utt_id``) has the columns of
:data:`MANIFEST_COLUMNS`, plus ``split`` for corpora with official partitions:

=========  =====  ==============================================================
column     type   meaning
=========  =====  ==============================================================
utt_id     str    unique utterance id (the corpus's own id where it has one)
path       str    absolute path of the audio file
speaker    str    speaker id; ``"unknown"`` where the corpus does not know it
gender     str    ``"F"``, ``"M"`` or ``""`` when unknown
session    str    recording session (``""`` when the corpus has none)
emotion    str    canonical lowercase class name (``neu``, ``hap``, ``ang``, ...)
duration   float  seconds, from the audio header (no decoding)
split      str    official partition (``Train``, ``Development``, ``Test1``, ...)
=========  =====  ==============================================================
"""

from .base import AUDIO_SUFFIXES, MANIFEST_COLUMNS, UNKNOWN_SPEAKER, CorpusSpec, LoadOptions, audio_duration
from .csv_listing import CsvOptions
from .folder import FolderOptions
from .iemocap import IemocapOptions
from .loader import load_manifest, validate_manifest
from .msp_improv import MspImprovOptions
from .ravdess import RavdessOptions
from .registry import CORPORA, get_corpus
from .synthetic import SyntheticOptions

__all__ = [
    "AUDIO_SUFFIXES",
    "CORPORA",
    "MANIFEST_COLUMNS",
    "UNKNOWN_SPEAKER",
    "CorpusSpec",
    "CsvOptions",
    "FolderOptions",
    "IemocapOptions",
    "LoadOptions",
    "MspImprovOptions",
    "RavdessOptions",
    "SyntheticOptions",
    "audio_duration",
    "get_corpus",
    "load_manifest",
    "validate_manifest",
]
