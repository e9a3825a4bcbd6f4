"""``strategies.compare``: equal budgets, the report recomputed from run folders, resume.

Fast tests check the config, the budgets and the report on hand-written run folders; the
slow tests run the ``compare`` command at CI-tiny settings on the synthetic corpus (DARTS,
Random and the CNN-LSTM baseline, 1 seed, 1 fold) and resume it after deleting one run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import miniature
from strategies import compare
from strategies.cli import add_compare_parser, cmd_compare, compare_config_from_args
from strategies.compare import CompareConfig, build_report, default_references
from strategies.recipes import REAL_SPEECH
from strategies.runs import read_json, write_json
from strategies.search import equal_budget

METRIC_KEYS = ("test_ua", "test_wa", "test_f1", "parameters", "search_seconds", "retrain_seconds")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ser-nas")
    add_compare_parser(parser.add_subparsers(dest="command", required=True))
    return parser


# ----------------------------------------------------------------------------- fast

def test_seeds_count_or_tuple_and_checks() -> None:
    assert CompareConfig(seeds=3).seeds == (0, 1, 2)
    assert CompareConfig(seeds=(5, 7)).seeds == (5, 7)
    with pytest.raises(ValueError, match="count"):
        CompareConfig(seeds=0)
    with pytest.raises(ValueError, match="distinct"):
        CompareConfig(seeds=(1, 1))
    with pytest.raises(ValueError, match="unknown strategy"):
        CompareConfig(strategies=("darts", "nope"))
    with pytest.raises(ValueError, match="unknown baseline"):
        CompareConfig(baseline="resnet")


def test_equal_budgets_and_seeds_per_job() -> None:
    config = CompareConfig(strategies=("darts", "enas", "random"), seeds=(3, 4), epochs=6, trial_epochs=2)
    for name in ("darts", "enas"):
        search = config.run_config(name, 4).search
        assert (search.strategy, search.epochs, search.seed) == (name, 6, 4)
    random = config.run_config("random", 3)
    assert random.search == equal_budget(config.search.replace(strategy="random", epochs=6, seed=3), trial_epochs=2)
    assert random.search.trials * random.search.trial_epochs == 2 * 6
    assert random.retrain.seed == 3 and random.search_train.seed == 3
    # every job retrains with the same config apart from the seed
    retrains = {config.run_config(m, 3).retrain for m in config.methods}
    assert len(retrains) == 1
    baseline = config.run_config("baseline-cnn_lstm", 4)
    assert baseline.baseline == "cnn_lstm" and baseline.method == "baseline-cnn_lstm" and baseline.retrain.seed == 4
    # seeds never change the folds: the data config is shared
    assert {config.run_config(m, s).data for m in config.methods for s in config.seeds} == {config.data}


def test_config_round_trip() -> None:
    config = CompareConfig(strategies=("darts", "random"), seeds=2, folds=None, baseline=None, epochs=2)
    again = CompareConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config


def test_cli_flags_build_the_config() -> None:
    args = _parser().parse_args(["compare", "--strategies", "darts,random", "--seeds", "2", "--folds", "0,1",
                                 "--epochs", "3", "--trial-epochs", "1", "--baseline", "none",
                                 "--references", "none", "--retrain-max-epochs", "4"])
    config = compare_config_from_args(args)
    assert config.strategies == ("darts", "random")
    assert config.seeds == (0, 1)
    assert config.folds == (0, 1)
    assert config.baseline is None and config.methods == ("darts", "random")
    assert (config.epochs, config.trial_epochs, config.retrain.max_epochs) == (3, 1, 4)
    args = _parser().parse_args(["compare", "--seeds", "4,9", "--folds", "all"])
    config = compare_config_from_args(args)
    assert config.seeds == (4, 9) and config.folds is None and config.baseline == "cnn_lstm"
    assert config.references == default_references() and config.references[0] == "mfcc_stats"
    assert config.methods[-len(config.references):] == tuple(f"baseline-{r}" for r in config.references)
    args = _parser().parse_args(["compare", "--references", "egemaps:logreg,mfcc_stats"])
    assert compare_config_from_args(args).references == ("egemaps:logreg", "mfcc_stats")
    with pytest.raises(ValueError, match="unknown reference baseline"):
        compare_config_from_args(_parser().parse_args(["compare", "--references", "wav2vec"]))


def test_real_speech_comparisons_take_the_real_speech_recipe(tmp_path: Path) -> None:
    mini = miniature.make_corpus("emodb", tmp_path / "emodb")
    config = compare_config_from_args(_parser().parse_args(
        ["compare", "--dataset", "emodb", "--root", str(mini.root)]))
    assert config.space == REAL_SPEECH.space and config.retrain == REAL_SPEECH.retrain
    assert config.data.features.kind == "logmel"
    # the window follows the corpus: the miniature's clips are 0.1-0.3 s, so the shortest window
    assert config.data.features.clip_seconds == 1.0


def _fake_comparison(folder: Path, rng: np.random.Generator) -> CompareConfig:
    """A comparison folder with hand-written metrics (no training): 2 methods x 2 seeds x 2 folds."""
    config = CompareConfig(strategies=("darts",), seeds=(0, 1), folds=(0, 1), baseline="cnn_lstm", references=())
    write_json(folder / "compare.json", config.to_dict())
    for method in config.methods:
        for seed in config.seeds:
            run = folder / f"{method}-seed{seed}"
            write_json(run / "config.json", config.run_config(method, seed).to_dict())
            for fold in config.folds:
                write_json(run / f"fold-{fold}" / "metrics.json", {
                    "fold": fold, "method": method, "test_ua": float(rng.uniform()), "test_wa": float(rng.uniform()),
                    "test_f1": float(rng.uniform()), "val_ua": float(rng.uniform()),
                    "parameters": int(rng.integers(1000, 9000)), "search_seconds": float(rng.uniform(0, 100)),
                    "retrain_seconds": float(rng.uniform(0, 100))})
    return config


def _check_table_against_run_folders(compare_dir: Path) -> pd.DataFrame:
    """Recompute mean / sample std per method from the metrics.json files and compare."""
    table = pd.read_csv(compare_dir / "table.csv")
    results = pd.read_csv(compare_dir / "results.csv")
    config = CompareConfig.from_dict(read_json(compare_dir / "compare.json"))
    recorded: dict[str, list[dict]] = {}
    for path in sorted(compare_dir.glob("*-seed*/fold-*/metrics.json")):
        run_config = read_json(path.parents[1] / "config.json")
        method = f"baseline-{run_config['baseline']}" if run_config["baseline"] else run_config["search"]["strategy"]
        recorded.setdefault(method, []).append(read_json(path))
    assert list(table["method"]) == [m for m in config.methods if m in recorded]
    assert len(results) == sum(len(v) for v in recorded.values())
    for _, row in table.iterrows():
        runs = recorded[row["method"]]
        assert row["runs"] == len(runs)
        for key in METRIC_KEYS:
            values = np.asarray([m[key] for m in runs], dtype=float)
            assert row[f"{key}_mean"] == pytest.approx(values.mean(), rel=1e-9, abs=1e-12), (row["method"], key)
            std = values.std(ddof=1) if len(values) > 1 else 0.0
            assert row[f"{key}_std"] == pytest.approx(std, rel=1e-9, abs=1e-12), (row["method"], key)
        # the Markdown table shows the same UA
        markdown = (compare_dir / "table.md").read_text()
        line = next(li for li in markdown.splitlines() if li.startswith(f"| {row['method']} |"))
        assert f"{row['test_ua_mean']:.3f} ± {row['test_ua_std']:.3f}" in line
    return table


def test_report_is_recomputed_from_run_folders(tmp_path: Path) -> None:
    _fake_comparison(tmp_path, np.random.default_rng(0))
    report = build_report(tmp_path)
    table = _check_table_against_run_folders(tmp_path)
    assert list(table["runs"]) == [4, 4]
    assert report["missing"] == [] and report["runs"] == 8
    assert (tmp_path / "ua_vs_cost.png").stat().st_size > 0
    # change one run folder: the report follows it, nothing is cached
    path = tmp_path / "darts-seed1" / "fold-0" / "metrics.json"
    metrics = read_json(path)
    metrics["test_ua"] = 0.123
    write_json(path, metrics)
    build_report(tmp_path)
    _check_table_against_run_folders(tmp_path)
    # an unfinished run is reported as missing, and left out of the means
    shutil.rmtree(tmp_path / "baseline-cnn_lstm-seed0" / "fold-1")
    report = build_report(tmp_path)
    assert report["missing"] == ["baseline-cnn_lstm-seed0/fold-1"]
    table = _check_table_against_run_folders(tmp_path)
    assert list(table["runs"]) == [4, 3]
    assert "Unfinished runs: baseline-cnn_lstm-seed0/fold-1" in (tmp_path / "table.md").read_text()


def test_each_row_is_paired_with_the_best_hand_designed_row_over_folds(tmp_path: Path) -> None:
    _fake_comparison(tmp_path, np.random.default_rng(1))
    report = build_report(tmp_path)
    results = pd.read_csv(tmp_path / "results.csv")
    means = results.groupby(["method", "fold"])["test_ua"].mean()  # each side over its seeds first
    diffs = [means["darts", f] - means["baseline-cnn_lstm", f] for f in (0, 1)]
    darts, baseline = report["table"]
    assert darts["paired_against"] == baseline["method"] == "baseline-cnn_lstm"
    assert darts["paired_mean"] == pytest.approx(np.mean(diffs))
    assert darts["paired_low"] < darts["paired_mean"] < darts["paired_high"] and baseline["paired_mean"] is None
    markdown = (tmp_path / "table.md").read_text()
    assert "minus baseline-cnn_lstm, paired over folds: mean [95 % CI], p" in markdown
    line = next(li for li in markdown.splitlines() if li.startswith("| darts |"))
    assert f"{np.mean(diffs):+.3f} [" in line
    assert "| (best) |" in next(li for li in markdown.splitlines() if li.startswith("| baseline-cnn_lstm |"))
    assert pd.read_csv(tmp_path / "table.csv")["paired_mean"].notna().sum() == 1


# ----------------------------------------------------------------------------- slow, end to end

TINY_FLAGS = ["--strategies", "darts,random", "--seeds", "1", "--folds", "0", "--epochs", "1", "--trial-epochs", "1",
              "--baseline", "cnn_lstm", "--references", "mfcc_stats", "--space", "tiny", "--retrain-max-epochs", "1",
              "--quiet"]


@pytest.fixture(scope="module")
def tiny_comparison(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    output = tmp_path_factory.mktemp("compare")
    args = _parser().parse_args(["compare", *TINY_FLAGS, "--output", str(output)])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cmd_compare(args) == 0
    (compare_dir,) = output.glob("*-synthetic-compare")
    return compare_dir, printed.getvalue()


@pytest.mark.slow
def test_compare_command_completes_and_reports(tiny_comparison: tuple[Path, str]) -> None:
    compare_dir, printed = tiny_comparison
    for name in ("compare.json", "versions.json", "results.csv", "table.csv", "table.md", "report.json",
                 "ua_vs_cost.png", "validation_curves.png", "cells_darts.png", "cells_random.png"):
        assert (compare_dir / name).is_file(), name
    for run in ("darts-seed0", "random-seed0", "baseline-cnn_lstm-seed0", "baseline-mfcc_stats-seed0"):
        assert (compare_dir / run / "fold-0" / "metrics.json").is_file(), run
        assert (compare_dir / run / "summary.json").is_file(), run
    results = pd.read_csv(compare_dir / "results.csv")
    assert list(results["method"]) == ["darts", "random", "baseline-cnn_lstm", "baseline-mfcc_stats"]
    assert results["test_ua"].between(0, 1).all() and results["test_wa"].between(0, 1).all()
    assert (results["parameters"] > 0).all()
    # equal budgets: 1 one-shot epoch = 2 trials of 1 epoch; the baseline does not search
    search = read_json(compare_dir / "random-seed0" / "fold-0" / "search.json")
    assert len(search["history"]) == 2 and search["experiment_id"]
    assert len(read_json(compare_dir / "darts-seed0" / "fold-0" / "search.json")["history"]) == 1
    assert not (compare_dir / "baseline-cnn_lstm-seed0" / "fold-0" / "search.json").exists()
    _check_table_against_run_folders(compare_dir)
    assert "| darts | one-shot |" in printed and "| baseline-cnn_lstm | hand-designed |" in printed
    assert "| baseline-mfcc_stats | reference | no search |" in printed
    assert (compare_dir / "baseline-mfcc_stats-seed0" / "fold-0" / "reference.json").is_file()


@pytest.mark.slow
def test_resume_redoes_only_the_missing_run(tiny_comparison: tuple[Path, str], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    source, _ = tiny_comparison
    compare_dir = tmp_path / source.name
    shutil.copytree(source, compare_dir)
    shutil.rmtree(compare_dir / "baseline-cnn_lstm-seed0" / "fold-0")
    kept = {p: p.stat().st_mtime_ns for p in compare_dir.glob("*-seed*/fold-*/metrics.json")}
    assert len(kept) == 3

    calls = []
    real_run_fold = compare.run_fold

    def counting_run_fold(config, prepared, fold, run_dir, *args, **kwargs):
        calls.append((Path(run_dir).name, fold.index))
        return real_run_fold(config, prepared, fold, run_dir, *args, **kwargs)

    monkeypatch.setattr(compare, "run_fold", counting_run_fold)
    args = _parser().parse_args(["compare", "--resume", str(compare_dir), "--quiet"])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cmd_compare(args) == 0
    assert calls == [("baseline-cnn_lstm-seed0", 0)]
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # finished runs untouched
    report = read_json(compare_dir / "report.json")
    assert report["missing"] == [] and report["runs"] == 4
    table = _check_table_against_run_folders(compare_dir)
    assert list(table["method"]) == ["darts", "random", "baseline-cnn_lstm", "baseline-mfcc_stats"]


@pytest.mark.slow
def test_all_runs_are_trials_of_one_nni_experiment(tiny_comparison: tuple[Path, str]) -> None:
    """publish_to_webui: every finished run is one SUCCEEDED trial; its final result is its test UA."""
    import json
    import sqlite3

    from strategies.compare import publish_to_webui
    from strategies.webui import find_experiments

    compare_dir, printed = tiny_comparison
    assert "all runs in the NNI web UI: experiment" in printed  # the CLI publishes by default
    info = publish_to_webui(compare_dir)
    runs = sorted(p.parent for p in compare_dir.glob("*-seed*/fold-*/metrics.json"))
    assert len(info["trials"]) == len(runs) >= 3
    experiment_dir = Path(info["experiment_dir"])
    assert experiment_dir in find_experiments(compare_dir)
    with sqlite3.connect(f"file:{experiment_dir / 'db' / 'nni.sqlite'}?mode=ro", uri=True) as db:
        events = list(db.execute("SELECT trialJobId, event FROM TrialJobEvent"))
        rows = list(db.execute("SELECT trialJobId, type, data FROM MetricData"))
    succeeded = {trial for trial, event in events if event == "SUCCEEDED"}
    assert succeeded == set(info["trials"].values())
    finals = {trial: json.loads(json.loads(data))["default"] for trial, kind, data in rows if kind == "FINAL"}
    for folder in runs:
        job = f"{folder.parent.name}-fold{folder.name.split('-')[1]}"
        recorded = json.loads((folder / "metrics.json").read_text())["test_ua"]
        assert finals[info["trials"][job]] == pytest.approx(recorded)
        # a reference baseline has no training curve: its trial carries the final figures only
        epochs = 0 if (folder / "reference.json").is_file() else len(pd.read_csv(folder / "retrain.csv"))
        periodic = [r for r in rows if r[0] == info["trials"][job] and r[1] == "PERIODICAL"]
        assert len(periodic) == epochs
    assert json.loads((compare_dir / "webui.json").read_text())["experiment_id"] == experiment_dir.name


def test_jobs_are_checked_before_anything_is_written(tmp_path: Path) -> None:
    config = CompareConfig(strategies=("darts",), seeds=1, folds=(0,), baseline=None, references=(), epochs=1)
    for jobs, message in ((0, "give 1 or more"), (3, "only 1 run")):
        with pytest.raises(ValueError, match=message):
            compare.run_compare(config, output_dir=tmp_path / "out", jobs=jobs, progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_parallel_jobs_give_the_same_results_as_one_at_a_time(tmp_path: Path) -> None:
    """A run's result depends on its config, seed and threads, never on what ran beside it."""
    flags = ["--strategies", "darts", "--seeds", "1", "--folds", "0,1", "--epochs", "1", "--baseline", "cnn_lstm",
             "--references", "none", "--space", "tiny", "--retrain-max-epochs", "2", "--quiet", "--no-webui",
             "--threads", "1"]
    results = {}
    # one at a time; two processes; two NNI trials at once (each run a trial, in the web UI)
    for name, extra in (("jobs1", ["--jobs", "1"]), ("jobs2", ["--jobs", "2"]),
                        ("trials", ["--jobs", "2", "--dispatch", "trials", "--webui"])):
        output = tmp_path / name
        args = _parser().parse_args(["compare", *flags, *extra, "--output", str(output)])
        with contextlib.redirect_stdout(io.StringIO()):
            assert cmd_compare(args) == 0
        (compare_dir,) = output.glob("*-synthetic-compare")
        table = pd.read_csv(compare_dir / "results.csv").sort_values(["method", "fold"])
        assert len(table) == 4
        for path in compare_dir.glob("*-seed*/fold-*/metrics.json"):
            assert read_json(path)["threads"] == 1
        results[name] = table[["method", "fold", "test_ua", "test_wa", "val_ua"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(results["jobs1"], results["jobs2"])
    pd.testing.assert_frame_equal(results["jobs1"], results["trials"])
    # --dispatch trials: the runs were the trials of one NNI experiment, each final result its test UA
    import sqlite3

    (compare_dir,) = (tmp_path / "trials").glob("*-synthetic-compare")
    info = read_json(compare_dir / "webui.json")
    assert len(info["trials"]) == 4 and Path(info["experiment_dir"]).parent == compare_dir / "trials" / "nni"
    with sqlite3.connect(f"file:{Path(info['experiment_dir']) / 'db' / 'nni.sqlite'}?mode=ro", uri=True) as db:
        events = list(db.execute("SELECT trialJobId, event FROM TrialJobEvent"))
        rows = list(db.execute("SELECT trialJobId, type, data FROM MetricData"))
    assert {trial for trial, event in events if event == "SUCCEEDED"} == set(info["trials"].values())
    finals = {trial: json.loads(json.loads(data))["default"] for trial, kind, data in rows if kind == "FINAL"}
    for job, trial in info["trials"].items():
        run_name, fold = job.rsplit("-fold", 1)
        assert finals[trial] == pytest.approx(read_json(compare_dir / run_name / f"fold-{fold}" / "metrics.json")["test_ua"])


def test_dispatch_flags_are_checked(tmp_path: Path) -> None:
    flags = ["compare", "--strategies", "darts", "--folds", "0", "--references", "none", "--baseline", "none",
             "--output", str(tmp_path / "out"), "--quiet"]
    with pytest.raises(ValueError, match="--remote-machines: only with --dispatch trials"):
        cmd_compare(_parser().parse_args([*flags, "--remote-machines", "u@h:22"]))
    with pytest.raises(ValueError, match="is not user@host:port"):
        cmd_compare(_parser().parse_args([*flags, "--dispatch", "trials", "--remote-machines", "nohost"]))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_failed_trial_does_not_cost_the_other_jobs(tmp_path: Path) -> None:
    # keep_going: a job that fails in its trial is reported as an error, the other one finishes
    from strategies.trials import run_jobs_as_trials

    fold = tmp_path / "run" / "fold-0"
    write_json(fold / "metrics.json", {"test_ua": 0.5, "test_wa": 0.5, "test_f1": 0.5, "parameters": 10,
                                       "search_seconds": 0.0})
    write_json(fold / "reference.json", {})
    jobs = [{"id": "bad", "kind": "no-such-kind"}, {"id": "good", "kind": "replay", "fold_dir": str(fold)}]
    results = run_jobs_as_trials(jobs, tmp_path / "trials", keep_going=True)
    assert [r["job"] for r in results] == ["bad", "good"]
    assert "error" in results[0] and "bad" not in results[1].get("error", "")
    assert results[1]["result"]["test_ua"] == 0.5
