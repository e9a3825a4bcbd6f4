"""Where a recording holds speech: WebRTC's voice-activity detector (``webrtcvad-wheels``).

The detector is Google's WebRTC VAD (a fixed GMM in C, no model file to download); it
judges 30-ms frames of 16-bit PCM at 8, 16, 32 or 48 kHz. :func:`speech_frames` resamples
other rates to 16 kHz first (through the project's one resampler) and returns one boolean
per frame. Digital silence and near-silence are never speech; stationary noise loud enough
to mask speech can be (the detector's known limit).
"""

from __future__ import annotations

import numpy as np

from .audio import resample

__all__ = ["FRAME_SECONDS", "speech_frames"]

#: Length of one judged frame (WebRTC accepts 10, 20 or 30 ms).
FRAME_SECONDS = 0.03
_RATES = (8000, 16000, 32000, 48000)


def speech_frames(wave: np.ndarray, sr: int, aggressiveness: int = 3) -> np.ndarray:
    """One boolean per 30-ms frame of ``wave`` (mono float in [-1, 1]): does it hold speech?

    ``aggressiveness`` 0-3: how readily a frame is called non-speech (3: the strictest). A
    trailing part shorter than one frame is not judged.
    """
    import webrtcvad

    if not 0 <= aggressiveness <= 3:
        raise ValueError(f"VAD aggressiveness must be 0..3, got {aggressiveness}")
    if sr not in _RATES:
        wave, sr = resample(wave, sr, 16000), 16000
    pcm = (np.clip(np.asarray(wave, dtype=np.float64), -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    step = int(round(FRAME_SECONDS * sr)) * 2  # bytes per frame
    vad = webrtcvad.Vad(aggressiveness)
    return np.array([vad.is_speech(pcm[i:i + step], sr) for i in range(0, len(pcm) - step + 1, step)], dtype=bool)
