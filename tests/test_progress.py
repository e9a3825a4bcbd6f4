"""Progress bars: shown inside ``progress.shown`` on a terminal, never elsewhere; epochs with an ETA."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest

from ser_space import SpaceConfig, build_model
from strategies import progress
from strategies.baselines import hand_designed_architecture
from strategies.data.dataset import FeatureDataset
from strategies.evaluator import TrainConfig
from strategies.training import train_model

from conftest import write_random_features


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _train(tmp_path: Path) -> None:
    path, labels = write_random_features(tmp_path, num=24, n_coefficients=16, frames=32)
    train = FeatureDataset(str(path), list(range(16)), labels[:16])
    val = FeatureDataset(str(path), list(range(16, 24)), labels[16:])
    space = SpaceConfig.tiny().replace(n_mfcc=16, frames=32, num_classes=4)
    model = build_model(hand_designed_architecture("cnn", space), space)
    train_model(model, TrainConfig(max_epochs=3, batch_size=8), train, val, 4, progress="fold-0 retrain")


def test_epoch_bar_counts_epochs_with_an_eta_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress.shown():
        assert progress.enabled()
        _train(tmp_path)
    assert not progress.enabled()
    text = terminal.getvalue()
    assert re.search(r"fold-0 retrain: +100%\|.*3/3 \[.*epoch.*val_ua=", text), text


@pytest.mark.parametrize("inside", [False, True])
def test_no_bar_outside_shown_or_off_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                inside: bool) -> None:
    pipe = io.StringIO()  # not a terminal
    monkeypatch.setattr(sys, "stderr", _Terminal() if not inside else pipe)
    if inside:
        with progress.shown():
            _train(tmp_path)
    else:
        _train(tmp_path)
    assert not re.search(r"fold-0 retrain: +\d+%", sys.stderr.getvalue())  # no bar (a log line may mention it)


def test_shown_false_turns_bars_off_in_nested_blocks() -> None:
    with progress.shown(True):
        with progress.shown(False):
            assert not progress.enabled()
            assert progress.bar(3, "x", "epoch").disable
        assert progress.enabled()


def test_feature_extraction_logs_lines_not_a_bar_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    """The feature bar follows the rule of every bar: on a terminal only; a log file gets one
    line per stage with its duration (issue 32)."""
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "strategies.cli", "data", "prepare", "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr  # no carriage-return bar redraws in a log
    assert any("features: 320 utterances computed in" in line for line in done.stderr.splitlines())
