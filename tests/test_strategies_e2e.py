"""End to end: NNI's DARTS, ENAS and Random each search SERSpace through NasExperiment.

DARTS and ENAS train a supernet in this process; Random goes through NNI's manager and its
local training service, with real trials in subprocesses. The Random test also guards the
tuner-channel payload fix: its features live in a folder whose name holds an escaped quote,
``//`` and ``#``, so every trial's serialized parameters contain them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ser_space import SERSpace, SpaceConfig, build_model, load_architecture, save_architecture, validate_architecture
from strategies.data.dataset import FeatureDataset
from strategies.evaluator import TrainConfig
from strategies.search.registry import STRATEGIES
from strategies.search import SearchConfig, run_search

from conftest import write_random_features

pytestmark = pytest.mark.slow

N_MFCC, FRAMES, CLASSES = 16, 32, 4


def _space() -> SpaceConfig:
    return SpaceConfig.tiny().replace(n_mfcc=N_MFCC, frames=FRAMES, num_classes=CLASSES)


def _datasets(folder: Path, features_name: str | None = None) -> tuple[FeatureDataset, FeatureDataset]:
    path, labels = write_random_features(folder, num=48, n_coefficients=N_MFCC, frames=FRAMES)
    text = str(path) if features_name is None else features_name
    train = FeatureDataset(text, list(range(32)), labels[:32])
    val = FeatureDataset(text, list(range(32, 48)), labels[32:])
    return train, val


def _check_architecture(sample: dict, space: SpaceConfig, folder: Path | None = None) -> None:
    """The export validates, and rebuilds through the architecture file into a model that
    runs forward and backward."""
    validate_architecture(sample, space)
    if folder is not None:
        save_architecture(folder / "architecture.json", sample, space)
        model = build_model(load_architecture(folder / "architecture.json"))
    else:
        model = build_model(sample, space)
    out = model(torch.randn(2, 1, N_MFCC, FRAMES))
    assert out.shape == (2, CLASSES)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad
               and p.grad is not None)


@pytest.mark.parametrize("strategy", ["darts", "enas", "gumbel_darts", "random_oneshot"])
def test_oneshot_strategy_searches_and_exports(strategy: str, tmp_path: Path) -> None:
    space = _space()
    train, val = _datasets(tmp_path / "data")
    result = run_search(space, SearchConfig(strategy=strategy, epochs=2, candidates=3), TrainConfig(batch_size=8),
                        train, val, tmp_path / "work", num_classes=CLASSES)
    assert set(result.architecture) == set(SERSpace(space.to_dict()).simplify())
    _check_architecture(result.architecture, space, tmp_path)
    # per-epoch validation on the training speakers' split, with the exported architecture each epoch
    assert [e["epoch"] for e in result.history] == [0, 1]
    assert all(0.0 <= e["val_ua"] <= 1.0 for e in result.history)
    assert result.last_architecture == result.history[-1]["architecture"]
    # the DARTS derivation never keeps the zero op, and ENAS samples from a space without it
    assert "none" not in [v for k, v in result.architecture.items() if "/op_" in k]


def test_darts_search_in_bf16_mixed_precision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # --search-train-precision bf16-mixed: Lightning's autocast reaches the supernet's cells in
    # every training step (their fused CPU kernels then stand aside), the epoch-end validation
    # of the supernet runs in float32, and the search exports a valid network
    from ser_space.fast.cell import _differentiable_cell_class

    cell_class = _differentiable_cell_class()
    original = cell_class._uses_fused
    calls: list[tuple[bool, bool, bool]] = []   # (training, autocast, fused)

    def recording(self, x: torch.Tensor) -> bool:
        fused = original(self, x)
        calls.append((self.training, torch.is_autocast_enabled("cpu"), fused))
        return fused

    monkeypatch.setattr(cell_class, "_uses_fused", recording)
    space = _space()
    train, val = _datasets(tmp_path / "data")
    result = run_search(space, SearchConfig(strategy="darts", epochs=1),
                        TrainConfig(batch_size=8, precision="bf16-mixed"), train, val, tmp_path / "work",
                        num_classes=CLASSES)
    _check_architecture(result.architecture, space)
    training = [(autocast, fused) for is_training, autocast, fused in calls if is_training]
    assert training and all(autocast and not fused for autocast, fused in training)
    assert any(not is_training and not autocast for is_training, autocast, _ in calls)
    assert 0.0 <= result.history[-1]["val_ua"] <= 1.0


def test_darts_search_trains_its_supernet_on_the_fast_path_and_not_with_it_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the shared evaluator accelerates the supernet it trains (ser_space.fast): on CPU every
    # training step of the cells runs the fused kernels; with the switch off none does
    from ser_space import fast
    from ser_space.fast import kernels

    calls: list[int] = []
    original = kernels.mixed_sum
    monkeypatch.setattr(kernels, "mixed_sum", lambda *a, **k: calls.append(1) or original(*a, **k))
    space = _space()
    train, val = _datasets(tmp_path / "data")
    for on in (True, False):
        calls.clear()
        with fast.switched(on):
            result = run_search(space, SearchConfig(strategy="darts", epochs=1), TrainConfig(batch_size=8),
                                train, val, tmp_path / f"work-{on}", num_classes=CLASSES)
        _check_architecture(result.architecture, space)
        assert bool(calls) is on


def test_retraining_runs_accelerated_and_returns_a_plain_model(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from ser_space import fast, random_architecture
    from ser_space.cells import Stem
    from strategies.training import train_model

    seen: list[bool] = []
    original = fast.modules._stem_forward
    monkeypatch.setattr(fast.modules, "_stem_forward", lambda self, x: seen.append(True) or original(self, x))
    space = _space()
    train, val = _datasets(tmp_path / "data")
    model = build_model(random_architecture(space, seed=1), space)
    trained, history, _ = train_model(model, TrainConfig(batch_size=8, max_epochs=1), train, val, CLASSES)
    assert seen and len(history) == 1            # the stem ran its channels-last forward
    assert not fast.is_accelerated(trained)      # and the model comes back plain
    assert isinstance(trained.stem, Stem) and "forward" not in trained.stem.__dict__


def test_retraining_keeps_the_mean_of_the_last_epochs_weights(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # average_last: the parameters are the mean of those at the ends of the last epochs, and the
    # batch-norm statistics are recomputed for them on the training data
    import copy

    from ser_space import random_architecture
    from strategies import training

    ends: list[dict[str, torch.Tensor]] = []
    original = training.KeepBest.on_train_epoch_end

    def record(self, trainer, pl_module) -> None:
        ends.append({k: v.detach().cpu().clone() for k, v in self.module.model.named_parameters()})
        original(self, trainer, pl_module)

    monkeypatch.setattr(training.KeepBest, "on_train_epoch_end", record)
    space = _space().replace(cell_dropout=0.0, dropout=0.0)  # so the batch-norm pass is deterministic
    train, val = _datasets(tmp_path / "data")
    model = build_model(random_architecture(space, seed=1), space)
    config = TrainConfig(batch_size=8, max_epochs=3, model_selection="last", average_last=0.6)  # the last 2
    trained, history, _ = training.train_model(model, config, train, val, CLASSES)
    assert len(ends) == 3 and len(history) == 3
    for name, param in trained.named_parameters():
        assert torch.allclose(param, (ends[1][name] + ends[2][name]) / 2, atol=1e-6), name
    assert not all(torch.allclose(p, ends[2][n]) for n, p in trained.named_parameters())  # not the last epoch's
    again = copy.deepcopy(trained)
    torch.optim.swa_utils.update_bn(torch.utils.data.DataLoader(train, batch_size=8), again)
    norms = [(a, b) for a, b in zip(trained.modules(), again.modules()) if isinstance(a, torch.nn.BatchNorm2d)]
    assert norms and all(torch.allclose(a.running_mean, b.running_mean, atol=1e-5) for a, b in norms)
    with pytest.raises(ValueError, match="average_last needs model_selection 'last'"):
        TrainConfig(average_last=0.25)


def test_random_strategy_runs_real_trials_through_nni_manager(tmp_path: Path) -> None:
    space = _space()
    tricky = tmp_path / 'corpus "v2" #1'
    train, val = _datasets(tricky, features_name=f"{tricky}//features.npy")
    search = SearchConfig(strategy="random", trials=2, trial_epochs=1)
    result = run_search(space, search, TrainConfig(batch_size=16), train, val, tmp_path / "work",
                        num_classes=CLASSES)
    _check_architecture(result.architecture, space)
    assert result.experiment_id
    trial_dirs = sorted(Path(result.experiment_dir).glob("environments/*/trials/*"))
    assert len(trial_dirs) == 2, trial_dirs  # two real trial processes
    assert len(result.history) == 2
    for entry in result.history:
        # NNI keeps the "default" value (validation UA) of each report
        assert entry["final"] is not None and 0.0 <= entry["final"] <= 1.0
        assert len(entry["intermediates"]) == 1  # one epoch -> one intermediate report


def test_registry_strategies_build() -> None:
    for name, spec in STRATEGIES.items():
        strategy = spec.build(SearchConfig(strategy=name, epochs=1))
        assert strategy is not None, name


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["tpe", "evolution", "grid", "policy_rl"])
def test_nni_multi_trial_strategies_search_ser_space(strategy: str, tmp_path: Path) -> None:
    """NNI's TPE (needs ser_space/nni_fixes.py: cell input choices as categorical choices),
    regularized evolution, grid search and PolicyBasedRL search SERSpace through real trials,
    and export a network that rebuilds from its architecture file and trains."""
    space = _space()
    train, val = _datasets(tmp_path / "data")
    result = run_search(space, SearchConfig(strategy=strategy, trials=2, trial_epochs=1), TrainConfig(batch_size=16),
                        train, val, tmp_path / "work", num_classes=CLASSES)
    assert set(result.architecture) == set(SERSpace(space.to_dict()).simplify())
    _check_architecture(result.architecture, space, tmp_path)
    assert len(result.history) == 2 and all(e["final"] is not None for e in result.history)


def test_sampling_strategies_search_without_the_zero_op() -> None:
    from strategies.search import STRATEGIES, searched_space

    space = SpaceConfig.small()
    assert "none" in space.cnn_ops and "none" in space.seq_ops
    # from the registry, so a new strategy cannot escape: differentiable ones keep the zero op (their
    # "no edge" weight), every strategy that samples architectures searches without it
    differentiable = [name for name, spec in STRATEGIES.items() if spec.kind == "oneshot" and not spec.sampling]
    assert set(differentiable) == {"darts", "gumbel_darts"}
    for strategy in differentiable:
        assert searched_space(space, strategy) == space
    for strategy in sorted(set(STRATEGIES) - set(differentiable)):
        reduced = searched_space(space, strategy)
        assert "none" not in reduced.cnn_ops and "none" not in reduced.seq_ops
        assert set(reduced.cnn_ops) == set(space.cnn_ops) - {"none"}
        # what they find is a point of the full space
        sample: dict = {}
        for mutable in SERSpace(reduced.to_dict()).simplify().values():
            mutable.random(memo=sample)
        validate_architecture(sample, space)


def test_random_oneshot_exports_the_best_of_its_scored_random_paths(tmp_path: Path) -> None:
    # NNI's RandomOneShot.export() is an arbitrary path; the search scores `candidates` random
    # paths with the shared weights after each epoch and records the best, which is exported
    space = _space()
    train, val = _datasets(tmp_path / "data")
    result = run_search(space, SearchConfig(strategy="random_oneshot", epochs=2, candidates=4),
                        TrainConfig(batch_size=8), train, val, tmp_path / "work", num_classes=CLASSES)
    assert result.architecture == result.history[-1]["architecture"]
    assert len({json.dumps(e["architecture"], sort_keys=True) for e in result.history}) == 2  # redrawn each epoch


def test_nni_proxyless_fails_on_ser_space_and_the_registry_refuses_it() -> None:
    """The defect behind REFUSED["proxyless"]: NNI 3.0's Proxyless breaks in the first step on
    SERSpace (a reduction cell's candidate inputs differ in size). When a fixed NNI makes this
    test fail, register Proxyless instead of refusing it."""
    import nni
    from nni.nas.evaluator.pytorch import Classification, DataLoader
    from nni.nas.experiment import NasExperiment
    from nni.nas.strategy import Proxyless
    from torch.utils.data import TensorDataset

    from strategies.search.registry import REFUSED, get_strategy

    config = SpaceConfig.tiny()
    torch.manual_seed(0)
    dataset = nni.trace(TensorDataset)(torch.randn(16, 1, config.n_mfcc, config.frames),
                                       torch.randint(0, config.num_classes, (16,)))
    evaluator = Classification(train_dataloaders=DataLoader(dataset, batch_size=8),
                               val_dataloaders=DataLoader(dataset, batch_size=8), max_epochs=1,
                               num_classes=config.num_classes, accelerator="cpu", enable_progress_bar=False,
                               logger=False, enable_checkpointing=False)
    experiment = NasExperiment(SERSpace(config), evaluator, Proxyless())
    try:
        with pytest.raises(RuntimeError, match="[Ss]ize"):
            experiment.run()
    finally:
        experiment.stop()
    with pytest.raises(ValueError, match="Proxyless cannot search SERSpace.*use darts") as error:
        SearchConfig(strategy="proxyless")
    assert "\n" not in str(error.value) and "proxyless" in REFUSED
    with pytest.raises(ValueError, match="proxyless"):
        get_strategy("proxyless")
