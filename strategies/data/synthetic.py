"""The embedded default corpus: synthetic "acted emotion" speech made with espeak-ng.

No emotional speech corpus can be downloaded at run time, so the project ships a recipe
instead of data: libespeak-ng and its voice data come from PyPI (``espeakng-loader``) and are
driven here through ctypes. Speakers are espeak voice variants (formant sets and base pitch
of male and female voices), emotions are prosody profiles (pitch, pitch range, speaking
rate, volume), and every clip gets its own seeded jitter of that prosody, a random recording
gain and light noise, so the classes overlap (neutral vs sad, happy vs angry) and the task is
learnable but not trivial. See docs/features.md for the tables and the measured baseline.

Determinism. espeak-ng keeps some state between utterances (the pitch "flutter" phase, the
"roughness" cycle counter, echo and breath-noise filters), so by default the same text gives
different samples depending on what was spoken before. The voices used here are private
copies of espeak's variants with ``flutter 0``, ``roughness 0`` and no echo or breath,
written into an overlay of espeak's data folder; with them a clip's samples depend only on
its own text and parameters (verified: any generation order gives identical bytes).

The corpus is written once into a folder (``ensure_synthetic_corpus``): wav files, a
``manifest.csv`` with paths relative to the folder, ``corpus.json`` (the config) and a
``complete`` marker. It is generated in a temporary sibling folder and renamed into place,
so a crash or a concurrent generation never leaves a half-written corpus.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import soundfile

from ser_space.dictconfig import DictConfig
from strategies.data.audio import resample
from strategies.data.errors import DataError
from strategies.data.paths import cache_root

__all__ = [
    "EMOTION_PROFILES",
    "SENTENCES",
    "SPEAKER_VOICES",
    "EmotionProfile",
    "SpeakerVoice",
    "SyntheticConfig",
    "default_synthetic_root",
    "ensure_synthetic_corpus",
    "load_synthetic_manifest",
    "synthesize_clip",
]

logger = logging.getLogger(__name__)

#: Version of the recipe; part of the default folder name. Bump when the audio changes.
SYNTHETIC_VERSION = 1

Emotion = Literal["neu", "hap", "ang", "sad"]


@dataclass(frozen=True)
class SpeakerVoice:
    """One synthetic speaker: an espeak-ng voice variant plus personal prosody offsets."""

    speaker: str  # speaker id in the manifest
    variant: str  # espeak-ng variant file (voices/!v/<variant>) whose formants are used
    gender: Literal["F", "M"]  # manifest gender letter
    pitch_offset: float  # added to the emotion's espeak pitch (0-99 scale)
    rate_factor: float  # multiplies the emotion's speaking rate


@dataclass(frozen=True)
class EmotionProfile:
    """Mean prosody of one emotion on espeak-ng's parameter scales (SyntheticConfig sets the per-clip jitter)."""

    emotion: Emotion  # canonical class name (manifest ``emotion``)
    pitch: float  # espeakPITCH, 0-99 (50 = the voice's normal pitch)
    pitch_range: float  # espeakRANGE, 0-100 (0 = monotone, 50 = normal)
    rate: float  # espeakRATE, words per minute (175 = espeak's default)
    volume: float  # espeakVOLUME, 0-200 (100 = normal)


#: The eight speakers, four female and four male (espeak's own variant files, made deterministic).
SPEAKER_VOICES: tuple[SpeakerVoice, ...] = (
    SpeakerVoice("spk1", "f1", "F", 0.0, 1.00),
    SpeakerVoice("spk2", "m1", "M", 0.0, 1.00),
    SpeakerVoice("spk3", "f2", "F", -4.0, 0.95),
    SpeakerVoice("spk4", "m3", "M", 4.0, 1.05),
    SpeakerVoice("spk5", "f4", "F", 4.0, 1.08),
    SpeakerVoice("spk6", "m5", "M", -4.0, 0.93),
    SpeakerVoice("spk7", "f5", "F", -2.0, 1.03),
    SpeakerVoice("spk8", "m7", "M", 2.0, 0.97),
)

#: Prosody of the four emotions (means; every clip jitters them, see SyntheticConfig).
EMOTION_PROFILES: tuple[EmotionProfile, ...] = (
    EmotionProfile("neu", pitch=45.0, pitch_range=40.0, rate=165.0, volume=100.0),
    EmotionProfile("hap", pitch=66.0, pitch_range=80.0, rate=190.0, volume=115.0),
    EmotionProfile("ang", pitch=58.0, pitch_range=55.0, rate=200.0, volume=150.0),
    EmotionProfile("sad", pitch=33.0, pitch_range=22.0, rate=135.0, volume=80.0),
)

#: Emotionally neutral sentences; every speaker says each one in every emotion.
SENTENCES: tuple[str, ...] = (
    "The train leaves the station at seven in the morning.",
    "I put the keys on the table next to the window.",
    "She told me the meeting was moved to Thursday.",
    "We walked along the river until it got dark.",
    "The package arrived a day earlier than expected.",
    "He has been working in the garden all afternoon.",
    "There are three new messages on the phone.",
    "They painted the kitchen a different colour last week.",
    "My brother is coming to visit us next month.",
    "The library closes early on Sundays.",
)

# espeak_PARAMETER values (speak_lib.h)
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
# Variant-file keywords removed from our copies: each carries state between utterances.
_STATEFUL_KEYWORDS = frozenset({"flutter", "roughness", "echo", "breath", "breathw"})


@dataclass(frozen=True)
class SyntheticConfig(DictConfig):
    """What the synthetic corpus contains. The default is 8 speakers x 4 emotions x 10 clips."""

    num_speakers: int = 8  # first num_speakers of SPEAKER_VOICES (at most 8)
    emotions: tuple[Emotion, ...] = ("neu", "hap", "ang", "sad")  # classes, a subset of EMOTION_PROFILES
    clips_per_emotion: int = 10  # clips per speaker and emotion; clip i says sentence i mod len(sentences)
    sentences: tuple[str, ...] = SENTENCES  # texts (English)
    seed: int = 0  # seeds every clip's jitter, gain and noise
    sample_rate: int = 16000  # Hz of the written wavs (espeak-ng synthesises at 22,050 Hz)
    pitch_jitter: float = 7.0  # std of the per-clip pitch change, espeak 0-99 units
    range_jitter: float = 12.0  # std of the per-clip pitch-range change, espeak 0-100 units
    rate_jitter: float = 0.10  # std of the per-clip relative speaking-rate change
    volume_jitter: float = 0.15  # std of the per-clip relative espeak volume change
    gain_db: float = 6.0  # recording level drawn uniformly in +-gain_db dB per clip
    noise_snr_db: tuple[float, float] | None = (25.0, 40.0)  # white-noise SNR range in dB per clip; None = clean

    def __post_init__(self) -> None:
        if not 1 <= self.num_speakers <= len(SPEAKER_VOICES):
            raise ValueError(f"num_speakers must be 1..{len(SPEAKER_VOICES)}, got {self.num_speakers}")
        known = {p.emotion for p in EMOTION_PROFILES}
        if not self.emotions or set(self.emotions) - known or len(set(self.emotions)) != len(self.emotions):
            raise ValueError(f"emotions must be distinct values of {sorted(known)}, got {self.emotions}")
        if self.clips_per_emotion < 1:
            raise ValueError(f"clips_per_emotion must be >= 1, got {self.clips_per_emotion}")
        if not self.sentences or not all(s.strip() for s in self.sentences):
            raise ValueError("sentences must be non-empty texts")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if self.noise_snr_db is not None and (
            len(self.noise_snr_db) != 2 or self.noise_snr_db[0] > self.noise_snr_db[1]
        ):
            raise ValueError(f"noise_snr_db must be (low, high) or None, got {self.noise_snr_db}")

    def key(self) -> str:
        """Stable short hash of the config and recipe version (12 hex digits)."""
        payload = json.dumps({"version": SYNTHETIC_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha1(payload.encode("utf-8")).hexdigest()[:12]

    @property
    def num_clips(self) -> int:
        """Clips in the corpus."""
        return self.num_speakers * len(self.emotions) * self.clips_per_emotion


# ---------------------------------------------------------------------- espeak-ng through ctypes
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class _Espeak:
    """The process-wide libespeak-ng, initialised once on an overlay data folder.

    libespeak-ng is a singleton with global state, so one instance per process serves all
    calls, behind a lock.
    """

    _instance: _Espeak | None = None
    _guard = threading.Lock()

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as error:  # pragma: no cover - a declared dependency
            raise RuntimeError("the synthetic corpus needs espeakng-loader (pip install espeakng-loader)") from error
        self._overlay = Path(tempfile.mkdtemp(prefix="ser-nas-espeak-"))
        atexit.register(shutil.rmtree, self._overlay, True)
        data = _build_overlay(Path(espeakng_loader.get_data_path()), self._overlay)
        self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._lib.espeak_Initialize.restype = ctypes.c_int
        self._lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self._lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self._lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self._lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        self._lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self.sample_rate = int(
            self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data).encode(), 0)
        )
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise on {data} (status {self.sample_rate})")
        self._chunks: list[np.ndarray] = []
        self._callback = _SYNTH_CALLBACK(self._collect)  # kept alive as long as the library uses it
        self._lib.espeak_SetSynthCallback(self._callback)
        self._lock = threading.Lock()
        logger.debug("espeak-ng initialised at %d Hz on %s", self.sample_rate, data)

    @classmethod
    def get(cls) -> _Espeak:
        """The process's instance, created on first use."""
        with cls._guard:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _collect(self, wav: Any, num_samples: int, events: Any) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        return 0  # 0 = continue synthesis

    def synthesize(self, text: str, variant: str, pitch: int, pitch_range: int, rate: int, volume: int) -> np.ndarray:
        """int16 samples of ``text`` at ``self.sample_rate``."""
        with self._lock:
            self._chunks = []
            status = self._lib.espeak_SetVoiceByName(f"en+{_private_variant(variant)}".encode())
            if status != 0:
                raise RuntimeError(f"espeak-ng: cannot select voice variant {variant!r} (status {status})")
            for parameter, value in ((_RATE, rate), (_VOLUME, volume), (_PITCH, pitch), (_RANGE, pitch_range)):
                self._lib.espeak_SetParameter(parameter, int(value), 0)
            self._lib.espeak_ng_SetRandSeed(1)
            encoded = text.encode("utf-8") + b"\0"
            status = self._lib.espeak_Synth(
                encoded, len(encoded), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None
            )
            self._lib.espeak_Synchronize()
            if status != 0:
                raise RuntimeError(f"espeak-ng: synthesis failed (status {status})")
            chunks, self._chunks = self._chunks, []
        if not chunks:
            raise RuntimeError(f"espeak-ng produced no audio for {text!r}")
        return np.concatenate(chunks)


def _private_variant(variant: str) -> str:
    return f"sernas_{variant}"


def _build_overlay(source: Path, overlay: Path) -> Path:
    """An espeak-ng data folder that links to ``source`` plus our stateless voice variants."""
    data = overlay / "espeak-ng-data"
    voices = data / "voices"
    variants = voices / "!v"
    variants.mkdir(parents=True)
    for entry in source.iterdir():
        if entry.name != "voices":
            _link_or_copy(entry, data / entry.name)
    for entry in (source / "voices").iterdir():
        if entry.name != "!v":
            _link_or_copy(entry, voices / entry.name)
    for voice in SPEAKER_VOICES:
        original = (source / "voices" / "!v" / voice.variant).read_text(encoding="utf-8")
        lines = [
            line for line in original.splitlines()
            if not line.strip() or line.split()[0] not in _STATEFUL_KEYWORDS
        ]
        lines += ["flutter 0", "roughness 0"]
        (variants / _private_variant(voice.variant)).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return data


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.symlink(source, target, target_is_directory=source.is_dir())
    except OSError:  # no symlinks (some Windows setups): copy instead
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)


# ---------------------------------------------------------------------- the corpus
def _clip_rng(config: SyntheticConfig, speaker_index: int, emotion: str, clip: int) -> np.random.Generator:
    """Generator of one clip: depends on the seed and the clip's identity only (order-free)."""
    emotion_index = [p.emotion for p in EMOTION_PROFILES].index(emotion)
    return np.random.default_rng([config.seed, speaker_index, emotion_index, clip])


def synthesize_clip(
    config: SyntheticConfig, speaker_index: int, emotion: str, clip: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """Audio and prosody of one clip of the corpus, deterministic.

    Parameters
    ----------
    config : SyntheticConfig
        The corpus recipe.
    speaker_index : int
        Index into SPEAKER_VOICES (below ``config.num_speakers``).
    emotion : str
        One of ``config.emotions``.
    clip : int
        Clip number, 0 <= clip < ``config.clips_per_emotion``.

    Returns
    -------
    wave : np.ndarray
        float32 in [-1, 1] at ``config.sample_rate``.
    info : dict
        The espeak parameters, gain, SNR and sentence used.
    """
    voice = SPEAKER_VOICES[speaker_index]
    profile = {p.emotion: p for p in EMOTION_PROFILES}[emotion]
    rng = _clip_rng(config, speaker_index, emotion, clip)
    jitter = rng.standard_normal(4)
    pitch = int(np.clip(round(profile.pitch + voice.pitch_offset + config.pitch_jitter * jitter[0]), 0, 99))
    pitch_range = int(np.clip(round(profile.pitch_range + config.range_jitter * jitter[1]), 0, 100))
    rate = int(np.clip(round(profile.rate * voice.rate_factor * (1 + config.rate_jitter * jitter[2])), 90, 320))
    volume = int(np.clip(round(profile.volume * (1 + config.volume_jitter * jitter[3])), 20, 190))
    gain_db = float(rng.uniform(-config.gain_db, config.gain_db))
    snr_db = None if config.noise_snr_db is None else float(rng.uniform(*config.noise_snr_db))
    sentence = config.sentences[clip % len(config.sentences)]

    engine = _Espeak.get()
    samples = engine.synthesize(sentence, voice.variant, pitch, pitch_range, rate, volume)
    wave = samples.astype(np.float32) / 32768.0
    wave = resample(wave, engine.sample_rate, config.sample_rate)
    wave = wave * np.float32(10.0 ** (gain_db / 20.0))
    if snr_db is not None:
        power = float(np.mean(np.square(wave, dtype=np.float64)))
        noise = rng.standard_normal(len(wave)) * np.sqrt(power / 10.0 ** (snr_db / 10.0))
        wave = wave + noise.astype(np.float32)
    wave = np.clip(wave, -1.0, 1.0).astype(np.float32)
    info = {
        "sentence": sentence, "pitch": pitch, "pitch_range": pitch_range, "rate": rate,
        "volume": volume, "gain_db": round(gain_db, 3), "snr_db": None if snr_db is None else round(snr_db, 3),
    }
    return wave, info


def default_synthetic_root(config: SyntheticConfig | None = None) -> Path:
    """Where the corpus lives when the caller gives no folder.

    The cache root (:func:`strategies.data.paths.cache_root`: ``$SER_NAS_HOME``, or
    ``~/.cache/ser-nas``) / ``synthetic-v1`` for the default config, ``synthetic-v1-<config.key()>``
    for any other, so configs never share a folder.
    """
    config = config or SyntheticConfig()
    base = cache_root()
    name = f"synthetic-v{SYNTHETIC_VERSION}"
    if config != SyntheticConfig():
        name += f"-{config.key()}"
    return base / name


_MARKER = "complete"
_CONFIG_FILE = "corpus.json"
_MANIFEST_FILE = "manifest.csv"


def _is_complete(root: Path) -> bool:
    return (root / _MARKER).is_file() and (root / _MANIFEST_FILE).is_file()


def _generate(folder: Path, config: SyntheticConfig) -> None:
    """Write every clip, the manifest and corpus.json into ``folder`` (no marker)."""
    rows = []
    started = time.perf_counter()
    for speaker_index in range(config.num_speakers):
        voice = SPEAKER_VOICES[speaker_index]
        (folder / "wav" / voice.speaker).mkdir(parents=True, exist_ok=True)
        for emotion in config.emotions:
            for clip in range(config.clips_per_emotion):
                wave, info = synthesize_clip(config, speaker_index, emotion, clip)
                utt_id = f"{voice.speaker}_{emotion}_{clip:03d}"
                relative = f"wav/{voice.speaker}/{utt_id}.wav"
                soundfile.write(folder / relative, wave, config.sample_rate, subtype="PCM_16", format="WAV")
                rows.append({
                    "utt_id": utt_id, "path": relative, "speaker": voice.speaker,
                    "gender": voice.gender, "session": "", "emotion": emotion,
                    "duration": round(len(wave) / config.sample_rate, 6), **info,
                })
    table = pd.DataFrame(rows).sort_values("utt_id", kind="stable").reset_index(drop=True)
    table.to_csv(folder / _MANIFEST_FILE, index=False)
    meta = {"version": SYNTHETIC_VERSION, "key": config.key(), "config": config.to_dict(),
            "num_clips": len(table)}
    (folder / _CONFIG_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
    logger.info("synthetic corpus: %d clips generated in %.1f s", len(table), time.perf_counter() - started)


def ensure_synthetic_corpus(root: str | Path | None = None, config: SyntheticConfig | None = None) -> Path:
    """Generate the synthetic corpus unless it is already complete; return its folder.

    Idempotent and safe under concurrency: the corpus is generated in a unique temporary
    sibling folder and renamed to ``root``; if another process finished first, its corpus
    is kept and ours discarded. A complete folder made with a different config is an error
    (nothing is overwritten).

    Parameters
    ----------
    root : str, Path or None
        Corpus folder; None = :func:`default_synthetic_root`.
    config : SyntheticConfig or None
        The recipe; None = ``SyntheticConfig()``.

    Returns
    -------
    Path
        The folder, holding ``manifest.csv``, ``corpus.json``, ``complete`` and ``wav/``.
    """
    config = config or SyntheticConfig()
    root = Path(root) if root is not None else default_synthetic_root(config)
    if _is_complete(root):
        _check_config(root, config)
        return root
    if root.exists() and any(root.iterdir()):
        raise DataError(f"{root}: exists, is not empty and holds no complete synthetic corpus")
    root.parent.mkdir(parents=True, exist_ok=True)
    work = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    try:
        _generate(work, config)
        (work / _MARKER).write_text(f"{config.key()}\n", encoding="utf-8")
        if root.exists():
            try:
                root.rmdir()  # an empty folder made by the caller
            except OSError:
                pass
        try:
            os.rename(work, root)
        except OSError:
            if not _is_complete(root):  # not a lost race: a real failure
                raise
            logger.info("synthetic corpus: another process finished %s first; keeping it", root)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    _check_config(root, config)
    return root


def _check_config(root: Path, config: SyntheticConfig) -> None:
    try:
        meta = json.loads((root / _CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(f"{root / _CONFIG_FILE}: unreadable synthetic corpus description ({error})") from error
    if meta.get("key") != config.key():
        raise DataError(
            f"{root}: holds a synthetic corpus made with another config (key {meta.get('key')}, "
            f"wanted {config.key()}); pass another folder"
        )


def load_synthetic_manifest(root: str | Path | None = None) -> pd.DataFrame:
    """The manifest of a generated synthetic corpus, with absolute paths.

    Parameters
    ----------
    root : str, Path or None
        Corpus folder; None = :func:`default_synthetic_root` of the default config.

    Returns
    -------
    pd.DataFrame
        Columns utt_id, path (absolute), speaker, gender, session, emotion, duration, sorted
        by utt_id.
    """
    root = Path(root) if root is not None else default_synthetic_root()
    if not _is_complete(root):
        raise DataError(f"{root}: no complete synthetic corpus (run ensure_synthetic_corpus first)")
    table = pd.read_csv(root / _MANIFEST_FILE, dtype={"utt_id": str, "speaker": str, "session": str},
                        keep_default_na=False)
    table["path"] = [str((root / p).resolve()) for p in table["path"]]
    table["duration"] = table["duration"].astype(float)
    columns = ["utt_id", "path", "speaker", "gender", "session", "emotion", "duration"]
    return table[columns].sort_values("utt_id", kind="stable").reset_index(drop=True)
