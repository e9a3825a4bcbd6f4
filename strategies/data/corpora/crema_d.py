"""CREMA-D: its description (``SPEC``), options and scanner."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from ..errors import DataError
from .base import CorpusSpec, LoadOptions, manifest_rows, visible_files

logger = logging.getLogger(__name__)


_CREMA_D_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")


def _scan_crema_d(root: Path, options: LoadOptions) -> pd.DataFrame:
    audio_dir = root / "AudioWAV"
    files = visible_files(audio_dir.glob("*.wav"))
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
    return manifest_rows(rows)


SPEC = CorpusSpec(
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
)
