"""``strategies.predict`` on recordings a user brings: any length, silence, too short, unreadable.

A randomly initialised network stands in for a trained one (what is checked is how files,
windows, speech and failures are handled, not what the network says); the speech is the
synthetic corpus (espeak-ng voices), whose clips are about 1-3 s.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from ser_space import SpaceConfig, build_model, export_architecture
from strategies.baselines import hand_designed_architecture
from strategies.data.features import FeatureConfig, Normalizer
from strategies.predict import _window_starts, audio_files, load_predictor
from strategies.runs import save_model_bundle

CLASSES = ["ang", "hap", "neu", "sad"]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    features = FeatureConfig.small()  # 40 MFCC x 64 frames of 3 s at 16 kHz
    space = SpaceConfig.tiny().replace(n_mfcc=features.n_mfcc, frames=features.frames, num_classes=len(CLASSES))
    sample = hand_designed_architecture("cnn", space)
    torch.manual_seed(0)
    model = build_model(sample, space)
    normalizer = Normalizer(kind="none")
    path = tmp_path_factory.mktemp("model") / "model.pt"
    return save_model_bundle(path, model.state_dict(), export_architecture(sample, space), CLASSES,
                             features.to_dict(), normalizer.to_dict())


@pytest.fixture(scope="module")
def speaker_model_path(model_path: Path) -> Path:
    """The same network, trained (as it were) with per-speaker normalisation."""
    from strategies.runs import load_model_bundle

    bundle = load_model_bundle(model_path)
    path = model_path.with_name("speaker-model.pt")
    return save_model_bundle(path, bundle["state_dict"], bundle["architecture"], CLASSES,
                             dataclasses.replace(FeatureConfig.small(), normalization="per_speaker").to_dict(),
                             Normalizer(kind="per_speaker").to_dict())


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, int]:
    """About 15 s of speech: a small synthetic corpus's clips one after another, 16 kHz."""
    from strategies.data.audio import read_audio
    from strategies.data.synthetic import SyntheticConfig, ensure_synthetic_corpus, load_synthetic_manifest

    root = ensure_synthetic_corpus(tmp_path_factory.mktemp("synthetic") / "corpus",
                                   SyntheticConfig(num_speakers=2, emotions=("neu", "ang", "sad"), clips_per_emotion=1))
    waves = [read_audio(p, 16000)[0] for p in load_synthetic_manifest(root)["path"].tolist()]
    return np.concatenate(waves), 16000


def test_window_starts_cover_the_whole_recording() -> None:
    assert _window_starts(2.0, 3.0) == [0.0]
    assert _window_starts(3.0, 3.0) == [0.0]
    starts = _window_starts(10.0, 3.0)
    assert starts[0] == 0.0 and starts[-1] == pytest.approx(7.0)  # the last window ends with the recording
    assert all(b - a <= 1.5 + 1e-9 for a, b in zip(starts, starts[1:]))  # half a window apart or less


def test_a_long_recording_is_scored_whole_and_silence_is_left_out(model_path: Path, speech, tmp_path: Path) -> None:
    wave, sr = speech
    silence = np.zeros(10 * sr, dtype=np.float32)
    long = tmp_path / "call.flac"
    sf.write(long, np.concatenate([wave, silence, wave]), sr)  # speech, 10 s of silence, speech
    result = load_predictor(model_path).analyse([long])
    row = result.files.iloc[0]
    assert row["status"] == "ok" and row["emotion"] in CLASSES
    assert row["seconds"] == pytest.approx(2 * len(wave) / sr + 10, abs=0.05)
    assert math.isclose(sum(row[f"p_{c}"] for c in CLASSES), 1.0, abs_tol=1e-5)
    windows = result.windows
    assert len(windows) > 10 and windows["end"].max() == pytest.approx(row["seconds"], abs=0.05)
    # windows wholly inside the silence hold no speech and do not count; the others do
    quiet = windows[(windows["start"] >= len(wave) / sr + 0.1) & (windows["end"] <= len(wave) / sr + 9.9)]
    assert len(quiet) >= 3 and not quiet["used"].any() and (quiet["speech_seconds"] == 0).all()
    assert row["windows"] == windows["used"].sum() > 0
    # the file's answer is the speech-weighted mean of the used windows
    used = windows[windows["used"]]
    weights = used["speech_seconds"].to_numpy()
    for c in CLASSES:
        assert row[f"p_{c}"] == pytest.approx(float((used[f"p_{c}"] * weights).sum() / weights.sum()), abs=1e-6)


def test_silence_and_a_blip_are_flagged_not_guessed(model_path: Path, speech, tmp_path: Path) -> None:
    wave, sr = speech
    sf.write(tmp_path / "silence.wav", np.zeros(3 * sr, dtype=np.float32), sr)
    sf.write(tmp_path / "blip.wav", wave[sr // 2: sr // 2 + int(0.05 * sr)], sr)
    sf.write(tmp_path / "speech.wav", wave[: 3 * sr], sr)
    table = load_predictor(model_path).predict(audio_files([tmp_path]))
    by_name = {Path(p).name: r for p, r in zip(table["path"], table.to_dict("records"))}
    assert by_name["silence.wav"]["status"] == "no_speech"
    assert by_name["blip.wav"]["status"] == "too_short" and "0.05 s" in by_name["blip.wav"]["message"]
    assert by_name["speech.wav"]["status"] == "ok"
    for name in ("silence.wav", "blip.wav"):
        assert by_name[name]["emotion"] == "" and all(math.isnan(by_name[name][f"p_{c}"]) for c in CLASSES)


def test_one_bad_file_never_costs_the_others(model_path: Path, speech, tmp_path: Path) -> None:
    wave, sr = speech
    good = []
    for i in range(3):
        good.append(tmp_path / f"good{i}.wav")
        sf.write(good[-1], wave[i * sr: (i + 2) * sr], sr)
    broken = tmp_path / "broken.wav"
    broken.write_text("this is not audio")
    empty_folder = tmp_path / "empty"
    empty_folder.mkdir()
    inputs = [good[0], broken, good[1], tmp_path / "missing.wav", empty_folder, good[2]]
    result = load_predictor(model_path).analyse(audio_files(inputs))
    table = result.files
    assert list(table["path"]) == [str(p) for p in inputs]  # every input has its row, in order
    assert list(table["status"]) == ["ok", "error", "ok", "error", "error", "ok"]
    assert list(result.failed["path"]) == [str(broken), str(tmp_path / "missing.wav"), str(empty_folder)]
    messages = dict(zip(table["path"], table["message"]))
    assert "no such audio file" in messages[str(tmp_path / "missing.wav")]
    assert "no audio files" in messages[str(empty_folder)]
    assert messages[str(broken)] and "\n" not in messages[str(broken)]


def test_min_speech_must_be_positive(model_path: Path) -> None:
    with pytest.raises(ValueError, match="min_speech"):
        load_predictor(model_path).analyse([], min_speech=0)


def test_cli_writes_every_row_lists_failures_and_says_some_failed(model_path: Path, speech, tmp_path: Path,
                                                                 capsys) -> None:
    from strategies.cli import main

    wave, sr = speech
    good = tmp_path / "in" / "good.wav"
    good.parent.mkdir()
    sf.write(good, wave, sr)  # about 15 s: several windows
    bad = tmp_path / "in" / "bad.wav"
    bad.write_bytes(b"RIFF0000WAVEfmt ")  # a truncated header
    out = tmp_path / "out.csv"
    code = main(["predict", str(model_path), str(tmp_path / "in"), "--output", str(out),
                 "--timeline", str(tmp_path / "timeline"), "--quiet"])
    captured = capsys.readouterr()
    assert code == 1
    table = pd.read_csv(out)
    assert list(table["status"]) == ["error", "ok"] and table["path"].iloc[1] == str(good)
    assert f"error: {bad}:" in captured.err and "1 of 2 file(s) could not be read" in captured.err
    assert "Traceback" not in captured.err
    timeline = pd.read_csv(tmp_path / "timeline" / "timeline.csv")
    assert set(timeline["path"]) == {str(good)} and len(timeline) > 3
    assert len(list((tmp_path / "timeline").glob("*.png"))) == 1
    # all good: exit 0, JSON output
    code = main(["predict", str(model_path), str(good), "--output", str(tmp_path / "out.json"), "--quiet"])
    assert code == 0


def test_a_per_speaker_model_standardises_the_calls_windows_together(speaker_model_path: Path, speech,
                                                                     tmp_path: Path, caplog) -> None:
    """A model trained with per-speaker normalisation takes the files of a call as one speaker:
    every window of every judged file standardised with their joint statistics."""
    import logging

    from strategies.data.features import compute_features, standardise_per_speaker

    wave, sr = speech
    files = []
    for i in range(3):
        files.append(tmp_path / f"clip{i}.wav")
        sf.write(files[-1], wave[i * sr: (i + 4) * sr], sr)
    sf.write(tmp_path / "silence.wav", np.zeros(3 * sr, dtype=np.float32), sr)  # judged by no one: no window
    predictor = load_predictor(speaker_model_path)
    seen = []
    score = predictor._probabilities
    predictor._probabilities = lambda inputs: seen.append(np.stack(inputs)) or score(inputs)
    with caplog.at_level(logging.WARNING, logger="strategies.predict"):
        result = predictor.analyse([files[0], tmp_path / "silence.wav", *files[1:]])
    assert list(result.files["status"]) == ["ok", "no_speech", "ok", "ok"]
    windows = result.windows
    raw = np.stack([compute_features(read[int(round(start * sr)):int(round(end * sr))], sr, predictor.features)
                    for path, start, end in zip(windows["path"], windows["start"], windows["end"])
                    for read in [sf.read(path, dtype="float32")[0]]])
    np.testing.assert_allclose(np.concatenate(seen), standardise_per_speaker(raw, ["s"] * len(raw)), atol=1e-4)
    assert len(raw) < 10 and any("per-speaker normalisation from" in r.getMessage() for r in caplog.records)
    nothing = predictor.analyse([tmp_path / "silence.wav", tmp_path / "missing.wav"])  # no window to standardise
    assert list(nothing.files["status"]) == ["no_speech", "error"] and nothing.windows.empty


def test_a_per_utterance_model_standardises_each_window_by_itself(model_path: Path, speech, tmp_path: Path) -> None:
    from strategies.data.features import compute_features, standardise_per_utterance
    from strategies.runs import load_model_bundle

    bundle = load_model_bundle(model_path)
    path = save_model_bundle(tmp_path / "utterance-model.pt", bundle["state_dict"], bundle["architecture"], CLASSES,
                             dataclasses.replace(FeatureConfig.small(), normalization="per_utterance").to_dict(),
                             Normalizer(kind="per_utterance").to_dict())
    wave, sr = speech
    sf.write(tmp_path / "a.wav", wave[: 7 * sr], sr)
    sf.write(tmp_path / "b.wav", wave[: 7 * sr] * 0.1, sr)  # the same recording 20 dB quieter
    predictor = load_predictor(path)
    seen = []
    score = predictor._probabilities
    predictor._probabilities = lambda inputs: seen.append(np.stack(inputs)) or score(inputs)
    result = predictor.analyse([tmp_path / "a.wav", tmp_path / "b.wav"])
    assert list(result.files["status"]) == ["ok", "ok"]
    first = result.windows.iloc[0]
    raw = compute_features(wave[int(round(first["start"] * sr)):int(round(first["end"] * sr))], sr, predictor.features)
    np.testing.assert_allclose(seen[0][0], standardise_per_utterance(raw), atol=1e-4)
    # the level is gone: a quieter copy gets (nearly) the same probabilities
    probs = result.files[[f"p_{c}" for c in CLASSES]].to_numpy()
    np.testing.assert_allclose(probs[0], probs[1], atol=0.02)
