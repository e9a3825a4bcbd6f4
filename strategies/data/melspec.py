"""librosa's mel spectrogram, dB scale and MFCC in plain NumPy, without importing librosa.

Importing ``librosa.feature`` (or ``librosa.filters``) compiles librosa's numba ufuncs; on a
new machine, whose numba cache is empty, that took 25-40 s of the first run (issue 32). These
functions compute the same values from the same definitions (librosa 0.10-0.11: Hann window,
centred frames padded with zeros, power 2, Slaney mel scale and normalisation, ``power_to_db``
with ``ref=1``, ``amin=1e-10``, ``top_db=80``, orthonormal DCT-II), and the tests hold them to
librosa on real speech (``tests/test_features.py``). They need NumPy and SciPy only.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["mel_filters", "mel_spectrogram", "power_to_db", "mfcc"]

_F_SP = 200.0 / 3  # Slaney's mel scale: linear below 1 kHz, 3 mels per 200 Hz
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asanyarray(hz, dtype=np.float64)
    mels = hz / _F_SP
    log = hz >= _MIN_LOG_HZ
    mels = np.where(log, _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP, mels)
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asanyarray(mels, dtype=np.float64)
    hz = _F_SP * mels
    log = mels >= _MIN_LOG_MEL
    return np.where(log, _MIN_LOG_HZ * np.exp(_LOGSTEP * (mels - _MIN_LOG_MEL)), hz)


@lru_cache(maxsize=16)
def mel_filters(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """The Slaney-normalised triangular mel filter bank (n_mels, 1 + n_fft // 2), float32
    (``librosa.filters.mel`` with its defaults). Read-only: it is cached."""
    fmax = sr / 2.0 if fmax is None else fmax
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sr)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    lower = -ramps[:n_mels] / fdiff[:n_mels, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    weights = weights.astype(np.float32)
    weights.setflags(write=False)
    return weights


@lru_cache(maxsize=16)
def _hann(win_length: int, n_fft: int) -> np.ndarray:
    """The periodic Hann window (scipy's ``get_window('hann', N, fftbins=True)``), centred in n_fft."""
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(win_length) / win_length)
    left = (n_fft - win_length) // 2
    padded = np.zeros(n_fft)
    padded[left:left + win_length] = window
    padded.setflags(write=False)
    return padded


def mel_spectrogram(wave: np.ndarray, sr: int, n_fft: int, hop_length: int, win_length: int, n_mels: int,
                    center: bool = True) -> np.ndarray:
    """The power mel spectrogram (n_mels, frames), float32 (``librosa.feature.melspectrogram``)."""
    y = np.asarray(wave, dtype=np.float32)
    if center:
        y = np.pad(y, n_fft // 2)
    if len(y) < n_fft:
        raise ValueError(f"a signal of {len(y)} samples is shorter than n_fft={n_fft}")
    frames = np.lib.stride_tricks.sliding_window_view(y, n_fft)[::hop_length].T  # (n_fft, frames)
    # as librosa: the float64 window times the float32 frames, a double-precision FFT stored as
    # complex64, then |S| ** 2 and the mel projection in float32
    spectrum = np.fft.rfft(_hann(win_length, n_fft)[:, None] * frames, axis=0).astype(np.complex64)
    power = np.abs(spectrum) ** 2
    return np.einsum("ft,mf->mt", power, mel_filters(sr, n_fft, n_mels), optimize=True)


def power_to_db(power: np.ndarray, amin: float = 1e-10, top_db: float | None = 80.0) -> np.ndarray:
    """``10 log10(power)`` floored at ``amin``, then at ``top_db`` below the maximum (``librosa.power_to_db``, ref 1)."""
    log_spec = 10.0 * np.log10(np.maximum(amin, power))
    if top_db is not None:
        log_spec = np.maximum(log_spec, log_spec.max() - top_db)
    return log_spec


def mfcc(log_mel: np.ndarray, n_mfcc: int) -> np.ndarray:
    """The first ``n_mfcc`` orthonormal DCT-II coefficients of a dB mel spectrogram (``librosa.feature.mfcc``)."""
    from scipy.fft import dct

    return dct(log_mel, axis=-2, type=2, norm="ortho")[..., :n_mfcc, :]
