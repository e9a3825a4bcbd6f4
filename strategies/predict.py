"""Run a trained model on new audio: recordings of any length -> emotion and class probabilities.

A model judges windows of its feature recipe's ``clip_seconds``. :meth:`Predictor.analyse`
scores a whole recording, not its first window: it cuts the recording into windows of that
length (half a window apart; the last one ends with the recording), asks a voice-activity
detector (:mod:`strategies.data.vad`) how much speech each holds, scores every window, and
averages the probabilities of the windows with at least ``min_speech`` seconds of speech,
weighted by their speech. A recording the model cannot judge is flagged, not guessed:

======== ==============================================================================
status   meaning
======== ==============================================================================
ok       scored; ``emotion`` and ``p_<class>`` are the speech-weighted window average
no_speech the detector found no speech at all (digital silence, near-silence)
too_short shorter than ``min_speech`` seconds, or less speech than that in all
error    not readable (the message says why); the other files are still scored
======== ==============================================================================

Every file gets a row (:attr:`Predictions.files`), every window a row
(:attr:`Predictions.windows`: the emotion over time; ``ser-nas predict --timeline``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ser_space import build_model, parse_architecture

from .data.audio import read_audio
from .data.corpora import AUDIO_SUFFIXES
from .data.errors import DataError
from .data.features import FeatureConfig, Normalizer, compute_features, fit_length, standardise_per_speaker
from .data.vad import FRAME_SECONDS, speech_frames
from .runs import RunError, load_model_bundle

logger = logging.getLogger(__name__)

__all__ = ["load_predictor", "Predictor", "OnnxPredictor", "Predictions", "find_model", "audio_files", "STATUSES"]

STATUSES = ("ok", "no_speech", "too_short", "error")
#: Default least speech, in seconds, for a window (and a recording) to be judged.
MIN_SPEECH_SECONDS = 0.5
#: Fewer windows than this give a per-speaker model's statistics a warning.
PER_SPEAKER_WINDOWS = 10


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
    """Audio files named, or found (recursively, sorted) in the folders named.

    A missing path, or a folder without audio, stays in the list as it is: :meth:`Predictor.analyse`
    gives it an ``error`` row, so one wrong argument never costs the other files' results.
    """
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
            files.extend(found or [path])
        else:
            files.append(path)
    return files


@dataclass
class Predictions:
    """What :meth:`Predictor.analyse` found."""

    files: pd.DataFrame  # one row per input: path, status, emotion, p_<class>..., seconds, speech_seconds, windows, message
    windows: pd.DataFrame  # one row per window: path, start, end, speech_seconds, used, emotion, p_<class>...

    @property
    def failed(self) -> pd.DataFrame:
        """The rows of the files that could not be read."""
        return self.files[self.files["status"] == "error"]


def _window_starts(seconds: float, length: float) -> list[float]:
    """Window starts, half a window apart, the last window ending with the recording."""
    if seconds <= length:
        return [0.0]
    hop = length / 2
    starts = list(np.arange(0.0, seconds - length, hop))
    starts.append(seconds - length)
    return [float(s) for s in starts]


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

    @torch.no_grad()
    def _probabilities(self, inputs: list[np.ndarray], batch_size: int = 64) -> np.ndarray:
        out = []
        for start in range(0, len(inputs), batch_size):
            x = torch.from_numpy(np.stack(inputs[start:start + batch_size])).unsqueeze(1)
            out.append(torch.softmax(self.model(x).float(), dim=1).numpy())
        return np.concatenate(out)

    @property
    def _per_speaker(self) -> bool:
        """Whether the windows of a call are standardised together (a per-speaker model)."""
        return self.normalizer.kind == "per_speaker"

    def _window_input(self, segment: np.ndarray, sr: int) -> np.ndarray:
        """What the model reads of one window: its features (not yet normalised)."""
        return compute_features(segment, sr, self.features)

    def _normalised(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """One file's window inputs, normalised by the model's fold statistics or each by itself."""
        return [self.normalizer.transform(x) for x in inputs]

    def _call_probabilities(self, inputs: list[np.ndarray]) -> np.ndarray:
        """The probabilities of a per-speaker model's windows of one call, standardised together."""
        return self._probabilities(list(standardise_per_speaker(np.stack(inputs), ["speaker"] * len(inputs))))

    def _windows(self, path: Path, min_speech: float) -> tuple[dict[str, Any], list[dict[str, Any]], list[np.ndarray]]:
        """A file's row, its windows and their (un-normalised) features; no windows when it cannot be judged."""
        nan = {f"p_{c}": float("nan") for c in self.classes}
        row: dict[str, Any] = {"path": str(path), "status": "error", "emotion": "", **nan, "seconds": float("nan"),
                               "speech_seconds": float("nan"), "windows": 0, "message": ""}
        if path.is_dir():
            row["message"] = f"no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) in this folder"
            return row, [], []
        try:
            wave, sr = read_audio(path, self.features.sample_rate)
        except DataError as error:
            row["message"] = str(error).removeprefix(f"{path}: ")
            return row, [], []
        seconds = len(wave) / sr
        speech = speech_frames(wave, sr)
        row.update(seconds=seconds, speech_seconds=float(speech.sum()) * FRAME_SECONDS)
        if seconds < min_speech:
            row.update(status="too_short", message=f"{seconds:.2f} s of audio; the least judged is {min_speech:g} s")
            return row, [], []
        if not speech.any():
            row.update(status="no_speech", message="no speech found")
            return row, [], []
        if row["speech_seconds"] < min_speech:
            row.update(status="too_short",
                       message=f"{row['speech_seconds']:.2f} s of speech; the least judged is {min_speech:g} s")
            return row, [], []

        length = self.features.clip_seconds
        windows, inputs = [], []
        for start in _window_starts(seconds, length):
            end = min(seconds, start + length)
            first, last = int(start / FRAME_SECONDS), int(np.ceil(end / FRAME_SECONDS))
            windows.append({"path": str(path), "start": start, "end": end,
                            "speech_seconds": float(speech[first:last].sum()) * FRAME_SECONDS})
            inputs.append(self._window_input(wave[int(round(start * sr)):int(round(end * sr))], sr))
        return row, windows, inputs

    def _score_as_one_speaker(self, found: list[tuple[dict[str, Any], list[dict[str, Any]], list[np.ndarray]]],
                              min_speech: float) -> None:
        """Score the files ``found`` (row, windows, features) of a per-speaker model: the windows of
        all of them standardised together, as one speaker's (a speaker's statistics come from its audio)."""
        inputs = [x for _, _, file_inputs in found for x in file_inputs]
        if len(inputs) < PER_SPEAKER_WINDOWS:
            logger.warning("per-speaker normalisation from %d window(s) only: give the model several recordings "
                           "of the speaker in one call (its statistics come from them)", len(inputs))
        probs = self._call_probabilities(inputs)
        start = 0
        for row, windows, file_inputs in found:
            self._fill(row, windows, probs[start:start + len(file_inputs)], min_speech)
            start += len(file_inputs)

    def _fill(self, row: dict[str, Any], windows: list[dict[str, Any]], probs: np.ndarray, min_speech: float) -> None:
        """Fill ``row`` and ``windows`` with the windows' probabilities ``probs``."""
        weights = np.array([w["speech_seconds"] for w in windows])
        used = weights >= min_speech
        if not used.any():  # speech scattered thinner than min_speech per window: the window with the most
            used[int(weights.argmax())] = True
        for window, p, flag in zip(windows, probs, used):
            window.update(used=bool(flag), emotion=self.classes[int(p.argmax())],
                          **{f"p_{c}": float(v) for c, v in zip(self.classes, p)})
        mean = (probs[used] * weights[used, None]).sum(axis=0) / weights[used].sum()
        row.update(status="ok", emotion=self.classes[int(mean.argmax())], windows=int(used.sum()),
                   **{f"p_{c}": float(v) for c, v in zip(self.classes, mean)})

    def analyse(self, files: Iterable[str | Path], min_speech: float = MIN_SPEECH_SECONDS,
                progress: bool = False) -> Predictions:
        """Score every file (see the module docstring); a file that fails never stops the others.

        A model trained with per-speaker normalisation takes the files of one call as one speaker.
        """
        from tqdm.auto import tqdm

        if min_speech <= 0:
            raise ValueError(f"min_speech must be > 0 seconds, got {min_speech}")
        files = [Path(f) for f in files]
        per_speaker = self._per_speaker
        rows, windows, pending = [], [], []
        for path in tqdm(files, desc="predict", unit="file", disable=None if progress else True, leave=False,
                         file=sys.stderr):  # a bar on a terminal only
            row, file_windows, inputs = self._windows(path, min_speech)
            if file_windows and per_speaker:  # scored once every file's windows are known
                pending.append((row, file_windows, inputs))
            elif file_windows:
                self._fill(row, file_windows, self._probabilities(self._normalised(inputs)), min_speech)
            rows.append(row)
            windows.extend(file_windows)
        if pending:
            self._score_as_one_speaker(pending, min_speech)
        window_columns = ["path", "start", "end", "speech_seconds", "used", "emotion",
                          *(f"p_{c}" for c in self.classes)]
        return Predictions(pd.DataFrame(rows, columns=["path", "status", "emotion",
                                                       *(f"p_{c}" for c in self.classes),
                                                       "seconds", "speech_seconds", "windows", "message"]),
                           pd.DataFrame(windows, columns=window_columns))

    def predict(self, files: Iterable[str | Path], min_speech: float = MIN_SPEECH_SECONDS) -> pd.DataFrame:
        """One row per file (``analyse(files).files``): path, status, emotion, probabilities, ..."""
        return self.analyse(files, min_speech).files


class OnnxPredictor(Predictor):
    """An exported ONNX graph (``ser-nas export``) in ONNX Runtime: the same windows, voice
    activity and statuses as :class:`Predictor`; each window's audio goes into the graph, which
    computes and normalises the features itself (a per-speaker graph over the whole call)."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        from .export import onnx_session, read_metadata

        meta = read_metadata(path)
        self.source = path
        self.classes = list(meta["classes"])
        self.features = FeatureConfig.from_dict(meta["features"])
        self.normalizer = None  # type: ignore[assignment]  # the graph normalises
        self.per_speaker = meta["normalization"] == "per_speaker"
        self.session = onnx_session(path, threads)

    def _window_input(self, segment: np.ndarray, sr: int) -> np.ndarray:
        # the window's audio as the features of the training clips saw it: cropped or padded to the window
        return fit_length(np.asarray(segment, dtype=np.float32), self.features.clip_samples(sr), self.features)

    def _normalised(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return inputs  # the graph normalises

    def _probabilities(self, inputs: list[np.ndarray], batch_size: int = 64) -> np.ndarray:
        out = [self.session.run(None, {"audio": np.stack(inputs[start:start + batch_size])})[0]
               for start in range(0, len(inputs), batch_size)]
        return np.concatenate(out)

    def _call_probabilities(self, inputs: list[np.ndarray]) -> np.ndarray:
        return self.session.run(None, {"audio": np.stack(inputs)})[0]  # one batch: one speaker's statistics

    @property
    def _per_speaker(self) -> bool:
        return self.per_speaker


def load_predictor(path: str | Path, fold: int | None = None) -> Predictor:
    """A :class:`Predictor` of a model file or run folder, or an :class:`OnnxPredictor` of an ``.onnx`` file."""
    if Path(path).suffix.lower() == ".onnx" and Path(path).is_file():
        return OnnxPredictor(Path(path))
    model_path = find_model(path, fold)
    return Predictor(load_model_bundle(model_path), model_path)
