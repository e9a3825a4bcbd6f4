"""Features: MFCC / log-mel "images" of a fixed size, their on-disk cache and normalisation.

Three recipes (see docs/features.md):

- ``FeatureConfig.compat()``: exactly the authors' recipe. Audio resampled to 32,750 Hz, the
  first 8 s kept, shorter clips zero-padded at the end, ``librosa.feature.mfcc`` with 128
  coefficients, n_fft 2048, hop 512, Hann, center=True, 128 mel bands (dB inside librosa),
  giving 128 x 512, then the max over every 4 consecutive frames: 128 x 128. No normalisation.
- ``FeatureConfig.default()``: the same 128 x 128 geometry at the corpus's native rate (the
  hop is derived so that 8 s gives 128 * 4 frames), normalised per fold.
- ``FeatureConfig.small()``: a cheap 40 x 64 recipe for tests and the synthetic corpus.

Features are computed once per (feature config, audio content) and cached under
``cache_dir/<config.key()>/`` as one float32 ``.npy`` array (memory-mapped on reuse) and an
``index.json``; see :func:`extract_features`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from strategies.data.audio import read_audio, resample
from strategies.data.errors import DataError
from ser_space.dictconfig import DictConfig
from ser_space.io import write_atomically

__all__ = [
    "FeatureCache",
    "FeatureConfig",
    "FeatureSet",
    "Normalizer",
    "compute_features",
    "extract_features",
    "file_sha1",
    "fit_length",
    "standardise_per_speaker",
    "standardise_per_utterance",
    "gain_level",
    "locked",
]

logger = logging.getLogger(__name__)

#: Version of the cache layout (index.json + .npy); bump when it changes.
CACHE_FORMAT_VERSION = 1

# Fields of FeatureConfig that do not change the cached (un-normalised) features.
_NOT_IN_KEY = ("normalization",)
#: FeatureConfig.normalization's choices (see there).
NORMALIZATIONS = ("per_coefficient", "per_speaker", "per_utterance", "none")


@dataclass(frozen=True)
class FeatureConfig(DictConfig):
    """How one utterance becomes a (num_coefficients, frames) float32 matrix.

    The raw spectrogram has ``frames * time_pool`` columns; the max over every ``time_pool``
    consecutive columns gives ``frames`` columns (the authors' pooling).
    """

    kind: Literal["mfcc", "logmel"] = "mfcc"  # MFCC (DCT-II, ortho, of the dB mel spectrogram) or the log-mel spectrogram itself
    sample_rate: int | None = None  # Hz to resample to; None keeps each file's native rate
    clip_seconds: float = 8.0  # seconds of audio per utterance, after crop / pad
    pad_policy: Literal["zero_end", "repeat", "none"] = "zero_end"  # shorter clips: zeros at the end, tiled, or not padded (matrix filled with zeros)
    crop_policy: Literal["start", "center"] = "start"  # longer clips: keep the first or the middle clip_seconds
    n_mfcc: int = 128  # MFCC coefficients (rows) when kind == "mfcc"
    n_mels: int = 128  # mel bands; also the rows when kind == "logmel"
    n_fft: int = 2048  # FFT size in samples
    win_length: int | None = None  # window length in samples (Hann); None = n_fft
    hop_length: int | None = None  # hop in samples; None = derived so clip_seconds gives frames * time_pool columns
    frames: int = 128  # output columns (after pooling)
    time_pool: int = 4  # max over every time_pool consecutive spectrogram columns (1 = no pooling)
    center: bool = True  # librosa's centred frames (signal padded by n_fft // 2 on both sides)
    db: bool = True  # dB scale (power_to_db, ref 1, top_db 80); MFCC always uses dB
    normalization: Literal["per_coefficient", "per_speaker", "per_utterance", "none"] = "per_coefficient"  # per_coefficient: per-fold standardisation fitted on the training speakers; per_speaker: each speaker by its own utterances' statistics, the test speaker's too (no labels; transductive, docs/features.md); per_utterance: each clip by its own statistics over its frames (removes the recording level); not part of key()

    def __post_init__(self) -> None:
        if self.kind not in ("mfcc", "logmel"):
            raise ValueError(f"kind must be 'mfcc' or 'logmel', got {self.kind!r}")
        if self.pad_policy not in ("zero_end", "repeat", "none"):
            raise ValueError(f"pad_policy must be zero_end, repeat or none, got {self.pad_policy!r}")
        if self.crop_policy not in ("start", "center"):
            raise ValueError(f"crop_policy must be start or center, got {self.crop_policy!r}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be {', '.join(NORMALIZATIONS)}, got {self.normalization!r}")
        if self.sample_rate is not None and self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive or None, got {self.sample_rate}")
        if not self.clip_seconds > 0:
            raise ValueError(f"clip_seconds must be positive, got {self.clip_seconds}")
        for name in ("n_mfcc", "n_mels", "n_fft", "frames", "time_pool"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("win_length", "hop_length"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        if self.win_length is not None and self.win_length > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) must not exceed n_fft ({self.n_fft})")
        if self.kind == "mfcc" and self.n_mfcc > self.n_mels:
            raise ValueError(f"n_mfcc ({self.n_mfcc}) must not exceed n_mels ({self.n_mels})")
        if self.kind == "mfcc" and not self.db:
            raise ValueError("kind='mfcc' is always computed from the dB mel spectrogram: db must be True")

    # ------------------------------------------------------------------ presets
    @classmethod
    def default(cls) -> FeatureConfig:
        """The paper's 128 x 128 geometry at the corpus's native rate, normalised per fold."""
        return cls()

    @classmethod
    def compat(cls) -> FeatureConfig:
        """Exactly the authors' recipe: 32,750 Hz, 8 s, MFCC 128 x 512 max-pooled by 4, no normalisation."""
        return cls(
            kind="mfcc",
            sample_rate=32750,
            clip_seconds=8.0,
            pad_policy="zero_end",
            crop_policy="start",
            n_mfcc=128,
            n_mels=128,
            n_fft=2048,
            win_length=None,
            hop_length=512,
            frames=128,
            time_pool=4,
            center=True,
            db=True,
            normalization="none",
        )

    @classmethod
    def small(cls) -> FeatureConfig:
        """A cheap recipe for tests and the synthetic corpus: 40 MFCC x 64 frames of 3 s at 16 kHz."""
        return cls(
            kind="mfcc",
            sample_rate=16000,
            clip_seconds=3.0,
            n_mfcc=40,
            n_mels=64,
            n_fft=512,
            frames=64,
            time_pool=2,
        )

    @classmethod
    def speech(cls, clip_seconds: float = 3.0) -> FeatureConfig:
        """Real speech: 64-band log-mel at 16 kHz, 25 ms windows every 10 ms, max over 2 frames.

        64 x (50 * clip_seconds) per utterance (20 ms per column). The window is centred on
        longer clips; shorter clips are zero-padded at the end. ``ser-nas`` sets
        ``clip_seconds`` from the corpus's durations (:func:`strategies.recipes.clip_seconds_for`).
        What it gains over the 128 x 128 MFCC of an 8-s window is measured in docs/results.md.
        """
        frames = max(1, int(round(clip_seconds * 50)))
        return cls(kind="logmel", sample_rate=16000, clip_seconds=float(clip_seconds), crop_policy="center",
                   n_mels=64, n_fft=512, win_length=400, hop_length=160, frames=frames, time_pool=2)

    @classmethod
    def preset(cls, name: str) -> FeatureConfig:
        """A named preset: ``small``, ``speech``, ``default`` or ``compat``."""
        presets = {"small": cls.small, "speech": cls.speech, "default": cls.default, "compat": cls.compat}
        if name not in presets:
            raise ValueError(f"unknown feature preset {name!r}; known: {', '.join(presets)}")
        return presets[name]()

    # ------------------------------------------------------------------ derived values
    def gain_direction(self) -> np.ndarray | None:
        """How each coefficient moves when the audio is 1 dB louder (before normalisation), or None.

        A gain adds the same number of dB to every mel band: log-mel in dB moves by 1 per dB in
        every row; MFCC (the orthonormal DCT-II of the dB bands) only in coefficient 0, by
        ``sqrt(n_mels)``. Linear-power log-mel (``db=False``) is scaled, not shifted: None.
        The ``top_db`` floor moves with the loudest bin, so it shifts alike.
        """
        if self.kind == "mfcc":
            direction = np.zeros(self.n_mfcc)
            direction[0] = np.sqrt(self.n_mels)
            return direction
        return np.ones(self.n_mels) if self.db else None

    @property
    def num_coefficients(self) -> int:
        """Rows of the output matrix: n_mfcc for MFCC, n_mels for log-mel."""
        return self.n_mfcc if self.kind == "mfcc" else self.n_mels

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of one utterance's features: (num_coefficients, frames)."""
        return (self.num_coefficients, self.frames)

    def clip_samples(self, sr: int) -> int:
        """Samples in ``clip_seconds`` at rate ``sr``."""
        return max(1, int(round(self.clip_seconds * sr)))

    def hop_for(self, sr: int) -> int:
        """Hop in samples at rate ``sr``.

        The explicit ``hop_length`` when set; otherwise the largest hop for which a clip of
        ``clip_seconds`` gives at least ``frames * time_pool`` centred columns
        (``1 + samples // hop``), i.e. ``samples // (frames * time_pool - 1)``. At 32,750 Hz
        and 8 s this is the authors' 512.
        """
        if self.hop_length is not None:
            return self.hop_length
        raw = self.frames * self.time_pool
        return max(1, self.clip_samples(sr) // max(1, raw - 1))

    def key(self) -> str:
        """Stable short hash of the fields that change the cached features.

        sha1 of the JSON of :meth:`to_dict` (sorted keys, without ``normalization``, which
        is applied after the cache), first 16 hex digits. Independent of the process,
        machine and Python hash seed.
        """
        values = {k: v for k, v in self.to_dict().items() if k not in _NOT_IN_KEY}
        payload = json.dumps({"format": CACHE_FORMAT_VERSION, **values}, sort_keys=True)
        return hashlib.sha1(payload.encode("utf-8")).hexdigest()[:16]


# ---------------------------------------------------------------------- computation
def fit_length(wave: np.ndarray, samples: int, config: FeatureConfig) -> np.ndarray:
    """Crop or pad ``wave`` to ``samples`` following the config's policies."""
    if len(wave) > samples:
        start = 0 if config.crop_policy == "start" else (len(wave) - samples) // 2
        return wave[start : start + samples]
    if len(wave) < samples:
        if config.pad_policy == "zero_end":
            return np.pad(wave, (0, samples - len(wave)))
        if config.pad_policy == "repeat" and len(wave) > 0:
            return np.resize(wave, samples)
    return wave


def compute_features(wave: np.ndarray, sr: int, config: FeatureConfig) -> np.ndarray:
    """Features of one mono signal, deterministic.

    Parameters
    ----------
    wave : np.ndarray
        Mono signal, shape (samples,).
    sr : int
        Its sample rate in Hz; resampled to ``config.sample_rate`` when that is set and differs.
    config : FeatureConfig
        The recipe.

    Returns
    -------
    np.ndarray
        float32, shape exactly ``config.shape`` = (num_coefficients, frames). Missing columns
        (rounding, ``center=False``) repeat the last column; with ``pad_policy="none"`` the
        columns past the end of a short clip are zeros.
    """
    from .melspec import mel_spectrogram, mfcc, power_to_db  # librosa's definitions in NumPy (no numba compile)

    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"wave must be mono (1-D), got shape {wave.shape}")
    if config.sample_rate is not None and sr != config.sample_rate:
        wave = resample(wave, sr, config.sample_rate)
        sr = config.sample_rate
    wave = fit_length(wave, config.clip_samples(sr), config)
    hop = config.hop_for(sr)
    win_length = config.win_length or config.n_fft
    matrix = mel_spectrogram(wave, sr, config.n_fft, hop, win_length, config.n_mels, center=config.center)
    if config.kind == "mfcc":
        matrix = mfcc(power_to_db(matrix), config.n_mfcc)
    elif config.db:
        matrix = power_to_db(matrix)
    raw = config.frames * config.time_pool
    columns = matrix.shape[1]
    if columns > raw:
        matrix = matrix[:, :raw]
    elif columns < raw:
        if config.pad_policy == "none" or columns == 0:
            fill = np.zeros((matrix.shape[0], raw - columns), dtype=matrix.dtype)
        else:
            fill = np.repeat(matrix[:, -1:], raw - columns, axis=1)
        matrix = np.concatenate([matrix, fill], axis=1)
    if config.time_pool > 1:
        matrix = matrix.reshape(matrix.shape[0], config.frames, config.time_pool).max(axis=2)
    return np.ascontiguousarray(matrix, dtype=np.float32)


def file_sha1(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """sha1 hex digest of a file's bytes (the cache's notion of "same audio")."""
    digest = hashlib.sha1()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(chunk_size):
                digest.update(chunk)
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from error
    return digest.hexdigest()


# ---------------------------------------------------------------------- normalisation
def standardise_per_speaker(features: np.ndarray, speakers: Sequence[str], eps: float = 1e-8) -> np.ndarray:
    """Each speaker's rows standardised per coefficient with that speaker's own statistics.

    ``features`` is (N, coefficients, frames) (statistics over the speaker's utterances and
    frames) or (N, dimensions) (over its utterances); ``speakers`` names each row's speaker.
    Only the features are read, never a label. Returns float32 of the same shape.
    """
    x = np.asarray(features, dtype=np.float32)
    groups = np.asarray(speakers)
    if groups.shape != (x.shape[0],):
        raise ValueError(f"{x.shape[0]} feature rows for {groups.size} speakers")
    axes = (0, *range(2, x.ndim))
    out = np.empty_like(x)
    for speaker in np.unique(groups):
        mask = groups == speaker
        block = x[mask].astype(np.float64)
        mean = block.mean(axis=axes, keepdims=True)
        std = np.maximum(block.std(axis=axes, keepdims=True), eps)
        out[mask] = (block - mean) / std
    return out


def standardise_per_utterance(features: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Each utterance standardised per coefficient with its own statistics over its frames.

    ``features`` is (coefficients, frames) or (N, coefficients, frames). A gain (a constant
    added to every frame of a coefficient) is removed, and nothing but the utterance itself is
    read. Returns float32 of the same shape.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim not in (2, 3):
        raise ValueError(f"per-utterance standardisation needs (coefficients, frames) or (N, coefficients, frames), "
                         f"got shape {x.shape}")
    mean = x.mean(axis=-1, keepdims=True)
    std = np.maximum(x.std(axis=-1, keepdims=True), eps)
    return ((x - mean) / std).astype(np.float32)


@dataclass(frozen=True, eq=False)
class Normalizer:
    """Per-coefficient standardisation, fitted on the training utterances of one fold.

    ``transform(x) = (x - mean) / std`` with mean and std per coefficient (row), pooled over
    the training utterances and all their frames. ``kind="none"`` is the identity (compat).
    ``kind="per_speaker"`` holds no statistics: each speaker is standardised with its own
    (:func:`standardise_per_speaker`), so it has no ``transform`` of a lone utterance.
    ``kind="per_utterance"`` holds none either: ``transform`` standardises each utterance with
    its own statistics (:func:`standardise_per_utterance`).
    """

    kind: Literal["per_coefficient", "per_speaker", "per_utterance", "none"] = "none"  # see FeatureConfig.normalization
    mean: np.ndarray | None = None  # (num_coefficients,) float64 mean over training utterances and frames
    std: np.ndarray | None = None  # (num_coefficients,) float64 std, floored at eps
    eps: float = 1e-8  # floor on std, so constant coefficients do not divide by zero

    def __post_init__(self) -> None:
        if self.kind not in NORMALIZATIONS:
            raise ValueError(f"kind must be {', '.join(NORMALIZATIONS)}, got {self.kind!r}")
        if self.kind == "per_coefficient" and (self.mean is None or self.std is None):
            raise ValueError("a per_coefficient Normalizer needs mean and std: use Normalizer.fit")

    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        kind: Literal["per_coefficient", "per_speaker", "per_utterance", "none"] = "per_coefficient",
        eps: float = 1e-8,
        chunk: int = 256,
    ) -> Normalizer:
        """Fit on training features only.

        Parameters
        ----------
        features : np.ndarray
            (N, num_coefficients, frames) training utterances (a memmap is read in chunks).
        kind : {"per_coefficient", "per_speaker", "per_utterance", "none"}
            ``"none"`` returns the identity normaliser, ``"per_speaker"`` and ``"per_utterance"``
            their markers (nothing to fit).
        eps : float
            Floor on the standard deviation.
        chunk : int
            Utterances read at a time (bounds memory on memmapped caches).
        """
        if kind in ("none", "per_speaker", "per_utterance"):
            return cls(kind=kind, eps=eps)
        if features.ndim != 3 or features.shape[0] == 0:
            raise ValueError(f"fit needs (N, num_coefficients, frames) with N > 0, got {features.shape}")
        total = np.zeros(features.shape[1], dtype=np.float64)
        total_sq = np.zeros(features.shape[1], dtype=np.float64)
        for start in range(0, features.shape[0], chunk):
            block = np.asarray(features[start : start + chunk], dtype=np.float64)
            total += block.sum(axis=(0, 2))
            total_sq += np.square(block).sum(axis=(0, 2))
        count = features.shape[0] * features.shape[2]
        mean = total / count
        var = np.maximum(total_sq / count - np.square(mean), 0.0)
        std = np.maximum(np.sqrt(var), eps)
        return cls(kind="per_coefficient", mean=mean, std=std, eps=eps)

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Normalise (num_coefficients, frames) or (N, num_coefficients, frames) float32 features."""
        features = np.asarray(features, dtype=np.float32)
        if self.kind == "none":
            return features
        if self.kind == "per_utterance":
            return standardise_per_utterance(features, self.eps)
        if self.kind == "per_speaker":
            raise ValueError("a per_speaker normaliser standardises a speaker's utterances together: "
                             "use standardise_per_speaker(features, speakers)")
        mean = self.mean.astype(np.float32)[:, None]
        std = self.std.astype(np.float32)[:, None]
        if features.shape[-2] != mean.shape[0]:
            raise ValueError(
                f"features have {features.shape[-2]} coefficients, the normaliser {mean.shape[0]}"
            )
        return (features - mean) / std

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (for a run folder)."""
        return {
            "kind": self.kind,
            "mean": None if self.mean is None else [float(v) for v in self.mean],
            "std": None if self.std is None else [float(v) for v in self.std],
            "eps": self.eps,
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Normalizer:
        """Inverse of :meth:`to_dict`."""
        mean = values.get("mean")
        std = values.get("std")
        return cls(
            kind=values["kind"],
            mean=None if mean is None else np.asarray(mean, dtype=np.float64),
            std=None if std is None else np.asarray(std, dtype=np.float64),
            eps=float(values.get("eps", 1e-8)),
        )


def gain_level(config: FeatureConfig, normalizer: Normalizer, train_features: np.ndarray,
               train_speakers: Sequence[str] | None = None) -> np.ndarray | None:
    """Per coefficient, how the *normalised* training features move when the audio is 1 dB louder.

    :meth:`FeatureConfig.gain_direction` over the normalisation's scale: the fold's standard
    deviations (``per_coefficient``), none (``none``), or the mean of the training speakers' own
    (``per_speaker``: each speaker has its own scale; their mean stands for all of them). None
    where a gain leaves the features unchanged (``per_utterance`` removes it) or is no shift
    (linear-power features). Gain augmentation (``TrainConfig.gain_db``) adds it times the
    drawn gain.
    """
    direction = config.gain_direction()
    if direction is None or normalizer.kind == "per_utterance":
        return None
    if normalizer.kind == "none":
        return direction
    if normalizer.kind == "per_coefficient":
        return direction / normalizer.std
    if train_speakers is None:
        raise ValueError("the gain level of per-speaker normalised features needs the training speakers")
    groups = np.asarray(train_speakers)
    stds = [np.maximum(np.asarray(train_features[groups == speaker], dtype=np.float64).std(axis=(0, 2)),
                       normalizer.eps) for speaker in np.unique(groups)]
    return direction / np.mean(stds, axis=0)


# ---------------------------------------------------------------------- feature sets and cache
@dataclass(frozen=True, eq=False)
class FeatureSet:
    """Features of a manifest's utterances, in manifest order."""

    features: np.ndarray  # (N, num_coefficients, frames) float32; a read-only memmap when loaded from the cache
    utt_ids: tuple[str, ...]  # utterance id of each row
    config: FeatureConfig  # the recipe that made them
    path: Path | None = None  # cache folder they came from (None when not cached)
    manifest_rows: dict[str, int] = field(default_factory=dict, init=False, repr=False)  # utt_id -> row, built once

    def __post_init__(self) -> None:
        if self.features.shape[0] != len(self.utt_ids):
            raise ValueError(f"{self.features.shape[0]} feature rows for {len(self.utt_ids)} utterances")
        self.manifest_rows.update({utt: row for row, utt in enumerate(self.utt_ids)})
        if len(self.manifest_rows) != len(self.utt_ids):
            raise ValueError("utterance ids in a FeatureSet must be unique")

    def __len__(self) -> int:
        return len(self.utt_ids)

    def rows(self, utt_ids: Sequence[str]) -> np.ndarray:
        """Row numbers of ``utt_ids``; an unknown id is a KeyError naming it."""
        try:
            return np.fromiter((self.manifest_rows[u] for u in utt_ids), dtype=np.int64, count=len(utt_ids))
        except KeyError as error:
            raise KeyError(f"utterance {error.args[0]!r} is not in this FeatureSet") from None

    def select(self, utt_ids: Sequence[str]) -> FeatureSet:
        """The subset ``utt_ids`` in that order (features copied into memory)."""
        utt_ids = [str(u) for u in utt_ids]
        return FeatureSet(
            features=np.asarray(self.features[self.rows(utt_ids)]),
            utt_ids=tuple(utt_ids),
            config=self.config,
            path=self.path,
        )


_INDEX = "index.json"


@contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """Exclusive inter-process lock on ``lock_path`` (fcntl.flock); a no-op where fcntl is missing.

    The lock file is removed when the holder is done, so none pile up. A waiter that then
    gets the lock of a file no longer at ``lock_path`` (removed, or replaced by a newer
    holder's) starts over on the current one, so two holders never overlap.
    """
    try:
        import fcntl
    except ImportError:  # Windows: the atomic replaces below still keep the cache intact
        yield
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = open(lock_path, "a+b")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                current = os.stat(lock_path)
            except FileNotFoundError:
                current = None
            if current is None or current.st_ino != os.fstat(handle.fileno()).st_ino:
                continue  # the holder before us removed this file: lock the current one
            try:
                yield
            finally:
                lock_path.unlink(missing_ok=True)
            return
        finally:
            handle.close()  # closing releases the lock


def _read_index(folder: Path, config: FeatureConfig) -> tuple[dict[str, Any], np.ndarray] | None:
    """The cache's index and memmapped array, or None when absent, stale or damaged."""
    index_path = folder / _INDEX
    if not index_path.is_file():
        return None
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
        if index.get("format") != CACHE_FORMAT_VERSION or index.get("key") != config.key():
            logger.warning("feature cache %s was written by another format or config: rebuilding it", folder)
            return None
        array = np.load(folder / index["data"], mmap_mode="r")
        if array.shape != (len(index["rows"]), *config.shape) or array.dtype != np.float32:
            logger.warning("feature cache %s does not match its index: rebuilding it", folder)
            return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.warning("feature cache %s is unreadable (%s): rebuilding it", folder, error)
        return None
    return index, array


def _extract_one(job: tuple[int, str, FeatureConfig]) -> tuple[int, np.ndarray, int]:
    """Worker: read one file and compute its features (module-level so it pickles)."""
    position, path, config = job
    wave, sr = read_audio(path, config.sample_rate)
    return position, compute_features(wave, sr, config), sr


def _compute_missing(
    jobs: list[tuple[int, str, FeatureConfig]], progress: bool, num_workers: int
) -> Iterator[tuple[int, np.ndarray, int]]:
    """Features of ``jobs``, in completion order, with an optional tqdm bar on stderr."""
    from tqdm.auto import tqdm

    # a bar on a terminal only (tqdm's disable=None); a log file or pipe gets rebuild's log lines
    bar = tqdm(total=len(jobs), desc="features", unit="utt", disable=None if progress else True, leave=False,
               file=sys.stderr)
    try:
        if num_workers <= 1 or len(jobs) < 2:
            for job in jobs:
                yield _extract_one(job)
                bar.update(1)
        else:
            import multiprocessing

            # spawn: no fork of a process that may hold threads (torch, tqdm's monitor)
            context = multiprocessing.get_context("spawn")
            with context.Pool(processes=num_workers) as pool:
                chunksize = max(1, min(32, len(jobs) // (4 * num_workers)))
                for result in pool.imap_unordered(_extract_one, jobs, chunksize=chunksize):
                    yield result
                    bar.update(1)
    finally:
        bar.close()


class FeatureCache:
    """One feature recipe's cache on disk, read and rewritten under an exclusive lock.

    ``root/<config.key()>/`` holds ``index.json`` (format, key, config, the data file's name,
    and per row its ``sha1`` of the audio bytes, ``utt_id`` and native sample rate) and
    ``features-<id>.npy``, a float32 (rows, num_coefficients, frames) array. Rows are matched
    by the audio content hash, so a changed file is recomputed and a renamed one is not; rows
    of other manifests with the same config are kept. Both files are written under unique
    temporary names and ``os.replace``-d, the index last, and :meth:`locked` holds an
    exclusive ``fcntl.flock`` on ``root/<key>.lock``: concurrent users wait and then reuse,
    and a crash leaves the previous cache intact.
    """

    def __init__(self, root: str | Path, config: FeatureConfig) -> None:
        self.root = Path(root)
        self.config = config
        self.folder = self.root / config.key()
        self.entries: list[dict[str, Any]] = []
        self.array: np.ndarray | None = None
        self._row_of: dict[str, int] = {}

    @contextmanager
    def locked(self) -> Iterator[FeatureCache]:
        """Hold the cache's lock, with its current index and array loaded."""
        with locked(self.root / f"{self.config.key()}.lock"):
            self.folder.mkdir(parents=True, exist_ok=True)
            self._load()
            yield self

    def _load(self) -> None:
        existing = _read_index(self.folder, self.config)
        self.entries, self.array = ([], None) if existing is None else (existing[0]["rows"], existing[1])
        self._row_of = {entry["sha1"]: row for row, entry in enumerate(self.entries)}

    def rows_of(self, hashes: Sequence[str]) -> list[int | None]:
        """The cached row of each audio hash (None where it is not cached)."""
        return [self._row_of.get(h) for h in hashes]

    def features(self, rows: Sequence[int]) -> np.ndarray:
        """The cached ``rows``: a read-only memmap when they are the array's first rows in order."""
        assert self.array is not None
        rows = np.asarray(rows, dtype=np.int64)
        if np.array_equal(rows, np.arange(len(rows))):
            return self.array[: len(rows)]
        return np.asarray(self.array[rows])

    def rebuild(self, hashes: Sequence[str], utt_ids: Sequence[str], paths: Sequence[str], progress: bool,
                num_workers: int) -> None:
        """Write a new array: these utterances first (in order, unique by content, computed
        where not cached), then the cached rows no longer asked for, so other corpora's
        features survive; then the index, and reload. A full disk is a one-line
        :class:`DataError` naming the folder; the cache keeps its previous contents."""
        try:
            self._rebuild(hashes, utt_ids, paths, progress, num_workers)
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
            raise DataError(f"{self.folder}: no space left on the device for the feature cache; free some space and "
                            f"run again (the cache keeps what it held)") from None

    def _rebuild(self, hashes: Sequence[str], utt_ids: Sequence[str], paths: Sequence[str], progress: bool,
                 num_workers: int) -> None:
        config, folder, old_array, old_entries = self.config, self.folder, self.array, self.entries
        first_position: dict[str, int] = {}
        for position, h in enumerate(hashes):
            first_position.setdefault(h, position)
        unique_hashes = list(first_position)
        kept_old = [row for row, entry in enumerate(old_entries) if entry["sha1"] not in first_position]
        total = len(unique_hashes) + len(kept_old)
        data_name = f"features-{uuid.uuid4().hex[:12]}.npy"
        tmp_data = folder / f".{data_name}.{os.getpid()}.tmp"
        try:
            array = np.lib.format.open_memmap(
                tmp_data, mode="w+", dtype=np.float32, shape=(total, *config.shape)
            )
            entries: list[dict[str, Any]] = []
            jobs = []
            for new_row, h in enumerate(unique_hashes):
                position = first_position[h]
                entries.append({"sha1": h, "utt_id": utt_ids[position], "sample_rate": None})
                old_row = self._row_of.get(h)
                if old_row is not None and old_array is not None:
                    array[new_row] = old_array[old_row]
                    entries[-1]["sample_rate"] = old_entries[old_row].get("sample_rate")
                else:
                    jobs.append((new_row, paths[position], config))
            reused = len(unique_hashes) - len(jobs)
            logger.info(
                "features: computing %d utterances, reusing %d, into %s", len(jobs), reused, folder
            )
            started = time.perf_counter()
            for new_row, matrix, sr in _compute_missing(jobs, progress, num_workers):
                array[new_row] = matrix
                entries[new_row]["sample_rate"] = sr
            if jobs:
                logger.info("features: %d utterances computed in %.1f s", len(jobs), time.perf_counter() - started)
            for offset, old_row in enumerate(kept_old):
                array[len(unique_hashes) + offset] = old_array[old_row]
                entries.append(dict(old_entries[old_row]))
            array.flush()
            del array
            with open(tmp_data, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp_data, folder / data_name)
        finally:
            if tmp_data.exists():
                tmp_data.unlink()

        index = {
            "format": CACHE_FORMAT_VERSION,
            "key": config.key(),
            "config": config.to_dict(),
            "data": data_name,
            "shape": [total, *config.shape],
            "rows": entries,
        }
        payload = json.dumps(index, indent=1, sort_keys=True).encode("utf-8")
        write_atomically(folder / _INDEX, lambda handle: handle.write(payload))
        # Old data files: readers that memmapped them keep their open mapping (POSIX unlink).
        for stale in folder.glob("features-*.npy"):
            if stale.name != data_name:
                try:
                    stale.unlink()
                except OSError:  # still mapped on a platform that forbids unlinking it
                    logger.debug("could not remove stale cache file %s", stale)
        self._load()
        if self.array is None:  # pragma: no cover - we just wrote it
            raise DataError(f"{folder}: feature cache unreadable right after writing it")


def extract_features(
    manifest: pd.DataFrame,
    config: FeatureConfig,
    cache_dir: str | Path | None,
    progress: bool = True,
    num_workers: int = 1,
) -> FeatureSet:
    """Features of every manifest row, computed once and cached on disk (:class:`FeatureCache`).

    Parameters
    ----------
    manifest : pd.DataFrame
        Needs ``utt_id`` (unique) and ``path`` (absolute) columns; row order is kept.
    config : FeatureConfig
        The recipe.
    cache_dir : str, Path or None
        Root of the cache; None computes in memory without caching.
    progress : bool
        Show a tqdm bar on stderr while computing.
    num_workers : int
        Processes used to compute missing features (1 = in this process).

    Returns
    -------
    FeatureSet
        Rows in manifest order. When the whole manifest is cached in that order the array
        is a read-only memmap (nothing is read until used).
    """
    for column in ("utt_id", "path"):
        if column not in manifest.columns:
            raise DataError(f"manifest: missing column {column!r}")
    utt_ids = [str(u) for u in manifest["utt_id"]]
    if len(set(utt_ids)) != len(utt_ids):
        duplicated = pd.Series(utt_ids)[pd.Series(utt_ids).duplicated()].iloc[0]
        raise DataError(f"manifest: utterance id {duplicated!r} appears more than once")
    paths = [str(p) for p in manifest["path"]]

    if cache_dir is None:
        features = np.zeros((len(paths), *config.shape), dtype=np.float32)
        jobs = [(i, p, config) for i, p in enumerate(paths)]
        for position, matrix, _ in _compute_missing(jobs, progress, num_workers):
            features[position] = matrix
        return FeatureSet(features=features, utt_ids=tuple(utt_ids), config=config, path=None)

    hashes = [file_sha1(p) for p in paths]
    with FeatureCache(cache_dir, config).locked() as cache:
        rows = cache.rows_of(hashes)
        if cache.array is not None and None not in rows:
            logger.info("features: reusing %d cached utterances from %s", len(hashes), cache.folder)
        else:
            cache.rebuild(hashes, utt_ids, paths, progress, num_workers)
            rows = cache.rows_of(hashes)
        return FeatureSet(features=cache.features(rows), utt_ids=tuple(utt_ids), config=config,
                          path=cache.folder)
