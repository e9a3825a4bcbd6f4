"""A dataset for tests/plain_nni_search.py, in an importable module: NNI's multi-trial trials
rebuild a traced dataset from its class and arguments, so the class must not live in
``__main__``, and its arguments stay small (no tensors in the trial's parameters)."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


class RandomMaps(Dataset):
    """``num`` random (1, n_mfcc, frames) maps with labels in ``range(classes)``, from ``seed``."""

    def __init__(self, num: int, n_mfcc: int, frames: int, classes: int, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.features = torch.randn(num, 1, n_mfcc, frames, generator=generator)
        self.labels = torch.randint(0, classes, (num,), generator=generator)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features[index], self.labels[index]
