"""Reference baselines (strategies.reference): features, C chosen on validation only, pipeline rows."""

from __future__ import annotations

import builtins
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import miniature
from conftest import EMODB_DEV
from strategies.data.errors import DataError
from strategies.data.features import FeatureConfig
from strategies.data.config import DataConfig
from strategies.data.prepare import prepare_data
from strategies.pipeline import run_pipeline
from strategies.recipes import RunConfig
from strategies.reference import (C_GRID, ReferenceBaseline, fit_reference, is_reference, mfcc_stats,
                                  parse_reference, reference_features)
from strategies.runs import RunError


def test_names_parse_to_a_feature_set_and_a_classifier() -> None:
    assert parse_reference("mfcc_stats") == ReferenceBaseline("mfcc_stats", "logreg")
    assert parse_reference("egemaps") == ReferenceBaseline("egemaps", "svm")
    assert parse_reference("compare2016:logreg") == ReferenceBaseline("compare2016", "logreg")
    assert is_reference("egemaps:svm") and not is_reference("cnn_lstm") and not is_reference(None)
    with pytest.raises(ValueError, match="classifier"):
        parse_reference("mfcc_stats:forest")
    with pytest.raises(RunError, match="unknown baseline 'mfcc'"):
        RunConfig(baseline="mfcc")


def test_mfcc_stats_is_a_fixed_length_vector_whatever_the_duration() -> None:
    rng = np.random.default_rng(0)
    short = mfcc_stats(rng.normal(size=200).astype(np.float32) * 0.1, 16000)  # shorter than one window
    long = mfcc_stats(rng.normal(size=22050 * 3).astype(np.float32) * 0.1, 22050)
    assert short.shape == long.shape == ((40 + 40 + 1) * 5 + 5,)
    assert np.isfinite(long).all()


def _separable(n: int = 90, d: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    x = rng.normal(size=(n, d))
    x[np.arange(n), labels] += 5.0
    return x.astype(np.float32), labels


def test_c_is_chosen_on_validation_and_the_test_split_steers_nothing() -> None:
    x, y = _separable()
    rows = {"train": np.arange(0, 60), "val": np.arange(60, 75), "test": np.arange(75, 90)}
    result = fit_reference(ReferenceBaseline("mfcc_stats", "logreg"), x, y, rows, 3)
    assert result["c"] in C_GRID and set(result["val_ua_by_c"]) == {str(c) for c in C_GRID}
    assert result["val_ua"] == max(result["val_ua_by_c"].values())
    assert result["ua"] > 0.8
    # scrambling the test labels changes the test figure only, never the choice of C
    scrambled = y.copy()
    scrambled[rows["test"]] = np.roll(scrambled[rows["test"]], 1)
    again = fit_reference(ReferenceBaseline("mfcc_stats", "logreg"), x, scrambled, rows, 3)
    assert again["c"] == result["c"] and again["val_ua_by_c"] == result["val_ua_by_c"]
    assert again["ua"] < result["ua"]


def test_refit_on_val_keeps_the_choice_of_c_and_fits_on_both_splits() -> None:
    x, y = _separable(seed=3)
    rows = {"train": np.arange(0, 60), "val": np.arange(60, 75), "test": np.arange(75, 90)}
    plain = fit_reference(ReferenceBaseline("mfcc_stats", "logreg"), x, y, rows, 3)
    both = fit_reference(ReferenceBaseline("mfcc_stats", "logreg"), x, y, rows, 3, refit_on_val=True)
    assert both["c"] == plain["c"] and both["val_ua_by_c"] == plain["val_ua_by_c"]  # C still chosen on val alone
    seen = np.concatenate([rows["train"], rows["val"]])
    assert np.allclose(both["scaler"].mean_, x[seen].mean(axis=0))  # the scaler saw both splits
    assert not np.allclose(plain["scaler"].mean_, both["scaler"].mean_)
    assert both["model"].coef_.shape == plain["model"].coef_.shape and not np.allclose(both["model"].coef_,
                                                                                        plain["model"].coef_)


def test_one_class_in_training_is_a_one_line_error() -> None:
    x, y = _separable()
    y = np.where(np.arange(len(y)) < 60, 0, y)
    with pytest.raises(DataError, match="only one class"):
        fit_reference(ReferenceBaseline("mfcc_stats", "svm"), x, y,
                      {"train": np.arange(60), "val": np.arange(60, 75), "test": np.arange(75, 90)}, 3)


def test_missing_opensmile_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real_import = builtins.__import__

    def no_opensmile(name: str, *args: object, **kwargs: object) -> object:
        if name == "opensmile":
            raise ImportError("No module named 'opensmile'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_opensmile)
    import pandas as pd

    with pytest.raises(DataError, match=r"egemaps baseline needs the opensmile package: pip install 'ser-nas\[opensmile\]'"):
        reference_features(pd.DataFrame({"path": []}), "egemaps", tmp_path)


def _mini_emodb(tmp_path: Path) -> DataConfig:
    corpus = miniature.make_corpus("emodb", tmp_path / "emodb")
    return DataConfig(dataset="emodb", root=str(corpus.root), features=FeatureConfig.small())


def test_a_reference_run_writes_the_same_run_folder_as_a_network(tmp_path: Path) -> None:
    data = _mini_emodb(tmp_path)
    run_dir, summary = run_pipeline(RunConfig(data=data, baseline="mfcc_stats", folds=(0, 1)),
                                    output_dir=tmp_path / "runs", progress=False)
    assert summary["method"] == "baseline-mfcc_stats" and summary["folds"] == 2
    for fold in (0, 1):
        metrics = json.loads((run_dir / f"fold-{fold}" / "metrics.json").read_text())
        reference = json.loads((run_dir / f"fold-{fold}" / "reference.json").read_text())
        assert 0.0 <= metrics["test_ua"] <= 1.0 and metrics["val_ua"] == reference["val_ua_by_c"][str(reference["c"])]
        assert reference["features"] == "mfcc_stats" and reference["classifier"] == "logreg"
    assert (run_dir / "config.json").is_file() and (run_dir / "versions.json").is_file()
    # the features are cached by content: a second run reads the cache, whatever the run
    cache = Path(prepare_data(data, progress=False).folder).parents[1] / "reference"
    before = {p: p.stat().st_mtime_ns for p in cache.glob("mfcc_stats-*.npy")}
    run_pipeline(RunConfig(data=data, baseline="mfcc_stats:svm", folds=(0,)), output_dir=tmp_path / "runs",
                 progress=False)
    assert {p: p.stat().st_mtime_ns for p in cache.glob("mfcc_stats-*.npy")} == before
    from strategies.evaluate import evaluate_run
    from strategies.predict import find_model

    with pytest.raises(RunError, match="keeps no network"):
        evaluate_run(run_dir)
    with pytest.raises(RunError, match="keeps no network"):
        find_model(run_dir)


@pytest.mark.skipif(importlib.util.find_spec("opensmile") is None, reason="the opensmile extra is not installed")
def test_egemaps_through_opensmile(tmp_path: Path) -> None:
    import pandas as pd

    corpus = miniature.make_corpus("emodb", tmp_path / "emodb")
    paths = sorted((corpus.root / "wav").glob("*.wav"))[:3]
    matrix = reference_features(pd.DataFrame({"path": [str(p) for p in paths]}), "egemaps", tmp_path / "cache")
    assert matrix.shape == (3, 88) and np.isfinite(matrix).all()


@pytest.mark.slow
@pytest.mark.skipif(not EMODB_DEV.is_dir(), reason=f"real EmoDB subset not found at {EMODB_DEV}")
def test_mfcc_stats_learns_emotion_from_real_speech(tmp_path: Path) -> None:
    data = DataConfig(dataset="emodb", root=str(EMODB_DEV), features=FeatureConfig.small())
    _, summary = run_pipeline(RunConfig(data=data, baseline="mfcc_stats", folds=None), output_dir=tmp_path,
                              progress=False)
    # measured 0.54 +- 0.11 over the 6 speakers (docs/results.md); chance is 1/7
    assert summary["test_ua"]["mean"] > 0.40


def test_cli_reference_baseline_on_a_real_corpus_uses_the_real_speech_recipe(tmp_path: Path, capsys) -> None:
    from strategies.cli import main
    from strategies.recipes import REAL_SPEECH

    corpus = miniature.make_corpus("emodb", tmp_path / "emodb")
    code = main(["search", "--baseline", "mfcc_stats", "--dataset", "emodb", "--root", str(corpus.root),
                 "--folds", "0", "--output", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "cache"),
                 "--quiet"])
    assert code == 0, capsys.readouterr().err
    (run_dir,) = (tmp_path / "runs").glob("*-emodb-baseline-mfcc_stats")
    config = json.loads((run_dir / "config.json").read_text())
    assert config["baseline"] == "mfcc_stats"
    assert config["space"] == json.loads(json.dumps(REAL_SPEECH.space.to_dict()))
    assert config["retrain"] == json.loads(json.dumps(REAL_SPEECH.retrain.to_dict()))
    features = config["data"]["features"]
    assert features["kind"] == "logmel" and features["clip_seconds"] == 1.0 and features["frames"] == 50
    # --features-clip-seconds sets the window, and the frames follow it
    code = main(["search", "--baseline", "mfcc_stats", "--dataset", "emodb", "--root", str(corpus.root),
                 "--features-clip-seconds", "2.5", "--folds", "0", "--output", str(tmp_path / "runs2"),
                 "--data-dir", str(tmp_path / "cache"), "--quiet"])
    assert code == 0
    (run_dir,) = (tmp_path / "runs2").glob("*-emodb-*")
    features = json.loads((run_dir / "config.json").read_text())["data"]["features"]
    assert (features["clip_seconds"], features["frames"]) == (2.5, 125)


def test_window_fitted_to_the_corpus_and_the_padding_reported(tmp_path: Path, caplog) -> None:
    import logging

    from strategies.recipes import clip_seconds_for

    assert clip_seconds_for([2.0] * 10) == 2.0
    assert clip_seconds_for([1.2, 2.4, 2.6, 2.7, 9.0]) == 2.5
    assert clip_seconds_for([0.2, 0.3]) == 1.0 and clip_seconds_for([30.0]) == 6.0
    assert clip_seconds_for([]) == 3.0
    corpus = miniature.make_corpus("emodb", tmp_path / "emodb")
    data = DataConfig(dataset="emodb", root=str(corpus.root), features=FeatureConfig.speech(0.2))
    with caplog.at_level(logging.WARNING, logger="strategies.data.prepare"):
        prepare_data(data, data_dir=tmp_path / "cache", progress=False)
    lines = [r.getMessage() for r in caplog.records if "feature window" in r.getMessage()]
    assert any("shorter than the 0.2-s feature window and are zero-padded at the end (most: " in m for m in lines)
    assert any("longer than the 0.2-s feature window and are cropped to their middle 0.2 s" in m for m in lines)


def test_a_fold_without_a_class_is_named_in_a_warning(tmp_path: Path, caplog) -> None:
    import logging

    corpus = miniature.make_corpus("emodb", tmp_path / "emodb")
    # drop every 'dis' clip of one speaker: the fold testing that speaker has none to test
    for path in (corpus.root / "wav").glob("03*E*.wav"):
        path.unlink()
    data = DataConfig(dataset="emodb", root=str(corpus.root), features=FeatureConfig.small())
    with caplog.at_level(logging.WARNING, logger="strategies.pipeline"):
        run_pipeline(RunConfig(data=data, baseline="mfcc_stats", folds=(0,)), output_dir=tmp_path / "runs",
                     progress=False)
    messages = [r.getMessage() for r in caplog.records]
    assert any("fold 0 (speaker-03): no test utterance of class(es) dis" in m for m in messages), messages
    assert any("fewer training utterances than a batch of 32" in m for m in messages), messages


@pytest.mark.slow
def test_darts_can_search_a_narrower_supernet_than_it_retrains(tmp_path: Path, monkeypatch) -> None:
    import strategies.pipeline as pipeline
    from ser_space import SpaceConfig, build_model, count_parameters, load_architecture
    from strategies.evaluator import TrainConfig
    from strategies.search import SearchConfig

    widths = []
    real_search = pipeline.run_search

    def recording_search(space, *args, **kwargs):
        widths.append(space.channels)
        return real_search(space, *args, **kwargs)

    monkeypatch.setattr(pipeline, "run_search", recording_search)
    config = RunConfig(data=_mini_emodb(tmp_path), space=SpaceConfig.tiny(), folds=(0,),
                       search=SearchConfig(strategy="darts", epochs=1, channels=2),
                       search_train=TrainConfig(batch_size=16), retrain=TrainConfig(max_epochs=1, batch_size=16))
    run_dir, summary = run_pipeline(config, output_dir=tmp_path / "runs", progress=False)
    assert widths == [2]
    arch = load_architecture(run_dir / "fold-0" / "architecture.json")
    assert arch.config.channels == SpaceConfig.tiny().channels == 4
    assert summary["per_fold"][0]["parameters"] == count_parameters(
        build_model(arch.sample, arch.config.replace(affine=True)))
    with pytest.raises(ValueError, match="channels must be an even number"):
        SearchConfig(channels=3)


def test_per_speaker_normalisation_standardises_every_speaker_by_itself(tmp_path: Path) -> None:
    """``normalization="per_speaker"``: each speaker (test speaker included) by its own utterances'
    statistics, in every split, in the retraining's joined split, in a trial's dataset spec, when a
    run is scored again, and for the reference baselines."""
    import dataclasses

    import torch

    from ser_space import SpaceConfig
    from strategies.data.dataset import FeatureDataset
    from strategies.data.features import standardise_per_speaker
    from strategies.evaluate import evaluate_run
    from strategies.evaluator import TrainConfig
    from strategies.pipeline import _with_val, fold_datasets

    plain = _mini_emodb(tmp_path)
    data = dataclasses.replace(plain, features=dataclasses.replace(plain.features, normalization="per_speaker"))
    prepared = prepare_data(data, data_dir=tmp_path / "cache", progress=False)
    fold = prepared.folds[0]
    datasets, normalizer = fold_datasets(prepared, fold)
    assert normalizer.kind == "per_speaker" and normalizer.to_dict()["mean"] is None
    raw = np.load(prepared.features_path)
    speakers = prepared.manifest["speaker"].astype(str).to_numpy()
    for part in ("train", "val", "test"):
        rows = prepared.rows(getattr(fold, part))
        x = datasets[part].tensors[0][:, 0].numpy()
        np.testing.assert_allclose(x, standardise_per_speaker(raw[rows], speakers[rows]), atol=1e-5)
        for speaker in set(speakers[rows]):
            own = x[speakers[rows] == speaker]
            np.testing.assert_allclose(own.mean(axis=(0, 2)), 0.0, atol=1e-4)
        assert FeatureDataset(**datasets[part].spec()).tensors[0].equal(datasets[part].tensors[0])
    joined = _with_val(datasets)
    assert joined.tensors[0].equal(torch.cat([datasets["train"].tensors[0], datasets["val"].tensors[0]]))

    run_dir, _ = run_pipeline(RunConfig(data=data, baseline="cnn", space=SpaceConfig.tiny(), folds=(0,),
                                        retrain=TrainConfig(max_epochs=1, batch_size=16)),
                              output_dir=tmp_path / "runs", data_dir=tmp_path / "cache", progress=False)
    (scored,) = evaluate_run(run_dir, data_dir=tmp_path / "cache")
    assert scored["test_ua"] == pytest.approx(scored["recorded_test_ua"])  # the test speaker by its own statistics

    run_dir, _ = run_pipeline(RunConfig(data=data, baseline="mfcc_stats", folds=(0,)), output_dir=tmp_path / "ref",
                              data_dir=tmp_path / "cache", progress=False)
    assert json.loads((run_dir / "fold-0" / "reference.json").read_text())["normalization"] == "per_speaker"
