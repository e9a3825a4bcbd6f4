"""A found network leaves the toolkit: one ONNX file from raw audio to emotion probabilities.

``ser-nas export RUN_OR_MODEL`` writes, per fold, an ONNX graph that takes raw mono audio at
the model's sample rate (``audio``: batch x samples, any length) and returns class
probabilities (``probabilities``: batch x classes). The front end is part of the graph, in
torch operations exported by ``torch.onnx`` (opset 17): centred STFT frames with a Hann window
(ONNX ``STFT``), power, the mel filter bank as a constant, dB with librosa's floor and
``top_db``, the DCT of MFCC as a constant, the max over ``time_pool`` frames, and the run's
normalisation: the fold's statistics (``per_coefficient``), each input by itself
(``per_utterance``), or the whole input of one call, as one speaker (``per_speaker``:
standardised over every item and frame of the batch, as ``ser-nas predict`` does). No librosa,
no Python, no toolkit is needed to run it: ONNX Runtime (or any ONNX runtime with opset 17).

The graph computes the features of the input as given, over its whole length; ``ser-nas
predict`` cuts recordings into windows of the model's length first (padding the last one as
the features of the training clips were), for the run folder and the ONNX file alike.

Metadata (``onnx.ModelProto.metadata_props``): ``ser_nas.format`` and ``ser_nas.version`` (of
this file layout), ``ser_nas.toolkit`` (the package version), ``ser_nas.classes`` (JSON
list), ``ser_nas.sample_rate``, ``ser_nas.window_seconds``, ``ser_nas.features`` (the feature
recipe, JSON), ``ser_nas.normalization`` and, in words, ``ser_nas.note``.

``onnx`` and ``onnxruntime`` come with ``pip install 'ser-nas[deploy]'``; without them export
and ONNX prediction stop with one line saying so.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ser_space import build_model, parse_architecture
from ser_space.io import write_atomically

from .data.features import FeatureConfig, Normalizer
from .data.melspec import mel_filters
from .runs import RunError, load_model_bundle

logger = logging.getLogger(__name__)

__all__ = ["EXPORT_FORMAT", "EXPORT_VERSION", "FrontEnd", "Deployable", "deployable", "export_onnx", "metadata",
           "write_onnx", "read_metadata", "onnx_session", "DEPLOY_HINT"]

EXPORT_FORMAT = "ser-nas-onnx"
EXPORT_VERSION = 1
OPSET = 17  # the first opset with STFT
DEPLOY_HINT = "pip install 'ser-nas[deploy]'"


def _require(module: str) -> Any:
    """Import ``onnx`` or ``onnxruntime``, or stop with one line saying how to install them."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise RunError(f"{module} is not installed; ONNX export and prediction need it: {DEPLOY_HINT}") from None


class FrontEnd(nn.Module):
    """The toolkit's features (:func:`strategies.data.features.compute_features`) in torch operations,
    over the whole input (no crop or pad to the window), normalised as the model's run was.

    ``audio`` (batch, samples) at ``config.sample_rate`` -> (batch, 1, coefficients, frames).
    """

    def __init__(self, config: FeatureConfig, normalizer: Normalizer, sample_rate: int) -> None:
        super().__init__()
        if config.kind == "logmel" and not config.db:
            raise RunError("the ONNX front end computes dB features; a model of linear-power log-mel cannot export")
        self.n_fft = int(config.n_fft)
        self.hop = int(config.hop_for(sample_rate))
        self.center = bool(config.center)
        self.time_pool = int(config.time_pool)
        self.kind = config.kind
        self.normalization = normalizer.kind
        self.eps = float(normalizer.eps)
        win = int(config.win_length or config.n_fft)
        window = np.zeros(self.n_fft)
        left = (self.n_fft - win) // 2
        window[left:left + win] = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win) / win)
        self.register_buffer("window", torch.tensor(window, dtype=torch.float32))
        self.register_buffer("mel", torch.tensor(np.asarray(mel_filters(sample_rate, self.n_fft, config.n_mels))))
        if config.kind == "mfcc":
            from scipy.fft import dct

            basis = dct(np.eye(config.n_mels), axis=0, type=2, norm="ortho")[:config.n_mfcc]  # (n_mfcc, n_mels)
            self.register_buffer("dct", torch.tensor(basis, dtype=torch.float32))
        if normalizer.kind == "per_coefficient":
            self.register_buffer("mean", torch.tensor(normalizer.mean, dtype=torch.float32)[:, None])
            self.register_buffer("std", torch.tensor(normalizer.std, dtype=torch.float32)[:, None])

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = audio
        if self.center:
            x = nn.functional.pad(x[:, None, :], (self.n_fft // 2, self.n_fft // 2)).squeeze(1)
        spectrum = torch.stft(x, self.n_fft, hop_length=self.hop, win_length=self.n_fft, window=self.window,
                              center=False, return_complex=False)  # (B, F, T, 2)
        power = spectrum.pow(2).sum(-1)
        mel = torch.matmul(self.mel, power)  # (B, n_mels, T)
        db = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
        db = torch.maximum(db, db.amax(dim=(1, 2), keepdim=True) - 80.0)
        features = torch.matmul(self.dct, db) if self.kind == "mfcc" else db
        if self.time_pool > 1:  # the max over every time_pool frames, the remainder dropped
            frames = features.shape[2] // self.time_pool * self.time_pool
            features = features[:, :, :frames]
            features = features.reshape(features.shape[0], features.shape[1], -1, self.time_pool).amax(dim=3)
        if self.normalization == "per_coefficient":
            features = (features - self.mean) / self.std
        elif self.normalization == "per_utterance":
            mean = features.mean(dim=2, keepdim=True)
            std = torch.clamp(features.std(dim=2, keepdim=True, unbiased=False), min=self.eps)
            features = (features - mean) / std
        elif self.normalization == "per_speaker":  # the whole call is one speaker
            mean = features.mean(dim=(0, 2), keepdim=True)
            std = torch.clamp(((features - mean) ** 2).mean(dim=(0, 2), keepdim=True).sqrt(), min=self.eps)
            features = (features - mean) / std
        return features[:, None]


class Deployable(nn.Module):
    """Raw audio -> class probabilities: the front end, the found network, a softmax."""

    def __init__(self, front_end: FrontEnd, network: nn.Module) -> None:
        super().__init__()
        self.front_end = front_end
        self.network = network

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.network(self.front_end(audio)), dim=1)


def deployable(bundle: dict[str, Any]) -> tuple[Deployable, FeatureConfig, Normalizer]:
    """The :class:`Deployable` of a loaded model bundle (``strategies.runs.load_model_bundle``), in eval mode."""
    features = FeatureConfig.from_dict(bundle["features"])
    normalizer = Normalizer.from_dict(bundle["normalizer"])
    if features.sample_rate is None:
        raise RunError("the model's feature recipe keeps each file's native rate; an ONNX graph needs one sample "
                       "rate (retrain with --features-sample-rate)")
    network = build_model(parse_architecture(bundle["architecture"]))
    network.load_state_dict(bundle["state_dict"])
    return Deployable(FrontEnd(features, normalizer, features.sample_rate), network).eval(), features, normalizer


def export_onnx(model_path: str | Path, output: str | Path) -> Path:
    """Write the ONNX graph of one model file (``fold-<k>/model.pt``) to ``output``; returns it.

    The file appears whole or not at all (written beside, checked with ``onnx.checker``, renamed).
    """
    bundle = load_model_bundle(model_path)
    model, features, normalizer = deployable(bundle)
    try:
        return write_onnx(model, output, metadata(bundle["classes"], features, normalizer))
    except RunError as error:
        raise RunError(f"{model_path}: {error}") from None


def metadata(classes: list[str], features: FeatureConfig, normalizer: Normalizer) -> dict[str, str]:
    """The ``ser_nas.*`` metadata of an exported graph (see the module docstring)."""
    from . import __version__

    sample_rate = int(features.sample_rate or 0)
    note = {"per_speaker": "standardised over the whole input of one call, as one speaker's (give it several "
                           "recordings of one speaker at once)",
            "per_utterance": "each input standardised by itself",
            "per_coefficient": "standardised with the training speakers' statistics",
            "none": "not normalised"}[normalizer.kind]
    return {"ser_nas.format": EXPORT_FORMAT, "ser_nas.version": str(EXPORT_VERSION), "ser_nas.toolkit": __version__,
            "ser_nas.classes": json.dumps(list(classes)), "ser_nas.sample_rate": str(sample_rate),
            "ser_nas.window_seconds": str(features.clip_seconds), "ser_nas.features": json.dumps(features.to_dict()),
            "ser_nas.normalization": normalizer.kind,
            "ser_nas.note": f"input: mono float32 audio at {sample_rate} Hz (batch, samples), judged as a whole; "
                            f"windows of {features.clip_seconds:g} s are what the model was trained on; "
                            f"features {note}; output: class probabilities in ser_nas.classes order"}


def write_onnx(model: Deployable, output: str | Path, meta: dict[str, str]) -> Path:
    """Export ``model`` (audio -> probabilities) with dynamic batch and length, check it, add
    ``meta``, and write it atomically to ``output``. An op the exporter cannot write is a one-line
    :class:`RunError` naming it; nothing is left behind."""
    onnx = _require("onnx")
    sample_rate = int(meta.get("ser_nas.sample_rate") or 16000)
    window = float(meta.get("ser_nas.window_seconds") or 1.0)
    example = torch.zeros(2, max(1, int(round(window * sample_rate))))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    temp = output.with_name(f".{output.name}.export")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.onnx's notes on the legacy exporter and on shapes
            torch.onnx.export(model.eval(), (example,), str(temp), input_names=["audio"],
                              output_names=["probabilities"],
                              dynamic_axes={"audio": {0: "batch", 1: "samples"}, "probabilities": {0: "batch"}},
                              opset_version=OPSET, dynamo=False)
        proto = onnx.load(str(temp))
        onnx.checker.check_model(proto)
    except Exception as error:  # an op the exporter cannot write: name it, leave nothing behind
        raise RunError(f"cannot export to ONNX ({str(error).splitlines()[0]})") from None
    finally:
        temp.unlink(missing_ok=True)
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return write_atomically(output, lambda handle: handle.write(proto.SerializeToString()))


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The toolkit metadata of an exported ONNX file; a one-line :class:`RunError` for a foreign or corrupt file."""
    onnx = _require("onnx")
    path = Path(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as error:
        raise RunError(f"{path}: not a readable ONNX file ({type(error).__name__})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    if props.get("ser_nas.format") != EXPORT_FORMAT:
        raise RunError(f"{path}: an ONNX file, but not one ser-nas exported (no ser_nas.format metadata)")
    if props.get("ser_nas.version") != str(EXPORT_VERSION):
        raise RunError(f"{path}: ser-nas ONNX layout {props.get('ser_nas.version')} is not supported "
                       f"(expected {EXPORT_VERSION})")
    return {"classes": json.loads(props["ser_nas.classes"]), "sample_rate": int(props["ser_nas.sample_rate"]),
            "window_seconds": float(props["ser_nas.window_seconds"]),
            "features": json.loads(props["ser_nas.features"]), "normalization": props["ser_nas.normalization"],
            "toolkit": props.get("ser_nas.toolkit")}


def onnx_session(path: str | Path, threads: int = 1) -> Any:
    """An ONNX Runtime session of ``path`` on the CPU with ``threads`` intra-op threads."""
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: the console carries our messages
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:
        raise RunError(f"{path}: ONNX Runtime cannot load it ({str(error).splitlines()[0]})") from None
