"""Reference baselines: utterance-level acoustic features and a linear classifier.

A NAS result means something only beside strong simple baselines under the same folds. These
run through the same pipeline as a search (``ser-nas search --baseline mfcc_stats``): same
prepared corpus, same speaker-independent folds, same metrics (:mod:`strategies.evaluator`)
and the same run folder, with ``fold-<k>/reference.json`` in place of a network.

Feature sets (one vector per utterance, from the whole recording as read from disk):

- ``mfcc_stats``: 40 MFCC (64 mel bands, 25 ms windows every 10 ms at 16 kHz), their deltas,
  RMS energy and YIN pitch over the louder half of the frames, each summarised by mean, std,
  10th, 50th and 90th percentile (librosa; always installed);
- ``egemaps``: openSMILE's eGeMAPSv02 functionals (88 features);
- ``compare2016``: openSMILE's ComParE_2016 functionals (6,373 features).
  Both need the ``opensmile`` package (``pip install 'ser-nas[opensmile]'``; it ships its binary).

Classifiers: ``logreg`` (logistic regression) and ``svm`` (linear SVM), both class-balanced,
on features standardised with the training speakers' statistics (with ``--features-normalization
per_speaker``, as for the networks, each speaker is first standardised with its own statistics:
strategies.data.features.standardise_per_speaker). The regularisation ``C`` is
chosen on the fold's validation speakers (best validation UA; the smaller ``C`` on ties), the
classifier is refitted on the training speakers with it (with ``--retrain-train-on-val``, on
the training and validation speakers) and tested once on the test speakers, so the test fold
steers nothing. A baseline name is ``<feature set>`` (its default classifier:
``logreg`` for ``mfcc_stats``, ``svm`` for the openSMILE sets) or ``<feature set>:<classifier>``.

Features are cached per feature set and audio content under ``<data_dir>/reference/``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ser_space.io import write_atomically

from .data.audio import read_audio, resample
from .data.errors import DataError
from .data.features import file_sha1
from .evaluator import classification_metrics, confusion_matrix

logger = logging.getLogger(__name__)

__all__ = [
    "CLASSIFIERS",
    "FEATURE_SETS",
    "REFERENCE_BASELINES",
    "ReferenceBaseline",
    "fit_reference",
    "is_reference",
    "parse_reference",
    "reference_features",
]

#: Version of the cached feature layout; bump when a feature set's computation changes.
_CACHE_VERSION = 1
#: C values tried on the validation speakers.
C_GRID: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
_RATE = 16000

CLASSIFIERS = ("logreg", "svm")
#: Feature sets and their default classifier.
FEATURE_SETS: dict[str, str] = {"mfcc_stats": "logreg", "egemaps": "svm", "compare2016": "svm"}
#: The names ``--baseline`` accepts for a reference baseline (each also takes ``:logreg`` / ``:svm``).
REFERENCE_BASELINES = tuple(FEATURE_SETS)


@dataclass(frozen=True)
class ReferenceBaseline:
    """A feature set and a linear classifier."""

    features: str
    classifier: str

    @property
    def name(self) -> str:
        return f"{self.features}:{self.classifier}"


def is_reference(name: str | None) -> bool:
    """Whether a ``--baseline`` name is a reference baseline (not a hand-designed network)."""
    return bool(name) and str(name).split(":", 1)[0] in FEATURE_SETS


def parse_reference(name: str) -> ReferenceBaseline:
    """``mfcc_stats``, ``egemaps:logreg``, ... as a :class:`ReferenceBaseline`; ValueError otherwise."""
    features, _, classifier = str(name).partition(":")
    if features not in FEATURE_SETS:
        raise ValueError(f"unknown reference baseline {name!r}; feature sets: {', '.join(FEATURE_SETS)}")
    classifier = classifier or FEATURE_SETS[features]
    if classifier not in CLASSIFIERS:
        raise ValueError(f"reference baseline {name!r}: classifier must be one of {', '.join(CLASSIFIERS)}")
    return ReferenceBaseline(features, classifier)


# ----------------------------------------------------------------------------- features

def _functionals(frames: np.ndarray) -> np.ndarray:
    """mean, std, p10, p50, p90 of each row of (descriptors, frames)."""
    if frames.shape[1] == 0:
        return np.zeros(frames.shape[0] * 5, dtype=np.float32)
    p10, p50, p90 = np.percentile(frames, [10, 50, 90], axis=1)
    return np.concatenate([frames.mean(axis=1), frames.std(axis=1), p10, p50, p90]).astype(np.float32)


def mfcc_stats(wave: np.ndarray, sr: int) -> np.ndarray:
    """The ``mfcc_stats`` vector of one mono signal at ``sr`` (resampled to 16 kHz)."""
    import librosa

    wave = resample(wave, sr, _RATE)
    if len(wave) < 400:  # shorter than one window: pad so every descriptor has a frame
        wave = np.pad(wave, (0, 400 - len(wave)))
    common = dict(n_fft=512, win_length=400, hop_length=160)
    mfcc = librosa.feature.mfcc(y=wave, sr=_RATE, n_mfcc=40, n_mels=64, **common)
    delta = librosa.feature.delta(mfcc, width=min(9, mfcc.shape[1] - (1 - mfcc.shape[1] % 2))) \
        if mfcc.shape[1] >= 3 else np.zeros_like(mfcc)
    rms = librosa.feature.rms(y=wave, frame_length=400, hop_length=160)
    energy = librosa.amplitude_to_db(rms, ref=1.0)
    f0 = librosa.yin(wave, fmin=60, fmax=500, sr=_RATE, frame_length=1024, hop_length=160)
    n = min(mfcc.shape[1], rms.shape[1], len(f0))
    loud = rms[0, :n] >= np.median(rms[0, :n])  # pitch only where the voice is (the louder half)
    pitch = np.log2(f0[:n][loud])[None, :]
    return np.concatenate([_functionals(np.vstack([mfcc[:, :n], delta[:, :n], energy[:, :n]])),
                           _functionals(pitch)])


def _opensmile(feature_set: str) -> Callable[[np.ndarray, int], np.ndarray]:
    try:
        import opensmile
    except ImportError:
        raise DataError(f"the {feature_set} baseline needs the opensmile package: "
                        f"pip install 'ser-nas[opensmile]'") from None
    name = {"egemaps": "eGeMAPSv02", "compare2016": "ComParE_2016"}[feature_set]
    smile = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, name),
                            feature_level=opensmile.FeatureLevel.Functionals)

    def extract(wave: np.ndarray, sr: int) -> np.ndarray:
        return smile.process_signal(wave, sr).to_numpy(dtype=np.float32).ravel()

    return extract


def _extractor(feature_set: str) -> Callable[[np.ndarray, int], np.ndarray]:
    if feature_set == "mfcc_stats":
        return mfcc_stats
    return _opensmile(feature_set)


def reference_features(manifest: pd.DataFrame, feature_set: str, cache_dir: str | Path,
                       progress: bool = False) -> np.ndarray:
    """(utterances, features) float32 in manifest order, cached by feature set and audio content.

    A file that cannot be read raises :class:`DataError` naming it (prepare has already read
    every file, so this means it changed since).
    """
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"unknown feature set {feature_set!r}; known: {', '.join(FEATURE_SETS)}")
    extract = _extractor(feature_set)  # fails first, before any work, if opensmile is missing
    digests = [file_sha1(path) for path in manifest["path"]]
    key = hashlib.sha1(json.dumps([_CACHE_VERSION, feature_set, digests]).encode()).hexdigest()[:16]
    path = Path(cache_dir) / "reference" / f"{feature_set}-{key}.npy"
    if path.is_file():
        return np.load(path)
    started = time.perf_counter()
    rows = []
    paths = list(manifest["path"])
    for index, audio in enumerate(paths):
        wave, sr = read_audio(audio)
        rows.append(extract(wave, sr))
        if progress and (index + 1) % 50 == 0:
            elapsed = time.perf_counter() - started
            logger.info("%s features: %d/%d utterances, about %.0f s left", feature_set, index + 1, len(paths),
                        elapsed / (index + 1) * (len(paths) - index - 1))
    matrix = np.nan_to_num(np.vstack(rows).astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda handle: np.save(handle, matrix))
    logger.info("%s features of %d utterances in %.0f s", feature_set, len(paths), time.perf_counter() - started)
    return matrix


# ----------------------------------------------------------------------------- classifiers

def _classifier(kind: str, c: float, seed: int) -> Any:
    if kind == "logreg":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=seed)
    from sklearn.svm import SVC

    return SVC(kernel="linear", C=c, class_weight="balanced", random_state=seed)


def fit_reference(baseline: ReferenceBaseline, features: np.ndarray, labels: np.ndarray,
                  rows: dict[str, np.ndarray], num_classes: int, seed: int = 0,
                  refit_on_val: bool = False) -> dict[str, Any]:
    """Choose C on ``rows['val']``, refit on ``rows['train']``, score ``rows['test']`` once.

    With ``refit_on_val`` the final scaler and classifier are fitted on the training and the
    validation speakers together (standard practice once C is chosen; the networks' counterpart
    is ``--retrain-train-on-val``). Returns the test metrics (``ua``, ``wa``, ``f1``,
    ``confusion_matrix``), the chosen ``c``, the validation UA of every C tried, and the fitted
    scaler and classifier.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.preprocessing import StandardScaler

    for part in ("train", "val", "test"):
        if len(rows[part]) == 0:
            raise DataError(f"reference baseline {baseline.name}: the fold's {part} split is empty")
    present = np.unique(labels[rows["train"]])
    if len(present) < 2:
        raise DataError(f"reference baseline {baseline.name}: the training speakers hold only one class")
    scaler = StandardScaler().fit(features[rows["train"]])
    x = {part: scaler.transform(features[r]) for part, r in rows.items()}
    y = {part: labels[r] for part, r in rows.items()}

    def fit(c: float) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return _classifier(baseline.classifier, c, seed).fit(x["train"], y["train"])

    def ua(model: Any, part: str) -> float:
        cm = confusion_matrix(y[part], model.predict(x[part]), num_classes)
        return classification_metrics(cm)["ua"]

    val_ua = {c: ua(fit(c), "val") for c in C_GRID}
    best_c = max(C_GRID, key=lambda c: (val_ua[c], -c))
    if refit_on_val:  # C is chosen: the validation speakers join the final fit, scaler included
        seen = np.concatenate([rows["train"], rows["val"]])
        scaler = StandardScaler().fit(features[seen])
        x = {part: scaler.transform(features[r]) for part, r in rows.items()}
        x["train"], y["train"] = scaler.transform(features[seen]), labels[seen]
    model = fit(best_c)
    cm = confusion_matrix(y["test"], model.predict(x["test"]), num_classes)
    return {**classification_metrics(cm), "confusion_matrix": cm.tolist(), "c": best_c,
            "val_ua": val_ua[best_c], "val_ua_by_c": {str(c): v for c, v in val_ua.items()},
            "scaler": scaler, "model": model, "dimensions": int(features.shape[1])}
