"""RAVDESS: its description (``SPEC``), options and scanner."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import DataError
from .base import CorpusSpec, LoadOptions, as_tuple, manifest_rows, visible_files

logger = logging.getLogger(__name__)


_RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)\.wav$")
_RAVDESS_CHANNELS = {"01": "speech", "02": "song"}


def _scan_ravdess(root: Path, options: RavdessOptions) -> pd.DataFrame:
    files = visible_files(root.glob("**/Actor_*/*.wav"))
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
    return manifest_rows(rows)


@dataclass(frozen=True)
class RavdessOptions(LoadOptions):
    """RAVDESS's options, besides the common ones."""

    # vocal channels to keep ("speech" = 01, "song" = 02)
    vocal_channels: tuple[str, ...] = ("speech",)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "vocal_channels", as_tuple(self.vocal_channels) or ())
        bad_channels = set(self.vocal_channels) - set(_RAVDESS_CHANNELS.values())
        if bad_channels or not self.vocal_channels:
            raise DataError(f"option vocal_channels={self.vocal_channels!r}: use 'speech' and/or 'song'")

SPEC = CorpusSpec(
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
    options=RavdessOptions,
)
