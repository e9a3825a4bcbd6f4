"""What every corpus module shares: the manifest's columns, the common options, the corpus
description (:class:`CorpusSpec`), audio header checks and the scanners' small helpers."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
import soundfile as sf

from ..audio import wav_header_frames
from ..errors import DataError

__all__ = ["AUDIO_SUFFIXES", "MANIFEST_COLUMNS", "UNKNOWN_SPEAKER", "CorpusSpec", "LoadOptions", "audio_duration"]

#: Columns every manifest has, in this order (``split`` follows where the corpus has one).
MANIFEST_COLUMNS: tuple[str, ...] = (
    "utt_id", "path", "speaker", "gender", "session", "emotion", "duration",
)
#: Speaker id given to utterances whose speaker the corpus does not record. Folds never treat
#: these as one speaker (see :mod:`strategies.data.folds`).
UNKNOWN_SPEAKER = "unknown"
#: File suffixes the generic ``folder`` corpus treats as audio (all readable by soundfile).
AUDIO_SUFFIXES: frozenset[str] = frozenset({".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff"})

# Columns a scan function returns; ``label`` is the raw corpus code, ``source`` the file the
# label came from (for error messages). ``split`` is optional.
_SCAN_COLUMNS = ("utt_id", "path", "speaker", "gender", "session", "label", "source")

# Common spellings of emotion names, for corpora whose labels are free text (folder, csv).
EMOTION_SYNONYMS: dict[str, str] = {
    "neutral": "neu", "neu": "neu",
    "happy": "hap", "happiness": "hap", "joy": "hap", "hap": "hap",
    "angry": "ang", "anger": "ang", "ang": "ang",
    "sad": "sad", "sadness": "sad",
    "fear": "fea", "fearful": "fea", "fea": "fea", "anxiety": "fea",
    "disgust": "dis", "disgusted": "dis", "dis": "dis",
    "surprise": "sur", "surprised": "sur", "sur": "sur",
    "calm": "cal", "cal": "cal",
    "boredom": "bor", "bored": "bor", "bor": "bor",
    "excited": "exc", "excitement": "exc", "exc": "exc",
    "frustrated": "fru", "frustration": "fru", "fru": "fru",
    "contempt": "con", "con": "con",
}


def as_tuple(value: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """Accept ``"a,b"`` or an iterable of strings (CLI and Python callers)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split(",")
    return tuple(str(item).strip() for item in value if str(item).strip())


@dataclass(frozen=True)
class LoadOptions:
    """The options every corpus takes; a corpus with options of its own subclasses this.

    :func:`~strategies.data.corpora.load_manifest` builds the corpus's class
    (``CorpusSpec.options``) from its keyword arguments, so an option another corpus takes is
    a one-line error naming the options this one takes.
    """

    # canonical classes to keep, in order; None = the corpus default (all classes if it has none)
    classes: tuple[str, ...] | None = None
    # raw label -> canonical class, overriding entries of the corpus's own mapping
    emotion_map: Mapping[str, str] | None = None
    # unreadable, empty or truncated audio: raise, or skip the utterance and log a count
    on_bad_audio: Literal["error", "skip"] = "error"
    # labelled utterance whose audio file is absent: raise, or skip and log a count
    on_missing_audio: Literal["error", "skip"] = "error"

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", as_tuple(self.classes))
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(c.lower() for c in self.classes))
            if not self.classes:
                raise DataError("option classes is empty: name at least one class")
        for name in ("on_bad_audio", "on_missing_audio"):
            check_choice(self, name, ("error", "skip"))

    def label_map(self, mapping: Mapping[str, str]) -> dict[str, str]:
        """The corpus's raw label -> class mapping as these options change it (before ``emotion_map``)."""
        return dict(mapping)


def check_choice(options: object, name: str, allowed: tuple[str, ...]) -> None:
    value = getattr(options, name)
    if value not in allowed:
        raise DataError(f"option {name}={value!r} is not one of {', '.join(allowed)}")


ScanFunction = Callable[[Path, LoadOptions], pd.DataFrame]


@dataclass(frozen=True)
class CorpusSpec:
    """Description of one corpus: everything :func:`load_manifest` needs to know about it."""

    # registry key, lowercase (e.g. "iemocap")
    name: str
    # one-line description shown by the CLI
    description: str
    # where users obtain the corpus (licence / download page)
    url: str
    # the layout the loader expects under the corpus root, for error messages and docs
    layout: str
    # raw corpus label code -> canonical lowercase class name
    emotion_map: Mapping[str, str]
    # classes kept by default, in order; None = every class found
    default_classes: tuple[str, ...] | None
    # standard fold protocol (a name in strategies.data.folds.PROTOCOLS)
    protocol: str
    # reads the corpus layout into raw rows (columns utt_id, path, speaker, gender, session,
    # label, source and optionally split)
    scan: ScanFunction
    # number of folds for the "kfold-speaker" protocol; None for the other protocols
    k: int | None = None
    # raw codes meaning "no agreement" / "other": skipped and counted, never an error
    ignored_labels: frozenset[str] = frozenset()
    # what a raw label outside emotion_map and ignored_labels means: a parse error, an
    # ignorable class, or a class name to keep as written (free-text labels)
    unknown_labels: Literal["error", "skip", "keep"] = "error"
    # the options this corpus takes: LoadOptions, or a subclass with the corpus's own fields
    options: type[LoadOptions] = LoadOptions
    # whether the root may be a file (a CSV listing) instead of a folder
    root_may_be_file: bool = False
    # for a corpus that is made, not found (the synthetic one): generate(root or None, options)
    # writes it unless it is there and returns its folder (None: a default folder)
    generate: Callable[[Path | None, LoadOptions], Path] | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.options, type) and issubclass(self.options, LoadOptions)):
            raise ValueError(f"corpus {self.name}: options must be LoadOptions or a subclass")
        if self.default_classes is not None:
            missing = set(self.default_classes) - set(self.emotion_map.values())
            if missing:
                raise ValueError(f"corpus {self.name}: default classes {missing} not mapped")


# ---------------------------------------------------------------------------------------------
# Audio header checks


def audio_duration(path: str | Path) -> float:
    """Duration of an audio file in seconds, from its header (no decoding).

    Parameters
    ----------
    path
        Audio file readable by soundfile.

    Returns
    -------
    float
        ``frames / samplerate``.

    Raises
    ------
    DataError
        If the header cannot be read, the file holds no frames, or a WAV file is shorter than
        its header promises (libsndfile silently reads such a truncated file as a few samples).
    """
    path = Path(path)
    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError) as exc:
        reason = str(exc).split(": ")[-1] if ": " in str(exc) else str(exc)
        raise DataError(f"{path}: unreadable audio ({reason})") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise DataError(f"{path}: audio file holds no samples")
    # libsndfile reads a truncated WAV as the few frames present, without complaint
    declared = wav_header_frames(path)
    if declared is not None and info.frames < declared:
        raise DataError(f"{path}: truncated WAV (header promises {declared} frames, "
                        f"file holds {info.frames})")
    return info.frames / info.samplerate


# ---------------------------------------------------------------------------------------------
# Helpers of the scanners (each returns raw rows: see _SCAN_COLUMNS)


def visible_files(paths: Iterable[Path]) -> list[Path]:
    """Sorted paths without macOS resource forks (``._name``), which real copies contain."""
    return sorted(p for p in paths if not p.name.startswith("._"))


def manifest_rows(rows: list[dict[str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=list(_SCAN_COLUMNS))
    return frame


def gender_of(value: str) -> str:
    """'F'/'M' from common spellings, '' otherwise."""
    return {"f": "F", "female": "F", "w": "F", "m": "M", "male": "M"}.get(
        value.strip().lower(), "")


def relative_id(path: Path, base: Path) -> str:
    """Utterance id from a path: relative to ``base`` where possible, without the suffix."""
    try:
        path = path.relative_to(base)
    except ValueError:
        pass
    return path.with_suffix("").as_posix()
