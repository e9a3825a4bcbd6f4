"""Named protocol presets: the authors' data protocols beside the standard ones.

A preset is a function ``(root, features=..., val_speakers=..., fold_seed=...) -> DataConfig``
registered in :data:`PROTOCOL_PRESETS`. The standard presets are plain :class:`DataConfig`\\ s
(the corpus's default options and fold protocol). The authors' presets (../shared/PAPER.md
section 7) need more than loader options: they set ``DataConfig.preset``, and
:func:`strategies.data.prepare.prepare_data` then applies the preset's ``filter_manifest``
(after loading the corpus) and ``make_folds`` (instead of the plain fold protocol). The
preset name is part of ``DataConfig.key()``, so each protocol is prepared into its own folder.

=====================  ==========  ===========================================================
preset                 corpus      what it is
=====================  ==========  ===========================================================
iemocap                iemocap     standard: 5,531 utterances (neu, hap+exc, ang, sad, scripted
                                   and improvised), leave-one-session-out
iemocap-authors        iemocap     improvised only, neu/hap/ang/sad exactly (exc NOT merged),
                                   5 folds testing the speaker pairs (1M,2F) (2M,3F) (3M,4F)
                                   (4M,5F) (5M,1F)
msp-improv             msp-improv  standard: consensus labels, leave-one-session-out
msp-improv-authors     msp-improv  only ``R`` recordings, label = target emotion of the file
                                   name, 4 folds testing sessions 1, 2, 3, 5
msp-podcast            msp-podcast standard: official Train / Development / Test1
msp-podcast-authors    msp-podcast Test1 + Test2 merged into Train, Development dropped, a seeded
                                   random cap of 10,000 utterances, 5 greedy speaker groups
=====================  ==========  ===========================================================

Where the authors' code had defects (a folder dedup dropping about half of the improvised
IEMOCAP recordings, unseeded shuffles, choosing the epoch on the test fold), the presets do
not copy them: every split here is a pure function of the manifest and ``fold_seed``, and the
validation speakers always come from the training speakers. docs/reproducing.md lists each
deviation.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from .corpora import UNKNOWN_SPEAKER
from .errors import DataError
from .features import FeatureConfig
from .folds import IEMOCAP_AUTHORS_TEST_GROUPS, Fold, make_folds
from .config import DataConfig

logger = logging.getLogger(__name__)

__all__ = [
    "MSP_IMPROV_AUTHORS_TEST_SESSIONS",
    "MSP_PODCAST_AUTHORS_CAP",
    "MSP_PODCAST_AUTHORS_FOLDS",
    "PROTOCOL_PRESETS",
    "ProtocolPreset",
    "get_protocol_preset",
    "iemocap",
    "iemocap_authors",
    "msp_improv",
    "msp_improv_authors",
    "msp_podcast",
    "msp_podcast_authors",
    "msp_podcast_authors_manifest",
    "preset_data_config",
]

#: Four classes of every preset, in the corpora's default order.
_FOUR = ("neu", "hap", "ang", "sad")
#: Sessions the authors test on with MSP-IMPROV (one fold each; 4 and 6 always train).
MSP_IMPROV_AUTHORS_TEST_SESSIONS: tuple[str, ...] = ("1", "2", "3", "5")
#: Utterances the authors keep of MSP-Podcast (a random sample; seeded here).
MSP_PODCAST_AUTHORS_CAP = 10_000
#: Speaker groups (folds) of the authors' MSP-Podcast protocol.
MSP_PODCAST_AUTHORS_FOLDS = 5
#: Official partitions the authors train and test on (Development is dropped).
_MSP_PODCAST_AUTHORS_SPLITS = ("Train", "Test1", "Test2")

PresetBuilder = Callable[..., DataConfig]
ManifestFilter = Callable[[pd.DataFrame, DataConfig], pd.DataFrame]
FoldMaker = Callable[[pd.DataFrame, DataConfig], list[Fold]]


@dataclass(frozen=True)
class ProtocolPreset:
    """A named data protocol: how to build its DataConfig, and what prepare must add."""

    name: str  # registry key, e.g. "iemocap-authors"
    dataset: str  # corpus name in strategies.data.corpora.CORPORA
    kind: Literal["authors", "standard"]  # the authors' protocol (PAPER.md section 7) or the standard one
    description: str  # one line for listings and docs
    build: PresetBuilder  # (root, features=, val_speakers=, fold_seed=) -> DataConfig
    filter_manifest: ManifestFilter | None = None  # applied by prepare_data after loading; None = none
    make_folds: FoldMaker | None = None  # replaces the plain fold protocol in prepare_data; None = plain


def _default_features(features: FeatureConfig | None) -> FeatureConfig:
    return FeatureConfig.default() if features is None else features


def _root(root: str | Path) -> str:
    return str(Path(root).expanduser())


# --- standard presets --------------------------------------------------------------------------


def iemocap(root: str | Path, features: FeatureConfig | None = None, val_speakers: int | float = 1,
            fold_seed: int = 0) -> DataConfig:
    """Standard IEMOCAP: neu, hap + exc, ang, sad of every dialog (5,531 utterances), leave-one-session-out."""
    return DataConfig(dataset="iemocap", root=_root(root), protocol="loo-session", val_speakers=val_speakers,
                      fold_seed=fold_seed, features=_default_features(features))


def msp_improv(root: str | Path, features: FeatureConfig | None = None, val_speakers: int | float = 1,
               fold_seed: int = 0) -> DataConfig:
    """Standard MSP-IMPROV: consensus labels of every recording type, leave-one-session-out."""
    return DataConfig(dataset="msp-improv", root=_root(root), protocol="loo-session", val_speakers=val_speakers,
                      fold_seed=fold_seed, features=_default_features(features))


def msp_podcast(root: str | Path, features: FeatureConfig | None = None, val_speakers: int | float = 1,
                fold_seed: int = 0) -> DataConfig:
    """Standard MSP-Podcast: the official Train / Development / Test1 partitions."""
    return DataConfig(dataset="msp-podcast", root=_root(root), protocol="official", val_speakers=val_speakers,
                      fold_seed=fold_seed, features=_default_features(features))


# --- the authors' presets ----------------------------------------------------------------------


def iemocap_authors(root: str | Path, features: FeatureConfig | None = None, val_speakers: int | float = 1,
                    fold_seed: int = 0) -> DataConfig:
    """The authors' IEMOCAP: improvised dialogs, neu/hap/ang/sad exactly (exc not merged), 5 speaker-pair folds.

    Validation speakers are drawn (seeded by ``fold_seed``) from each fold's 8 training speakers.
    """
    options = (("classes", _FOUR), ("improvised_only", True), ("merge_excited", False))
    return DataConfig(dataset="iemocap", root=_root(root), options=options, val_speakers=val_speakers,
                      fold_seed=fold_seed, features=_default_features(features), preset="iemocap-authors")


def _iemocap_authors_folds(manifest: pd.DataFrame, config: DataConfig) -> list[Fold]:
    return make_folds(manifest, "speaker-groups", test_groups=IEMOCAP_AUTHORS_TEST_GROUPS,
                      val_speakers=config.val_speakers, seed=config.fold_seed)


def msp_improv_authors(root: str | Path, features: FeatureConfig | None = None, val_speakers: int | float = 1,
                       fold_seed: int = 0) -> DataConfig:
    """The authors' MSP-IMPROV: ``R`` recordings, target-emotion labels, folds testing sessions 1, 2, 3, 5."""
    options = (("classes", _FOUR), ("label_source", "target"), ("recordings", ("R",)))
    return DataConfig(dataset="msp-improv", root=_root(root), options=options, val_speakers=val_speakers,
                      fold_seed=fold_seed, features=_default_features(features), preset="msp-improv-authors")


def _msp_improv_authors_folds(manifest: pd.DataFrame, config: DataConfig) -> list[Fold]:
    sessions = manifest["session"].astype(str)
    missing = [s for s in MSP_IMPROV_AUTHORS_TEST_SESSIONS if not (sessions == s).any()]
    if missing:
        raise DataError(f"msp-improv-authors tests sessions {', '.join(MSP_IMPROV_AUTHORS_TEST_SESSIONS)}; "
                        f"the corpus has no utterance of session(s) {', '.join(missing)}")
    groups = [sorted(set(manifest.loc[sessions == s, "speaker"])) for s in MSP_IMPROV_AUTHORS_TEST_SESSIONS]
    folds = make_folds(manifest, "speaker-groups", test_groups=groups, val_speakers=config.val_speakers,
                       seed=config.fold_seed)
    # name the folds by their test session, as the authors do
    return [dataclasses.replace(fold, name=f"session-{session}")
            for fold, session in zip(folds, MSP_IMPROV_AUTHORS_TEST_SESSIONS, strict=True)]


def msp_podcast_authors(root: str | Path, features: FeatureConfig | None = None, val_speakers: int | float = 1,
                        fold_seed: int = 0) -> DataConfig:
    """The authors' MSP-Podcast: Train + Test1 + Test2, a seeded 10,000-utterance sample, 5 speaker groups.

    ``fold_seed`` seeds both the sample and the validation speakers.
    """
    return DataConfig(dataset="msp-podcast", root=_root(root), val_speakers=val_speakers, fold_seed=fold_seed,
                      features=_default_features(features), preset="msp-podcast-authors")


def msp_podcast_authors_manifest(manifest: pd.DataFrame, seed: int = 0,
                                 cap: int = MSP_PODCAST_AUTHORS_CAP) -> pd.DataFrame:
    """The authors' MSP-Podcast selection, made reproducible.

    Keeps ``Train``, ``Test1`` and ``Test2`` (merged: the folds ignore ``split``), drops
    ``Development``, rows without a split and rows whose speaker is unknown (a speaker group
    cannot hold them), then, if more than ``cap`` rows remain, a uniform random sample of
    ``cap`` rows drawn with ``numpy.random.default_rng(seed)`` (the authors' sample was
    unseeded). Rows stay in manifest order.
    """
    if cap < 1:
        raise DataError(f"cap must be >= 1, got {cap}")
    if "split" not in manifest.columns:
        raise DataError("msp-podcast-authors needs the split column of MSP-Podcast")
    keep = manifest["split"].isin(_MSP_PODCAST_AUTHORS_SPLITS) & ~manifest["speaker"].isin({UNKNOWN_SPEAKER, ""})
    dropped = manifest.loc[~keep, "split"].replace("", "(none)").value_counts()
    if not dropped.empty:
        logger.info("msp-podcast-authors: left out %s (Development, no split, or unknown speaker)",
                    ", ".join(f"{n} {v}" for v, n in dropped.items()))
    selected = manifest.loc[keep]
    if len(selected) > cap:
        rows = np.sort(np.random.default_rng(seed).choice(len(selected), size=cap, replace=False))
        logger.info("msp-podcast-authors: a seeded sample of %d of %d utterances", cap, len(selected))
        selected = selected.iloc[rows]
    return selected.reset_index(drop=True)


def _msp_podcast_authors_filter(manifest: pd.DataFrame, config: DataConfig) -> pd.DataFrame:
    return msp_podcast_authors_manifest(manifest, seed=config.fold_seed)


def _msp_podcast_authors_folds(manifest: pd.DataFrame, config: DataConfig) -> list[Fold]:
    # kfold-speaker: speakers sorted by utterance count, each to the currently smallest group
    # (greedy); the seed only orders speakers of equal size, so the grouping is deterministic
    return make_folds(manifest, "kfold-speaker", k=MSP_PODCAST_AUTHORS_FOLDS, val_speakers=config.val_speakers,
                      seed=config.fold_seed)


# --- registry ----------------------------------------------------------------------------------

PROTOCOL_PRESETS: dict[str, ProtocolPreset] = {
    preset.name: preset
    for preset in (
        ProtocolPreset("iemocap", "iemocap", "standard",
                       "5,531 utterances (hap + exc), leave-one-session-out", iemocap),
        ProtocolPreset("iemocap-authors", "iemocap", "authors",
                       "improvised only, exc not merged, speaker-pair folds (1M,2F) .. (5M,1F)",
                       iemocap_authors, make_folds=_iemocap_authors_folds),
        ProtocolPreset("msp-improv", "msp-improv", "standard",
                       "consensus labels, leave-one-session-out", msp_improv),
        ProtocolPreset("msp-improv-authors", "msp-improv", "authors",
                       "R recordings, target labels, folds test sessions 1, 2, 3, 5",
                       msp_improv_authors, make_folds=_msp_improv_authors_folds),
        ProtocolPreset("msp-podcast", "msp-podcast", "standard",
                       "official Train / Development / Test1", msp_podcast),
        ProtocolPreset("msp-podcast-authors", "msp-podcast", "authors",
                       "Train + Test1 + Test2, seeded 10,000-utterance sample, 5 greedy speaker groups",
                       msp_podcast_authors, filter_manifest=_msp_podcast_authors_filter,
                       make_folds=_msp_podcast_authors_folds),
    )
}
"""Protocol presets by name."""


def get_protocol_preset(name: str) -> ProtocolPreset:
    """The preset called ``name``.

    Raises
    ------
    DataError
        If there is none; the message lists the presets.
    """
    if name not in PROTOCOL_PRESETS:
        raise DataError(f"unknown protocol preset {name!r}; available: {', '.join(PROTOCOL_PRESETS)}")
    return PROTOCOL_PRESETS[name]


def preset_data_config(name: str, root: str | Path, features: FeatureConfig | None = None,
                       val_speakers: int | float = 1, fold_seed: int = 0) -> DataConfig:
    """The DataConfig of preset ``name`` for the corpus at ``root``."""
    return get_protocol_preset(name).build(root, features=features, val_speakers=val_speakers,
                                           fold_seed=fold_seed)
