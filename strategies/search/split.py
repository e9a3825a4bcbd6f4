"""Which speakers steer the architecture during a search, and which train the supernet's weights.

By default a search reads the fold as it is: the weights learn on its training speakers, the
architecture choices (DARTS's alphas, ENAS's rewards, a trial's score) on its validation
speakers, on EmoDB one speaker of 38-61 clips. Two options of :class:`~strategies.search.
SearchConfig` let the architecture signal come from more speakers; neither touches the test
speakers, and the retraining keeps the fold's own split:

- ``arch_speakers = k``: the architecture data are ``k`` whole speakers, the fold's validation
  speakers plus (seeded) training speakers moved over from the weights' side; the weights
  train on the rest.
- ``rotate_arch_speakers``: a different group of ``k`` speakers (the fold's validation count by
  default) holds the architecture data in each epoch, in a seeded order that gives every
  non-test speaker its turn; the other speakers train the weights in that epoch. The signal
  then averages over all of them, at the price that the weights have trained on a speaker in
  other epochs (one-shot strategies only).

:func:`architecture_split` returns the two datasets a search reads and, for a rotation, the
Lightning callback that moves it on at the start of every epoch. Both datasets keep a fixed
length (so Lightning's epoch length does not change): each epoch they draw their items, in a
fresh seeded order, from that epoch's speakers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import Dataset

from ..data.dataset import FeatureDataset

logger = logging.getLogger(__name__)

__all__ = ["ArchitectureSplit", "architecture_groups", "architecture_split", "split_speakers"]


def split_speakers(train_speakers: Sequence[str], val_speakers: Sequence[str], arch_speakers: int | None,
                   rotate: bool, what: str = "the fold") -> tuple[list[str], int]:
    """A fold's non-test speakers (sorted) and how many of them hold the architecture data.

    ``train_speakers`` and ``val_speakers`` name each utterance's (or each) speaker. A
    ``ValueError`` naming the flag when the fold cannot be split so (the pipeline checks every
    fold before a run folder exists).
    """
    train, val = sorted(set(train_speakers)), sorted(set(val_speakers))
    speakers = sorted(set(train) | set(val))
    size = arch_speakers if arch_speakers is not None else len(val)
    if arch_speakers is not None and arch_speakers >= len(speakers):
        raise ValueError(f"--arch-speakers {arch_speakers}: {what} has {len(speakers)} non-test speaker(s), and at "
                         f"least one must train the weights (use at most {len(speakers) - 1})")
    if rotate and len(speakers) < 2:
        raise ValueError(f"--rotate-arch-speakers: {what} has {len(speakers)} non-test speaker(s); a rotation "
                         f"needs at least 2")
    if size < 1:
        raise ValueError(f"{what} has no validation speaker to steer the architecture")
    return speakers, size


def architecture_groups(speakers: Sequence[str], val_speakers: Sequence[str], size: int, rotate: bool,
                        seed: int) -> list[list[str]]:
    """The architecture speakers of each epoch (cycled): one group when not rotating (the fold's
    validation speakers, topped up with seeded others), else groups of ``size`` in a seeded order
    that gives every speaker its turn."""
    rng = np.random.default_rng(seed)
    speakers = sorted(set(speakers))
    if rotate:
        order = [speakers[i] for i in rng.permutation(len(speakers))]
        turns = len(order) // math.gcd(len(order), size)
        return [sorted(order[(turn * size + i) % len(order)] for i in range(size)) for turn in range(turns)]
    chosen = sorted(set(val_speakers))
    extra = [s for s in speakers if s not in chosen]
    return [sorted(chosen + [extra[i] for i in rng.permutation(len(extra))[:max(0, size - len(chosen))]])]


class _View(Dataset):
    """One side (weights or architecture) of an :class:`ArchitectureSplit`, of fixed length."""

    def __init__(self, split: ArchitectureSplit, side: str, length: int) -> None:
        self.split, self.side, self.length = split, side, max(1, length)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        order = self.split.order(self.side)
        row = order[index % len(order)]
        return self.split.x[row], self.split.y[row]

    @property
    def labels(self) -> torch.Tensor:
        """The labels this side holds in the current epoch."""
        return self.split.y[self.split.order(self.side)]

    @property
    def level(self) -> list[float] | None:
        return self.split.level


class _Exact(Dataset):
    """The architecture side's current utterances, each once (for scoring the supernet)."""

    def __init__(self, split: ArchitectureSplit) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split.rows("arch"))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = self.split.rows("arch")[index]
        return self.split.x[row], self.split.y[row]


class ArchitectureSplit(pl.Callback):
    """The union of a fold's training and validation utterances, split by speaker between the
    weights and the architecture, re-split at the start of every epoch when rotating.

    ``weights`` and ``arch`` are the two datasets a search reads; ``arch_exact`` holds the
    current architecture utterances once each (the per-epoch validation score). As a Lightning
    callback it moves the rotation on at each epoch's start; ``groups[e]`` are the speakers of
    epoch ``e``.
    """

    def __init__(self, union: FeatureDataset, groups: list[list[str]], seed: int) -> None:
        if union.speakers is None:
            raise ValueError("a speaker-wise architecture split needs each utterance's speaker")
        self.x, self.y = union.tensors
        self.level = union.level
        self.row_speakers = np.asarray(union.speakers)
        self.groups = groups
        self.seed = seed
        self.epoch = 0
        self._cache: dict[tuple[str, str], np.ndarray] = {}
        self._cache_epoch = 0
        arch_share = len(groups[0]) / len(set(union.speakers))
        self.weights = _View(self, "weights", round(len(self.y) * (1 - arch_share)))
        self.arch = _View(self, "arch", round(len(self.y) * arch_share))
        self.arch_exact = _Exact(self)

    def group(self, epoch: int | None = None) -> list[str]:
        """The architecture speakers of ``epoch`` (default: the current one)."""
        return self.groups[(self.epoch if epoch is None else epoch) % len(self.groups)]

    def rows(self, side: str) -> np.ndarray:
        """The current epoch's rows of one side (``"weights"`` or ``"arch"``), in union order."""
        return self._cached(("rows", side), lambda: np.flatnonzero(
            np.isin(self.row_speakers, self.group()) == (side == "arch")))

    def order(self, side: str) -> np.ndarray:
        """The current epoch's rows of one side in a seeded order of this epoch."""
        def shuffled() -> np.ndarray:
            rows = self.rows(side)
            return rows[np.random.default_rng([self.seed, self.epoch, side == "arch"]).permutation(len(rows))]
        return self._cached(("order", side), shuffled)

    def _cached(self, key: tuple[str, str], make: Any) -> np.ndarray:
        if self._cache_epoch != self.epoch:
            self._cache, self._cache_epoch = {}, self.epoch
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.epoch = int(trainer.current_epoch)


def architecture_split(train: Any, val: Any, arch_speakers: int | None, rotate: bool,
                       seed: int) -> tuple[Any, Any, ArchitectureSplit | None]:
    """The (weights, architecture) datasets a search reads, and, when rotating, the split to
    register as a Lightning callback.

    Without ``arch_speakers`` and rotation: the fold's own ``train`` and ``val``. With
    ``arch_speakers`` alone: two :class:`~strategies.data.dataset.FeatureDataset` (plain
    values, so multi-trial strategies can ship them to their trials).
    """
    if arch_speakers is None and not rotate:
        return train, val, None
    if not isinstance(train, FeatureDataset) or not isinstance(val, FeatureDataset) or train.speakers is None \
            or val.speakers is None:
        raise ValueError("--arch-speakers and --rotate-arch-speakers need datasets that know each utterance's "
                         "speaker (FeatureDataset with speakers)")
    speakers, size = split_speakers(train.speakers, val.speakers, arch_speakers, rotate)
    groups = architecture_groups(speakers, val.speakers, size, rotate, seed)
    union = train.joined(val)
    logger.info("architecture data: %s (%s)", ", ".join("+".join(g) for g in groups),
                "one group per epoch, in turn" if rotate else "the whole search")
    if not rotate:
        (group,) = groups
        return union.of_speakers([s for s in speakers if s not in group]), union.of_speakers(group), None
    split = ArchitectureSplit(union, groups, seed)
    return split.weights, split.arch, split
