"""Every run's config, and every named recipe: the settings that make the networks learn.

:class:`RunConfig` is everything one run depends on (``config.json`` of its folder). Its
defaults are the ``synthetic`` recipe; every other default the toolkit starts from lives here
too, so there is one place to read and change them:

- ``synthetic``: the embedded synthetic corpus's one-minute default (``RunConfig()``);
  ``ser-nas compare`` on it retrains for :data:`SYNTHETIC_COMPARE_RETRAIN` epochs less;
- ``real-speech``: the default for every real corpus, measured by the ablation in
  docs/results.md on EmoDB (leave-one-speaker-out): 64-band log-mel over a window that
  follows the corpus's median duration, the ``small`` space (C = 8, reductions at cells 0
  and 1, no dropout on cell outputs; searched at C = 4 for 10 epochs), 40 epochs of AdamW with
  weight decay 0.05 and a cosine schedule, the last epoch kept, class-weighted cross-entropy
  with label smoothing, and on-the-fly time shift, SpecAugment masks and mixup
  (:mod:`strategies.augment`);
- the papers' settings (:func:`paper_search`, :func:`paper_search_train`,
  :func:`paper_retrain`), which ``ser-nas reproduce`` runs.

``ser-nas search`` starts from ``real-speech`` whenever ``--dataset`` is not ``synthetic``;
every field can still be changed with its flag, and the run's config.json records them all.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ser_space import SpaceConfig
from ser_space.dictconfig import DictConfig

from .baselines import BASELINES
from .data.config import DataConfig
from .data.features import FeatureConfig
from .evaluator import TrainConfig
from .reference import REFERENCE_BASELINES, is_reference, parse_reference
from .runs import RunError
from .search import SearchConfig

__all__ = ["RunConfig", "REAL_SPEECH", "RECIPES", "SYNTHETIC_SEARCH_TRAIN", "SYNTHETIC_RETRAIN",
           "SYNTHETIC_COMPARE_RETRAIN", "DEFAULT_RETRAIN_EPOCHS", "paper_search", "paper_search_train", "paper_retrain", "clip_seconds_for",
           "corpus_features", "real_speech_recipe", "recipe_for"]

#: The synthetic recipe's weight training during a search.
SYNTHETIC_SEARCH_TRAIN = TrainConfig(batch_size=32, optimizer="adam", learning_rate=3e-3, learning_rate_min=1e-4)
#: The synthetic recipe's retraining.
SYNTHETIC_RETRAIN = TrainConfig(max_epochs=30, batch_size=32, optimizer="adam", learning_rate=3e-3,
                                learning_rate_min=1e-5, class_weighted=True)
#: ``ser-nas compare``'s retraining on the synthetic corpus: the synthetic recipe's, shorter.
SYNTHETIC_COMPARE_RETRAIN = SYNTHETIC_RETRAIN.replace(max_epochs=15)
#: The papers' retraining epochs unless asked otherwise: the authors' code default is 600 (from
#: pt.darts); what the papers used is unknown. 100 keeps a full reproduction within a GPU day.
DEFAULT_RETRAIN_EPOCHS = 100


RUN_FORMAT = 1


@dataclass(frozen=True)
class RunConfig(DictConfig):
    """Everything one run depends on; written to ``config.json`` of the run folder."""

    data: DataConfig = field(default_factory=DataConfig)  # corpus, folds, features
    space: SpaceConfig = field(default_factory=SpaceConfig.tiny)  # search space (input shape and classes follow the data)
    search: SearchConfig = field(default_factory=lambda: SearchConfig(epochs=10))  # strategy and budget
    search_train: TrainConfig = field(default_factory=lambda: SYNTHETIC_SEARCH_TRAIN)  # weight training during search
    retrain: TrainConfig = field(default_factory=lambda: SYNTHETIC_RETRAIN)  # retraining
    folds: tuple[int, ...] | None = (0,)  # fold indices to run; None = every fold
    baseline: str | None = None  # instead of a search: a hand-designed architecture (strategies.baselines) or a reference baseline (strategies.reference)
    architecture: str | None = None  # instead of a search: an architecture file, or a run folder whose fold-<k>/architecture.json each fold k retrains

    def __post_init__(self) -> None:
        if self.baseline is not None:
            if is_reference(self.baseline):
                parse_reference(self.baseline)
            elif self.baseline not in BASELINES:
                raise RunError(f"unknown baseline {self.baseline!r}; hand-designed: {', '.join(BASELINES)}; "
                               f"reference: {', '.join(REFERENCE_BASELINES)} (optionally :logreg or :svm)")

    def to_dict(self) -> dict[str, Any]:
        return {"format": RUN_FORMAT, **super().to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        data = dict(data)
        if data.pop("format", RUN_FORMAT) != RUN_FORMAT:
            raise RunError("config.json: unsupported run format")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise RunError(f"config.json: unknown field(s) {', '.join(unknown)}")
        return super().from_dict(data)

    def seeded(self, seed: int) -> RunConfig:
        """A copy with one seed for the whole run: the search and both trainings (``ser-nas --seed``)."""
        return dataclasses.replace(self, search=self.search.replace(seed=seed),
                                   search_train=self.search_train.replace(seed=seed),
                                   retrain=self.retrain.replace(seed=seed))

    @property
    def method(self) -> str:
        """What produced the architecture: a strategy name, ``baseline-<name>`` or ``file``."""
        if self.baseline:
            return f"baseline-{self.baseline}"
        if self.architecture:
            return "file"
        return self.search.strategy



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


def paper_search(epochs: int = 50) -> SearchConfig:
    """PAPER.md section 5: second-order DARTS, Adam 3e-4 on alphas, clip 5, best-validation genotype, seed 2."""
    return SearchConfig(strategy="darts", epochs=epochs, arc_learning_rate=3e-4, gradient_clip=5.0,
                        order="second", genotype="best", seed=2)


def paper_search_train() -> TrainConfig:
    """Weights during the search: SGD 0.025 cosine to 0.001, momentum 0.9, wd 3e-4, clip 5, batch 64 (code)."""
    return TrainConfig(max_epochs=50, batch_size=64, optimizer="sgd", learning_rate=0.025, learning_rate_min=0.001,
                       momentum=0.9, weight_decay=3e-4, gradient_clip=5.0, class_weighted=False, seed=2)


def paper_retrain(epochs: int = DEFAULT_RETRAIN_EPOCHS) -> TrainConfig:
    """PAPER.md section 6: SGD 0.025 cosine to 0, momentum 0.9, wd 3e-4, clip 5, drop path 0.2, class weights."""
    return TrainConfig(max_epochs=epochs, batch_size=96, optimizer="sgd", learning_rate=0.025, learning_rate_min=0.0,
                       momentum=0.9, weight_decay=3e-4, gradient_clip=5.0, class_weighted=True, drop_path_prob=0.2,
                       model_selection="best", seed=2)



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
