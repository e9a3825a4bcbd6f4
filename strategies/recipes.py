"""Named run recipes: the settings that make the networks learn on a kind of data.

A recipe is a whole :class:`~strategies.pipeline.RunConfig` except the data's location: the
feature recipe, the space preset, the search budget and the two training configs. Two exist:

- ``synthetic``: the embedded synthetic corpus's one-minute default (``RunConfig()``).
- ``real-speech``: the default for every real corpus, measured by the ablation in
  docs/results.md on EmoDB (leave-one-speaker-out): 64-band log-mel over a window that
  follows the corpus's median duration, the ``small`` space (C = 8, reductions at cells 0
  and 1, no dropout on cell outputs; searched at C = 4 for 10 epochs), 40 epochs of AdamW with
  weight decay 0.05 and a cosine schedule, the last epoch kept, class-weighted cross-entropy
  with label smoothing, and on-the-fly time shift, SpecAugment masks and mixup
  (:mod:`strategies.augment`).

``ser-nas search`` starts from ``real-speech`` whenever ``--dataset`` is not ``synthetic``;
every field can still be changed with its flag, and the run's config.json records them all.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ser_space import SpaceConfig

from .data.features import FeatureConfig
from .data.config import DataConfig
from .evaluator import TrainConfig
from .pipeline import RunConfig
from .search import SearchConfig

__all__ = ["REAL_SPEECH", "RECIPES", "clip_seconds_for", "corpus_features", "real_speech_recipe", "recipe_for"]

_TRAIN = TrainConfig(
    max_epochs=40, batch_size=16, optimizer="adamw", learning_rate=3e-3, learning_rate_min=1e-5,
    weight_decay=0.05, class_weighted=True, label_smoothing=0.1, time_shift=0.1,
    freq_masks=2, freq_mask_width=8, time_masks=2, time_mask_width=10, mixup_alpha=0.2,
    # the last epoch of the cosine schedule: on EmoDB the epoch picked on one validation speaker
    # tested worse (docs/results.md, row best-val-epoch)
    model_selection="last",
)

REAL_SPEECH = RunConfig(
    data=DataConfig(features=FeatureConfig.speech()),
    space=SpaceConfig.small(),
    # DARTS's practice: search a narrower supernet than the network retrained (C = 4, not 8),
    # which a 2-core machine can afford; the choices are the same at any width
    search=SearchConfig(epochs=10, channels=4),
    search_train=_TRAIN,
    retrain=_TRAIN,
)
"""The real-speech recipe (its data's corpus and root are placeholders)."""

RECIPES: dict[str, RunConfig] = {"synthetic": RunConfig(), "real-speech": REAL_SPEECH}


def real_speech_recipe(data: DataConfig, fit_window: bool = True) -> RunConfig:
    """The real-speech recipe on corpus ``data``; its feature window fitted to the corpus's durations."""
    features = corpus_features(data) if fit_window else REAL_SPEECH.data.features
    return dataclasses.replace(REAL_SPEECH, data=dataclasses.replace(data, features=features))


def recipe_for(dataset: str) -> RunConfig:
    """The default recipe of a corpus: ``synthetic`` for the embedded corpus, else ``real-speech``."""
    return RECIPES["synthetic" if dataset == "synthetic" else "real-speech"]


def clip_seconds_for(durations: list[float] | np.ndarray, step: float = 0.5, shortest: float = 1.0,
                     longest: float = 6.0) -> float:
    """The feature window for a corpus: its median duration, rounded to ``step``, within [shortest, longest].

    Half the clips are then padded and half cropped (centred), instead of most of every input
    being padding (EmoDB in an 8-s window is three quarters zeros). EmoDB's development copy
    (every clip 2.00 s) gives 2.0; the full EmoDB (median about 2.6 s) gives 2.5.
    """
    values = np.asarray(durations, dtype=np.float64)
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return REAL_SPEECH.data.features.clip_seconds
    return float(min(longest, max(shortest, round(float(np.median(values)) / step) * step)))


def corpus_features(data: DataConfig) -> FeatureConfig:
    """The real-speech features of corpus ``data``, their window fitted to its durations."""
    from .data.prepare import load_raw_manifest

    manifest = load_raw_manifest(data)
    return FeatureConfig.speech(clip_seconds_for(manifest["duration"]))
