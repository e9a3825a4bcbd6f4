"""MSP-Podcast: its description (``SPEC``), options and scanner."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from ..errors import DataError
from .base import UNKNOWN_SPEAKER, CorpusSpec, LoadOptions

logger = logging.getLogger(__name__)


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


SPEC = CorpusSpec(
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
)
