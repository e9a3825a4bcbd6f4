"""The ``ser-nas`` command end to end: data prepare on every corpus, search, retrain, evaluate, predict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

import miniature
from conftest import EMODB_DEV
from strategies.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("corpus", sorted(miniature.MAKERS))
def test_data_prepare_on_every_miniature_corpus(corpus: str, tmp_path: Path, capsys) -> None:
    mini = miniature.make_corpus(corpus, tmp_path / corpus)
    args = ["data", "prepare", "--dataset", corpus, "--root", str(mini.root), "--features", "small",
            "--data-dir", str(tmp_path / "cache"), "--quiet"]
    for key, value in mini.options.items():
        args += ["--option", f"{key}={value}"]
    if corpus in ("ravdess", "crema-d"):
        args += ["--k", "2"]  # the miniatures have a handful of actors
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    assert f"dataset {corpus}: {mini.total} clips" in out
    total_line = [line for line in out.splitlines() if line.startswith("total")][0]
    assert int(total_line.split()[-1]) == mini.total
    for emotion, count in mini.counts.items():
        if count:
            assert emotion in out


def test_data_prepare_synthetic_default(capsys) -> None:
    code, out, err = run_cli(capsys, "data", "prepare", "--quiet")
    assert code == 0, err
    assert "dataset synthetic: 320 clips, 8 speakers, classes ang, hap, neu, sad" in out
    assert "folds: 8 (loso)" in out


@pytest.mark.skipif(not EMODB_DEV.is_dir(), reason="../shared/data/emodb-dev (real EmoDB subset) is absent")
def test_data_prepare_emodb_dev(tmp_path: Path, capsys) -> None:
    code, out, err = run_cli(capsys, "data", "prepare", "--dataset", "emodb", "--root", str(EMODB_DEV),
                             "--features", "small", "--data-dir", str(tmp_path), "--quiet")
    assert code == 0, err
    assert "dataset emodb: 304 clips, 6 speakers" in out
    assert "folds: 6 (loso)" in out


def test_missing_root_is_one_line_error(tmp_path: Path, capsys) -> None:
    code, out, err = run_cli(capsys, "data", "prepare", "--dataset", "emodb", "--root", str(tmp_path / "nope"),
                             "--data-dir", str(tmp_path / "cache"))
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "nope" in lines[0]
    assert "Traceback" not in err


def test_dataset_needs_root(capsys) -> None:
    code, _, err = run_cli(capsys, "data", "prepare", "--dataset", "iemocap")
    assert code == 2
    assert "needs --root" in err


def test_unknown_strategy_is_one_line_error(capsys) -> None:
    code, _, err = run_cli(capsys, "search", "--strategy", "nope")
    assert code == 2
    assert "unknown strategy 'nope'" in err


def test_missing_run_folder_errors(tmp_path: Path, capsys) -> None:
    for argv in (("evaluate", str(tmp_path / "missing")), ("predict", str(tmp_path / "missing"), str(tmp_path)),
                 ("search", "--resume", str(tmp_path))):
        code, _, err = run_cli(capsys, *argv)
        assert code == 2, argv
        assert err.strip().startswith("error:") and "Traceback" not in err


def test_bad_input_leaves_no_run_folder(tmp_path: Path, capsys) -> None:
    """An unknown fold, or an architecture file that does not fit, fails before anything is written."""
    out = tmp_path / "runs"
    code, _, err = run_cli(capsys, "search", "--baseline", "cnn", "--folds", "99", "--output", str(out), "--quiet")
    assert code == 2 and "99" in err and "Traceback" not in err
    bad = tmp_path / "arch.json"
    bad.write_text('{"format": "ser-nas-architecture", "version": 1, "config": {}, "sample": {}}')
    code, _, err = run_cli(capsys, "retrain", str(bad), "--output", str(out), "--quiet")
    assert code == 2 and "arch.json" in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())


def test_written_files_follow_the_umask(tmp_path: Path) -> None:
    """Files written atomically get the mode a plain open() gives, so colleagues can read them."""
    import os

    from ser_space.io import write_atomically

    for umask, mode in ((0o022, 0o644), (0o002, 0o664), (0o077, 0o600)):
        old = os.umask(umask)
        try:
            path = write_atomically(tmp_path / f"file-{umask:o}", lambda h: h.write(b"x"))
        finally:
            os.umask(old)
        assert path.stat().st_mode & 0o777 == mode, (oct(umask), oct(path.stat().st_mode))


def test_cache_locks_leave_no_lock_files(tmp_path: Path) -> None:
    import threading

    from strategies.data.features import locked

    lock = tmp_path / "cache" / "key.lock"
    inside: list[int] = []
    overlap = []

    def work(n: int) -> None:
        for _ in range(20):
            with locked(lock):
                inside.append(n)
                if len(inside) > 1:
                    overlap.append(tuple(inside))
                inside.remove(n)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not overlap  # never two holders at once
    assert not lock.exists()  # and nothing left behind


@pytest.fixture(scope="module")
def baseline_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short baseline run (no search): retrain 2 epochs, test once."""
    out = tmp_path_factory.mktemp("runs")
    code = main(["search", "--baseline", "cnn_lstm", "--retrain-max-epochs", "2", "--output", str(out), "--quiet"])
    assert code == 0
    (run,) = list(out.iterdir())
    return run


@pytest.mark.slow
def test_run_folder_contents(baseline_run: Path) -> None:
    for name in ("config.json", "versions.json", "summary.json", "results.csv"):
        assert (baseline_run / name).is_file(), name
    fold = baseline_run / "fold-0"
    for name in ("architecture.json", "cells.png", "model.pt", "metrics.json", "confusion.png", "retrain.csv",
                 "retrain.png"):
        assert (fold / name).is_file(), name
    metrics = json.loads((fold / "metrics.json").read_text())
    assert 0.0 <= metrics["test_ua"] <= 1.0 and 0.0 <= metrics["test_wa"] <= 1.0
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["test_utterances"] == 40
    versions = json.loads((baseline_run / "versions.json").read_text())
    assert versions["nni"] == "3.0" and versions["torch"]
    assert len(pd.read_csv(fold / "retrain.csv")) == 2
    assert not list(baseline_run.glob(".fold-*"))  # no partial folder left


@pytest.mark.slow
def test_evaluate_reproduces_recorded_metrics(baseline_run: Path, capsys) -> None:
    code, out, err = run_cli(capsys, "evaluate", str(baseline_run))
    assert code == 0, err
    recorded = json.loads((baseline_run / "fold-0" / "metrics.json").read_text())["test_ua"]
    assert f"test UA {recorded:.4f}" in out


@pytest.mark.slow
def test_predict_csv_and_bad_audio(baseline_run: Path, tmp_path: Path, capsys) -> None:
    from strategies.data.synthetic import load_synthetic_manifest

    wavs = load_synthetic_manifest()["path"].tolist()[:3]
    out_csv = tmp_path / "pred.csv"
    code, out, err = run_cli(capsys, "predict", str(baseline_run), *wavs, "--output", str(out_csv))
    assert code == 0, err
    table = pd.read_csv(out_csv)
    assert len(table) == 3 and set(table["emotion"]) <= {"ang", "hap", "neu", "sad"}
    assert (table["status"] == "ok").all()
    probs = table[[c for c in table.columns if c.startswith("p_")]].sum(axis=1)
    assert ((probs - 1).abs() < 1e-5).all()

    bad = tmp_path / "broken.wav"
    bad.write_text("this is not audio")
    code, out, err = run_cli(capsys, "predict", str(baseline_run), str(bad), *wavs)
    # the bad file is named on stderr; the good ones are still answered; exit 1 says some failed
    assert code == 1 and "broken.wav" in err and "Traceback" not in err
    assert out.count(" ok ") == 3


@pytest.mark.slow
def test_retrain_rejects_architecture_of_another_space(baseline_run: Path, tmp_path: Path, capsys) -> None:
    arch = baseline_run / "fold-0" / "architecture.json"
    code, _, err = run_cli(capsys, "retrain", str(arch), "--space", "small", "--output", str(tmp_path))
    assert code == 2
    assert "architecture.json" in err and "Traceback" not in err


@pytest.mark.slow
def test_retrain_a_run_folder_retrains_each_folds_architecture(baseline_run: Path, tmp_path: Path, capsys) -> None:
    """`ser-nas retrain RUN` retrains, on every fold, the architecture that run found on the same fold."""
    source = json.loads((baseline_run / "fold-0" / "architecture.json").read_text())
    out = tmp_path / "runs"
    code, _, err = run_cli(capsys, "retrain", str(baseline_run), "--retrain-max-epochs", "1", "--output", str(out),
                           "--quiet")
    assert code == 0, err
    (run,) = list(out.iterdir())
    retrained = json.loads((run / "fold-0" / "architecture.json").read_text())
    assert retrained["architecture"] == source["architecture"]
    assert retrained["meta"]["source"] == str(baseline_run / "fold-0" / "architecture.json")
    assert json.loads((run / "config.json").read_text())["architecture"] == str(baseline_run)

    # the same cells at twice the width (a width field may differ from the run's, no choice may)
    channels = source["space_config"]["channels"]
    wide_out = tmp_path / "wide"
    code, _, err = run_cli(capsys, "retrain", str(baseline_run), "--space-channels", str(2 * channels),
                           "--retrain-max-epochs", "1", "--output", str(wide_out), "--quiet")
    assert code == 0, err
    (wide,) = list(wide_out.iterdir())
    resized = json.loads((wide / "fold-0" / "architecture.json").read_text())
    assert resized["architecture"] == source["architecture"]
    assert resized["space_config"]["channels"] == 2 * channels
    parameters = [json.loads((folder / "fold-0" / "metrics.json").read_text())["parameters"] for folder in (run, wide)]
    assert parameters[1] > parameters[0]

    # a fold the run has not finished, or a run whose fold tested other speakers (its search may
    # have seen this fold's test speakers): one line, nothing written
    empty = tmp_path / "nothing"
    code, _, err = run_cli(capsys, "retrain", str(baseline_run), "--folds", "0,1", "--output", str(empty), "--quiet")
    assert code == 2 and "fold 1 has no finished architecture" in err and "Traceback" not in err
    other = tmp_path / "other-split"
    shutil.copytree(baseline_run, other)
    metrics = json.loads((other / "fold-0" / "metrics.json").read_text())
    metrics["test_speakers"] = ["somebody-else"]
    (other / "fold-0" / "metrics.json").write_text(json.dumps(metrics))
    code, _, err = run_cli(capsys, "retrain", str(other), "--output", str(empty), "--quiet")
    assert code == 2 and "somebody-else" in err and "Traceback" not in err
    assert not empty.exists() or not any(empty.iterdir())


@pytest.mark.slow
def test_resume_skips_finished_folds(baseline_run: Path, capsys) -> None:
    before = (baseline_run / "fold-0" / "metrics.json").stat().st_mtime_ns
    code, out, err = run_cli(capsys, "search", "--resume", str(baseline_run))
    assert code == 0, err
    assert (baseline_run / "fold-0" / "metrics.json").stat().st_mtime_ns == before
    assert "baseline-cnn_lstm on synthetic" in out


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["darts", "enas", "random"])
def test_search_command_prints_test_figures(strategy: str, tmp_path: Path, capsys) -> None:
    code, out, err = run_cli(capsys, "search", "--strategy", strategy, "--epochs", "1", "--trials", "2",
                             "--trial-epochs", "1", "--retrain-max-epochs", "1", "--output", str(tmp_path),
                             "--quiet", *(["--no-webui"] if "--no-webui" in _search_flags() else []))
    assert code == 0, err
    assert f"{strategy} on synthetic (1 fold(s)): test UA" in out


def _search_flags() -> str:
    from strategies.cli import build_parser

    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices["search"]  # type: ignore[union-attr]
    return sub.format_help()


@pytest.mark.slow
@pytest.mark.parametrize("flags", [(), ("--strategy", "random", "--trials", "4", "--trial-epochs", "20")],
                         ids=["oneshot-webui", "multi-trial"])
def test_sigterm_stops_the_experiment_and_its_processes(tmp_path: Path, flags: tuple[str, ...]) -> None:
    """`kill PID` (a scheduler's time limit, `timeout`) stops the search as Ctrl-C does: the NNI
    manager and trial processes end with it, the run folder is named for --resume, exit 128 + 15."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    env = dict(os.environ, OMP_NUM_THREADS="1")
    search = subprocess.Popen([sys.executable, "-m", "strategies.cli", "search", "--epochs", "30", "--output",
                               str(tmp_path), "--quiet", *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env)
    process = psutil.Process(search.pid)
    deadline = time.monotonic() + 180
    children: list[psutil.Process] = []
    while time.monotonic() < deadline:  # until the NNI manager and a trial run
        children = process.children(recursive=True)
        if any(c.name() == "node" for c in children) and any("python" in c.name() for c in children):
            break
        time.sleep(0.5)
    assert any(c.name() == "node" for c in children), "no NNI manager started"
    time.sleep(3)
    children = process.children(recursive=True)
    search.send_signal(signal.SIGTERM)
    _, err = search.communicate(timeout=120)
    assert search.returncode == 128 + signal.SIGTERM, err
    time.sleep(1)
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not alive, [(c.pid, c.name()) for c in alive]
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert f"interrupted (SIGTERM): finished folds are kept in {run}" in err
    assert f"ser-nas search --resume {run}" in err and "Traceback" not in err


def test_a_bad_flag_is_one_line_naming_the_help(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--dataset", "nope"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.count("\n") == 1 and "invalid choice: 'nope'" in err and "ser-nas search --help" in err
    assert "usage:" not in err


def test_search_help_shows_each_recipes_defaults(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "supernet training epochs (default: 10)" in out  # the same in both recipes
    assert "weight optimizer (adamw: decoupled weight decay) (default: synthetic adam; real speech adamw)" in out


def test_one_seed_seeds_the_whole_run(tmp_path: Path, capsys) -> None:
    # --seed seeds the search and both trainings (a baseline's training too): one seed twice trains
    # identically, two seeds differently; --retrain-seed still overrides the retraining's
    from strategies.runs import load_model_bundle

    runs = {}
    for name, flags in (("a", ("--seed", "0")), ("b", ("--seed", "0")), ("c", ("--seed", "1")),
                        ("d", ("--seed", "1", "--retrain-seed", "0"))):
        out = tmp_path / name
        code, _, err = run_cli(capsys, "search", "--baseline", "cnn", "--retrain-max-epochs", "1", *flags,
                               "--output", str(out), "--quiet")
        assert code == 0, err
        (runs[name],) = list(out.iterdir())
    seeds = {name: {part: json.loads((run / "config.json").read_text())[part]["seed"]
                    for part in ("search", "search_train", "retrain")} for name, run in runs.items()}
    assert seeds["a"] == {"search": 0, "search_train": 0, "retrain": 0}
    assert seeds["c"] == {"search": 1, "search_train": 1, "retrain": 1}
    assert seeds["d"] == {"search": 1, "search_train": 1, "retrain": 0}
    weights = {name: load_model_bundle(run / "fold-0" / "model.pt")["state_dict"] for name, run in runs.items()}

    def same(x: str, y: str) -> bool:
        return all(weights[x][key].equal(weights[y][key]) for key in weights[x])

    assert same("a", "b") and same("a", "d")  # the retraining follows its seed, nothing else
    assert not same("a", "c")


def test_retrain_on_the_validation_speakers_too(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    # --retrain-train-on-val: the retraining sees the training and the validation speakers'
    # utterances (never the test fold's), keeps the last epoch, and says so in the metrics
    import strategies.pipeline as pipeline

    seen = []
    original = pipeline.train_model
    monkeypatch.setattr(pipeline, "train_model", lambda model, config, train, val, *a, **k: (
        seen.append((config.train_on_val, list(train.rows), list(val.rows))) or original(model, config, train, val,
                                                                                          *a, **k)))
    out = tmp_path / "runs"
    code, _, err = run_cli(capsys, "search", "--baseline", "cnn", "--retrain-max-epochs", "1", "--retrain-train-on-val",
                           "--retrain-model-selection", "last", "--output", str(out), "--quiet")
    assert code == 0, err
    ((on, train_rows, val_rows),) = seen
    assert on and set(val_rows) <= set(train_rows) and len(train_rows) > len(val_rows)
    (run,) = list(out.iterdir())
    metrics = json.loads((run / "fold-0" / "metrics.json").read_text())
    assert metrics["val_in_training"] is True and metrics["selected_epoch"] == 0
    assert json.loads((run / "config.json").read_text())["retrain"]["train_on_val"] is True
    # choosing the epoch on speakers it trains on is refused in one line
    code, _, err = run_cli(capsys, "search", "--baseline", "cnn", "--retrain-train-on-val",
                           "--retrain-model-selection", "best", "--output", str(out), "--quiet")
    assert code == 2 and "train_on_val needs model_selection 'last'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_retrain_keeps_averaged_weights_with_their_own_validation_figures(tmp_path: Path, capsys,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # --retrain-average-last: metrics.json gives the validation figures of the averaged network
    # that is saved and tested, not those of the last epoch
    from strategies import pipeline

    scored = []
    original = pipeline.evaluate_model

    def evaluate(model, loader, n):
        scored.append((len(loader.dataset), original(model, loader, n)))
        return scored[-1][1]

    monkeypatch.setattr(pipeline, "evaluate_model", evaluate)
    out = tmp_path / "runs"
    code, _, err = run_cli(capsys, "search", "--baseline", "cnn", "--retrain-max-epochs", "2", "--retrain-model-selection",
                           "last", "--retrain-average-last", "0.5", "--output", str(out), "--quiet")
    assert code == 0, err
    (run,) = list(out.iterdir())
    metrics = json.loads((run / "fold-0" / "metrics.json").read_text())
    assert json.loads((run / "config.json").read_text())["retrain"]["average_last"] == 0.5
    (_, test), (n_val, val) = scored  # the test fold once, then the validation speakers
    assert metrics["test_ua"] == test["ua"] and n_val == len(metrics["val_speakers"]) * 40
    assert metrics["val_ua"] == val["ua"] and metrics["val_wa"] == val["wa"]
    code, _, err = run_cli(capsys, "search", "--baseline", "cnn", "--retrain-average-last", "0.5",
                           "--retrain-model-selection", "best", "--output", str(out), "--quiet")
    assert code == 2 and "average_last needs model_selection 'last'" in err and len(err.strip().splitlines()) == 1
