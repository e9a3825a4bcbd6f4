"""The embedded synthetic corpus: determinism, contents, idempotence, manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile

from strategies.data.errors import DataError
from strategies.data.synthetic import (
    EMOTION_PROFILES,
    SPEAKER_VOICES,
    SyntheticConfig,
    default_synthetic_root,
    ensure_synthetic_corpus,
    load_synthetic_manifest,
    synthesize_clip,
)

SMALL = SyntheticConfig(num_speakers=2, emotions=("neu", "ang", "sad"), clips_per_emotion=2)
COLUMNS = ["utt_id", "path", "speaker", "gender", "session", "emotion", "duration"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_synthetic_corpus(tmp_path_factory.mktemp("synthetic") / "corpus", SMALL)


def test_two_generations_are_bit_identical(corpus: Path, tmp_path: Path) -> None:
    again = ensure_synthetic_corpus(tmp_path / "again", SMALL)
    files = sorted(p.relative_to(corpus) for p in (corpus / "wav").rglob("*.wav"))
    assert len(files) == SMALL.num_clips
    for relative in files:
        assert (corpus / relative).read_bytes() == (again / relative).read_bytes(), relative
    assert (corpus / "manifest.csv").read_bytes() == (again / "manifest.csv").read_bytes()


def test_clip_does_not_depend_on_generation_order() -> None:
    # espeak-ng keeps flutter / roughness / echo state between utterances; our voices must not
    jobs = [(0, "neu", 0), (1, "sad", 1), (0, "ang", 1)]
    forward = [synthesize_clip(SMALL, *job)[0] for job in jobs]
    backward = [synthesize_clip(SMALL, *job)[0] for job in reversed(jobs)][::-1]
    for a, b in zip(forward, backward):
        np.testing.assert_array_equal(a, b)


def test_manifest_counts_and_columns(corpus: Path) -> None:
    manifest = load_synthetic_manifest(corpus)
    assert list(manifest.columns) == COLUMNS
    assert len(manifest) == SMALL.num_clips == 12
    assert manifest["utt_id"].is_unique and manifest["utt_id"].is_monotonic_increasing
    counts = manifest.groupby(["speaker", "emotion"]).size()
    assert set(counts) == {SMALL.clips_per_emotion}
    assert set(manifest["speaker"]) == {"spk1", "spk2"}
    assert set(manifest["emotion"]) == {"neu", "ang", "sad"}
    assert dict(zip(manifest["speaker"], manifest["gender"])) == {"spk1": "F", "spk2": "M"}
    assert set(manifest["session"]) == {""}
    for row in manifest.itertuples():
        assert Path(row.path).is_absolute()
        info = soundfile.info(row.path)
        assert info.samplerate == SMALL.sample_rate and info.channels == 1
        assert abs(info.frames / info.samplerate - row.duration) < 1e-4
        assert 1.0 < row.duration < 6.0


def test_audio_is_speech_like_and_emotions_differ(corpus: Path) -> None:
    manifest = load_synthetic_manifest(corpus)
    rms = {}
    for emotion in ("ang", "sad"):
        waves = [soundfile.read(p)[0] for p in manifest.loc[manifest["emotion"] == emotion, "path"]]
        assert all(np.abs(w).max() > 0.05 and np.abs(w).max() <= 1.0 for w in waves)
        rms[emotion] = np.mean([np.sqrt(np.mean(w**2)) for w in waves])
    durations = manifest.groupby("emotion")["duration"].mean()
    assert durations["sad"] > durations["ang"]  # sad is slower
    assert rms["ang"] > rms["sad"]  # and quieter on average


def test_idempotent_and_guarded(corpus: Path, tmp_path: Path) -> None:
    stamp = (corpus / "manifest.csv").stat().st_mtime_ns
    assert ensure_synthetic_corpus(corpus, SMALL) == corpus
    assert (corpus / "manifest.csv").stat().st_mtime_ns == stamp  # not regenerated
    with pytest.raises(DataError, match="another config"):
        ensure_synthetic_corpus(corpus, SyntheticConfig(num_speakers=1, clips_per_emotion=1))
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "user-file.txt").write_text("keep me")
    with pytest.raises(DataError, match="not empty"):
        ensure_synthetic_corpus(occupied, SMALL)
    assert (occupied / "user-file.txt").read_text() == "keep me"
    with pytest.raises(DataError, match="no complete synthetic corpus"):
        load_synthetic_manifest(tmp_path / "nothing")
    # no temporary folders left beside the corpus
    assert [p.name for p in corpus.parent.iterdir()] == [corpus.name]


def test_config_checks_and_default_root() -> None:
    assert SyntheticConfig().num_clips == 320
    assert len(SPEAKER_VOICES) == 8 and {v.gender for v in SPEAKER_VOICES} == {"F", "M"}
    assert [p.emotion for p in EMOTION_PROFILES] == ["neu", "hap", "ang", "sad"]
    with pytest.raises(ValueError, match="num_speakers"):
        SyntheticConfig(num_speakers=9)
    with pytest.raises(ValueError, match="emotions"):
        SyntheticConfig(emotions=("neu", "fear"))  # type: ignore[arg-type]
    assert default_synthetic_root().name == "synthetic-v1"
    assert default_synthetic_root(SMALL).name == f"synthetic-v1-{SMALL.key()}"
    assert SMALL.key() == SyntheticConfig(num_speakers=2, emotions=("neu", "ang", "sad"),
                                          clips_per_emotion=2).key()


@pytest.mark.slow
def test_default_corpus_is_learnable_but_not_trivial(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from synthetic_baseline import run

    result = run(tmp_path / "corpus", tmp_path / "cache")
    assert result["clips"] == 320 and result["chance"] == 0.25
    assert 0.45 < result["logistic"] < 0.85
    assert 0.40 < result["nearest_mean"] < 0.85


def test_the_synthetic_corpus_is_a_registered_corpus_module(corpus: Path) -> None:
    # one loader for every corpus: the synthetic one goes through load_manifest like EmoDB,
    # its generator's recipe as its options; a bad recipe is a one-line error naming it
    from strategies.data.corpora import CORPORA, SyntheticOptions, load_manifest

    assert CORPORA["synthetic"].generate is not None and CORPORA["synthetic"].options is SyntheticOptions
    manifest = load_manifest("synthetic", corpus, num_speakers=2, emotions="neu,ang,sad", clips_per_emotion=2)
    pd.testing.assert_frame_equal(manifest.drop(columns="duration"),
                                  load_synthetic_manifest(corpus).drop(columns="duration"))
    with pytest.raises(DataError, match="synthetic corpus: num_speakers must be 1..8, got 9"):
        load_manifest("synthetic", corpus, num_speakers=9)
    with pytest.raises(DataError, match="improvised_only do not apply to corpus synthetic"):
        load_manifest("synthetic", corpus, improvised_only=True)
