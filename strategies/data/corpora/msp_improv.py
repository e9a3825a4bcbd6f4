"""MSP-IMPROV: its description (``SPEC``), options and scanner."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from ..errors import DataError
from .base import CorpusSpec, LoadOptions, as_tuple, check_choice, manifest_rows, visible_files

logger = logging.getLogger(__name__)


_MSP_IMPROV_KEY = r"S(\d\d)([A-Z])-([FM])(\d\d)-([A-Z])-([A-Z]{1,2}\d{2,3})"
_MSP_IMPROV_LABEL_LINE = re.compile(
    rf"^(?:UTD|MSP)-IMPROV-({_MSP_IMPROV_KEY})\.(?:avi|wav)\s*;\s*([A-Za-z])\s*;"
)
_MSP_IMPROV_AUDIO = re.compile(rf"^MSP-IMPROV-({_MSP_IMPROV_KEY})\.wav$")
# Some releases ship the evaluation file under a misspelt name.
_MSP_IMPROV_LABEL_FILES = ("Evaluation.txt", "Evalution.txt")


def _scan_msp_improv(root: Path, options: MspImprovOptions) -> pd.DataFrame:
    audio = {}
    for path in visible_files(root.rglob("MSP-IMPROV-*.wav")):
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
    return manifest_rows(rows)


@dataclass(frozen=True)
class MspImprovOptions(LoadOptions):
    """MSP-IMPROV's options, besides the common ones."""

    # "consensus" = perceived label of Evaluation.txt; "target" = the emotion the scenario was
    # written to elicit (letter after the sentence number in the file name)
    label_source: Literal["consensus", "target"] = "consensus"
    # recording-type codes to keep (R read, T target improvised, S other improvised, P natural
    # interaction); None = all
    recordings: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self, "label_source", ("consensus", "target"))
        recordings = as_tuple(self.recordings)
        object.__setattr__(self, "recordings", None if recordings is None else tuple(r.upper() for r in recordings))

SPEC = CorpusSpec(
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
    options=MspImprovOptions,
)
