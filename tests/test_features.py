"""Features: the compat recipe against librosa, shapes, config keys, the disk cache, normalisation."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile

import strategies.data.features as features_module
from strategies.data.audio import read_audio
from strategies.data.errors import DataError
from strategies.data.features import (
    FeatureConfig,
    FeatureSet,
    Normalizer,
    compute_features,
    extract_features,
    gain_level,
    standardise_per_speaker,
    standardise_per_utterance,
)

REPO = Path(__file__).resolve().parents[1]
EMODB = Path(__file__).resolve().parents[2] / "shared/data/emodb-dev"


def _emodb_clip() -> Path:
    clips = sorted((EMODB / "wav").glob("*.wav")) if EMODB.is_dir() else []
    if not clips:
        pytest.skip(f"real-speech clips not found: {EMODB}/wav (EmoDB dev copy absent)")
    return clips[0]


def _write_clip(path: Path, seed: int, seconds: float = 1.0, sr: int = 16000) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.3 * np.sin(2 * np.pi * (150 + 50 * seed) * t) + 0.05 * rng.standard_normal(len(t))
    soundfile.write(path, wave.astype(np.float32), sr, subtype="PCM_16")
    return path


def _manifest(folder: Path, count: int = 4) -> pd.DataFrame:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(count):
        path = _write_clip(folder / f"u{i}.wav", seed=i, seconds=0.5 + 0.25 * i)
        rows.append({"utt_id": f"u{i}", "path": str(path), "speaker": f"s{i % 2}", "gender": "",
                     "session": "", "emotion": "neu", "duration": 0.5 + 0.25 * i})
    return pd.DataFrame(rows)


TINY = FeatureConfig(sample_rate=16000, clip_seconds=1.0, n_mfcc=13, n_mels=26, n_fft=256,
                     frames=16, time_pool=2)


# ---------------------------------------------------------------------- recipes
def test_compat_matches_librosa_directly() -> None:
    import librosa

    path = _emodb_clip()
    config = FeatureConfig.compat()
    wave, sr = read_audio(path, config.sample_rate)
    ours = compute_features(wave, sr, config)

    y, _ = librosa.load(str(path), sr=32750)
    y = np.pad(y, (0, max(0, 262000 - len(y))))[:262000]
    mfcc = librosa.feature.mfcc(y=y, sr=32750, n_mfcc=128, n_fft=2048, hop_length=512,
                                window="hann", center=True, n_mels=128)
    assert mfcc.shape == (128, 512)
    reference = mfcc.reshape(128, 128, 4).max(axis=2)
    assert ours.shape == (128, 128) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, atol=1e-4)


@pytest.mark.parametrize("preset", ["speech", "small", "compat"])
def test_the_numpy_front_end_equals_librosa_on_real_speech(preset: str) -> None:
    """compute_features computes librosa's definitions in NumPy (strategies.data.melspec, no numba
    compile on a new machine); on real EmoDB clips, resampled, the values are librosa's to 1e-5
    of their range (float32 rounding)."""
    import librosa

    config = FeatureConfig.speech(2.0) if preset == "speech" else FeatureConfig.preset(preset)
    clips = sorted((EMODB / "wav").glob("*.wav"))[:6] if EMODB.is_dir() else []
    if not clips:
        pytest.skip(f"real-speech clips not found: {EMODB}/wav (EmoDB dev copy absent)")
    for path in clips:
        wave, sr = read_audio(path, config.sample_rate)
        ours = compute_features(wave, sr, config)
        y = features_module.fit_length(wave, config.clip_samples(sr), config)
        common = dict(sr=sr, n_fft=config.n_fft, hop_length=config.hop_for(sr), win_length=config.win_length,
                      window="hann", center=config.center, n_mels=config.n_mels)
        if config.kind == "mfcc":
            reference = librosa.feature.mfcc(y=y, n_mfcc=config.n_mfcc, **common)
        else:
            reference = librosa.power_to_db(librosa.feature.melspectrogram(y=y, **common))
        reference = reference[:, :config.frames * config.time_pool]
        reference = reference.reshape(len(reference), config.frames, config.time_pool).max(axis=2)
        assert ours.shape == reference.shape
        assert np.abs(ours - reference).max() <= 1e-5 * np.abs(reference).max(), path.name


def test_computing_features_compiles_nothing(tmp_path: Path) -> None:
    """Features never import librosa's numba-compiled modules (25-40 s on a new machine's first run)."""
    code = ("import sys, numpy as np\n"
            "from strategies.data.features import FeatureConfig, compute_features\n"
            "for config in (FeatureConfig.speech(2.0), FeatureConfig.compat()):\n"
            "    compute_features(np.zeros(44100, np.float32) + 0.01, 22050, config)\n"
            "print(sorted(m for m in ('numba', 'librosa.feature', 'librosa.filters', 'librosa.util') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_compat_preset_values() -> None:
    config = FeatureConfig.compat()
    assert (config.sample_rate, config.clip_seconds, config.n_mfcc, config.n_mels) == (32750, 8.0, 128, 128)
    assert (config.n_fft, config.hop_for(32750), config.time_pool, config.frames) == (2048, 512, 4, 128)
    assert config.pad_policy == "zero_end" and config.crop_policy == "start" and config.center
    assert config.normalization == "none"


@pytest.mark.parametrize("sr", [8000, 16000, 22050, 32750, 44100, 48000])
def test_default_geometry_at_any_native_rate(sr: int) -> None:
    config = FeatureConfig.default()
    assert config.sample_rate is None
    raw = 1 + config.clip_samples(sr) // config.hop_for(sr)
    assert raw >= config.frames * config.time_pool  # pooling never has to invent columns at 8 s
    assert raw <= config.frames * config.time_pool + 1
    if sr == 32750:
        assert config.hop_for(sr) == 512  # the authors' hop


def test_default_shape_on_real_speech() -> None:
    path = _emodb_clip()
    wave, sr = read_audio(path)
    out = compute_features(wave, sr, FeatureConfig.default())
    assert out.shape == (128, 128) and out.dtype == np.float32 and np.isfinite(out).all()


@pytest.mark.parametrize("seconds", [0.1, 1.0, 3.0, 4.7])
@pytest.mark.parametrize(
    "overrides",
    [{}, {"pad_policy": "repeat"}, {"pad_policy": "none"}, {"crop_policy": "center"},
     {"center": False}, {"kind": "logmel"}, {"kind": "logmel", "db": False}, {"time_pool": 1},
     {"hop_length": 333}],
)
def test_output_shape_is_exact(seconds: float, overrides: dict) -> None:
    config = dataclasses.replace(FeatureConfig.small(), **overrides)
    rng = np.random.default_rng(0)
    wave = rng.standard_normal(int(seconds * 22050)).astype(np.float32) * 0.1
    out = compute_features(wave, 22050, config)  # resampled to 16 kHz inside
    assert out.shape == config.shape and out.dtype == np.float32 and np.isfinite(out).all()


def test_crop_and_pad_policies_differ_as_expected() -> None:
    config = FeatureConfig.small()
    sr = 16000
    rng = np.random.default_rng(1)
    first, second = rng.standard_normal(sr * 3), 0.01 * rng.standard_normal(sr * 3)
    long_wave = np.concatenate([first, second]).astype(np.float32)
    start = compute_features(long_wave, sr, config)
    np.testing.assert_array_equal(start, compute_features(first.astype(np.float32), sr, config))
    center = compute_features(long_wave, sr, dataclasses.replace(config, crop_policy="center"))
    assert not np.allclose(start, center)
    short = (0.3 * rng.standard_normal(sr)).astype(np.float32)
    zero_end = compute_features(short, sr, config)
    repeat = compute_features(short, sr, dataclasses.replace(config, pad_policy="repeat"))
    np.testing.assert_allclose(zero_end[:, :15], repeat[:, :15], atol=1e-4)  # same first second
    assert zero_end[0, -1] < repeat[0, -1] - 10  # silence vs speech energy at the end


def test_compute_is_deterministic() -> None:
    wave = np.random.default_rng(3).standard_normal(16000).astype(np.float32)
    a = compute_features(wave, 16000, FeatureConfig.small())
    b = compute_features(wave.copy(), 16000, FeatureConfig.small())
    np.testing.assert_array_equal(a, b)


def test_invalid_configs_are_rejected() -> None:
    with pytest.raises(ValueError, match="n_mfcc"):
        FeatureConfig(n_mfcc=200, n_mels=128)
    with pytest.raises(ValueError, match="pad_policy"):
        FeatureConfig(pad_policy="edge")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="db"):
        FeatureConfig(kind="mfcc", db=False)
    with pytest.raises(ValueError, match="frames"):
        FeatureConfig(frames=0)


# ---------------------------------------------------------------------- keys
def test_key_is_stable() -> None:
    assert FeatureConfig.default().key() == FeatureConfig().key()
    # golden values: a change here silently invalidates every user's cache; do it on purpose
    assert FeatureConfig.default().key() == "0af1c1065ce81618"
    assert FeatureConfig.compat().key() == "0231237d7c4d5627"
    code = "from strategies.data.features import FeatureConfig; print(FeatureConfig.compat().key())"
    env = {**os.environ, "PYTHONHASHSEED": "123", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == FeatureConfig.compat().key()


def test_key_changes_with_every_computing_field() -> None:
    base = FeatureConfig.default()
    changes = {"kind": "logmel", "sample_rate": 16000, "clip_seconds": 4.0, "pad_policy": "repeat",
               "crop_policy": "center", "n_mfcc": 40, "n_mels": 160, "n_fft": 1024, "win_length": 512,
               "hop_length": 256, "frames": 64, "time_pool": 2, "center": False}
    assert set(changes) | {"db", "normalization"} == {f.name for f in dataclasses.fields(FeatureConfig)}
    keys = {base.key()}
    for name, value in changes.items():
        keys.add(dataclasses.replace(base, **{name: value}).key())
    keys.add(dataclasses.replace(base, kind="logmel", db=False).key())
    assert len(keys) == len(changes) + 2
    # normalisation is applied after the cache: same cached features
    assert dataclasses.replace(base, normalization="none").key() == base.key()
    assert FeatureConfig.from_dict(base.to_dict()) == base


# ---------------------------------------------------------------------- cache
def test_cache_is_written_and_reused_without_recomputing(tmp_path: Path, monkeypatch) -> None:
    manifest = _manifest(tmp_path / "audio")
    cache = tmp_path / "cache"
    first = extract_features(manifest, TINY, cache, progress=False)
    assert first.features.shape == (4, 13, 16) and first.utt_ids == ("u0", "u1", "u2", "u3")
    for i, path in enumerate(manifest["path"]):
        wave, sr = read_audio(path, 16000)
        np.testing.assert_array_equal(first.features[i], compute_features(wave, sr, TINY))
    folder = cache / TINY.key()
    index = json.loads((folder / "index.json").read_text())
    assert index["config"] == TINY.to_dict() and len(index["rows"]) == 4
    assert [row["utt_id"] for row in index["rows"]] == ["u0", "u1", "u2", "u3"]
    assert len(list(folder.glob("features-*.npy"))) == 1

    def forbidden(*args, **kwargs):
        raise AssertionError("compute_features called although everything is cached")

    monkeypatch.setattr(features_module, "compute_features", forbidden)
    second = extract_features(manifest, TINY, cache, progress=False)
    assert isinstance(second.features, np.memmap)
    np.testing.assert_array_equal(second.features, first.features)
    # a subset in another order is also served from the cache
    subset = extract_features(manifest.iloc[[2, 0]], TINY, cache, progress=False)
    np.testing.assert_array_equal(subset.features, first.features[[2, 0]])


def test_cache_recomputes_only_changed_and_new_files(tmp_path: Path, monkeypatch) -> None:
    manifest = _manifest(tmp_path / "audio", count=3)
    cache = tmp_path / "cache"
    before = np.array(extract_features(manifest, TINY, cache, progress=False).features)
    _write_clip(Path(manifest.loc[1, "path"]), seed=9)  # same name, new content
    extra = _write_clip(tmp_path / "audio" / "new.wav", seed=7)
    manifest = pd.concat([manifest, pd.DataFrame([{**manifest.iloc[0].to_dict(), "utt_id": "new",
                                                   "path": str(extra)}])], ignore_index=True)
    calls: list[int] = []
    original = features_module.compute_features

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(features_module, "compute_features", counting)
    after = extract_features(manifest, TINY, cache, progress=False)
    assert len(calls) == 2  # the changed file and the new one
    np.testing.assert_array_equal(after.features[[0, 2]], before[[0, 2]])
    assert not np.allclose(after.features[1], before[1])
    wave, sr = read_audio(manifest.loc[1, "path"], 16000)
    np.testing.assert_array_equal(after.features[1], original(wave, sr, TINY))


def test_other_configs_get_their_own_cache(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "audio", count=2)
    a = extract_features(manifest, TINY, tmp_path / "cache", progress=False)
    other = dataclasses.replace(TINY, kind="logmel", n_mels=13)
    b = extract_features(manifest, other, tmp_path / "cache", progress=False)
    assert a.path != b.path and not np.allclose(a.features, b.features)


def test_no_cache_and_workers_give_the_same_features(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "audio", count=3)
    cached = extract_features(manifest, TINY, tmp_path / "cache", progress=False)
    in_memory = extract_features(manifest, TINY, None, progress=False)
    assert in_memory.path is None
    np.testing.assert_array_equal(cached.features, in_memory.features)


@pytest.mark.slow
def test_multiprocessing_workers(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "audio", count=6)
    parallel = extract_features(manifest, TINY, tmp_path / "a", progress=False, num_workers=2)
    serial = extract_features(manifest, TINY, tmp_path / "b", progress=False)
    np.testing.assert_array_equal(parallel.features, serial.features)


_CONCURRENT = textwrap.dedent(
    """
    import sys, time
    import pandas as pd
    from strategies.data.features import FeatureConfig, extract_features
    import strategies.data.features as module
    original = module.compute_features
    def slow(*args, **kwargs):
        time.sleep(0.05)  # widen the window in which the two processes overlap
        return original(*args, **kwargs)
    module.compute_features = slow
    config = FeatureConfig.from_dict({config!r})
    manifest = pd.read_csv({manifest!r}, keep_default_na=False)
    out = extract_features(manifest, config, {cache!r}, progress=False)
    print(out.features.shape, float(out.features.sum()))
    """
)


def test_two_processes_preparing_at_once_leave_one_intact_cache(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "audio", count=6)
    manifest_csv = tmp_path / "manifest.csv"
    manifest.to_csv(manifest_csv, index=False)
    cache = tmp_path / "cache"
    code = _CONCURRENT.format(config=TINY.to_dict(), manifest=str(manifest_csv), cache=str(cache))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
    assert outputs[0][0] == outputs[1][0]
    folder = cache / TINY.key()
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith("features-")) == ["index.json"]
    assert len(list(folder.glob("features-*.npy"))) == 1  # no temporary or stale files left
    index = json.loads((folder / "index.json").read_text())
    assert len(index["rows"]) == 6
    reference = extract_features(manifest, TINY, None, progress=False)
    loaded = extract_features(manifest, TINY, cache, progress=False)
    np.testing.assert_array_equal(loaded.features, reference.features)


def test_manifest_errors(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "audio", count=2)
    with pytest.raises(DataError, match="utt_id"):
        extract_features(manifest.drop(columns="utt_id"), TINY, tmp_path / "c", progress=False)
    with pytest.raises(DataError, match="more than once"):
        extract_features(pd.concat([manifest, manifest]), TINY, tmp_path / "c", progress=False)
    broken = manifest.copy()
    Path(broken.loc[1, "path"]).write_text("not audio")
    with pytest.raises(DataError, match=r"u1\.wav: not a readable audio file"):
        extract_features(broken, TINY, tmp_path / "c", progress=False)
    # the failed extraction left no index behind
    assert not (tmp_path / "c" / TINY.key() / "index.json").exists()


def test_featureset_select() -> None:
    array = np.arange(3 * 2 * 4, dtype=np.float32).reshape(3, 2, 4)
    fs = FeatureSet(features=array, utt_ids=("a", "b", "c"), config=TINY)
    sub = fs.select(["c", "a"])
    assert sub.utt_ids == ("c", "a") and len(sub) == 2
    np.testing.assert_array_equal(sub.features, array[[2, 0]])
    with pytest.raises(KeyError, match="'z'"):
        fs.select(["z"])


# ---------------------------------------------------------------------- normalisation
def test_normalizer_uses_only_the_data_it_is_given() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(5.0, 2.0, size=(20, 3, 10)).astype(np.float32)
    test = rng.normal(-50.0, 9.0, size=(5, 3, 10)).astype(np.float32)
    norm = Normalizer.fit(train, chunk=7)
    np.testing.assert_allclose(norm.mean, train.transpose(1, 0, 2).reshape(3, -1).mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(norm.std, train.transpose(1, 0, 2).reshape(3, -1).std(axis=1), rtol=1e-5)
    out = norm.transform(train)
    np.testing.assert_allclose(out.mean(axis=(0, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 2)), 1.0, atol=1e-4)
    assert abs(norm.transform(test).mean()) > 10  # test data is not folded into the statistics
    both = Normalizer.fit(np.concatenate([train, test]))
    assert not np.allclose(both.mean, norm.mean)
    assert norm.transform(train[0]).shape == (3, 10)


def test_normalizer_round_trip_and_none() -> None:
    train = np.random.default_rng(1).normal(size=(4, 2, 5)).astype(np.float32)
    norm = Normalizer.fit(train)
    again = Normalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    np.testing.assert_array_equal(again.transform(train), norm.transform(train))
    identity = Normalizer.fit(train, kind="none")
    np.testing.assert_array_equal(identity.transform(train), train)
    assert Normalizer.from_dict(identity.to_dict()).kind == "none"
    constant = np.ones((2, 2, 3), dtype=np.float32)
    assert np.isfinite(Normalizer.fit(constant).transform(constant)).all()


def test_per_speaker_standardisation_uses_each_speakers_own_rows_only() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(5.0, 2.0, size=(6, 3, 10)).astype(np.float32)
    b = rng.normal(-40.0, 9.0, size=(4, 3, 10)).astype(np.float32)
    features = np.concatenate([a, b])
    speakers = ["a"] * 6 + ["b"] * 4
    out = standardise_per_speaker(features, speakers)
    assert out.dtype == np.float32 and out.shape == features.shape
    for rows in (slice(0, 6), slice(6, 10)):  # every speaker: mean 0, std 1 per coefficient
        np.testing.assert_allclose(out[rows].mean(axis=(0, 2)), 0.0, atol=1e-5)
        np.testing.assert_allclose(out[rows].std(axis=(0, 2)), 1.0, atol=1e-4)
    np.testing.assert_allclose(out[:6], Normalizer.fit(a).transform(a), atol=1e-5)  # its own statistics
    other = standardise_per_speaker(np.concatenate([a, b * 3 + 7]), speakers)
    np.testing.assert_array_equal(other[:6], out[:6])  # another speaker's audio changes nothing
    vectors = standardise_per_speaker(features.mean(axis=2), speakers)  # utterance vectors (N, dimensions)
    np.testing.assert_allclose(vectors[6:].mean(axis=0), 0.0, atol=1e-5)
    assert np.isfinite(standardise_per_speaker(np.ones((2, 2, 3)), ["s", "s"])).all()  # constant: std floored
    with pytest.raises(ValueError, match="10 feature rows for 3 speakers"):
        standardise_per_speaker(features, ["a", "b", "c"])


def test_a_per_speaker_normalizer_has_no_statistics_and_no_lone_transform() -> None:
    features = np.random.default_rng(3).normal(size=(4, 2, 5)).astype(np.float32)
    norm = Normalizer.fit(features, kind="per_speaker")
    assert norm.kind == "per_speaker" and norm.mean is None and norm.std is None
    assert Normalizer.from_dict(json.loads(json.dumps(norm.to_dict()))).kind == "per_speaker"
    with pytest.raises(ValueError, match="standardise_per_speaker"):
        norm.transform(features)
    assert FeatureConfig(normalization="per_speaker").key() == FeatureConfig().key()  # the cache is shared
    with pytest.raises(ValueError, match="per_coefficient, per_speaker, per_utterance, none"):
        FeatureConfig(normalization="per_file")


def test_per_utterance_normalisation_uses_each_clip_alone_and_removes_a_gain(tmp_path: Path) -> None:
    from strategies.data.dataset import FeatureDataset

    rng = np.random.default_rng(5)
    features = (rng.normal(size=(6, 4, 30)) * rng.uniform(1, 9, size=(6, 4, 1)) + 40).astype(np.float32)
    out = standardise_per_utterance(features)
    assert np.allclose(out.mean(axis=-1), 0, atol=1e-5) and np.allclose(out.std(axis=-1), 1, atol=1e-4)
    # row by row: nothing of the other utterances is read; a gain (a constant per row) is gone
    assert np.allclose(out[2], standardise_per_utterance(features[2]), atol=1e-6)
    assert np.allclose(standardise_per_utterance(features + rng.normal(size=(6, 1, 1)) * 6), out, atol=1e-4)
    norm = Normalizer.fit(features, kind="per_utterance")
    assert norm.mean is None and np.allclose(norm.transform(features[0]), out[0], atol=1e-6)
    assert Normalizer.from_dict(json.loads(json.dumps(norm.to_dict()))).kind == "per_utterance"
    path = tmp_path / "f.npy"
    np.save(path, features)
    dataset = FeatureDataset(str(path), [4, 1], [0, 1], normalization="per_utterance")
    assert np.allclose(dataset.tensors[0][:, 0].numpy(), out[[4, 1]], atol=1e-6)
    assert FeatureDataset(**dataset.spec()).normalization == "per_utterance"
    with pytest.raises(ValueError, match="per_utterance normalisation excludes"):
        FeatureDataset(str(path), [0], [0], mean=[0.0] * 4, std=[1.0] * 4, normalization="per_utterance")


@pytest.mark.parametrize("config", [FeatureConfig.speech(2.0), FeatureConfig.small()], ids=["logmel", "mfcc"])
def test_a_louder_clip_moves_the_features_along_the_gain_direction(config: FeatureConfig) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 2) / 16000
    wave = (0.1 * np.sin(2 * np.pi * 220 * t * (1 + 0.2 * t)) + 0.02 * rng.normal(size=t.size)).astype(np.float32)
    quiet = compute_features(wave, 16000, config)
    loud = compute_features(wave * 10 ** (6 / 20), 16000, config)  # 6 dB louder
    expected = 6.0 * config.gain_direction()
    assert np.allclose((loud - quiet).mean(axis=1), expected, atol=0.05)
    assert FeatureConfig(kind="logmel", db=False).gain_direction() is None


def test_gain_level_is_the_direction_over_the_normalisations_scale() -> None:
    rng = np.random.default_rng(1)
    config = dataclasses.replace(FeatureConfig.speech(2.0), n_mels=3)
    train = (rng.normal(size=(8, 3, 20)) * np.array([1.0, 2.0, 4.0])[None, :, None]).astype(np.float32)
    fold = Normalizer.fit(train)
    assert np.allclose(gain_level(config, fold, train), 1.0 / fold.std)
    assert np.allclose(gain_level(config, Normalizer.fit(train, "none"), train), 1.0)
    assert gain_level(config, Normalizer.fit(train, "per_utterance"), train) is None
    speakers = ["a"] * 4 + ["b"] * 4
    expected = 1.0 / np.mean([train[:4].std(axis=(0, 2)), train[4:].std(axis=(0, 2))], axis=0)
    assert np.allclose(gain_level(config, Normalizer.fit(train, "per_speaker"), train, speakers), expected)
