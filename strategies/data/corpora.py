"""Corpus descriptions and the one parametrized loader that turns a corpus folder into a manifest.

Every supported corpus is a :class:`CorpusSpec` in :data:`CORPORA`: where users get it, how its
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

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

import pandas as pd
import soundfile as sf

from strategies.data.audio import _wav_header_frames
from strategies.data.errors import DataError

__all__ = [
    "AUDIO_SUFFIXES",
    "CORPORA",
    "MANIFEST_COLUMNS",
    "UNKNOWN_SPEAKER",
    "CorpusSpec",
    "LoadOptions",
    "audio_duration",
    "get_corpus",
    "load_manifest",
    "validate_manifest",
]

logger = logging.getLogger(__name__)

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
_SYNONYMS: dict[str, str] = {
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

_COMMON_OPTIONS = frozenset({"classes", "emotion_map", "on_bad_audio", "on_missing_audio"})


def _as_tuple(value: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """Accept ``"a,b"`` or an iterable of strings (CLI and Python callers)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.split(",")
    return tuple(str(item).strip() for item in value if str(item).strip())


@dataclass(frozen=True)
class LoadOptions:
    """Options of :func:`load_manifest`; each corpus accepts the common ones plus its own.

    Common: ``classes``, ``emotion_map``, ``on_bad_audio``, ``on_missing_audio``. The others
    apply to the corpus named in their comment; passing one to another corpus is an error.
    """

    # canonical classes to keep, in order; None = the corpus default (all classes if it has none)
    classes: tuple[str, ...] | None = None
    # raw label -> canonical class, overriding entries of the corpus's own mapping
    emotion_map: Mapping[str, str] | None = None
    # unreadable, empty or truncated audio: raise, or skip the utterance and log a count
    on_bad_audio: Literal["error", "skip"] = "error"
    # labelled utterance whose audio file is absent: raise, or skip and log a count
    on_missing_audio: Literal["error", "skip"] = "error"
    # iemocap: keep only improvised dialogs (``impro`` in the utterance id)
    improvised_only: bool = False
    # iemocap: keep only scripted dialogs (``script`` in the utterance id)
    scripted_only: bool = False
    # iemocap: count ``exc`` (excited) as ``hap``; False keeps ``exc`` as its own class
    merge_excited: bool = True
    # msp-improv: "consensus" = perceived label of Evaluation.txt; "target" = the emotion the
    # scenario was written to elicit (letter after the sentence number in the file name)
    label_source: Literal["consensus", "target"] = "consensus"
    # msp-improv: recording-type codes to keep (R read, T target improvised, S other
    # improvised, P natural interaction); None = all
    recordings: tuple[str, ...] | None = None
    # ravdess: vocal channels to keep ("speech" = 01, "song" = 02)
    vocal_channels: tuple[str, ...] = ("speech",)
    # folder: regex searched in each file name (without suffix); named group ``speaker``
    # required, ``gender`` and ``session`` optional
    speaker_pattern: str | None = None
    # folder: the speaker is the folder this many levels below the emotion folder (0 = first)
    speaker_level: int | None = None
    # csv: {column in your file: manifest column}, e.g. {"file": "path", "label": "emotion"}
    columns: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", _as_tuple(self.classes))
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(c.lower() for c in self.classes))
            if not self.classes:
                raise DataError("option classes is empty: name at least one class")
        object.__setattr__(self, "recordings", _as_tuple(self.recordings))
        if self.recordings is not None:
            object.__setattr__(self, "recordings", tuple(r.upper() for r in self.recordings))
        object.__setattr__(self, "vocal_channels", _as_tuple(self.vocal_channels) or ())
        for name, allowed in (
            ("on_bad_audio", ("error", "skip")),
            ("on_missing_audio", ("error", "skip")),
            ("label_source", ("consensus", "target")),
        ):
            if getattr(self, name) not in allowed:
                raise DataError(
                    f"option {name}={getattr(self, name)!r} is not one of {', '.join(allowed)}"
                )
        bad_channels = set(self.vocal_channels) - set(_RAVDESS_CHANNELS.values())
        if bad_channels or not self.vocal_channels:
            raise DataError(
                f"option vocal_channels={self.vocal_channels!r}: use 'speech' and/or 'song'"
            )
        if self.improvised_only and self.scripted_only:
            raise DataError("options improvised_only and scripted_only exclude each other")
        if self.speaker_pattern is not None:
            try:
                pattern = re.compile(self.speaker_pattern)
            except re.error as exc:
                raise DataError(f"option speaker_pattern is not a valid regex: {exc}") from None
            if "speaker" not in pattern.groupindex:
                raise DataError(
                    f"option speaker_pattern={self.speaker_pattern!r} needs a named group "
                    "(?P<speaker>...)"
                )
        if self.speaker_level is not None and self.speaker_level < 0:
            raise DataError(f"option speaker_level={self.speaker_level} must be >= 0")


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
    # corpus-specific LoadOptions fields this corpus accepts (besides the common ones)
    options: frozenset[str] = field(default_factory=frozenset)
    # whether the root may be a file (a CSV listing) instead of a folder
    root_may_be_file: bool = False

    def __post_init__(self) -> None:
        unknown = self.options - {f.name for f in fields(LoadOptions)}
        if unknown:
            raise ValueError(f"corpus {self.name}: unknown option names {sorted(unknown)}")
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
    declared = _wav_header_frames(path)
    if declared is not None and info.frames < declared:
        raise DataError(f"{path}: truncated WAV (header promises {declared} frames, "
                        f"file holds {info.frames})")
    return info.frames / info.samplerate


# ---------------------------------------------------------------------------------------------
# Scanners: one per layout, each returning raw rows (see _SCAN_COLUMNS)


def _visible(paths: Iterable[Path]) -> list[Path]:
    """Sorted paths without macOS resource forks (``._name``), which real copies contain."""
    return sorted(p for p in paths if not p.name.startswith("._"))


def _rows(rows: list[dict[str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=list(_SCAN_COLUMNS))
    return frame


_IEMOCAP_LINE = re.compile(
    r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(Ses0(\d)[FM]_\S+)\s+(\S+)\s+\["
)


def _scan_iemocap(root: Path, options: LoadOptions) -> pd.DataFrame:
    sessions = _visible(p for p in root.glob("Session[1-5]") if p.is_dir())
    if not sessions:
        raise DataError(
            f"{root}: no IEMOCAP sessions found (expected Session1..Session5/dialog/"
            "EmoEvaluation/*.txt and Session1..Session5/sentences/wav/)"
        )
    rows = []
    for session_dir in sessions:
        evaluation_dir = session_dir / "dialog" / "EmoEvaluation"
        label_files = _visible(evaluation_dir.glob("*.txt"))
        if not label_files:
            raise DataError(f"{evaluation_dir}: no IEMOCAP label files (*.txt) found")
        for label_file in label_files:
            text = label_file.read_text(encoding="utf-8", errors="replace")
            for line in text.splitlines():
                match = _IEMOCAP_LINE.match(line)
                if match is None:  # header, annotator (C-E1:, A-F2:), '%' and blank lines
                    continue
                utt_id, session, label = match.group(1), match.group(2), match.group(3)
                if options.improvised_only and "impro" not in utt_id:
                    continue
                if options.scripted_only and "script" not in utt_id:
                    continue
                dialog, last = utt_id.rsplit("_", 1)
                gender = last[0]  # the speaker of a turn is the last token's letter
                rows.append({
                    "utt_id": utt_id,
                    "path": str(root / f"Session{session}" / "sentences" / "wav" / dialog
                                / f"{utt_id}.wav"),
                    "speaker": f"{session}{gender}",
                    "gender": gender,
                    "session": session,
                    "label": label,
                    "source": str(label_file),
                })
    return _rows(rows)


_MSP_IMPROV_KEY = r"S(\d\d)([A-Z])-([FM])(\d\d)-([A-Z])-([A-Z]{1,2}\d{2,3})"
_MSP_IMPROV_LABEL_LINE = re.compile(
    rf"^(?:UTD|MSP)-IMPROV-({_MSP_IMPROV_KEY})\.(?:avi|wav)\s*;\s*([A-Za-z])\s*;"
)
_MSP_IMPROV_AUDIO = re.compile(rf"^MSP-IMPROV-({_MSP_IMPROV_KEY})\.wav$")
# Some releases ship the evaluation file under a misspelt name.
_MSP_IMPROV_LABEL_FILES = ("Evaluation.txt", "Evalution.txt")


def _scan_msp_improv(root: Path, options: LoadOptions) -> pd.DataFrame:
    audio = {}
    for path in _visible(root.rglob("MSP-IMPROV-*.wav")):
        match = _MSP_IMPROV_AUDIO.match(path.name)
        if match:
            audio[match.group(1)] = path
    if not audio:
        raise DataError(f"{root}: no MSP-IMPROV-*.wav files found (expected "
                        "Audio/session1/S01A/R/MSP-IMPROV-S01A-F01-R-FM01.wav style)")
    entries: list[tuple[str, str, str]] = []  # (key, label, source)
    if options.label_source == "consensus":
        label_file = next(
            (root / n for n in _MSP_IMPROV_LABEL_FILES if (root / n).is_file()), None
        )
        if label_file is None:
            raise DataError(
                f"{root}: no MSP-IMPROV label file (expected Evaluation.txt or Evalution.txt "
                "in the corpus root)"
            )
        seen: set[str] = set()
        for line in label_file.read_text(encoding="utf-8", errors="replace").splitlines():
            # rater lines ("<rater>; Angry; ...") and blank lines do not match
            match = _MSP_IMPROV_LABEL_LINE.match(line.strip())
            if match and match.group(1) not in seen:
                seen.add(match.group(1))
                entries.append((match.group(1), match.group(8).upper(), str(label_file)))
        if not entries:
            raise DataError(f"{label_file}: no utterance lines found (expected lines like "
                            "'UTD-IMPROV-S01A-F01-R-FM01.avi; A; A:3.0; ...')")
        unlabelled = len(set(audio) - seen)
        if unlabelled:
            logger.info("msp-improv: %d audio files have no line in %s", unlabelled,
                        label_file.name)
    else:
        entries = [(key, _MSP_IMPROV_AUDIO.match(path.name).group(3), str(path))
                   for key, path in audio.items()]
    rows = []
    for key, label, source in entries:
        match = re.fullmatch(_MSP_IMPROV_KEY, key)
        sentence, target, gender, session, recording = match.group(1, 2, 3, 4, 5)
        if options.recordings is not None and recording not in options.recordings:
            continue
        expected = (root / "Audio" / f"session{int(session)}" / f"S{sentence}{target}"
                    / recording / f"MSP-IMPROV-{key}.wav")
        rows.append({
            "utt_id": f"MSP-IMPROV-{key}",
            "path": str(audio.get(key, expected)),
            "speaker": f"{gender}{session}",
            "gender": gender,
            "session": str(int(session)),
            "label": label,
            "source": source,
        })
    return _rows(rows)


def _scan_msp_podcast(root: Path, options: LoadOptions) -> pd.DataFrame:
    label_file = root / "Labels" / "labels_consensus.csv"
    if not label_file.is_file():
        raise DataError(f"{root}: no MSP-Podcast label file (expected "
                        "Labels/labels_consensus.csv)")
    audio_dir = next((root / n for n in ("Audios", "Audio") if (root / n).is_dir()), None)
    if audio_dir is None:
        raise DataError(f"{root}: no MSP-Podcast audio folder (expected Audios/*.wav)")
    table = pd.read_csv(label_file, dtype=str, keep_default_na=False)
    table.columns = [c.strip() for c in table.columns]
    missing = {"FileName", "EmoClass"} - set(table.columns)
    if missing:
        raise DataError(f"{label_file}: missing column(s) {', '.join(sorted(missing))}")
    for column in ("SpkrID", "Gender", "Split_Set"):
        if column not in table.columns:
            logger.warning("msp-podcast: %s has no %s column", label_file, column)
            table[column] = ""
    speaker = table["SpkrID"].str.strip()
    unknown = speaker.str.lower().isin({"unknown", ""})
    if unknown.any():
        logger.warning(
            "msp-podcast: %d rows have an unknown speaker; they are kept with speaker %r, "
            "which speaker-based folds leave out (the official split is unaffected)",
            int(unknown.sum()), UNKNOWN_SPEAKER,
        )
    split = table["Split_Set"].str.strip()
    if (split == "").any():
        logger.warning("msp-podcast: %d rows have no Split_Set value", int((split == "").sum()))
    gender = table["Gender"].str.strip().str.lower().map({"female": "F", "male": "M"})
    names = table["FileName"].str.strip()
    return pd.DataFrame({
        "utt_id": names.str.replace(r"\.wav$", "", regex=True),
        "path": [str(audio_dir / name) for name in names],
        "speaker": speaker.where(~unknown, UNKNOWN_SPEAKER),
        "gender": gender.fillna(""),
        "session": "",
        "label": table["EmoClass"].str.strip().str.upper(),
        "source": str(label_file),
        "split": split,
    })


_RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)\.wav$")
_RAVDESS_CHANNELS = {"01": "speech", "02": "song"}


def _scan_ravdess(root: Path, options: LoadOptions) -> pd.DataFrame:
    files = _visible(root.glob("**/Actor_*/*.wav"))
    if not files:
        raise DataError(f"{root}: no RAVDESS audio found (expected Actor_01..Actor_24/"
                        "03-01-05-01-02-01-12.wav style files)")
    rows, other_modality = [], 0
    for path in files:
        match = _RAVDESS_NAME.match(path.name)
        if match is None:
            raise DataError(f"{path}: not a RAVDESS file name (expected modality-channel-"
                            "emotion-intensity-statement-repetition-actor, e.g. "
                            "03-01-05-01-02-01-12.wav)")
        modality, channel, emotion, _, _, _, actor = match.groups()
        if modality != "03":  # 01 audio-video, 02 video-only
            other_modality += 1
            continue
        if _RAVDESS_CHANNELS.get(channel) not in options.vocal_channels:
            continue
        rows.append({
            "utt_id": path.stem,
            "path": str(path),
            "speaker": actor,
            "gender": "M" if int(actor) % 2 else "F",  # odd actors are male
            "session": "",
            "label": emotion,
            "source": str(path),
        })
    if other_modality:
        logger.info("ravdess: skipped %d files that are not audio-only (modality 03)",
                    other_modality)
    return _rows(rows)


_CREMA_D_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")


def _scan_crema_d(root: Path, options: LoadOptions) -> pd.DataFrame:
    audio_dir = root / "AudioWAV"
    files = _visible(audio_dir.glob("*.wav"))
    if not files:
        raise DataError(f"{root}: no CREMA-D audio found (expected AudioWAV/"
                        "1001_DFA_ANG_XX.wav style files)")
    genders: dict[str, str] = {}
    demographics = root / "VideoDemographics.csv"
    if demographics.is_file():
        table = pd.read_csv(demographics, dtype=str, keep_default_na=False)
        if not {"ActorID", "Sex"} <= set(table.columns):
            raise DataError(f"{demographics}: expected columns ActorID and Sex")
        sex = table["Sex"].str.strip().str.lower().map({"female": "F", "male": "M"})
        genders = dict(zip(table["ActorID"].str.strip(), sex.fillna(""), strict=True))
    else:
        logger.info("crema-d: %s not found; genders left empty", demographics)
    rows = []
    for path in files:
        match = _CREMA_D_NAME.match(path.stem)
        if match is None:
            raise DataError(f"{path}: not a CREMA-D file name (expected "
                            "ActorID_Sentence_Emotion_Level, e.g. 1001_DFA_ANG_XX.wav)")
        actor, _, emotion, _ = match.groups()
        rows.append({
            "utt_id": path.stem,
            "path": str(path),
            "speaker": actor,
            "gender": genders.get(actor, ""),
            "session": "",
            "label": emotion,
            "source": str(path),
        })
    return _rows(rows)


_EMODB_NAME = re.compile(r"^(\d\d)([a-z]\d\d)([A-Za-z])([a-z])$")
_EMODB_GENDERS = {"03": "M", "08": "F", "09": "F", "10": "M", "11": "M",
                  "12": "M", "13": "F", "14": "F", "15": "M", "16": "F"}


def _scan_emodb(root: Path, options: LoadOptions) -> pd.DataFrame:
    files = _visible((root / "wav").glob("*.wav"))
    if not files:
        raise DataError(f"{root}: no EmoDB audio found (expected wav/03a01Fa.wav style files)")
    rows = []
    for path in files:
        match = _EMODB_NAME.match(path.stem)
        if match is None:
            raise DataError(f"{path}: not an EmoDB file name (expected speaker, text, emotion, "
                            "version, e.g. 03a01Fa.wav)")
        speaker, _, emotion, _ = match.groups()
        rows.append({
            "utt_id": path.stem,
            "path": str(path),
            "speaker": speaker,
            "gender": _EMODB_GENDERS.get(speaker, ""),
            "session": "",
            "label": emotion,
            "source": str(path),
        })
    return _rows(rows)


def _scan_folder(root: Path, options: LoadOptions) -> pd.DataFrame:
    pattern = re.compile(options.speaker_pattern) if options.speaker_pattern else None
    rows = []
    for emotion_dir in _visible(p for p in root.iterdir() if p.is_dir()):
        if emotion_dir.name.startswith("."):
            continue
        for path in _visible(emotion_dir.rglob("*")):
            if path.suffix.lower() not in AUDIO_SUFFIXES or not path.is_file():
                continue
            relative = path.relative_to(emotion_dir)
            speaker, gender, session = UNKNOWN_SPEAKER, "", ""
            if pattern is not None:
                match = pattern.search(path.stem)
                if match is None:
                    raise DataError(f"{path}: file name does not match speaker_pattern "
                                    f"{options.speaker_pattern!r}")
                groups = match.groupdict()
                speaker = groups["speaker"]
                gender = _gender(groups.get("gender") or "")
                session = groups.get("session") or ""
            elif options.speaker_level is not None:
                if options.speaker_level >= len(relative.parts) - 1:
                    raise DataError(f"{path}: no folder at speaker_level="
                                    f"{options.speaker_level} below {emotion_dir}")
                speaker = relative.parts[options.speaker_level]
            rows.append({
                "utt_id": path.relative_to(root).with_suffix("").as_posix(),
                "path": str(path),
                "speaker": speaker,
                "gender": gender,
                "session": session,
                "label": emotion_dir.name,
                "source": str(path),
            })
    if not rows:
        raise DataError(f"{root}: no audio files found (expected <emotion>/<file>.wav, "
                        f"suffixes {', '.join(sorted(AUDIO_SUFFIXES))})")
    if pattern is None and options.speaker_level is None:
        logger.warning("folder: no speaker_pattern or speaker_level given; every speaker is "
                       "%r, so speaker-independent folds cannot be made", UNKNOWN_SPEAKER)
    return _rows(rows)


def _gender(value: str) -> str:
    """'F'/'M' from common spellings, '' otherwise."""
    return {"f": "F", "female": "F", "w": "F", "m": "M", "male": "M"}.get(
        value.strip().lower(), "")


def _relative_id(path: Path, base: Path) -> str:
    """Utterance id from a path: relative to ``base`` where possible, without the suffix."""
    try:
        path = path.relative_to(base)
    except ValueError:
        pass
    return path.with_suffix("").as_posix()


def _scan_csv(root: Path, options: LoadOptions) -> pd.DataFrame:
    csv_file = root / "manifest.csv" if root.is_dir() else root
    if not csv_file.is_file():
        raise DataError(f"{root}: no CSV manifest (give the .csv file, or a folder holding "
                        "manifest.csv)")
    try:
        table = pd.read_csv(csv_file, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{csv_file}: not a readable CSV file ({exc})") from None
    table.columns = [c.strip() for c in table.columns]
    table = table.rename(columns=dict(options.columns or {}))
    missing = {"path", "emotion"} - set(table.columns)
    if missing:
        raise DataError(f"{csv_file}: missing column(s) {', '.join(sorted(missing))} "
                        f"(has {', '.join(table.columns)}; rename with option columns=)")
    if "speaker" not in table.columns:
        logger.warning("csv: %s has no speaker column; every speaker is %r, so "
                       "speaker-independent folds cannot be made", csv_file, UNKNOWN_SPEAKER)
    paths = [Path(p.strip()) for p in table["path"]]
    absolute = [p if p.is_absolute() else csv_file.parent / p for p in paths]

    def column(name: str, default: str) -> pd.Series:
        return table[name].str.strip() if name in table.columns else pd.Series(
            [default] * len(table), index=table.index)

    speaker = column("speaker", UNKNOWN_SPEAKER).replace("", UNKNOWN_SPEAKER)
    frame = pd.DataFrame({
        "utt_id": column("utt_id", "").where(
            column("utt_id", "") != "", [_relative_id(p, csv_file.parent) for p in absolute]),
        "path": [str(p) for p in absolute],
        "speaker": speaker,
        "gender": column("gender", "").map(_gender),
        "session": column("session", ""),
        "label": table["emotion"].str.strip(),
        "source": str(csv_file),
    })
    if "split" in table.columns:
        frame["split"] = table["split"].str.strip()
    return frame


# ---------------------------------------------------------------------------------------------
# Registry

_FOLDER_OPTIONS = frozenset({"speaker_pattern", "speaker_level"})

CORPORA: dict[str, CorpusSpec] = {
    spec.name: spec
    for spec in (
        CorpusSpec(
            name="iemocap",
            description="IEMOCAP: 10 actors in 5 dyadic sessions, improvised and scripted",
            url="https://sail.usc.edu/iemocap/ (licence request)",
            layout="Session1..Session5/dialog/EmoEvaluation/*.txt and "
                   "Session{n}/sentences/wav/<dialog>/<utt>.wav",
            emotion_map={"neu": "neu", "hap": "hap", "exc": "hap", "ang": "ang", "sad": "sad",
                         "fru": "fru", "sur": "sur", "fea": "fea", "dis": "dis"},
            default_classes=("neu", "hap", "ang", "sad"),
            protocol="loo-session",
            scan=_scan_iemocap,
            ignored_labels=frozenset({"xxx", "oth"}),
            options=frozenset({"improvised_only", "scripted_only", "merge_excited"}),
        ),
        CorpusSpec(
            name="msp-improv",
            description="MSP-IMPROV: 12 actors in 6 dyadic sessions, target sentences "
                        "read and improvised",
            url="https://ecs.utdallas.edu/research/researchlabs/msp-lab/MSP-Improv.html "
                "(licence request)",
            layout="Evaluation.txt (or Evalution.txt) and "
                   "Audio/session1/S01A/R/MSP-IMPROV-S01A-F01-R-FM01.wav style files",
            emotion_map={"A": "ang", "H": "hap", "S": "sad", "N": "neu"},
            default_classes=("neu", "hap", "ang", "sad"),
            protocol="loo-session",
            scan=_scan_msp_improv,
            ignored_labels=frozenset({"O", "X"}),
            options=frozenset({"label_source", "recordings"}),
        ),
        CorpusSpec(
            name="msp-podcast",
            description="MSP-Podcast: podcast speaking turns with official "
                        "Train/Development/Test splits",
            url="https://ecs.utdallas.edu/research/researchlabs/msp-lab/MSP-Podcast.html "
                "(licence request)",
            layout="Labels/labels_consensus.csv and Audios/*.wav",
            emotion_map={"N": "neu", "H": "hap", "S": "sad", "A": "ang", "C": "con",
                         "D": "dis", "U": "sur", "F": "fea"},
            default_classes=("neu", "hap", "sad", "ang"),
            protocol="official",
            scan=_scan_msp_podcast,
            # O other, X no agreement, "" no consensus label in this release
            ignored_labels=frozenset({"O", "X", ""}),
        ),
        CorpusSpec(
            name="ravdess",
            description="RAVDESS: 24 actors, 8 emotions, speech (and song)",
            url="https://zenodo.org/record/1188976",
            layout="Actor_01..Actor_24/03-01-05-01-02-01-12.wav style files",
            emotion_map={"01": "neu", "02": "cal", "03": "hap", "04": "sad", "05": "ang",
                         "06": "fea", "07": "dis", "08": "sur"},
            default_classes=None,
            protocol="kfold-speaker",
            k=5,
            scan=_scan_ravdess,
            options=frozenset({"vocal_channels"}),
        ),
        CorpusSpec(
            name="crema-d",
            description="CREMA-D: 91 actors, 6 emotions, 12 sentences",
            url="https://github.com/CheyneyComputerScience/CREMA-D",
            layout="AudioWAV/1001_DFA_ANG_XX.wav style files (+ VideoDemographics.csv)",
            emotion_map={"ANG": "ang", "DIS": "dis", "FEA": "fea", "HAP": "hap",
                         "NEU": "neu", "SAD": "sad"},
            default_classes=None,
            protocol="kfold-speaker",
            k=5,
            scan=_scan_crema_d,
        ),
        CorpusSpec(
            name="emodb",
            description="EmoDB (Berlin): 10 actors, 7 emotions, German",
            url="http://emodb.bilderbar.info/download/",
            layout="wav/03a01Fa.wav style files",
            emotion_map={"W": "ang", "L": "bor", "E": "dis", "A": "fea", "F": "hap",
                         "T": "sad", "N": "neu"},
            default_classes=None,
            protocol="loso",
            scan=_scan_emodb,
        ),
        CorpusSpec(
            name="folder",
            description="Any corpus laid out as <emotion>/<file>.wav",
            url="(your own data)",
            layout="<emotion>/[...]/<file>.wav (speaker from speaker_pattern or speaker_level)",
            emotion_map=_SYNONYMS,
            default_classes=None,
            protocol="loso",
            scan=_scan_folder,
            unknown_labels="keep",
            options=_FOLDER_OPTIONS,
        ),
        CorpusSpec(
            name="csv",
            description="Any corpus listed in a CSV file with path and emotion columns",
            url="(your own data)",
            layout="a .csv file (or a folder holding manifest.csv) with columns path, emotion "
                   "and optionally speaker, gender, session, utt_id, split",
            emotion_map=_SYNONYMS,
            default_classes=None,
            protocol="loso",
            scan=_scan_csv,
            unknown_labels="keep",
            options=frozenset({"columns"}),
            root_may_be_file=True,
        ),
    )
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


# ---------------------------------------------------------------------------------------------
# The loader


def load_manifest(name: str, root: str | Path, **options: object) -> pd.DataFrame:
    """Read a corpus folder into a manifest, one row per utterance, sorted by ``utt_id``.

    Parameters
    ----------
    name
        A key of :data:`CORPORA` (``iemocap``, ``msp-improv``, ``msp-podcast``, ``ravdess``,
        ``crema-d``, ``emodb``, ``folder``, ``csv``).
    root
        The corpus root folder (for ``csv``: the CSV file, or a folder with ``manifest.csv``).
    **options
        Fields of :class:`LoadOptions`: the common ones (``classes``, ``emotion_map``,
        ``on_bad_audio``, ``on_missing_audio``) and those of the chosen corpus.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`MANIFEST_COLUMNS` (+ ``split`` where the corpus has official splits);
        ``attrs["corpus"]`` holds the corpus name.

    Raises
    ------
    DataError
        Unknown corpus or option, missing root, a layout that does not match, unknown label
        codes, missing or unreadable audio (unless skipped by option), no utterance left.
    """
    spec = get_corpus(name)
    load_options = _load_options(spec, options)
    root = Path(root).expanduser().resolve()
    if not root.exists():
        raise DataError(f"{root}: {spec.name} corpus root does not exist")
    if not spec.root_may_be_file and not root.is_dir():
        raise DataError(f"{root}: {spec.name} corpus root is not a folder")
    raw = spec.scan(root, load_options)
    if raw.empty:
        raise DataError(f"{root}: no {spec.name} utterances found (expected {spec.layout})")
    raw = _assign_emotions(spec, raw, load_options)
    raw = _check_audio(spec, raw, load_options)
    columns = list(MANIFEST_COLUMNS) + (["split"] if "split" in raw.columns else [])
    manifest = raw[columns].sort_values("utt_id", kind="stable").reset_index(drop=True)
    validate_manifest(manifest, source=str(root))
    manifest.attrs["corpus"] = spec.name
    counts = manifest["emotion"].value_counts().sort_index()
    logger.info("%s: %d utterances, %d speakers (%s)", spec.name, len(manifest),
                manifest["speaker"].nunique(),
                ", ".join(f"{k} {v}" for k, v in counts.items()))
    return manifest


def _load_options(spec: CorpusSpec, options: Mapping[str, object]) -> LoadOptions:
    allowed = _COMMON_OPTIONS | spec.options
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise DataError(f"option(s) {', '.join(unknown)} do not apply to corpus {spec.name}; "
                        f"its options: {', '.join(sorted(allowed))}")
    try:
        return LoadOptions(**options)  # type: ignore[arg-type]
    except TypeError as exc:
        raise DataError(f"bad option for corpus {spec.name}: {exc}") from None


def _assign_emotions(spec: CorpusSpec, raw: pd.DataFrame, options: LoadOptions) -> pd.DataFrame:
    """Map raw labels to classes and keep the requested classes, logging what is dropped."""
    mapping = dict(spec.emotion_map)
    if not options.merge_excited and "exc" in mapping:
        mapping["exc"] = "exc"
    mapping.update({str(k): str(v).lower() for k, v in (options.emotion_map or {}).items()})
    labels = raw["label"].astype(str).str.strip()
    if spec.unknown_labels == "keep":
        # free-text labels: known spellings are normalised, the rest kept as lowercase names
        mapping = {key.lower(): value for key, value in mapping.items()}
        lowered = labels.str.lower()
        emotion = lowered.map(lambda v: mapping.get(v, v))
        ignored = lowered == ""
        if ignored.any():
            first = raw.loc[ignored].iloc[0]
            raise DataError(f"{first['source']}: empty emotion label for {first['utt_id']}")
    else:
        ignored = labels.isin(spec.ignored_labels)
        unknown = ~ignored & ~labels.isin(mapping)
        if unknown.any() and spec.unknown_labels == "error":
            first = raw.loc[unknown].iloc[0]
            raise DataError(
                f"{first['source']}: unknown emotion label {first['label']!r} for "
                f"{first['utt_id']} (known: {', '.join(sorted(mapping))}; map it with "
                "option emotion_map)"
            )
        ignored |= unknown
        emotion = labels.map(mapping)
    available = set(emotion[~ignored])
    classes = options.classes or spec.default_classes or tuple(sorted(available))
    unknown_classes = [c for c in classes if c not in available | set(mapping.values())]
    if unknown_classes:
        raise DataError(f"class(es) {', '.join(unknown_classes)} do not exist in {spec.name}; "
                        f"its classes: {', '.join(sorted(available | set(mapping.values())))}")
    keep = ~ignored & emotion.isin(classes)
    dropped = Counter(labels[~keep])
    if dropped:
        logger.info("%s: skipped %d utterances whose labels are outside the classes %s: %s",
                    spec.name, sum(dropped.values()), ",".join(classes),
                    ", ".join(f"{k or '(none)'} {v}" for k, v in sorted(dropped.items())))
    result = raw.loc[keep].copy()
    result["emotion"] = emotion[keep]
    if result.empty:
        raise DataError(f"{spec.name}: no utterances left with classes {', '.join(classes)}")
    return result


def _check_audio(spec: CorpusSpec, raw: pd.DataFrame, options: LoadOptions) -> pd.DataFrame:
    """Drop or reject missing and unreadable audio; add the ``duration`` column."""
    durations: list[float] = []
    missing: list[str] = []
    bad: list[str] = []
    for utt_id, path, source in zip(raw["utt_id"], raw["path"], raw["source"], strict=True):
        if not Path(path).is_file():
            if options.on_missing_audio == "error":
                raise DataError(f"{path}: audio file missing for labelled utterance {utt_id} "
                                f"(from {source}; option on_missing_audio='skip' skips it)")
            missing.append(path)
            durations.append(float("nan"))
            continue
        try:
            durations.append(audio_duration(path))
        except DataError as exc:
            if options.on_bad_audio == "error":
                raise DataError(f"{exc} (option on_bad_audio='skip' skips it)") from None
            bad.append(str(exc))
            durations.append(float("nan"))
    if missing:
        logger.warning("%s: skipped %d utterances whose audio is missing, e.g. %s",
                       spec.name, len(missing), missing[0])
    if bad:
        logger.warning("%s: skipped %d unreadable audio files, e.g. %s",
                       spec.name, len(bad), bad[0])
    result = raw.assign(duration=durations)
    result = result.loc[result["duration"].notna()]
    if result.empty:
        raise DataError(f"{spec.name}: no utterance has readable audio")
    return result


def validate_manifest(manifest: pd.DataFrame, source: str = "manifest") -> None:
    """Check a manifest's columns, types and id uniqueness.

    Parameters
    ----------
    manifest
        A frame as returned by :func:`load_manifest` (or read back from disk).
    source
        What to name in error messages (a file or folder).

    Raises
    ------
    DataError
        Missing columns, duplicate ``utt_id`` values, genders other than F/M/"", or
        non-positive durations.
    """
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        raise DataError(f"{source}: manifest lacks column(s) {', '.join(missing)}")
    duplicated = manifest["utt_id"][manifest["utt_id"].duplicated()]
    if not duplicated.empty:
        raise DataError(f"{source}: utterance id {duplicated.iloc[0]!r} appears more than once")
    bad_gender = set(manifest["gender"]) - {"F", "M", ""}
    if bad_gender:
        raise DataError(f"{source}: gender values {sorted(bad_gender)} (expected F, M or '')")
    if not (pd.to_numeric(manifest["duration"], errors="coerce") > 0).all():
        raise DataError(f"{source}: manifest has missing or non-positive durations")
