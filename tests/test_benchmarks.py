"""Smoke tests of the benchmark scripts (tiny space, batch 2, one repeat) and the DARTS cell.

The scripts run as subprocesses, as a user runs them; each writes its JSON to a temporary
folder, and the test checks the numbers it recorded, not only that it ran.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


def _run_script(script: str, tmp_path: Path, *args: str) -> dict:
    """Run ``benchmarks/<script> *args --out-dir tmp_path``; the one JSON it wrote."""
    proc = subprocess.run([sys.executable, str(BENCH / script), *args, "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, cwd=str(REPO), timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def _run(script: str, tmp_path: Path, *extra: str) -> dict:
    """A step benchmark on the tiny space, batch 2, one repeat, one thread."""
    return _run_script(script, tmp_path, "--config", "tiny", "--batch-sizes", "2", "--repeats", "1",
                       "--threads", "1", *extra)


@pytest.mark.slow
def test_bench_supernet_smoke(tmp_path: Path) -> None:
    result = _run("bench_supernet.py", tmp_path)
    assert result["machine"]["cpu_cores"] >= 1 and result["machine"]["torch"]
    cases = {row["case"]: row for row in result["rows"]}
    assert set(cases) == {"darts-first", "darts-second", "enas"}
    for row in cases.values():
        assert row["step_s"] > 0 and row["params_m"] > 0 and row["peak_rss_delta_mb"] >= 0
    assert cases["darts-first"]["arch_params"] > 0


@pytest.mark.slow
def test_bench_retrain_smoke(tmp_path: Path) -> None:
    result = _run("bench_retrain.py", tmp_path)
    train = [r for r in result["rows"] if r.get("mode") == "train"]
    inference = [r for r in result["rows"] if r.get("mode") == "inference"]
    assert {r["arch"] for r in train} == {"cnn_lstm", "random_seed0"}
    assert all(r["step_s"] > 0 for r in train)
    assert all(r["latency_ms"] > 0 and r["throughput_per_s"] > 0 for r in inference)


def _supernets(config):
    """The same DARTS supernet twice: with the SERSpace cell, accelerated (channels-last, the
    fused kernels on CPU), and NNI's cell, plain (NCHW)."""
    import warnings

    from nni.nas.strategy import DARTS

    from ser_space import SERSpace, fast

    with warnings.catch_warnings():  # NNI's mutation warnings, for these two supernets only
        warnings.simplefilter("ignore")
        ours = fast.accelerate(DARTS().mutate_model(SERSpace(config)))
        space = SERSpace(config)
        space.extra_oneshot_hooks = lambda _strategy: []
        reference = DARTS().mutate_model(space)
    assert fast.is_accelerated(ours)
    reference.load_state_dict(ours.state_dict())
    return ours, reference


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("ops", ["tiny", "paper"])
@pytest.mark.parametrize("frames", [33, 32])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_darts_cell_matches_nni(ops: str, frames: int, device: str, dtype: torch.dtype) -> None:
    """Same loss, gradients (weights and alphas) and BN statistics as NNI's cell.

    ``paper``: the paper's 8 CNN candidates and 4 nodes (shared poolings, 5x5 and dilated
    kernels at stride 1 and 2); 32 frames takes the even-sided (space-to-batch) dilated
    path, 33 the odd one. On the CPU our cell runs :mod:`ser_space.fast.kernels`. float64 shows
    the two are the same function (tolerances near its rounding); float32 is what runs,
    from a fixed initialisation: there float rounding can flip a ReLU or max-pool at a tie
    and move a gradient by more than rounding, on some initialisations.
    """
    from ser_space import SpaceConfig

    config = SpaceConfig.tiny().replace(cell_dropout=0.0, dropout=0.0)  # dropout masks depend on layout
    if ops == "paper":
        config = config.replace(cnn_ops=SpaceConfig.paper().cnn_ops, num_nodes=4)
    torch.manual_seed(7)
    ours, reference = _supernets(config)
    assert type(ours.cells[0]).__name__ == "DartsMixedCell"
    assert type(reference.cells[0]).__name__ == "DifferentiableMixedCell"
    ours.to(device, dtype), reference.to(device, dtype)
    torch.manual_seed(0)
    x, y = torch.randn(3, 1, 16, frames).to(device, dtype), torch.tensor([0, 1, 3]).to(device)
    exact = dtype == torch.float64
    losses = []
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # full fp32 on CUDA too
        for model in (ours, reference):
            model.train()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-10 if exact else 1e-5)
    for (name, a), (_, b) in zip(ours.named_parameters(), reference.named_parameters()):
        assert (a.grad is None) == (b.grad is None), name
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-7 if exact else 1e-3,
                                       atol=1e-10 if exact else 1e-5, msg=name)
    for (name, a), (_, b) in zip(ours.named_buffers(), reference.named_buffers()):
        torch.testing.assert_close(a, b, rtol=1e-9 if exact else 1e-5, atol=1e-12 if exact else 1e-6, msg=name)


def test_traffic_counter_counts_bytes_read_and_written() -> None:
    sys.path.insert(0, str(BENCH))
    from bench_traffic import TrafficCounter

    x = torch.randn(2, 3, 8, 8)
    w = torch.randn(4, 3, 1, 1)
    with TrafficCounter(threshold=4 * x.numel()) as counter:
        y = F.conv2d(x, w)               # reads x and w, writes y
        y.add_(1.0)                      # reads and writes y
        z = torch.empty_like(y).copy_(y)  # the allocation is free; copy_ reads y and writes z
        z.view(-1)                        # a view is free
    assert counter.bytes["convolution"] == 4 * (x.numel() + w.numel() + y.numel())
    assert counter.bytes["add_"] == 4 * 2 * y.numel()
    assert counter.bytes["copy_"] == 4 * 2 * y.numel()
    assert set(counter.calls) == {"convolution", "add_", "copy_"}
    # only x reaches the threshold among the convolution's tensors (y has 4/3 of x's bytes too)
    assert counter.map_bytes["convolution"] == 4 * (x.numel() + y.numel())
    assert counter.totals()["ops"] == 3


@pytest.mark.slow
def test_bench_data_smoke(tmp_path: Path) -> None:
    result = _run_script("bench_data.py", tmp_path, "--dataset", "synthetic", "--features", "small",
                         "--workers", "1", "--batch-sizes", "2,64", "--threads", "1")
    [extraction] = result["extraction"]
    assert extraction["workers"] == 1 and extraction["utterances"] > 0
    assert extraction["ms_per_utterance"] == pytest.approx(1e3 * extraction["seconds"] / extraction["utterances"])
    assert result["feature_shape"] == [40, 64]          # FeatureConfig.small
    assert 0 <= result["reuse_s"] < extraction["seconds"]  # the prepared folder is found, nothing recomputed
    train = result["train_utterances"]
    assert [(row["batch_size"], row["batches"]) for row in result["batches"]] == [(2, -(-train // 2)),
                                                                                 (64, -(-train // 64))]
    assert all(row["batch_ms"] > 0 and row["epoch_ms"] >= row["batch_ms"] for row in result["batches"])


def test_bench_data_names_an_unreadable_corpus_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "corpus" / "wav").mkdir(parents=True)
    (tmp_path / "corpus" / "wav" / "03a01Fa.wav").write_text("not audio")
    proc = subprocess.run([sys.executable, str(BENCH / "bench_data.py"), "--root", str(tmp_path / "corpus"),
                           "--workers", "1", "--out-dir", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=str(REPO), timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "03a01Fa.wav: unreadable audio" in proc.stderr and not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag", ["--workers", "--batch-sizes"])
def test_bench_data_refuses_bad_counts(tmp_path: Path, flag: str) -> None:
    proc = subprocess.run([sys.executable, str(BENCH / "bench_data.py"), flag, "0,x", "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, cwd=str(REPO), timeout=120)
    assert proc.returncode == 2 and "'0,x' is not a comma-separated list of positive integers" in proc.stderr
    assert "Traceback" not in proc.stderr and not list(tmp_path.iterdir())


@pytest.mark.slow
def test_bench_traffic_smoke(tmp_path: Path) -> None:
    result = _run("bench_traffic.py", tmp_path, "--cache-mb", "0")
    step = result["step"]
    assert step["ops"] > 100 and step["traffic_gb"] > 0 and step["step_s"] > 0
    assert 0 < step["small_input_step_s"] and step["small_input"] == "1x1x16x8"   # tiny: min_frames 8
    # with no cache threshold every byte is map traffic, and the floor is that over the bandwidth
    assert step["map_traffic_gb"] == pytest.approx(step["traffic_gb"])
    assert step["floor_s"] == pytest.approx(step["map_traffic_gb"] / step["bandwidth_gb_s"])
    operators = {row["operator"]: row for row in result["operators"]}
    assert min(operators[name]["over_floor"] for name in ("copy", "relu", "add")) == pytest.approx(1.0)
    assert {"depthwise 3x3", "1x1 conv backward"} <= set(operators)
    assert sum(row["calls"] for row in result["by_operator"]) == step["ops"]


@pytest.mark.slow
@pytest.mark.parametrize("toggle", ["subgrids", "fast"])
def test_bench_ab_smoke(tmp_path: Path, toggle: str) -> None:
    result = _run("bench_ab.py", tmp_path, "--rounds", "2", "--toggle", toggle)
    assert [row["setting"] for row in result["rows"]] == ["A", "B"]
    assert all(len(result["times_s"][label]) == 2 for label in ("A", "B"))
    summary = result["summary"]
    assert summary["b_over_a_median"] == pytest.approx(result["rows"][1]["step_s"] / result["rows"][0]["step_s"])
    assert summary["b_over_a_paired"] > 0


def test_bench_ab_toggles_switch_the_setting() -> None:
    sys.path.insert(0, str(BENCH))
    from bench_ab import TOGGLES

    from ser_space import fast
    from ser_space.fast import kernels, modules

    for value in (False, True):   # B then back to A: the code's default again
        TOGGLES["fast"](value)
        assert fast.enabled() is value
    x = torch.randn(2, 3, 6, 6).contiguous(memory_format=torch.channels_last).requires_grad_()
    for value in (False, True):
        TOGGLES["subgrids"](value)
        (grid,) = kernels.subgrids(x, ((0, 0),))
        (grad,) = torch.autograd.grad(grid.sum(), x)
        # plain slices' gradient is NCHW; the default's keeps channels-last
        assert grad.is_contiguous(memory_format=torch.channels_last) is value
        assert kernels.subgrids is modules.subgrids
    batched = kernels.pointwise_bns
    for value in (False, True):
        TOGGLES["batched-middles"](value)
        assert (kernels.pointwise_bns is batched) is value     # B: one pointwise_bns call per term


def test_write_results_replaces_whole_files_and_names_an_unwritable_folder(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))
    import _common

    path = _common.write_results("x", {"a": 1}, tmp_path)
    assert json.loads(path.read_text()) == {"a": 1}
    with pytest.raises(TypeError):           # a payload json cannot write leaves the old file
        _common.write_results("x", {1j: 1}, tmp_path)
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".json"] == ["x.json"]
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit, match="cannot write .*file/x.json"):
        _common.write_results("x", {}, blocker)


def test_recipe_ablation_runs_rows_through_the_pipeline_and_pairs_them(tmp_path: Path) -> None:
    import miniature

    corpus = miniature.make_corpus("emodb", tmp_path / "emodb")
    args = ("--root", str(corpus.root), "--rows", "ref-mfcc_stats,ref-mfcc_stats:svm", "--seeds", "0",
            "--folds", "0,1", "--out", str(tmp_path / "runs"))
    result = _run_script("recipe_ablation.py", tmp_path, *args)
    rows = {r["row"]: r for r in result["rows"]}
    assert set(rows) == {"ref-mfcc_stats", "ref-mfcc_stats:svm"} and rows["ref-mfcc_stats"]["runs"] == 2
    assert (tmp_path / "runs" / "ref-mfcc_stats_svm-seed0" / "fold-1" / "reference.json").is_file()
    # a second call with --report runs nothing and tabulates the same figures
    again = _run_script("recipe_ablation.py", tmp_path / "again", *args, "--report")
    assert again["rows"][0]["test_ua_mean"] == rows["ref-mfcc_stats"]["test_ua_mean"]


def test_recipe_ablation_paired_difference() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("recipe_ablation", BENCH / "recipe_ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # the base's seeds average to 0.45, 0.55, 0.65 per fold; the row (one seed) is 0.1 above on each but fold 2
    base = {"per_fold_ua": {"0": {"0": 0.5, "1": 0.6, "2": 0.7}, "1": {"0": 0.4, "1": 0.5, "2": 0.6}}}
    row = {"per_fold_ua": {"3": {"0": 0.55, "1": 0.75, "2": 0.65}}}
    diff = module.paired(row, base)
    assert diff["folds"] == 3 and diff["mean"] == pytest.approx(0.1)
    assert diff["ci95"][0] < 0.1 < diff["ci95"][1]
    assert module.paired({"per_fold_ua": {"5": {"7": 0.1}}}, base) is None


def test_recipe_ablation_table_pairs_each_row_with_its_twin() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("recipe_ablation", BENCH / "recipe_ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def row(name: str, *ua: float) -> dict:
        return {"row": name, "seeds": [0], "runs": len(ua), "test_ua_mean": float(np.mean(ua)), "test_ua_std": 0.0,
                "test_ua_seed_std": 0.0, "test_wa_mean": 0.5, "test_wa_std": 0.0, "parameters": 1, "minutes": 1.0,
                "per_fold_ua": {"0": {str(f): u for f, u in enumerate(ua)}}}

    rows = [row("a", 0.5, 0.6, 0.7), row("a-norm", 0.6, 0.7, 0.9), row("b", 0.2, 0.3, 0.4), row("b-norm", 0.1, 0.2, 0.3),
            row("c-norm", 0.9, 0.9, 0.9)]
    text = module.table(rows, twin_suffix="-norm")
    assert "minus the same row without -norm" in text
    assert rows[1]["paired"]["mean"] == pytest.approx(0.4 / 3) and rows[3]["paired"]["mean"] == pytest.approx(-0.1)
    assert rows[0]["paired"] is None and rows[4]["paired"] is None  # no twin: nothing to pair
    module.table(rows, base="b")
    assert rows[0]["paired"]["mean"] == pytest.approx(0.3) and rows[2]["paired"] is None


def test_recipe_ablation_retraining_rows_reuse_the_searched_architectures(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("recipe_ablation", BENCH / "recipe_ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import miniature

    root = str(miniature.make_corpus("emodb", tmp_path / "emodb").root)
    # a row that changes only the retraining retrains row darts's run of the same seed, no search
    config = module.row_config("darts-double-epochs", root, None, 2, tmp_path / "runs")
    darts = module.row_config("darts", root, None, 2, tmp_path / "runs")
    assert config.architecture == str(tmp_path / "runs" / "darts-seed2") and config.baseline is None
    assert config.method == "file" and darts.architecture is None and darts.method == "darts"
    assert config.retrain.max_epochs == 2 * darts.retrain.max_epochs and config.retrain.seed == 2
    assert config.space == darts.space
    # the searched cells at the wide CNN's width, under the protocol of the run they come from
    wide = module.row_config("darts-wide-speaker-norm", root, None, 1, tmp_path / "runs")
    assert wide.architecture == str(tmp_path / "runs" / "darts-speaker-norm-seed1") and wide.method == "file"
    assert wide.space == module.row_config("wide", root, None, 1, tmp_path / "runs").space != darts.space
    assert wide.data.features.normalization == "per_speaker"


def test_learning_curves_average_each_rows_runs_per_epoch(tmp_path: Path) -> None:
    # two seeds x two folds of one row, laid out as recipe_ablation leaves them
    runs = tmp_path / "runs"
    for seed in (0, 1):
        run = runs / f"recipe-seed{seed}"
        for fold in (0, 1):
            folder = run / f"fold-{fold}"
            folder.mkdir(parents=True)
            (folder / "metrics.json").write_text(json.dumps({"fold": fold, "test_ua": 0.4 + 0.2 * fold + 0.1 * seed}))
            base = seed + 2 * fold  # 0..3 over the four runs
            pd.DataFrame({"epoch": [0, 1, 2], "train_loss": [2.0, 1.5, 1.0 + base], "val_loss": [2.0, 1.8, 1.6],
                          "val_ua": [0.2, 0.5 + 0.1 * base, 0.4], "val_wa": 0.0, "val_f1": 0.0}).to_csv(
                folder / "retrain.csv", index=False)
        (run / "summary.json").write_text("{}")
    import importlib.util

    spec = importlib.util.spec_from_file_location("learning_curves", BENCH / "learning_curves.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--rows", "recipe,absent", "--out", str(runs), "--name", "curves",
                        "--out-dir", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "curves.json").read_text())
    (row,) = result["rows"]
    assert row["runs"] == 4 and row["seeds"] == [0, 1] and row["epochs"] == 3
    assert row["curves"]["train_loss"]["mean"] == pytest.approx([2.0, 1.5, 2.5])
    assert row["last_epoch"]["val_loss"] == pytest.approx(1.6)
    assert row["val_ua_peak_epoch"] == 1 and row["val_ua_peak"] == pytest.approx(0.65)
    assert row["test_ua_fold_means"] == pytest.approx({"0": 0.45, "1": 0.65})
    assert row["test_ua_fold_spread"] == pytest.approx(0.2) and row["test_ua_seed_spread"] == pytest.approx(0.1)
    assert (tmp_path / "out" / "curves.png").stat().st_size > 1000


@pytest.mark.slow
def test_seed_ensemble_averages_each_rows_seeds_per_fold(tmp_path: Path) -> None:
    # two seeds of a (one-epoch) hand-designed run, laid out as recipe_ablation leaves them;
    # the ensemble recomputes each network's recorded test UA and averages their probabilities
    from strategies.cli import main

    runs = tmp_path / "runs"
    for seed in (0, 1):
        out = tmp_path / f"out{seed}"
        assert main(["search", "--baseline", "cnn", "--retrain-max-epochs", "1", "--retrain-seed", str(seed),
                     "--output", str(out), "--quiet"]) == 0
        (run,) = list(out.iterdir())
        runs.mkdir(exist_ok=True)
        run.rename(runs / f"recipe-seed{seed}")
    sys.path.insert(0, str(BENCH))
    import seed_ensemble

    row = seed_ensemble.ensemble_row("recipe", runs, [0, 1, 2])   # seed 2 absent: left out
    assert row["seeds"] == [0, 1] and row["folds"] == 1
    recorded = [json.loads((runs / f"recipe-seed{s}" / "fold-0" / "metrics.json").read_text())["test_ua"]
                for s in (0, 1)]
    assert [row["single_per_fold_ua"][str(s)]["0"] for s in (0, 1)] == pytest.approx(recorded)
    assert 0.0 <= row["ensemble_ua_mean"] <= 1.0
    assert seed_ensemble.ensemble_row("recipe", runs, [0]) is None   # one seed is no ensemble


def test_recipe_ablation_trains_a_named_network_outside_the_space_on_the_same_folds(tmp_path: Path) -> None:
    import importlib.util

    import miniature

    corpus = miniature.make_corpus("emodb", tmp_path / "emodb")
    args = ("--root", str(corpus.root), "--rows", "plain_cnn", "--seeds", "0", "--folds", "0",
            "--out", str(tmp_path / "runs"))
    result = _run_script("recipe_ablation.py", tmp_path, *args)
    (row,) = result["rows"]
    assert row["row"] == "plain_cnn" and row["runs"] == 1 and row["parameters"] == 61031
    summary = json.loads((tmp_path / "runs" / "plain_cnn-seed0" / "summary.json").read_text())
    assert summary["method"] == "network-plain_cnn" and 0.0 <= summary["per_fold"][0]["test_ua"] <= 1.0
    spec = importlib.util.spec_from_file_location("recipe_ablation", BENCH / "recipe_ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # the V2 rows change the retraining, and the search's weight training gets V2's augmentation only
    v2 = module.row_config("darts-v2", str(corpus.root), None, 3, tmp_path / "runs")
    assert (v2.retrain.max_epochs, v2.retrain.lr_warmup_epochs, v2.retrain.gain_db) == (40, 3, 4.3)
    assert v2.search_train.gain_db == 4.3 and v2.search_train.lr_warmup_epochs == 0
    assert v2.search.seed == v2.search_train.seed == v2.retrain.seed == 3
