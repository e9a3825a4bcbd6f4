"""IEMOCAP: its description (``SPEC``), options and scanner."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import DataError
from .base import CorpusSpec, LoadOptions, manifest_rows, visible_files


_IEMOCAP_LINE = re.compile(
    r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(Ses0(\d)[FM]_\S+)\s+(\S+)\s+\["
)


def _scan_iemocap(root: Path, options: IemocapOptions) -> pd.DataFrame:
    sessions = visible_files(p for p in root.glob("Session[1-5]") if p.is_dir())
    if not sessions:
        raise DataError(
            f"{root}: no IEMOCAP sessions found (expected Session1..Session5/dialog/"
            "EmoEvaluation/*.txt and Session1..Session5/sentences/wav/)"
        )
    rows = []
    for session_dir in sessions:
        evaluation_dir = session_dir / "dialog" / "EmoEvaluation"
        label_files = visible_files(evaluation_dir.glob("*.txt"))
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
    return manifest_rows(rows)


@dataclass(frozen=True)
class IemocapOptions(LoadOptions):
    """IEMOCAP's options, besides the common ones."""

    # keep only improvised dialogs (``impro`` in the utterance id)
    improvised_only: bool = False
    # keep only scripted dialogs (``script`` in the utterance id)
    scripted_only: bool = False
    # count ``exc`` (excited) as ``hap``; False keeps ``exc`` as its own class
    merge_excited: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.improvised_only and self.scripted_only:
            raise DataError("options improvised_only and scripted_only exclude each other")

    def label_map(self, mapping: Mapping[str, str]) -> dict[str, str]:
        labels = dict(mapping)
        if not self.merge_excited:
            labels["exc"] = "exc"
        return labels

SPEC = CorpusSpec(
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
    options=IemocapOptions,
)
