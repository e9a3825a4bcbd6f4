"""Learnability check of the synthetic corpus: a simple baseline, leave-one-speaker-out.

Computes ``FeatureConfig.small()`` MFCCs of the synthetic corpus, summarises each utterance by
the mean and standard deviation of every coefficient over time, and classifies with (a) the
nearest class mean and (b) multinomial logistic regression (numpy, L2), both on features
standardised with training-speaker statistics only. Reports unweighted accuracy (UA, mean
per-class recall) over all held-out speakers, and the chance level.

Usage::

    python benchmarks/synthetic_baseline.py [--root DIR] [--cache DIR]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from strategies.data.features import FeatureConfig, extract_features
from strategies.data.synthetic import SyntheticConfig, ensure_synthetic_corpus, load_synthetic_manifest

logger = logging.getLogger("synthetic_baseline")


def unweighted_accuracy(truth: np.ndarray, predicted: np.ndarray, num_classes: int) -> float:
    """Mean per-class recall."""
    recalls = [np.mean(predicted[truth == c] == c) for c in range(num_classes) if np.any(truth == c)]
    return float(np.mean(recalls))


def logistic_regression(x: np.ndarray, y: np.ndarray, num_classes: int, l2: float = 1e-2,
                        steps: int = 500, lr: float = 0.5) -> np.ndarray:
    """Full-batch gradient descent on softmax cross-entropy; returns (features + 1, classes) weights."""
    x = np.hstack([x, np.ones((len(x), 1))])
    weights = np.zeros((x.shape[1], num_classes))
    onehot = np.eye(num_classes)[y]
    for _ in range(steps):
        logits = x @ weights
        logits -= logits.max(axis=1, keepdims=True)
        prob = np.exp(logits)
        prob /= prob.sum(axis=1, keepdims=True)
        grad = x.T @ (prob - onehot) / len(x) + l2 * weights
        weights -= lr * grad
    return weights


def run(root: Path | None, cache: Path) -> dict[str, float]:
    """Generate (if needed) the default corpus, extract features, return the UA figures."""
    started = time.perf_counter()
    corpus = ensure_synthetic_corpus(root, SyntheticConfig())
    generated = time.perf_counter() - started
    manifest = load_synthetic_manifest(corpus)
    started = time.perf_counter()
    features = extract_features(manifest, FeatureConfig.small(), cache, progress=False).features
    extracted = time.perf_counter() - started
    summary = np.concatenate([features.mean(axis=2), features.std(axis=2)], axis=1)
    classes = sorted(manifest["emotion"].unique())
    y = manifest["emotion"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    speakers = manifest["speaker"].to_numpy()
    predictions = {"nearest_mean": np.zeros_like(y), "logistic": np.zeros_like(y)}
    for speaker in sorted(set(speakers)):
        test = speakers == speaker
        mean = summary[~test].mean(axis=0)
        std = summary[~test].std(axis=0) + 1e-8
        train_x, test_x = (summary[~test] - mean) / std, (summary[test] - mean) / std
        centroids = np.stack([train_x[y[~test] == c].mean(axis=0) for c in range(len(classes))])
        distances = ((test_x[:, None, :] - centroids[None]) ** 2).sum(axis=2)
        predictions["nearest_mean"][test] = distances.argmin(axis=1)
        weights = logistic_regression(train_x, y[~test], len(classes))
        predictions["logistic"][test] = (np.hstack([test_x, np.ones((len(test_x), 1))]) @ weights).argmax(axis=1)
    result = {name: unweighted_accuracy(y, p, len(classes)) for name, p in predictions.items()}
    result.update(chance=1.0 / len(classes), clips=float(len(manifest)),
                  generation_s=generated, extraction_s=extracted)
    for name, p in predictions.items():
        confusion = np.zeros((len(classes), len(classes)), dtype=int)
        np.add.at(confusion, (y, p), 1)
        logger.info("%s confusion (rows truth %s):\n%s", name, classes, confusion)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="corpus folder (default: the user cache)")
    parser.add_argument("--cache", type=Path, default=None, help="feature cache folder (default: a temporary one)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        result = run(args.root, args.cache or Path(tmp))
    for name, value in result.items():
        logger.info("%-14s %.4f", name, value)


if __name__ == "__main__":
    main()
