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

from .features import NORMALIZATIONS, standardise_per_speaker, standardise_per_utterance

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
        Per-coefficient normalisation fitted on the fold's training rows (``normalization``
        ``per_coefficient``).
    speakers : sequence of str, optional
        Each row's speaker: what ``per_speaker`` normalisation groups by, and what speaker-wise
        splits of this split read (:mod:`strategies.search.split`).
    normalization : {"per_coefficient", "per_speaker", "per_utterance", "none"}, optional
        How the rows are standardised (``FeatureConfig.normalization``): with ``mean`` and
        ``std``; every speaker's rows with their own statistics (needs ``speakers``; a split of
        speaker-independent folds holds all of a speaker's utterances); every row with its own
        over its frames; or not at all. Default: ``per_coefficient`` when ``mean`` and ``std``
        are given, else ``none``.
    level : sequence of float, optional
        Per coefficient, how this split's normalised features move when the audio is 1 dB
        louder (:meth:`~strategies.data.features.FeatureConfig.gain_direction` over the
        normalisation's scale): what gain augmentation adds (``TrainConfig.gain_db``).
    """

    def __init__(self, features_path: str, rows: Sequence[int], labels: Sequence[int],
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 speakers: Sequence[str] | None = None, normalization: str | None = None,
                 level: Sequence[float] | None = None) -> None:
        if len(rows) != len(labels):
            raise ValueError(f"{len(rows)} rows but {len(labels)} labels")
        if speakers is not None and len(speakers) != len(rows):
            raise ValueError(f"{len(rows)} rows but {len(speakers)} speakers")
        if (mean is None) != (std is None):
            raise ValueError("per-coefficient normalisation needs both mean and std")
        if normalization is None:
            normalization = "none" if mean is None else "per_coefficient"
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be {', '.join(NORMALIZATIONS)}, got {normalization!r}")
        if (normalization == "per_coefficient") != (mean is not None):
            raise ValueError(f"{normalization} normalisation {'needs' if mean is None else 'excludes'} a fold's "
                             f"mean and std")
        if normalization == "per_speaker" and speakers is None:
            raise ValueError("per-speaker normalisation needs each row's speaker")
        self.features_path = str(features_path)
        self.rows = [int(r) for r in rows]
        self.labels = torch.as_tensor([int(y) for y in labels], dtype=torch.long)
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self.std = None if std is None else np.asarray(std, dtype=np.float32)
        self.speakers = None if speakers is None else [str(s) for s in speakers]
        self.normalization = normalization
        self.level = None if level is None else [float(v) for v in level]
        self._x: torch.Tensor | None = None

    def _load(self) -> torch.Tensor:
        if self._x is None:
            array = np.load(self.features_path, mmap_mode="r")
            x = np.asarray(array[np.asarray(self.rows, dtype=np.int64)], dtype=np.float32)
            if self.normalization == "per_coefficient":
                x = (x - self.mean[None, :, None]) / self.std[None, :, None]
            elif self.normalization == "per_speaker":
                x = standardise_per_speaker(x, self.speakers)
            elif self.normalization == "per_utterance":
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
            "normalization": self.normalization,
            "level": None if self.level is None else list(self.level),
        }

    def joined(self, other: FeatureDataset) -> FeatureDataset:
        """This split with ``other``'s utterances appended (normalised as this one: same kind and statistics)."""
        mine, theirs = self.spec(), other.spec()
        if mine["normalization"] != theirs["normalization"] or mine["features_path"] != theirs["features_path"]:
            raise ValueError("only splits of one feature array under one normalisation can be joined")
        joined = {**mine, "rows": mine["rows"] + theirs["rows"], "labels": mine["labels"] + theirs["labels"]}
        if mine["speakers"] is not None and theirs["speakers"] is not None:
            joined["speakers"] = mine["speakers"] + theirs["speakers"]
        elif mine["normalization"] != "per_speaker":
            joined["speakers"] = None
        else:
            raise ValueError("per-speaker normalised splits need their speakers to be joined")
        return FeatureDataset(**joined)

    def of_speakers(self, speakers: Sequence[str]) -> FeatureDataset:
        """The utterances of ``speakers`` only (in order; normalised as here: per-speaker and
        per-utterance statistics are the speaker's and the utterance's own, so they do not change)."""
        if self.speakers is None:
            raise ValueError("this split does not know its utterances' speakers")
        keep = [i for i, speaker in enumerate(self.speakers) if speaker in set(speakers)]
        spec = self.spec()
        return FeatureDataset(**{**spec, "rows": [spec["rows"][i] for i in keep],
                                 "labels": [spec["labels"][i] for i in keep],
                                 "speakers": [spec["speakers"][i] for i in keep]})

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._load()[index], self.labels[index]

    @property
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All inputs (N, 1, n_coefficients, frames) and labels (N,) of the split."""
        return self._load(), self.labels
