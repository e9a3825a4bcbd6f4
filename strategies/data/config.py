"""``DataConfig``: which corpus, how it is split and which features.

The one data config every prepare, search and comparison takes (:func:`strategies.data.
prepare.prepare_data` prepares it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ser_space.dictconfig import DictConfig

from .corpora import CORPORA, get_corpus
from .errors import DataError
from .features import FeatureConfig

__all__ = ["DataConfig", "DATASETS", "SYNTHETIC"]

SYNTHETIC = "synthetic"


def _datasets() -> tuple[str, ...]:
    return (SYNTHETIC, *sorted(name for name in CORPORA if name != SYNTHETIC))


def _generated(name: str) -> bool:
    """Whether the corpus is made on first use (and so needs no root): the synthetic one."""
    try:
        return get_corpus(name).generate is not None
    except DataError:
        return False   # an unknown name: the root check comes first, the name's error later


DATASETS = _datasets()


@dataclass(frozen=True)
class DataConfig(DictConfig):
    """Which corpus, how it is split and which features: everything ``prepare_data`` needs."""

    dataset: str = SYNTHETIC  # a registered corpus name; "synthetic" is the embedded default
    root: str | None = None  # corpus folder (or CSV file for "csv"); None only for a generated corpus (synthetic)
    options: tuple[tuple[str, Any], ...] = ()  # loader options, e.g. (("improvised_only", True),)
    protocol: str | None = None  # fold protocol; None = the corpus's standard one
    k: int | None = None  # number of folds for k-fold protocols; None = the protocol's default
    val_speakers: int | float = 1  # training speakers held out for validation (count or fraction)
    fold_seed: int = 0  # seeds k-fold grouping and the choice of validation speakers
    features: FeatureConfig = field(default_factory=FeatureConfig.small)  # feature recipe
    preset: str | None = None  # protocol preset of strategies.data.presets whose manifest filter and folds apply (checked where prepare_data applies it); None = none

    def __post_init__(self) -> None:
        if self.root is None and not _generated(self.dataset):
            raise DataError(f"dataset {self.dataset!r} needs --root (the corpus folder)")

    def to_dict(self) -> dict[str, Any]:
        """Plain data; the options as a dict, and the preset only when set (so the keys of configs
        without one stay what they were)."""
        values = {**super().to_dict(), "options": {k: v for k, v in self.options}}
        if self.preset is None:
            values.pop("preset")
        return values

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataConfig:
        data = dict(data)
        data.setdefault("features", FeatureConfig.small().to_dict())  # configs written before features were stored
        data["options"] = tuple(sorted((data.get("options") or {}).items()))
        return super().from_dict(data)

    def key(self) -> str:
        """Stable hash of everything that changes the prepared data."""
        payload = self.to_dict()
        if payload["root"] is not None:
            payload["root"] = str(Path(payload["root"]).resolve())
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:16]
