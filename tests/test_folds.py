"""Speaker-independent folds: disjointness, coverage, determinism, protocols and the file format."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import miniature
import pandas as pd
import pytest

from strategies.data.corpora import CORPORA, load_manifest
from strategies.data.errors import DataError
from strategies.data.folds import (
    IEMOCAP_AUTHORS_TEST_GROUPS,
    PROTOCOLS,
    Fold,
    default_protocol,
    folds_to_frame,
    load_folds,
    make_folds,
    save_folds,
)


def _manifest(speakers: int = 8, per_speaker: int = 6, sessions: int = 0) -> pd.DataFrame:
    """A manifest of ``speakers`` speakers with a varying number of utterances each."""
    classes = ("neu", "hap", "ang", "sad")
    rows = []
    for s in range(speakers):
        for u in range(per_speaker + s % 3):
            rows.append({
                "utt_id": f"s{s:02d}_{u:02d}", "path": f"/x/s{s:02d}_{u:02d}.wav",
                "speaker": f"s{s:02d}", "gender": "FM"[s % 2],
                "session": str(s // 2 + 1) if sessions else "",
                "emotion": classes[u % 4], "duration": 1.0,
            })
    return pd.DataFrame(rows)


def _speakers(manifest: pd.DataFrame, ids: tuple[str, ...]) -> set[str]:
    return set(manifest.set_index("utt_id").loc[list(ids), "speaker"])


def _assert_speaker_independent(manifest: pd.DataFrame, folds: list[Fold]) -> None:
    for fold in folds:
        train = _speakers(manifest, fold.train)
        val = _speakers(manifest, fold.val)
        test = _speakers(manifest, fold.test)
        assert not train & val and not train & test and not val & test, fold.name
        assert test == set(fold.test_speakers) and val == set(fold.val_speakers)
        assert not set(fold.train) & set(fold.val) and not set(fold.train) & set(fold.test)


@pytest.mark.parametrize("protocol,options", [
    ("loso", {}), ("kfold-speaker", {"k": 4}), ("loo-session", {}),
    ("speaker-groups", {"test_groups": [("s00", "s01"), ("s02",), ("s05", "s07")]}),
])
def test_folds_are_speaker_disjoint(protocol: str, options: dict[str, object]) -> None:
    manifest = _manifest(sessions=1)
    folds = make_folds(manifest, protocol, **options)
    _assert_speaker_independent(manifest, folds)
    assert [f.index for f in folds] == list(range(len(folds)))


def test_loso_tests_every_speaker_exactly_once_and_covers_every_utterance() -> None:
    manifest = _manifest()
    folds = make_folds(manifest, "loso", val_speakers=2)
    assert [f.test_speakers for f in folds] == [(f"s{s:02d}",) for s in range(8)]
    tested = [u for f in folds for u in f.test]
    assert sorted(tested) == sorted(manifest["utt_id"])
    for fold in folds:
        assert len(fold.val_speakers) == 2
        assert len(fold.train) + len(fold.val) + len(fold.test) == len(manifest)


def test_kfold_speaker_groups_partition_speakers_with_balanced_sizes() -> None:
    manifest = _manifest(speakers=11)
    folds = make_folds(manifest, "kfold-speaker", k=3, seed=4)
    groups = [set(f.test_speakers) for f in folds]
    assert set().union(*groups) == set(manifest["speaker"])
    assert sum(len(g) for g in groups) == 11
    sizes = [len(f.test) for f in folds]
    assert max(sizes) - min(sizes) <= manifest["speaker"].value_counts().max()
    with pytest.raises(DataError, match="k=12 needs at least 12 speakers"):
        make_folds(manifest, "kfold-speaker", k=12)


def test_same_seed_same_folds_other_seed_other_validation_speakers() -> None:
    manifest = _manifest(speakers=10)
    assert make_folds(manifest, "loso", seed=3) == make_folds(manifest, "loso", seed=3)
    val_0 = [f.val_speakers for f in make_folds(manifest, "loso", seed=0)]
    val_1 = [f.val_speakers for f in make_folds(manifest, "loso", seed=1)]
    assert val_0 != val_1
    groups_0 = [f.test_speakers for f in make_folds(manifest, "kfold-speaker", k=5, seed=0)]
    groups_1 = [f.test_speakers for f in make_folds(manifest, "kfold-speaker", k=5, seed=1)]
    assert groups_0 != groups_1


def test_row_order_does_not_change_folds() -> None:
    manifest = _manifest()
    shuffled = manifest.sample(frac=1.0, random_state=7)
    assert make_folds(manifest, "loso", seed=2) == make_folds(shuffled, "loso", seed=2)


def test_val_speakers_fraction_and_zero() -> None:
    manifest = _manifest(speakers=9)
    folds = make_folds(manifest, "loso", val_speakers=0.25)
    assert all(len(f.val_speakers) == 2 for f in folds)  # round(0.25 * 8)
    assert all(f.val == () for f in make_folds(manifest, "loso", val_speakers=0))
    with pytest.raises(DataError, match="fraction must be in"):
        make_folds(manifest, "loso", val_speakers=1.5)


def test_too_few_speakers_or_sessions() -> None:
    one = _manifest(speakers=1)
    with pytest.raises(DataError, match="at least 2 speakers"):
        make_folds(one, "loso")
    with pytest.raises(DataError, match="needs a session column with values"):
        make_folds(_manifest(), "loo-session")
    with pytest.raises(DataError, match="at least 2 sessions"):
        make_folds(_manifest(speakers=2, sessions=1), "loo-session")


def test_bad_arguments() -> None:
    manifest = _manifest()
    with pytest.raises(DataError, match="unknown fold protocol 'random'"):
        make_folds(manifest, "random")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="k applies to protocol kfold-speaker only"):
        make_folds(manifest, "loso", k=3)
    with pytest.raises(DataError, match="names speakers not in the manifest: zz"):
        make_folds(manifest, "speaker-groups", test_groups=[("s00",), ("zz",)])
    with pytest.raises(DataError, match="seed must be"):
        make_folds(manifest, "loso", seed=-1)


def test_unknown_speakers_are_left_out(caplog: pytest.LogCaptureFixture) -> None:
    manifest = _manifest(speakers=4)
    manifest.loc[manifest["speaker"] == "s03", "speaker"] = "unknown"
    with caplog.at_level(logging.WARNING):
        folds = make_folds(manifest, "loso")
    assert [f.test_speakers for f in folds] == [("s00",), ("s01",), ("s02",)]
    unknown_ids = set(manifest.loc[manifest["speaker"] == "unknown", "utt_id"])
    assert all(not unknown_ids & set(f.train + f.val + f.test) for f in folds)
    assert "unknown speaker are left out" in caplog.text


def test_missing_class_in_training_is_warned(caplog: pytest.LogCaptureFixture) -> None:
    manifest = _manifest(speakers=3)
    manifest.loc[manifest["speaker"] != "s00", "emotion"] = "neu"
    manifest.loc[(manifest["speaker"] == "s00") & (manifest["emotion"] == "neu"), "emotion"] = "sad"
    with caplog.at_level(logging.WARNING):
        make_folds(manifest, "loso", val_speakers=0)
    assert "fold speaker-s00: class(es) ang, hap, sad absent from training" in caplog.text


# --- on miniature corpora ----------------------------------------------------------------------


def test_iemocap_leave_one_session_out(tmp_path: Path) -> None:
    mini = miniature.make_iemocap(tmp_path)
    manifest = load_manifest("iemocap", mini.root)
    folds = make_folds(manifest, "loo-session", seed=0)
    assert [f.test_sessions for f in folds] == [(s,) for s in ("1", "2", "3", "4", "5")]
    assert [f.test_speakers for f in folds] == [(f"{s}F", f"{s}M") for s in range(1, 6)]
    _assert_speaker_independent(manifest, folds)
    assert all(len(f.test) == 11 for f in folds)


def test_iemocap_authors_speaker_pairs(tmp_path: Path) -> None:
    mini = miniature.make_iemocap(tmp_path)
    manifest = load_manifest("iemocap", mini.root, improvised_only=True, merge_excited=False)
    folds = make_folds(manifest, "speaker-groups", test_groups=IEMOCAP_AUTHORS_TEST_GROUPS)
    assert [set(f.test_speakers) for f in folds] == [set(g) for g in IEMOCAP_AUTHORS_TEST_GROUPS]
    _assert_speaker_independent(manifest, folds)


def test_msp_podcast_official_split(tmp_path: Path) -> None:
    mini = miniature.make_msp_podcast(tmp_path)
    manifest = load_manifest("msp-podcast", mini.root)
    (fold,) = make_folds(manifest, "official")
    split = manifest.set_index("utt_id")["split"]
    assert set(split.loc[list(fold.train)]) == {"Train"}
    assert set(split.loc[list(fold.val)]) == {"Development"}
    assert set(split.loc[list(fold.test)]) == {"Test1"}
    assert len(fold.train) == mini.extra["splits"]["Train"]
    assert "unknown" not in fold.test_speakers
    (fold2,) = make_folds(manifest, "official", test_split="Test2")
    assert len(fold2.test) == mini.extra["splits"]["Test2"]
    with pytest.raises(DataError, match="no utterances with split 'Test3'"):
        make_folds(manifest, "official", test_split="Test3")
    with pytest.raises(DataError, match="needs a split column"):
        make_folds(manifest.drop(columns="split"), "official")


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_default_protocol_runs_on_every_miniature(name: str, tmp_path: Path) -> None:
    mini = miniature.make_corpus(name, tmp_path)
    manifest = load_manifest(name, mini.root, **mini.options)
    plan = default_protocol(name)
    assert plan.protocol in PROTOCOLS
    folds = make_folds(manifest, plan.protocol, k=plan.k)
    assert folds and all(f.train and f.test for f in folds)
    if plan.protocol != "official":
        _assert_speaker_independent(manifest, folds)


def test_default_protocols() -> None:
    assert {n: (default_protocol(n).protocol, default_protocol(n).k) for n in CORPORA} == {
        "iemocap": ("loo-session", None), "msp-improv": ("loo-session", None),
        "msp-podcast": ("official", None), "ravdess": ("kfold-speaker", 5),
        "crema-d": ("kfold-speaker", 5), "emodb": ("loso", None), "folder": ("loso", None),
        "csv": ("loso", None), "synthetic": ("loso", None),
    }
    with pytest.raises(DataError, match="unknown corpus"):
        default_protocol("nope")


# --- tables and files --------------------------------------------------------------------------


def test_save_and_load_round_trip_atomically(tmp_path: Path) -> None:
    manifest = _manifest()
    folds = make_folds(manifest, "kfold-speaker", k=4, seed=1)
    path = save_folds(folds, tmp_path / "run" / "folds.json", metadata={"corpus": "x", "seed": 1})
    assert load_folds(path, manifest) == folds
    assert json.loads(path.read_text())["metadata"] == {"corpus": "x", "seed": 1}
    assert [p.name for p in path.parent.iterdir()] == ["folds.json"]  # no temporary left
    save_folds(folds[:2], path)  # overwrite in place
    assert len(load_folds(path)) == 2


def test_load_folds_rejects_bad_files(tmp_path: Path) -> None:
    manifest = _manifest()
    path = save_folds(make_folds(manifest, "loso"), tmp_path / "f.json")
    with pytest.raises(DataError, match="utterance ids not in the manifest"):
        load_folds(path, manifest.iloc[5:])
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="not a JSON fold file"):
        load_folds(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"format": "something"}')
    with pytest.raises(DataError, match="not a fold file"):
        load_folds(tmp_path / "other.json")
    with pytest.raises(DataError, match="does not exist"):
        load_folds(tmp_path / "missing.json")


def test_folds_to_frame_and_fold_frames() -> None:
    manifest = _manifest(speakers=4)
    folds = make_folds(manifest, "loso")
    table = folds_to_frame(folds)
    assert list(table.columns) == ["fold", "name", "part", "utt_id"]
    assert len(table) == len(folds) * len(manifest)
    assert set(table["part"]) == {"train", "val", "test"}
    train, val, test = folds[0].frames(manifest)
    assert set(test["speaker"]) == {"s00"} and len(train) + len(val) + len(test) == len(manifest)
