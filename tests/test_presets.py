"""Protocol presets (strategies.data.presets) and the published rows (strategies.reproduce).

Expected speakers and counts are written out from the miniature trees' label tables and the
protocols of ../shared/PAPER.md section 7, not from the presets' code.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

import miniature
from strategies.data.errors import DataError
from strategies.data.features import FeatureConfig
from strategies.data.config import DataConfig
from strategies.data.prepare import prepare_data
from strategies.recipes import RunConfig
from strategies.data.presets import (PROTOCOL_PRESETS, msp_podcast_authors_manifest, preset_data_config)
from strategies.cli import add_reproduce_parser, cmd_reproduce
from strategies.reproduce import ROWS, format_results, row_config, run_reproduce


def _prepare(preset: str, root: Path, cache: Path, fold_seed: int = 0):
    config = preset_data_config(preset, root, features=FeatureConfig.small(), fold_seed=fold_seed)
    return prepare_data(config, data_dir=cache, progress=False)


def _speakers(prepared, utt_ids) -> set[str]:
    speaker = dict(zip(prepared.manifest["utt_id"], prepared.manifest["speaker"], strict=True))
    return {speaker[u] for u in utt_ids}


def _check_disjoint(prepared) -> None:
    for fold in prepared.folds:
        train, val, test = (_speakers(prepared, getattr(fold, p)) for p in ("train", "val", "test"))
        assert not (train & val) and not (train & test) and not (val & test)
        assert val == set(fold.val_speakers) and len(val) == 1
        assert test == set(fold.test_speakers)


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, miniature.Miniature]:
    base = tmp_path_factory.mktemp("presets")
    made = {name: miniature.make_corpus(name, base / name) for name in ("iemocap", "msp-improv", "msp-podcast")}
    made["msp-improv-6"] = miniature.make_msp_improv_sessions(base / "msp-improv-6")
    return made


def test_registry_covers_every_corpus_twice() -> None:
    kinds = Counter((p.dataset, p.kind) for p in PROTOCOL_PRESETS.values())
    assert kinds == {(c, k): 1 for c in ("iemocap", "msp-improv", "msp-podcast") for k in ("authors", "standard")}


def test_iemocap_authors(trees, tmp_path: Path) -> None:
    prepared = _prepare("iemocap-authors", trees["iemocap"].root, tmp_path)
    # improvised turns F neu, M hap, F ang, M sad, F exc, M fru, F xxx, M neu per session:
    # exc is NOT merged into hap, so hap comes from the M turn only
    assert prepared.manifest["emotion"].value_counts().to_dict() == {"neu": 10, "hap": 5, "ang": 5, "sad": 5}
    assert prepared.classes == ("ang", "hap", "neu", "sad")
    assert all("impro" in u for u in prepared.manifest["utt_id"])
    assert [f.test_speakers for f in prepared.folds] == [
        ("1M", "2F"), ("2M", "3F"), ("3M", "4F"), ("4M", "5F"), ("1F", "5M")]
    _check_disjoint(prepared)
    every = {f"{s}{g}" for s in range(1, 6) for g in "FM"}
    for fold in prepared.folds:
        assert _speakers(prepared, fold.train) == every - set(fold.test_speakers) - set(fold.val_speakers)
        # per-fold test size: 1M has hap, sad, neu (3), 2F has neu, ang (2)
        assert len(fold.test) == 5


def test_iemocap_standard(trees, tmp_path: Path) -> None:
    prepared = _prepare("iemocap", trees["iemocap"].root, tmp_path)
    assert prepared.manifest["emotion"].value_counts().to_dict() == trees["iemocap"].counts
    assert [f.test_speakers for f in prepared.folds] == [(f"{s}F", f"{s}M") for s in range(1, 6)]
    _check_disjoint(prepared)


def test_msp_improv_authors(trees, tmp_path: Path) -> None:
    tree = trees["msp-improv-6"]
    prepared = _prepare("msp-improv-authors", tree.root, tmp_path)
    # one R recording per actor and target emotion: 6 sessions x 2 actors per class
    assert prepared.manifest["emotion"].value_counts().to_dict() == {"ang": 12, "hap": 12, "sad": 12, "neu": 12}
    assert tree.extra["counts_authors"] == {"ang": 12, "hap": 12, "sad": 12, "neu": 12}
    assert all("-R-" in u for u in prepared.manifest["utt_id"])
    # the label is the target letter of the file name, whatever the raters said
    target = {"A": "ang", "H": "hap", "S": "sad", "N": "neu"}
    assert all(target[u.split("-")[2][3]] == e for u, e in zip(prepared.manifest["utt_id"],
                                                                prepared.manifest["emotion"], strict=True))
    assert [f.name for f in prepared.folds] == ["session-1", "session-2", "session-3", "session-5"]
    assert [f.test_speakers for f in prepared.folds] == [("F01", "M01"), ("F02", "M02"), ("F03", "M03"),
                                                         ("F05", "M05")]
    _check_disjoint(prepared)
    for fold in prepared.folds:  # sessions 4 and 6 are never tested
        assert {"F04", "M04", "F06", "M06"} <= _speakers(prepared, fold.train) | set(fold.val_speakers)


def test_msp_improv_authors_needs_session_5(trees, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="session"):
        _prepare("msp-improv-authors", trees["msp-improv"].root, tmp_path)  # sessions 1-3 only


def test_msp_improv_standard(trees, tmp_path: Path) -> None:
    prepared = _prepare("msp-improv", trees["msp-improv"].root, tmp_path)
    assert prepared.manifest["emotion"].value_counts().to_dict() == trees["msp-improv"].counts
    assert [f.test_speakers for f in prepared.folds] == [("F01", "M01"), ("F02", "M02"), ("F03", "M03")]
    _check_disjoint(prepared)


def _podcast_rows(root: Path) -> list[dict[str, str]]:
    with (root / "Labels" / "labels_consensus.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_msp_podcast_authors(trees, tmp_path: Path) -> None:
    root = trees["msp-podcast"].root
    prepared = _prepare("msp-podcast-authors", root, tmp_path)
    mapping = {"N": "neu", "H": "hap", "S": "sad", "A": "ang"}
    kept = [r for r in _podcast_rows(root) if r["EmoClass"] in mapping and r["SpkrID"] != "Unknown"
            and r["Split_Set"] in ("Train", "Test1", "Test2")]
    assert prepared.manifest["emotion"].value_counts().to_dict() == dict(Counter(mapping[r["EmoClass"]]
                                                                                 for r in kept))
    assert set(prepared.manifest["split"]) == {"Train", "Test1", "Test2"}  # Development dropped
    assert len(prepared.folds) == 5
    tests = [set(f.test_speakers) for f in prepared.folds]
    assert set().union(*tests) == {str(s) for s in range(100, 106)} and sum(map(len, tests)) == 6
    _check_disjoint(prepared)
    # greedy: the two smallest speakers share the one group with two speakers
    per_speaker = Counter(r["SpkrID"] for r in kept)
    smallest = set(sorted(per_speaker, key=lambda s: (per_speaker[s], s))[:2])
    assert smallest in tests
    # deterministic: the same folds a second time, from scratch
    again = _prepare("msp-podcast-authors", root, tmp_path / "again")
    assert [f.test for f in again.folds] == [f.test for f in prepared.folds]


def test_msp_podcast_authors_cap_is_seeded() -> None:
    manifest = pd.DataFrame({"utt_id": [f"u{i:03d}" for i in range(50)], "speaker": [str(i % 5) for i in range(50)],
                             "split": ["Train", "Test1", "Test2", "Development", ""] * 10, "emotion": "neu"})
    first = msp_podcast_authors_manifest(manifest, seed=3, cap=12)
    assert len(first) == 12 and set(first["split"]) <= {"Train", "Test1", "Test2"}
    assert first.equals(msp_podcast_authors_manifest(manifest, seed=3, cap=12))
    assert not first.equals(msp_podcast_authors_manifest(manifest, seed=4, cap=12))
    assert len(msp_podcast_authors_manifest(manifest, seed=3)) == 30  # under the cap: all Train/Test rows


def test_msp_podcast_standard(trees, tmp_path: Path) -> None:
    prepared = _prepare("msp-podcast", trees["msp-podcast"].root, tmp_path)
    assert prepared.manifest["emotion"].value_counts().to_dict() == trees["msp-podcast"].counts
    (fold,) = prepared.folds
    split = dict(zip(prepared.manifest["utt_id"], prepared.manifest["split"], strict=True))
    assert {split[u] for u in fold.train} == {"Train"} and {split[u] for u in fold.val} == {"Development"}
    assert {split[u] for u in fold.test} == {"Test1"}


def test_preset_is_in_the_key_and_round_trips(tmp_path: Path) -> None:
    authors = preset_data_config("iemocap-authors", tmp_path)
    plain = DataConfig(dataset="iemocap", root=str(tmp_path), options=authors.options, features=authors.features)
    assert authors.key() != plain.key()
    assert "preset" not in plain.to_dict()  # configs without a preset keep their old keys
    again = DataConfig.from_dict(json.loads(json.dumps(authors.to_dict())))
    assert again.preset == "iemocap-authors" and again.key() == authors.key()
    # the preset is checked where it is used, before anything is written
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="for dataset"):
        prepare_data(DataConfig(dataset="emodb", root=str(tmp_path), preset="iemocap-authors"), data_dir=cache)
    with pytest.raises(DataError, match="unknown protocol preset"):
        prepare_data(DataConfig(dataset="emodb", root=str(tmp_path), preset="nope"), data_dir=cache)
    assert not (cache / "prepared").exists() or not any((cache / "prepared").iterdir())


# --- rows ----------------------------------------------------------------------------------------


def test_rows_carry_the_published_figures() -> None:
    figures = {name: (row.published_ua, row.published_wa) for name, row in ROWS.items()}
    assert figures == {"darts-iemocap": (69.62, None), "emodarts-iemocap": (76.55, 78.03),
                       "emodarts-msp-improv": (65.63, None)}


@pytest.mark.parametrize("name", sorted(ROWS))
@pytest.mark.parametrize("protocol", ["authors", "standard"])
def test_row_configs_have_the_papers_settings(name: str, protocol: str, tmp_path: Path) -> None:
    row = ROWS[name]
    config = row_config(name, tmp_path, protocol=protocol)
    config = RunConfig.from_dict(json.loads(json.dumps(config.to_dict())))  # as config.json stores it
    assert config.data.features == FeatureConfig.compat()
    assert config.data.dataset == row.corpus
    assert config.data.preset == (row.authors_preset if protocol == "authors" else None)
    assert config.space.channels == 8 and config.space.num_cells == 4 and config.space.reduction_cells == (1, 2)
    search, weights, retrain = config.search, config.search_train, config.retrain
    assert (search.strategy, search.order, search.epochs, search.arc_learning_rate, search.seed) == \
        ("darts", "second", 50, 3e-4, 2)
    assert (weights.optimizer, weights.learning_rate, weights.learning_rate_min, weights.momentum,
            weights.weight_decay, weights.gradient_clip) == ("sgd", 0.025, 0.001, 0.9, 3e-4, 5.0)
    assert (retrain.learning_rate, retrain.learning_rate_min, retrain.drop_path_prob, retrain.class_weighted,
            retrain.seed) == (0.025, 0.0, 0.2, True, 2)
    assert config.folds is None
    if row.seq_op_set == "all":
        assert len(config.space.seq_ops) == 14


def test_seq_op_set_ablation(tmp_path: Path) -> None:
    for op_set in ("lstm", "lstm_att", "rnn", "rnn_att", "all"):
        space = row_config("emodarts-iemocap", tmp_path, seq_op_set=op_set).space
        assert ("rnn_1" in space.seq_ops) == op_set.startswith(("rnn", "all"))
        assert ("attention" in space.pool_ops) == (op_set != "lstm" and op_set != "rnn")
    with pytest.raises(ValueError, match="unknown sequence op set"):
        row_config("emodarts-iemocap", tmp_path, seq_op_set="gru")


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_reproduce_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["reproduce", *argv])


def test_list_rows(capsys) -> None:
    assert cmd_reproduce(_parse("--list")) == 0
    out = capsys.readouterr().out
    for row in ROWS.values():
        assert row.name in out and f"{row.published_ua:.2f}" in out
    assert "78.03" in out


@pytest.mark.slow
def test_reproduce_end_to_end_tiny(trees, tmp_path: Path, capsys) -> None:
    """``ser-nas reproduce`` at tiny settings on the IEMOCAP miniature: fold 0 of both protocols."""
    args = _parse("emodarts-iemocap", "--root", str(trees["iemocap"].root), "--protocol", "both",
                  "--epochs", "1", "--retrain-epochs", "1", "--space", "tiny", "--features", "small", "--folds", "0",
                  "--order", "first",  # second order segfaults in torch on CPU here (see the report)
                  "--output", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "cache"), "--quiet")
    assert cmd_reproduce(args) == 0
    out = capsys.readouterr().out
    assert "76.55" in out and "78.03" in out
    assert "ours, authors (iemocap-authors)" in out and "ours, standard (iemocap)" in out
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2
    for run in runs:
        config = json.loads((run / "config.json").read_text())
        assert config["search"]["order"] == "first"
        summary = json.loads((run / "summary.json").read_text())
        assert summary["folds"] == 1
        for fold in summary["per_fold"]:
            assert 0.0 <= fold["test_ua"] <= 1.0
    # the authors' run tests the speaker pairs, 5 utterances each
    authors = next(r for r in runs if json.loads((r / "config.json").read_text())["data"].get("preset"))
    metrics = json.loads((authors / "fold-0" / "metrics.json").read_text())
    assert metrics["test_speakers"] == ["1M", "2F"] and metrics["test_utterances"] == 5


@pytest.mark.slow
def test_run_reproduce_returns_ours_beside_published(trees, tmp_path: Path) -> None:
    from ser_space import SpaceConfig

    result = run_reproduce("darts-iemocap", trees["iemocap"].root, tmp_path / "runs",
                           {"epochs": 1, "retrain_epochs": 1, "space": SpaceConfig.tiny(), "order": "first",
                            "features": FeatureConfig.small(), "folds": (4,), "data_dir": tmp_path / "cache",
                            "progress": False})
    assert result["row"]["published_ua"] == 69.62
    (run,) = result["runs"]
    assert run["protocol"] == "authors" and run["folds"] == 1 and 0.0 <= run["ua"] <= 100.0
    assert run["per_fold"][0]["fold"] == 4
    assert "69.62" in format_results(result)
    with pytest.raises(ValueError, match="unknown override"):
        run_reproduce("darts-iemocap", trees["iemocap"].root, tmp_path, {"epoch": 1})
