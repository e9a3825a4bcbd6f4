"""Which speakers steer the architecture during a search (strategies.search.split) and the flags behind it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from strategies.cli import main
from strategies.data.dataset import FeatureDataset
from strategies.search import SearchConfig
from strategies.search.split import ArchitectureSplit, architecture_groups, architecture_split, split_speakers

SPEAKERS = ("a", "b", "c", "d", "e")


def _splits(tmp_path: Path, per_speaker: int = 4) -> tuple[FeatureDataset, FeatureDataset]:
    """A fold's train (speakers a-d) and val (speaker e) splits of random features."""
    rows = len(SPEAKERS) * per_speaker
    path = tmp_path / "features.npy"
    np.save(path, np.random.default_rng(0).normal(size=(rows, 3, 5)).astype(np.float32))
    speakers = [s for s in SPEAKERS for _ in range(per_speaker)]
    labels = [i % 3 for i in range(rows)]
    train_rows = [i for i, s in enumerate(speakers) if s != "e"]
    val_rows = [i for i, s in enumerate(speakers) if s == "e"]

    def split(rows_: list[int]) -> FeatureDataset:
        return FeatureDataset(str(path), rows_, [labels[i] for i in rows_], mean=[0.5] * 3, std=[2.0] * 3,
                              speakers=[speakers[i] for i in rows_], level=[0.1, 0.2, 0.3])

    return split(train_rows), split(val_rows)


def test_impossible_splits_are_one_line_errors_naming_the_flag() -> None:
    with pytest.raises(ValueError, match=r"--arch-speakers 5: fold 3 has 5 non-test speaker\(s\)"):
        split_speakers(list("abcd"), ["e"], 5, False, what="fold 3")
    with pytest.raises(ValueError, match="--rotate-arch-speakers: the fold has 1 non-test speaker"):
        split_speakers([], ["e"], None, True)
    with pytest.raises(ValueError, match="--arch-speakers must be a whole number"):
        SearchConfig(arch_speakers=0)
    with pytest.raises(ValueError, match="--rotate-arch-speakers: random trains one architecture per trial"):
        SearchConfig(strategy="random", rotate_arch_speakers=True)


def test_groups_keep_the_validation_speakers_or_give_every_speaker_its_turn() -> None:
    (group,) = architecture_groups(SPEAKERS, ["e"], 2, rotate=False, seed=0)
    assert "e" in group and len(group) == 2
    assert architecture_groups(SPEAKERS, ["e"], 2, False, seed=0) == [group]  # seeded
    for size in (1, 2):
        groups = architecture_groups(SPEAKERS, ["e"], size, rotate=True, seed=3)
        assert all(len(g) == size for g in groups)
        counts = {s: sum(s in g for g in groups) for s in SPEAKERS}
        assert len(set(counts.values())) == 1 and min(counts.values()) >= 1  # every speaker as often


def test_more_architecture_speakers_move_whole_speakers_from_the_weights(tmp_path: Path) -> None:
    train, val = _splits(tmp_path)
    assert architecture_split(train, val, None, False, seed=0) == (train, val, None)
    weights, arch, rotation = architecture_split(train, val, 2, False, seed=0)
    assert rotation is None and isinstance(weights, FeatureDataset) and isinstance(arch, FeatureDataset)
    assert "e" in set(arch.speakers) and len(set(arch.speakers)) == 2
    assert not set(weights.speakers) & set(arch.speakers)
    assert sorted(weights.rows + arch.rows) == sorted(train.rows + val.rows)
    # normalised as the fold's splits were, and shippable to a trial process as plain values
    union = torch.cat([train.tensors[0], val.tensors[0]])
    by_row = dict(zip(train.rows + val.rows, union))
    assert all(torch.equal(arch.tensors[0][i], by_row[row]) for i, row in enumerate(arch.rows))
    assert FeatureDataset(**arch.spec()).rows == arch.rows and weights.level == [0.1, 0.2, 0.3]


def test_a_rotation_gives_each_epoch_other_architecture_speakers(tmp_path: Path) -> None:
    train, val = _splits(tmp_path)
    weights, arch, rotation = architecture_split(train, val, None, True, seed=1)
    assert isinstance(rotation, ArchitectureSplit)
    assert (len(weights), len(arch)) == (16, 4)  # fixed lengths: Lightning's epoch never changes
    seen = []
    for epoch in range(5):
        rotation.epoch = epoch
        arch_speakers = {rotation.row_speakers[r] for r in rotation.rows("arch")}
        weight_speakers = {rotation.row_speakers[r] for r in rotation.rows("weights")}
        assert len(arch_speakers) == 1 and not arch_speakers & weight_speakers
        assert arch_speakers | weight_speakers == set(SPEAKERS)
        # the views draw this epoch's utterances only: every item of a side from its speakers
        drawn = {int(np.flatnonzero((rotation.x == arch[i][0]).all(dim=(1, 2, 3)))[0]) for i in range(len(arch))}
        assert {rotation.row_speakers[r] for r in drawn} == arch_speakers
        assert len(rotation.arch_exact) == 4
        seen.append(arch_speakers.pop())
    assert sorted(seen) == list(SPEAKERS)  # five epochs: every speaker had its turn


def test_cli_refuses_an_impossible_split_before_a_run_folder(tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs"
    code = main(["search", "--arch-speakers", "9", "--output", str(out), "--quiet", "--no-webui"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "--arch-speakers 9: fold 0 has" in errors[0] and "Traceback" not in err
    code = main(["search", "--strategy", "random", "--rotate-arch-speakers", "--output", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "--rotate-arch-speakers" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.slow
def test_a_darts_search_rotates_its_architecture_speakers(tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs"
    code = main(["search", "--rotate-arch-speakers", "--epochs", "3", "--retrain-max-epochs", "1", "--output", str(out),
                 "--quiet", "--no-webui"])
    assert code == 0, capsys.readouterr().err
    (run,) = list(out.iterdir())
    history = json.loads((run / "fold-0" / "search.json").read_text())["history"]
    assert len(history) == 3 and all(0.0 <= entry["val_ua"] <= 1.0 for entry in history)
    assert json.loads((run / "config.json").read_text())["search"]["rotate_arch_speakers"] is True
