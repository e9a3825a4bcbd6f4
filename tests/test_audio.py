"""read_audio: mono float32, resampling, and a DataError naming the file for broken audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from strategies.data.audio import read_audio
from strategies.data.errors import DataError


def _tone(path: Path, seconds: float = 1.0, sr: int = 22050, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.5 * np.sin(2 * np.pi * 220 * t)
    data = np.stack([wave, 0.5 * wave], axis=1) if channels == 2 else wave
    soundfile.write(path, data, sr, subtype="PCM_16")
    return data


def test_reads_mono_float32(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    reference = _tone(path)
    wave, sr = read_audio(path)
    assert sr == 22050 and wave.dtype == np.float32 and wave.shape == (22050,)
    np.testing.assert_allclose(wave, reference, atol=1 / 32768 + 1e-6)


def test_stereo_is_averaged(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    reference = _tone(path, channels=2)
    wave, _ = read_audio(path)
    np.testing.assert_allclose(wave, reference.mean(axis=1), atol=2 / 32768)


def test_resamples_to_target_rate(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    _tone(path, seconds=1.0, sr=22050)
    wave, sr = read_audio(path, 16000)
    assert sr == 16000 and wave.shape == (16000,) and wave.dtype == np.float32
    # a 220 Hz tone stays a 220 Hz tone
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * 16000 / len(wave) - 220) < 2


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.wav: not a readable audio file"):
        read_audio(path)


def test_text_named_wav(tmp_path: Path) -> None:
    path = tmp_path / "text.wav"
    path.write_text("this is not audio\n")
    with pytest.raises(DataError, match=r"text\.wav: not a readable audio file"):
        read_audio(path)


def test_truncated_wav(tmp_path: Path) -> None:
    whole = tmp_path / "whole.wav"
    _tone(whole, seconds=1.0, sr=22050)
    path = tmp_path / "cut.wav"
    path.write_bytes(whole.read_bytes()[:60])  # 44-byte header + 8 samples
    # soundfile itself reads it without complaint: that is the trap being guarded
    assert len(soundfile.read(str(path))[0]) == 8
    with pytest.raises(DataError, match=r"cut\.wav: truncated: header says 22050 frames, read 8"):
        read_audio(path)


def test_header_only_wav(tmp_path: Path) -> None:
    whole = tmp_path / "whole.wav"
    _tone(whole)
    path = tmp_path / "header.wav"
    path.write_bytes(whole.read_bytes()[:44])
    with pytest.raises(DataError, match=r"header\.wav: truncated: header says 22050 frames, read 0"):
        read_audio(path)


def test_zero_frames(tmp_path: Path) -> None:
    path = tmp_path / "zero.wav"
    soundfile.write(path, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(DataError, match=r"zero\.wav"):
        read_audio(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nothere\.wav: no such audio file"):
        read_audio(tmp_path / "nothere.wav")
