"""EmoDB (Berlin): its description (``SPEC``), options and scanner."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..errors import DataError
from .base import CorpusSpec, LoadOptions, manifest_rows, visible_files


_EMODB_NAME = re.compile(r"^(\d\d)([a-z]\d\d)([A-Za-z])([a-z])$")
_EMODB_GENDERS = {"03": "M", "08": "F", "09": "F", "10": "M", "11": "M",
                  "12": "M", "13": "F", "14": "F", "15": "M", "16": "F"}


def _scan_emodb(root: Path, options: LoadOptions) -> pd.DataFrame:
    files = visible_files((root / "wav").glob("*.wav"))
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
    return manifest_rows(rows)


SPEC = CorpusSpec(
    name="emodb",
    description="EmoDB (Berlin): 10 actors, 7 emotions, German",
    url="http://emodb.bilderbar.info/download/",
    layout="wav/03a01Fa.wav style files",
    emotion_map={"W": "ang", "L": "bor", "E": "dis", "A": "fea", "F": "hap",
                 "T": "sad", "N": "neu"},
    default_classes=None,
    protocol="loso",
    scan=_scan_emodb,
)
