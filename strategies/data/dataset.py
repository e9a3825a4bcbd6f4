"""Torch datasets over cached features, traced so NNI can ship them to trial processes.

NNI's multi-trial strategies serialise the evaluator, dataloaders and datasets included, and
rebuild them in each trial. :class:`FeatureDataset` is therefore ``nni.trace``-d and takes
only plain values: the path of a cached feature array, row numbers, integer labels and the
fold's normalisation (statistics, or each row's speaker for per-speaker normalisation). It
loads its rows into memory on first use (a corpus of 5,500 clips at 128 x 128 is 360 MB of
float32; a fold is less), so an epoch never touches the disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import nni
import numpy as np
import torch
from torch.utils.data import Dataset

from .features import standardise_per_speaker, standardise_per_utterance

__all__ = ["FeatureDataset"]


@nni.trace
class FeatureDataset(Dataset):
    """Utterances of one split: ``(x, y)`` with ``x`` of shape (1, n_coefficients, frames).

    Parameters
    ----------
    features_path : str
        A float32 ``.npy`` array (utterances, n_coefficients, frames), e.g. a feature cache file.
    rows : sequence of int
        Rows of that array that form this split, in order.
    labels : sequence of int
        Class index of each row (same length as ``rows``); ``-1`` for unlabelled audio.
    mean, std : sequence of float, optional
        Per-coefficient normalisation fitted on the fold's training rows; identity if omitted.
    speakers : sequence of str, optional
        Each row's speaker, for per-speaker normalisation (``FeatureConfig.normalization =
        "per_speaker"``): every speaker's rows standardised with their own statistics (a split of
        speaker-independent folds holds all of a speaker's utterances). Excludes ``mean``/``std``.
    per_utterance : bool
        Each row standardised per coefficient with its own statistics over its frames
        (``FeatureConfig.normalization = "per_utterance"``). Excludes the other normalisations.
    level : sequence of float, optional
        Per coefficient, how this split's normalised features move when the audio is 1 dB
        louder (:meth:`~strategies.data.features.FeatureConfig.gain_direction` over the
        normalisation's scale): what gain augmentation adds (``TrainConfig.gain_db``).
    """

    def __init__(self, features_path: str, rows: Sequence[int], labels: Sequence[int],
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 speakers: Sequence[str] | None = None, per_utterance: bool = False,
                 level: Sequence[float] | None = None) -> None:
        if len(rows) != len(labels):
            raise ValueError(f"{len(rows)} rows but {len(labels)} labels")
        if speakers is not None and len(speakers) != len(rows):
            raise ValueError(f"{len(rows)} rows but {len(speakers)} speakers")
        if speakers is not None and (mean is not None or std is not None):
            raise ValueError("per-speaker normalisation (speakers) excludes a fold's mean and std")
        if per_utterance and (speakers is not None or mean is not None or std is not None):
            raise ValueError("per-utterance normalisation excludes a fold's mean and std and per-speaker statistics")
        self.features_path = str(features_path)
        self.rows = [int(r) for r in rows]
        self.labels = torch.as_tensor([int(y) for y in labels], dtype=torch.long)
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self.std = None if std is None else np.asarray(std, dtype=np.float32)
        self.speakers = None if speakers is None else [str(s) for s in speakers]
        self.per_utterance = bool(per_utterance)
        self.level = None if level is None else [float(v) for v in level]
        self._x: torch.Tensor | None = None

    def _load(self) -> torch.Tensor:
        if self._x is None:
            array = np.load(self.features_path, mmap_mode="r")
            x = np.asarray(array[np.asarray(self.rows, dtype=np.int64)], dtype=np.float32)
            if self.mean is not None and self.std is not None:
                x = (x - self.mean[None, :, None]) / self.std[None, :, None]
            if self.speakers is not None:
                x = standardise_per_speaker(x, self.speakers)
            if self.per_utterance:
                x = standardise_per_utterance(x)
            self._x = torch.from_numpy(np.ascontiguousarray(x)).unsqueeze(1)
        return self._x

    def spec(self) -> dict[str, Any]:
        """The constructor's arguments as plain values (JSON-able): ``FeatureDataset(**spec())`` is this split."""
        return {
            "features_path": self.features_path,
            "rows": list(self.rows),
            "labels": [int(y) for y in self.labels.tolist()],
            "mean": None if self.mean is None else [float(v) for v in self.mean],
            "std": None if self.std is None else [float(v) for v in self.std],
            "speakers": None if self.speakers is None else list(self.speakers),
            "per_utterance": self.per_utterance,
            "level": None if self.level is None else list(self.level),
        }

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._load()[index], self.labels[index]

    @property
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All inputs (N, 1, n_coefficients, frames) and labels (N,) of the split."""
        return self._load(), self.labels
