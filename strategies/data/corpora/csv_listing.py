"""A corpus listed in a CSV file: its description (``SPEC``), options and scanner."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import DataError
from .base import UNKNOWN_SPEAKER, EMOTION_SYNONYMS, CorpusSpec, LoadOptions, gender_of, relative_id

logger = logging.getLogger(__name__)


def _scan_csv(root: Path, options: CsvOptions) -> pd.DataFrame:
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
            column("utt_id", "") != "", [relative_id(p, csv_file.parent) for p in absolute]),
        "path": [str(p) for p in absolute],
        "speaker": speaker,
        "gender": column("gender", "").map(gender_of),
        "session": column("session", ""),
        "label": table["emotion"].str.strip(),
        "source": str(csv_file),
    })
    if "split" in table.columns:
        frame["split"] = table["split"].str.strip()
    return frame


@dataclass(frozen=True)
class CsvOptions(LoadOptions):
    """The options of a corpus listed in a CSV file, besides the common ones."""

    # {column in your file: manifest column}, e.g. {"file": "path", "label": "emotion"}
    columns: Mapping[str, str] | None = None

SPEC = CorpusSpec(
    name="csv",
    description="Any corpus listed in a CSV file with path and emotion columns",
    url="(your own data)",
    layout="a .csv file (or a folder holding manifest.csv) with columns path, emotion "
           "and optionally speaker, gender, session, utt_id, split",
    emotion_map=EMOTION_SYNONYMS,
    default_classes=None,
    protocol="loso",
    scan=_scan_csv,
    unknown_labels="keep",
    options=CsvOptions,
    root_may_be_file=True,
)
