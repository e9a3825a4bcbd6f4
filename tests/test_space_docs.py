"""The example in docs/search_space.md, mirrored here exactly and run.

``test_docs_example_is_mirrored`` fails when the docs block and ``_example`` drift apart:
edit both together (the block between ``example:start`` and ``example:end``).
"""

from __future__ import annotations

import inspect
import re
import textwrap
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs" / "search_space.md"


def _example() -> None:
    # example:start
    import nni
    import torch
    from nni.nas.evaluator.pytorch import Classification, DataLoader
    from nni.nas.experiment import NasExperiment
    from nni.nas.strategy import DARTS
    from torch.utils.data import TensorDataset

    from ser_space import SERSpace, SpaceConfig, build_model, load_architecture, save_architecture

    config = SpaceConfig.tiny()  # or SpaceConfig.paper("lstm_att")
    features = torch.randn(32, 1, config.n_mfcc, config.frames)  # your MFCC maps
    labels = torch.randint(0, config.num_classes, (32,))  # your emotion labels
    dataset = nni.trace(TensorDataset)(features, labels)
    evaluator = Classification(
        train_dataloaders=DataLoader(dataset, batch_size=8, shuffle=True),
        val_dataloaders=DataLoader(dataset, batch_size=8),
        max_epochs=1, num_classes=config.num_classes, accelerator="cpu",
        enable_progress_bar=False, logger=False, enable_checkpointing=False,
    )
    experiment = NasExperiment(SERSpace(config), evaluator, DARTS())
    experiment.run()
    sample = experiment.export_top_models(formatter="dict")[0]
    experiment.stop()
    save_architecture("arch.json", sample, config, meta={"strategy": "darts"})
    model = build_model(load_architecture("arch.json"))  # fixed PyTorch model: retrain it
    # example:end
    assert model(torch.randn(2, 1, config.n_mfcc, config.frames)).shape == (2, config.num_classes)


def _code_lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip().splitlines()]


def test_docs_example_is_mirrored() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    match = re.search(r"<!-- example:start -->\s*```python\n(.*?)```\s*<!-- example:end -->", docs, re.S)
    assert match, "example block not found in docs/search_space.md"
    source = inspect.getsource(_example)
    body = source.split("# example:start\n", 1)[1].split("# example:end", 1)[0]
    assert _code_lines(match.group(1)) == _code_lines(textwrap.dedent(body))


def test_docs_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # arch.json and NNI's experiment folder (~/nni-experiments) go to tmp_path.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    _example()
    from ser_space import SpaceConfig, load_architecture

    arch = load_architecture(tmp_path / "arch.json", expected_config=SpaceConfig.tiny())  # validated against the space
    assert arch.meta == {"strategy": "darts"} and all(label in arch.sample for label in ("rnn/pool", "rnn/op_1_0"))
