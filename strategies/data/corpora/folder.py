"""A corpus laid out as <emotion>/<file>: its description (``SPEC``), options and scanner."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import DataError
from .base import AUDIO_SUFFIXES, UNKNOWN_SPEAKER, EMOTION_SYNONYMS, CorpusSpec, LoadOptions, gender_of, manifest_rows, visible_files

logger = logging.getLogger(__name__)


def _scan_folder(root: Path, options: FolderOptions) -> pd.DataFrame:
    pattern = re.compile(options.speaker_pattern) if options.speaker_pattern else None
    rows = []
    for emotion_dir in visible_files(p for p in root.iterdir() if p.is_dir()):
        if emotion_dir.name.startswith("."):
            continue
        for path in visible_files(emotion_dir.rglob("*")):
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
                gender = gender_of(groups.get("gender") or "")
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
    return manifest_rows(rows)


@dataclass(frozen=True)
class FolderOptions(LoadOptions):
    """The options of a corpus laid out as <emotion>/<file>, besides the common ones."""

    # regex searched in each file name (without suffix); named group ``speaker`` required,
    # ``gender`` and ``session`` optional
    speaker_pattern: str | None = None
    # the speaker is the folder this many levels below the emotion folder (0 = first)
    speaker_level: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.speaker_pattern is not None:
            try:
                pattern = re.compile(self.speaker_pattern)
            except re.error as exc:
                raise DataError(f"option speaker_pattern is not a valid regex: {exc}") from None
            if "speaker" not in pattern.groupindex:
                raise DataError(f"option speaker_pattern={self.speaker_pattern!r} needs a named group "
                                "(?P<speaker>...)")
        if self.speaker_level is not None and self.speaker_level < 0:
            raise DataError(f"option speaker_level={self.speaker_level} must be >= 0")

SPEC = CorpusSpec(
    name="folder",
    description="Any corpus laid out as <emotion>/<file>.wav",
    url="(your own data)",
    layout="<emotion>/[...]/<file>.wav (speaker from speaker_pattern or speaker_level)",
    emotion_map=EMOTION_SYNONYMS,
    default_classes=None,
    protocol="loso",
    scan=_scan_folder,
    unknown_labels="keep",
    options=FolderOptions,
)
