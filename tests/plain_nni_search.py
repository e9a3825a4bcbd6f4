"""Search SERSpace with one NNI 3.0 strategy in a plain NNI experiment, importing nothing of
``strategies``: NNI's ``Classification`` evaluator on random data, as a user's own experiment
would. Run by tests/test_plain_nni.py in a fresh process (``python plain_nni_search.py NAME
FOLDER``); prints ``OK <architecture file>`` or raises.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nni
import torch
from nni.nas import strategy as nni_strategies
from nni.nas.evaluator.pytorch import Classification, DataLoader
from nni.nas.experiment import NasExperiment
from plain_nni_data import RandomMaps
from ser_space import SERSpace, SpaceConfig, build_model, load_architecture, save_architecture

MULTI_TRIAL = {"Random", "RegularizedEvolution", "TPE", "GridSearch", "PolicyBasedRL"}


def main(name: str, folder: Path) -> None:
    torch.manual_seed(0)
    config = SpaceConfig.tiny()
    # traced from an importable module, small arguments: what NNI's trials can rebuild
    dataset = nni.trace(RandomMaps)(16, config.n_mfcc, config.frames, config.num_classes)
    evaluator = Classification(
        train_dataloaders=DataLoader(dataset, batch_size=8, shuffle=True),
        val_dataloaders=DataLoader(dataset, batch_size=8),
        max_epochs=1, num_classes=config.num_classes, accelerator="cpu",
        enable_progress_bar=False, logger=False, enable_checkpointing=False,
    )
    kwargs = {"population_size": 2, "sample_size": 1} if name == "RegularizedEvolution" else {}
    if name == "PolicyBasedRL":
        kwargs = {"samples_per_update": 1}
    if name == "ENAS":  # Classification logs several metrics: name the controller's reward
        kwargs = {"reward_metric_name": "val_acc"}
    experiment = NasExperiment(SERSpace(config), evaluator, getattr(nni_strategies, name)(**kwargs))
    experiment.config.experiment_working_directory = str(folder / "nni")
    if name in MULTI_TRIAL:
        experiment.config.max_trial_number = 2
    try:
        experiment.run()
        sample = experiment.export_top_models(formatter="dict")[0]
    finally:
        experiment.stop()
    assert "strategies" not in sys.modules, "the plain NNI path imported strategies"
    path = folder / "architecture.json"
    save_architecture(path, sample, config, meta={"strategy": name})
    model = build_model(load_architecture(path))
    out = model(torch.randn(2, 1, config.n_mfcc, config.frames))
    out.sum().backward()
    assert out.shape == (2, config.num_classes) and torch.isfinite(out).all()
    print("OK", path)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
