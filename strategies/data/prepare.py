"""One idempotent prepare step per corpus: manifest -> folds -> features, in one folder.

``prepare_data`` is what ``ser-nas data prepare`` runs and what every search, retrain and
comparison calls first. It writes, into ``<data_dir>/<dataset>-<key>/``:

- ``manifest.csv``  the utterances (see :mod:`strategies.data.corpora`)
- ``folds.json``    speaker-independent folds (train / val / test utterance ids)
- ``features.npy``  float32 (utterances, coefficients, frames), rows in manifest order
- ``prepared.json`` what was asked (dataset, root, options, feature and fold settings),
  the class list, the summary, and a completion stamp written last

Every file is written to a temporary name and renamed into place, so an interrupted
prepare never leaves a folder that looks complete; the build runs under an exclusive
``fcntl`` lock (``prepared/.<dataset>-<key>.lock``) and re-checks the stamp once it holds
it, so processes preparing the same corpus at once build it once and share the result. Features are extracted through the
shared content-addressed cache (:func:`strategies.data.features.extract_features`), so a
second prepare of the same audio with the same recipe costs nothing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ser_space.io import write_atomically

from .config import DataConfig
from .paths import cache_root
from .corpora import get_corpus, load_manifest
from .errors import DataError
from .features import FeatureConfig, extract_features, locked
from .folds import Fold, default_protocol, load_folds, make_folds, save_folds
from .presets import ProtocolPreset, get_protocol_preset

logger = logging.getLogger(__name__)

__all__ = ["PreparedData", "prepare_data", "summary_table", "load_raw_manifest"]

_FORMAT = 1


@dataclass(frozen=True)
class PreparedData:
    """A prepared corpus: manifest, folds, features file and class list."""

    folder: Path  # the prepared-data folder
    config: DataConfig  # what was prepared
    manifest: pd.DataFrame  # one row per utterance, in features.npy row order
    folds: tuple[Fold, ...]  # speaker-independent folds
    classes: tuple[str, ...]  # class names; a label is its index here
    features_path: Path  # float32 (N, coefficients, frames)

    @property
    def labels(self) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        return np.asarray([index[e] for e in self.manifest["emotion"]], dtype=np.int64)

    def rows(self, utt_ids: tuple[str, ...] | list[str]) -> np.ndarray:
        position = {u: i for i, u in enumerate(self.manifest["utt_id"])}
        return np.asarray([position[u] for u in utt_ids], dtype=np.int64)

    def features(self) -> np.ndarray:
        return np.load(self.features_path, mmap_mode="r")


def _read_manifest(config: DataConfig) -> pd.DataFrame:
    get_corpus(config.dataset)  # clear error for an unknown name
    return load_manifest(config.dataset, config.root, **dict(config.options))


def load_raw_manifest(config: DataConfig) -> pd.DataFrame:
    """The corpus's manifest as the config selects it (loader options, protocol preset's filter)."""
    preset = _protocol_preset(config)  # a preset of another corpus is refused before its manifest is read
    manifest = _read_manifest(config)
    if preset is not None and preset.filter_manifest is not None:
        manifest = preset.filter_manifest(manifest, config)
    return manifest


def _protocol_preset(config: DataConfig) -> ProtocolPreset | None:
    """The config's :class:`strategies.data.presets.ProtocolPreset` (None without one); a
    :class:`DataError` when it is for another corpus."""
    if config.preset is None:
        return None
    preset = get_protocol_preset(config.preset)
    if preset.dataset != config.dataset:
        raise DataError(f"protocol preset {config.preset!r} is for dataset {preset.dataset!r}, not {config.dataset!r}")
    return preset


def _make_folds(config: DataConfig, manifest: pd.DataFrame) -> list[Fold]:
    preset = _protocol_preset(config)
    if preset is not None and preset.make_folds is not None:
        return preset.make_folds(manifest, config)
    if config.protocol is None:
        standard = default_protocol(config.dataset)
        protocol, k = standard.protocol, standard.k
    else:
        protocol, k = config.protocol, None
    return make_folds(manifest, protocol, k=config.k if config.k is not None else k,
                      val_speakers=config.val_speakers, seed=config.fold_seed)


def prepare_data(config: DataConfig, data_dir: str | Path | None = None, progress: bool = True,
                 num_workers: int = 1) -> PreparedData:
    """Build (or reuse) manifest, folds and features for ``config``; see the module docstring."""
    _protocol_preset(config)  # a preset of another corpus, or none of that name: refused before anything is written
    data_dir = Path(data_dir) if data_dir is not None else cache_root()
    folder = data_dir / "prepared" / f"{config.dataset}-{config.key()}"
    reused = _reuse_prepared(folder, config, warn=False)
    if reused is not None:
        return reused
    # one builder per folder at a time: a second process waits, then reuses what the first wrote
    with locked(folder.parent / f".{folder.name}.lock"):
        reused = _reuse_prepared(folder, config, warn=True)
        if reused is not None:
            return reused
        return _build_prepared(config, data_dir, folder, progress, num_workers)


def _reuse_prepared(folder: Path, config: DataConfig, warn: bool) -> PreparedData | None:
    """The complete prepared folder (its stamp is written last), or None."""
    if not (folder / "prepared.json").exists():
        return None
    try:
        return _load_prepared(folder, config)
    except (DataError, KeyError, ValueError, OSError) as error:
        if warn:
            logger.warning("prepared data in %s is unusable (%s); preparing again", folder, error)
        return None


def _build_prepared(config: DataConfig, data_dir: Path, folder: Path, progress: bool,
                    num_workers: int) -> PreparedData:
    stamp = folder / "prepared.json"
    manifest = load_raw_manifest(config)
    if manifest.empty:
        raise DataError(f"{config.root or config.dataset}: no utterances found")
    manifest = manifest.reset_index(drop=True)
    folds = _make_folds(config, manifest)
    classes = tuple(sorted(manifest["emotion"].unique()))
    _report_window(manifest, config.features)
    cache_dir = data_dir / "features"
    feature_set = extract_features(manifest, config.features, cache_dir, progress=progress,
                                   num_workers=num_workers)
    array = np.asarray(feature_set.features, dtype=np.float32)

    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(folder / "manifest.csv", lambda h: manifest.to_csv(h, index=False))
    save_folds(folds, folder / "folds.json", metadata={"dataset": config.dataset})
    write_atomically(folder / "features.npy", lambda h: np.save(h, array))
    summary = summarize(manifest)
    record = {
        "format": _FORMAT,
        "config": config.to_dict(),
        "classes": list(classes),
        "num_utterances": int(len(manifest)),
        "feature_shape": list(array.shape[1:]),
        "num_folds": len(folds),
        "summary": summary,
    }
    write_atomically(stamp, lambda h: h.write(json.dumps(record, indent=2, default=str).encode()))
    logger.info("prepared %d utterances, %d folds in %s", len(manifest), len(folds), folder)
    return PreparedData(folder, config, manifest, tuple(folds), classes, folder / "features.npy")


def _report_window(manifest: pd.DataFrame, features: FeatureConfig) -> None:
    """One warning line each for the clips the feature window pads or crops, naming the extreme one."""
    if "duration" not in manifest.columns or manifest.empty:
        return
    durations = pd.to_numeric(manifest["duration"], errors="coerce")
    window = features.clip_seconds
    for shorter, what in ((True, "shorter than"), (False, "longer than")):
        chosen = durations < window - 0.01 if shorter else durations > window + 0.01
        if not chosen.any():
            continue
        extreme = durations[chosen].idxmin() if shorter else durations[chosen].idxmax()
        if shorter:
            done = "zero-padded at the end" if features.pad_policy == "zero_end" else \
                "tiled" if features.pad_policy == "repeat" else "left short (zero columns)"
        else:
            done = f"cropped to their {'first' if features.crop_policy == 'start' else 'middle'} {window:g} s"
        logger.warning("%d of %d clips are %s the %g-s feature window and are %s (most: %s, %.2f s)",
                       int(chosen.sum()), len(manifest), what, window, done,
                       manifest.at[extreme, "utt_id"], float(durations[extreme]))


def _load_prepared(folder: Path, config: DataConfig) -> PreparedData:
    record = json.loads((folder / "prepared.json").read_text())
    if record.get("format") != _FORMAT:
        raise DataError(f"{folder}: prepared with another format version")
    manifest = pd.read_csv(folder / "manifest.csv", dtype={"speaker": str, "session": str, "gender": str},
                           keep_default_na=False)
    folds = load_folds(folder / "folds.json", manifest)
    features_path = folder / "features.npy"
    shape = np.load(features_path, mmap_mode="r").shape
    if shape[0] != len(manifest):
        raise DataError(f"{features_path}: {shape[0]} rows for {len(manifest)} utterances")
    return PreparedData(folder, config, manifest, tuple(folds), tuple(record["classes"]), features_path)


def summarize(manifest: pd.DataFrame) -> dict[str, Any]:
    """Clips per class and speaker, as nested dicts (JSON-able)."""
    table = pd.crosstab(manifest["speaker"], manifest["emotion"])
    return {
        "clips": int(len(manifest)),
        "hours": float(manifest["duration"].sum() / 3600.0) if "duration" in manifest else None,
        "per_speaker_class": {str(s): {str(c): int(v) for c, v in row.items()} for s, row in table.iterrows()},
    }


def summary_table(prepared: PreparedData) -> str:
    """A plain-text table of clips per speaker (rows) and class (columns), with totals."""
    table = pd.crosstab(prepared.manifest["speaker"], prepared.manifest["emotion"], margins=True,
                        margins_name="total")
    lines = [
        f"dataset {prepared.config.dataset}: {len(prepared.manifest)} clips, "
        f"{prepared.manifest['speaker'].nunique()} speakers, classes {', '.join(prepared.classes)}",
        table.to_string(),
        f"folds: {len(prepared.folds)} ({prepared.folds[0].protocol}); features "
        f"{tuple(np.load(prepared.features_path, mmap_mode='r').shape[1:])}; folder {prepared.folder}",
    ]
    return "\n".join(lines)
