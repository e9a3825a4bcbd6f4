"""Run a trained model on new audio: wav files or folders -> emotion and class probabilities."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ser_space import build_model, parse_architecture

from .data.audio import read_audio
from .data.corpora import AUDIO_SUFFIXES
from .data.errors import DataError
from .data.features import FeatureConfig, Normalizer, compute_features
from .runs import RunError, load_model_bundle

logger = logging.getLogger(__name__)

__all__ = ["load_predictor", "Predictor", "find_model", "audio_files"]


def find_model(path: str | Path, fold: int | None = None) -> Path:
    """A model file from a path: the file itself, or ``fold-<k>/model.pt`` of a run folder."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise RunError(f"{path}: no such model file or run folder")
    candidates = sorted(path.glob("fold-*/model.pt"), key=lambda p: int(p.parent.name.split("-")[1]))
    if fold is not None:
        candidates = [p for p in candidates if p.parent.name == f"fold-{fold}"]
    if not candidates and any(path.glob("fold-*/reference.json")):
        raise RunError(f"{path}: a reference baseline run keeps no network to predict with")
    if not candidates:
        raise RunError(f"{path}: no finished fold with a model.pt" + (f" for fold {fold}" if fold is not None else ""))
    return candidates[0]


def audio_files(inputs: Iterable[str | Path]) -> list[Path]:
    """Audio files named, or found (recursively, sorted) in the folders named."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
            if not found:
                raise DataError(f"{path}: no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) in this folder")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"{path}: no such file or folder")
    return files


class Predictor:
    """A trained model with its feature recipe and normalisation."""

    def __init__(self, bundle: dict[str, Any], source: Path) -> None:
        self.source = source
        architecture = parse_architecture(bundle["architecture"])
        self.classes: list[str] = bundle["classes"]
        self.features = FeatureConfig.from_dict(bundle["features"])
        self.normalizer = Normalizer.from_dict(bundle["normalizer"])
        self.model = build_model(architecture)
        try:
            self.model.load_state_dict(bundle["state_dict"])
        except RuntimeError as error:
            raise RunError(f"{source}: weights do not match the architecture ({str(error).splitlines()[0]})") from None
        self.model.eval()

    def features_of(self, path: str | Path) -> np.ndarray:
        wave, sr = read_audio(path, self.features.sample_rate)
        x = compute_features(wave, sr, self.features)
        return self.normalizer.transform(x).astype(np.float32)

    @torch.no_grad()
    def predict(self, files: list[Path], batch_size: int = 32) -> pd.DataFrame:
        """One row per file: path, predicted emotion, and a probability column per class."""
        rows = []
        for start in range(0, len(files), batch_size):
            chunk = files[start:start + batch_size]
            x = torch.from_numpy(np.stack([self.features_of(p) for p in chunk])).unsqueeze(1)
            probs = torch.softmax(self.model(x).float(), dim=1).numpy()
            for path, p in zip(chunk, probs):
                rows.append({"path": str(path), "emotion": self.classes[int(p.argmax())],
                             **{f"p_{c}": float(v) for c, v in zip(self.classes, p)}})
        return pd.DataFrame(rows)


def load_predictor(path: str | Path, fold: int | None = None) -> Predictor:
    model_path = find_model(path, fold)
    return Predictor(load_model_bundle(model_path), model_path)
