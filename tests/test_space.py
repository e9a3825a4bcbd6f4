"""Tests of ``SpaceConfig`` and ``SERSpace``: config checks, labels (golden files), random
samples running forward and backward, serialization, and one-shot mutation.

Golden label files: ``tests/golden/labels_tiny.json`` and ``tests/golden/labels_paper.json``
guard the architecture format. After an intended change of the label scheme, regenerate
them with ``python tests/test_space.py --regenerate-golden`` (from the repository root)
and bump ``ARCH_VERSION`` in ``ser_space/arch.py`` if old architecture files no longer load.
"""

from __future__ import annotations

import json
from pathlib import Path

import nni
import pytest
import torch
from nni.mutable import label_scope

from ser_space import (
    POOL_OPS,
    SEQ_OP_SETS,
    SEQ_OPS,
    SERSpace,
    SpaceConfig,
    build_model,
    choice_labels,
    count_parameters,
    random_architecture,
    set_drop_path_prob,
)

GOLDEN = Path(__file__).parent / "golden"
TINY = SpaceConfig.tiny()


# ----------------------------------------------------------------------------- config


def test_default_config_is_the_paper_geometry() -> None:
    config = SpaceConfig.paper()
    assert config == SpaceConfig()
    assert (config.n_mfcc, config.frames, config.channels, config.num_cells) == (128, 128, 8, 4)
    assert config.reduction_cells == (1, 2)
    assert config.cnn_ops == ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
                              "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5", "none")
    # 24x128x128 -> 32x128x128 -> 64x64x64 -> 128x32x32 -> 128x32x32
    assert (config.cnn_out_channels, config.cnn_out_height) == (128, 32)


@pytest.mark.parametrize("changes, message", [
    ({"channels": 7}, "channels must be even"),
    ({"channels": 0}, "channels must be a positive int"),
    ({"hidden_size": 15}, "hidden_size must be even"),
    ({"num_classes": 1}, "num_classes must be at least 2"),
    ({"min_frames": 64, "max_frames": 32, "frames": 48}, "min_frames"),
    ({"frames": 2000}, "frames"),
    ({"reduction_cells": (1, 4)}, "outside 0..3"),
    ({"reduction_cells": (2, 1)}, "strictly increasing"),
    ({"reduction_cells": [1, 2]}, "must be a tuple"),
    ({"cnn_ops": ("sep_conv_3x3", "conv_9x9")}, "unknown cnn_ops"),
    ({"seq_ops": ("lstm_1", "lstm_1")}, "duplicates"),
    ({"pool_ops": ()}, "must not be empty"),
    ({"seq_input": "stack"}, "seq_input"),
    ({"dropout": 1.0}, "dropout"),
    ({"affine": 1}, "affine"),
    ({"seq_residual": "yes"}, "seq_residual must be a bool"),
])
def test_config_rejects_bad_values_with_clear_messages(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SpaceConfig(**changes)


def test_config_dict_round_trip_through_json() -> None:
    for config in (SpaceConfig(), TINY, SpaceConfig.paper("all")):
        data = json.loads(json.dumps(config.to_dict()))
        assert isinstance(data["cnn_ops"], list)
        assert SpaceConfig.from_dict(data) == config


def test_small_preset_has_residual_recurrences_and_old_files_keep_plain_ones() -> None:
    # The small preset's LSTMs are x + LSTM(x); an architecture file written before the field
    # existed (no seq_residual key) rebuilds the authors' plain recurrence.
    assert SpaceConfig.small().seq_residual and not SpaceConfig.paper().seq_residual
    data = SpaceConfig.small().to_dict()
    del data["seq_residual"]
    assert SpaceConfig.from_dict(data) == SpaceConfig.small().replace(seq_residual=False)
    for residual in (True, False):
        config = TINY.replace(seq_num_nodes=1, seq_residual=residual)
        model = SERSpace(config)
        ops = [m for m in model.modules() if type(m).__name__ == "Recurrent"]
        assert ops and all(op.residual is residual for op in ops)


def test_config_from_dict_rejects_unknown_keys() -> None:
    data = TINY.to_dict() | {"num_layers": 3}
    with pytest.raises(ValueError, match=r"unknown keys \['num_layers'\]"):
        SpaceConfig.from_dict(data)


@pytest.mark.parametrize("name", sorted(SEQ_OP_SETS))
def test_seq_op_sets_are_valid_and_follow_the_authors(name: str) -> None:
    config = TINY.with_seq_op_set(name)
    assert config.seq_ops == SEQ_OP_SETS[name].seq_ops
    assert config.pool_ops == SEQ_OP_SETS[name].pool_ops
    assert set(config.seq_ops) <= set(SEQ_OPS) and set(config.pool_ops) <= set(POOL_OPS)
    assert config.seq_ops[-2:] == ("skip_connect", "none")
    assert ("attention" in config.pool_ops) == (name.endswith("_att") or name == "all")
    if name == "all":
        assert len(config.seq_ops) == 14


def test_unknown_seq_op_set() -> None:
    with pytest.raises(ValueError, match="unknown sequence op set 'gru'"):
        TINY.with_seq_op_set("gru")


# ----------------------------------------------------------------------------- labels


@pytest.mark.parametrize("name", ["tiny", "paper"])
def test_labels_match_golden_file(name: str) -> None:
    """Regenerate with the command in this module's docstring."""
    expected = json.loads((GOLDEN / f"labels_{name}.json").read_text())
    assert choice_labels(getattr(SpaceConfig, name)()) == expected


def test_labels_are_a_pure_function_of_the_config() -> None:
    first = choice_labels(TINY)
    SERSpace(SpaceConfig.paper())  # building another space first changes nothing
    assert choice_labels(TINY) == first
    # Nested in an enclosing NNI label scope (a bigger model space), NNI prefixes the
    # labels with that scope, and nothing else changes.
    with label_scope("outer"):
        inside_scope = choice_labels(TINY)
    assert inside_scope == [f"outer/{label}" for label in first]


def test_label_scheme() -> None:
    labels = choice_labels(TINY)
    n = TINY.num_nodes
    cnn = [f"cnn/{kind}/{what}_{i}_{k}" for kind in ("normal", "reduce") for what in ("op", "input")
           for i in range(2, 2 + n) for k in range(2)]
    rnn = [f"rnn/{what}_{i}_0" for what in ("op", "input") for i in range(1, 1 + TINY.seq_num_nodes)]
    assert sorted(labels) == sorted(cnn + rnn + ["rnn/pool"])
    space = SERSpace(TINY).simplify()
    assert list(space["cnn/normal/op_2_0"].values) == list(TINY.cnn_ops)
    assert list(space["cnn/reduce/input_3_1"].values) == [0, 1, 2]
    assert list(space["rnn/op_1_0"].values) == list(TINY.seq_ops)
    assert list(space["rnn/pool"].values) == list(TINY.pool_ops)


def test_cells_of_one_kind_share_their_choices() -> None:
    config = TINY.replace(num_cells=4, reduction_cells=(1, 3))
    # 2 normal + 2 reduction cells, still one set of labels per kind.
    assert choice_labels(config) == choice_labels(TINY)
    sample = random_architecture(config, seed=3)
    model = build_model(sample, config)
    normal = [model.cells[0], model.cells[2]]
    reduce = [model.cells[1], model.cells[3]]
    for pair in (normal, reduce):
        ops = [[type(op).__name__ for node in cell.ops for op in node] for cell in pair]
        inputs = [[inp.chosen for node in cell.inputs for inp in node] for cell in pair]
        assert ops[0] == ops[1] and inputs[0] == inputs[1]


# ----------------------------------------------------------------------------- forward


def _random_samples(config: SpaceConfig, count: int) -> list[dict]:
    return [random_architecture(config, seed=seed) for seed in range(count)]


@pytest.mark.parametrize("seed", range(5))
def test_random_architectures_run_forward_and_backward(seed: int) -> None:
    sample = random_architecture(TINY, seed=seed)
    torch.manual_seed(seed)
    model = SERSpace(TINY).freeze(sample)
    assert model.simplify() == {}  # a fixed model: no choices left
    for frames in (TINY.min_frames, 21):
        model.train()
        x = torch.randn(3, 1, TINY.n_mfcc, frames, requires_grad=True)
        logits = model(x)
        assert logits.shape == (3, TINY.num_classes)
        assert torch.isfinite(logits).all()
        torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 3])).backward()
        assert torch.isfinite(x.grad).all()
        assert model.classifier.weight.grad.abs().sum() > 0
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        model.zero_grad()
        model.eval()
        with torch.no_grad():
            single = model(x[:1].detach())
            assert single.shape == (1, TINY.num_classes)
            # Eval mode: an utterance's logits do not depend on its batch.
            assert torch.allclose(single[0], model(x.detach())[0], atol=1e-5)


def test_nni_random_gives_the_same_kind_of_sample() -> None:
    space = SERSpace(TINY)
    memo: dict = {}
    model = space.random(memo)
    assert set(memo) == set(choice_labels(TINY))
    assert all(isinstance(v, list) for k, v in memo.items() if "/input_" in k)
    model.eval()
    assert model(torch.randn(2, 1, TINY.n_mfcc, TINY.frames)).shape == (2, TINY.num_classes)


def test_frame_range_and_flatten_input() -> None:
    config = TINY.replace(seq_input="flatten")
    model = build_model(random_architecture(config, seed=1), config).eval()
    with torch.no_grad():
        for frames in (config.min_frames, config.max_frames):
            assert model(torch.randn(2, 1, config.n_mfcc, frames)).shape == (2, config.num_classes)


def test_wrong_input_shape_is_a_clear_error() -> None:
    model = build_model(random_architecture(TINY, seed=0), TINY).eval()
    with pytest.raises(ValueError, match=r"expected input \(batch, 1, 16, frames\)"):
        model(torch.randn(2, 1, 20, 32))


def test_paper_config_builds_and_runs() -> None:
    config = SpaceConfig.paper()
    sample = random_architecture(config, seed=0)
    model = build_model(sample, config).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 1, 128, 128))
    assert logits.shape == (2, 4) and torch.isfinite(logits).all()
    assert count_parameters(model) > 0


def test_supernet_dry_run_forward() -> None:
    space = SERSpace(TINY).eval()
    with torch.no_grad():
        assert space(torch.randn(2, 1, TINY.n_mfcc, TINY.frames)).shape == (2, TINY.num_classes)


def test_drop_path_modules_are_settable() -> None:
    config = TINY.replace(drop_path_prob=0.2)
    model = build_model(random_architecture(config, seed=0), config)
    drops = [m for m in model.modules() if type(m).__name__ == "DropPath"]
    assert drops and all(d.drop_prob == 0.2 for d in drops)
    assert set_drop_path_prob(model, 0.1) == len(drops)
    assert all(d.drop_prob == 0.1 for d in drops)
    assert set_drop_path_prob(build_model(random_architecture(TINY, seed=0), TINY), 0.1) == 0


# ----------------------------------------------------------------------------- NNI integration


def test_nni_dump_load_round_trip_without_pickle() -> None:
    space = SERSpace(TINY)
    dumped = nni.dump(space)
    assert "ser_space.space.SERSpace" in dumped and "pickle" not in dumped
    loaded = nni.load(dumped)
    assert isinstance(loaded, SERSpace)
    assert loaded.config == TINY
    assert list(loaded.simplify()) == list(space.simplify())


def test_trace_copy_rebuilds_a_frozen_model_as_nni_multi_trial_does() -> None:
    from nni.nas.space import model_context

    sample = random_architecture(TINY, seed=2)
    with model_context(sample):
        model = SERSpace(TINY).trace_copy().get(traceable=False)
    assert model.simplify() == {}


def test_darts_mutates_the_space_into_a_supernet() -> None:
    from nni.nas.oneshot.pytorch.supermodule.differentiable import (
        DifferentiableMixedCell,
        DifferentiableMixedLayer,
    )
    from nni.nas.strategy import DARTS

    config = TINY.replace(num_cells=3, reduction_cells=(1,))
    supernet = DARTS().mutate_model(SERSpace(config))
    cells = [m for m in supernet.modules() if isinstance(m, DifferentiableMixedCell)]
    assert len(cells) == 4  # 3 CNN cells + the sequence cell
    assert any(isinstance(m, DifferentiableMixedLayer) for m in supernet.modules())  # rnn/pool
    # The two normal cells share their edge weights.
    assert cells[0]._arch_alpha["cnn/normal/2_0"] is cells[2]._arch_alpha["cnn/normal/2_0"]
    supernet.train()
    x = torch.randn(2, 1, config.n_mfcc, 13)
    supernet(x).sum().backward()
    alpha = cells[0]._arch_alpha["cnn/normal/2_0"]
    assert alpha.grad is not None and alpha.grad.abs().sum() > 0


def test_ser_space_never_imports_strategies() -> None:
    # Imports point one way (strategies -> ser_space); checked on the source, no subprocess.
    import ast

    import ser_space

    for path in Path(ser_space.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(name.split(".")[0] == "strategies" for name in names), path


def _regenerate_golden() -> None:
    for name in ("tiny", "paper"):
        labels = choice_labels(getattr(SpaceConfig, name)())
        (GOLDEN / f"labels_{name}.json").write_text(json.dumps(labels, indent=1) + "\n")


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--regenerate-golden"]:
        raise SystemExit("usage: python tests/test_space.py --regenerate-golden")
    _regenerate_golden()
