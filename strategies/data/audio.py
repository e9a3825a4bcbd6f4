"""Reading audio files: mono float32 at a chosen rate, with checks for broken files.

soundfile (libsndfile bundled in its wheel) does the reading and librosa (soxr) the
resampling. libsndfile happily reads a truncated WAV (the header promises N frames,
fewer bytes are present) and returns the few samples it found without complaint, so the
frame count read is compared with the header's and a mismatch is an error.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np
import soundfile

from strategies.data.errors import DataError

__all__ = ["read_audio", "resample"]

logger = logging.getLogger(__name__)


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample a mono signal with librosa's default (soxr, high quality) resampler.

    Parameters
    ----------
    wave : np.ndarray
        Mono signal, shape (samples,).
    orig_sr : int
        Its sample rate in Hz.
    target_sr : int
        The wanted sample rate in Hz.

    Returns
    -------
    np.ndarray
        float32 signal at ``target_sr``; ``wave`` itself (as float32) when the rates agree.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if orig_sr == target_sr:
        return wave
    try:
        # What librosa.resample(res_type="soxr_hq", fix=True) does, without importing librosa
        # (several seconds, mostly scipy.signal) in processes that only resample.
        import soxr
    except ImportError:  # pragma: no cover - soxr comes with librosa
        import librosa

        return np.asarray(librosa.resample(wave, orig_sr=orig_sr, target_sr=target_sr), dtype=np.float32)
    size = int(np.ceil(len(wave) * float(target_sr) / orig_sr))
    out = np.asarray(soxr.resample(wave, orig_sr, target_sr, quality="soxr_hq"), dtype=np.float32)
    if len(out) >= size:
        return np.ascontiguousarray(out[:size])
    return np.pad(out, (0, size - len(out)))


def wav_header_frames(path: Path) -> int | None:
    """Frame count a RIFF/WAVE header declares, or None when unknown or not a plain WAV.

    Walks the RIFF chunks up to ``data`` and divides its declared size by the frame size
    (``block_align`` of the ``fmt `` chunk). Streamed WAVs that leave the size at 0 or
    0xFFFFFFFF, RF64 and other formats give None: nothing to check against.
    """
    with path.open("rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = None
        while True:
            chunk = handle.read(8)
            if len(chunk) < 8:
                return None
            chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"fmt ":
                body = handle.read(size + (size & 1))
                if len(body) < 14:
                    return None
                block_align = struct.unpack("<H", body[12:14])[0]
            elif chunk_id == b"data":
                if not block_align or size in (0, 0xFFFFFFFF):
                    return None
                return size // block_align
            else:
                handle.seek(size + (size & 1), 1)


def read_audio(path: str | Path, target_sr: int | None = None) -> tuple[np.ndarray, int]:
    """Read an audio file as a mono float32 signal in [-1, 1].

    Parameters
    ----------
    path : str or Path
        Any format libsndfile reads (WAV, FLAC, OGG, ...).
    target_sr : int or None
        Resample to this rate in Hz; None keeps the file's own rate.

    Returns
    -------
    wave : np.ndarray
        float32, shape (samples,); multichannel files are averaged to mono.
    sr : int
        Sample rate of ``wave`` in Hz.

    Raises
    ------
    DataError
        The file is missing, not audio, empty (no frames) or truncated (fewer frames
        present than its header promises). The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such audio file")
    try:
        info = soundfile.info(str(path))
        data, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, TypeError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"{path}: not a readable audio file ({reason})") from error
    declared = wav_header_frames(path)
    expected = declared if declared is not None else info.frames
    if data.shape[0] < expected:
        raise DataError(f"{path}: truncated: header says {expected} frames, read {data.shape[0]}")
    if data.shape[0] == 0:
        raise DataError(f"{path}: no audio frames")
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    if target_sr is not None and target_sr != sr:
        if target_sr <= 0:
            raise ValueError(f"target_sr must be positive, got {target_sr}")
        wave = resample(wave, sr, target_sr)
        sr = target_sr
    return wave, int(sr)
