"""Tests of the architecture file: round-trip, validation errors, rebuilding, drawing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from ser_space import (
    ARCH_FORMAT,
    ARCH_VERSION,
    Architecture,
    ArchitectureError,
    RESIZABLE_FIELDS,
    SERSpace,
    SpaceConfig,
    build_model,
    count_parameters,
    draw_cells,
    export_architecture,
    load_architecture,
    random_architecture,
    save_architecture,
    validate_architecture,
)

TINY = SpaceConfig.tiny()


def test_round_trip_rebuilds_the_same_model(tmp_path: Path) -> None:
    sample = random_architecture(TINY, seed=4)
    path = save_architecture(tmp_path / "arch.json", sample, TINY, meta={"strategy": "random", "val_ua": 0.5})
    document = json.loads(path.read_text())
    assert document["format"] == ARCH_FORMAT and document["version"] == ARCH_VERSION
    assert document["meta"] == {"strategy": "random", "val_ua": 0.5}
    assert document["architecture"] == json.loads(json.dumps(sample))

    arch = load_architecture(path, expected_config=TINY)
    assert arch.config == TINY and arch.sample == sample and arch.meta["strategy"] == "random"

    space = SERSpace(TINY)
    torch.manual_seed(0)
    rebuilt = build_model(arch).eval()
    torch.manual_seed(0)
    frozen = space.freeze(sample).eval()
    x = torch.randn(2, 1, TINY.n_mfcc, 19)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), frozen(x))
    # Same structure: weights move between the two.
    torch.manual_seed(1)
    other = build_model(arch).eval()
    other.load_state_dict(frozen.state_dict())
    with torch.no_grad():
        assert torch.equal(other(x), frozen(x))
    assert count_parameters(rebuilt) == count_parameters(frozen) == sum(p.numel() for p in frozen.parameters())


def test_nni_samples_and_tuples_are_accepted(tmp_path: Path) -> None:
    memo: dict[str, Any] = {}
    SERSpace(TINY).random(memo)
    as_tuples = {k: tuple(v) if isinstance(v, list) else v for k, v in memo.items()}
    assert validate_architecture(as_tuples, TINY) == memo
    arch = load_architecture(save_architecture(tmp_path / "a.json", as_tuples, TINY))
    assert arch.sample == memo
    assert "meta" not in json.loads((tmp_path / "a.json").read_text())


def test_save_is_atomic_and_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "arch.json"
    save_architecture(path, random_architecture(TINY, seed=0), TINY)
    save_architecture(path, random_architecture(TINY, seed=1), TINY)
    assert [p.name for p in path.parent.iterdir()] == ["arch.json"]
    assert load_architecture(path).sample == random_architecture(TINY, seed=1)


def test_save_rejects_an_invalid_sample_and_writes_nothing(tmp_path: Path) -> None:
    sample = random_architecture(TINY, seed=0) | {"cnn/normal/op_2_0": "conv_9x9"}
    with pytest.raises(ArchitectureError, match="conv_9x9"):
        save_architecture(tmp_path / "arch.json", sample, TINY)
    assert list(tmp_path.iterdir()) == []


def _document() -> dict[str, Any]:
    return export_architecture(random_architecture(TINY, seed=0), TINY)


def _edit(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], str]:
    def write(path: Path) -> str:
        document = _document()
        change(document)
        return json.dumps(document)
    return write


def _set_arch(label: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        document["architecture"][label] = value
    return change


def _drop_arch(label: str) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        del document["architecture"][label]
    return change


BAD_FILES: dict[str, tuple[Callable[[Path], str], str]] = {
    "not_json": (lambda path: "{not json", "not JSON"),
    "list": (lambda path: "[1, 2]", "expected a JSON object"),
    "wrong_format": (_edit(lambda d: d.update(format="darts-genotype")), "not a ser-nas-arch file"),
    "wrong_version": (_edit(lambda d: d.update(version=2)), "unsupported version 2"),
    "extra_key": (_edit(lambda d: d.update(weights="x")), "unknown top-level key"),
    "bad_config": (_edit(lambda d: d["space_config"].update(num_layers=2)), "bad space_config.*num_layers"),
    "invalid_config": (_edit(lambda d: d["space_config"].update(channels=5)), "channels must be even"),
    "unknown_label": (_edit(_set_arch("cnn/normal/op_9_0", "none")), "unknown label 'cnn/normal/op_9_0'"),
    "missing_label": (_edit(_drop_arch("rnn/pool")), r"missing label\(s\) \['rnn/pool'\]"),
    "bad_op": (_edit(_set_arch("cnn/reduce/op_3_1", "conv_9x9")), "'cnn/reduce/op_3_1': value 'conv_9x9'"),
    "bad_seq_op": (_edit(_set_arch("rnn/op_1_0", "lstm_9")), "'rnn/op_1_0': value 'lstm_9'"),
    "input_out_of_range": (_edit(_set_arch("cnn/normal/input_2_0", [2])), r"'cnn/normal/input_2_0': value \[2\]"),
    "input_not_list": (_edit(_set_arch("cnn/normal/input_3_1", 1)), "'cnn/normal/input_3_1': value 1 "),
    "input_two_values": (_edit(_set_arch("cnn/normal/input_3_1", [0, 1])), r"'cnn/normal/input_3_1': value \[0, 1\]"),
    "bad_meta": (_edit(lambda d: d.update(meta=[1])), "meta must be an object"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_give_one_line_errors_naming_file_and_problem(case: str, tmp_path: Path) -> None:
    make, pattern = BAD_FILES[case]
    path = tmp_path / f"{case}.json"
    path.write_text(make(path))
    with pytest.raises(ArchitectureError, match=pattern) as error:
        load_architecture(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ArchitectureError, match="cannot read"):
        load_architecture(tmp_path / "absent.json")


def test_config_mismatch_names_the_fields(tmp_path: Path) -> None:
    path = save_architecture(tmp_path / "arch.json", random_architecture(TINY, seed=0), TINY)
    expected = TINY.replace(num_classes=6, dropout=0.1)
    with pytest.raises(ArchitectureError, match=r"num_classes \(file 4, expected 6\), dropout"):
        load_architecture(path, expected_config=expected)


def test_an_architecture_loads_at_another_width_only_when_asked(tmp_path: Path) -> None:
    path = save_architecture(tmp_path / "arch.json", random_architecture(TINY, seed=0), TINY)
    wider = TINY.replace(channels=TINY.channels * 2, hidden_size=TINY.hidden_size * 2, dropout=0.1, cell_dropout=0.0,
                         drop_path_prob=0.2)
    assert set(RESIZABLE_FIELDS) == {"channels", "hidden_size", "dropout", "cell_dropout", "drop_path_prob"}
    arch = load_architecture(path, expected_config=wider, resize=True)
    assert arch.config == TINY
    model = build_model(arch.sample, wider)  # the same cells, twice as wide
    assert model.stem[0].out_channels == 3 * wider.channels and model.classifier.in_features == wider.hidden_size
    assert model.eval()(torch.randn(2, 1, wider.n_mfcc, wider.frames)).shape == (2, wider.num_classes)
    with pytest.raises(ArchitectureError, match=r"channels \(file"):
        load_architecture(path, expected_config=wider)
    # a field that sets the choices or their meaning may not differ even so
    with pytest.raises(ArchitectureError, match=r"space_config differs.*: num_nodes \(file"):
        load_architecture(path, expected_config=wider.replace(num_nodes=3), resize=True)
    with pytest.raises(ArchitectureError, match="cnn_ops"):
        load_architecture(path, expected_config=TINY.replace(cnn_ops=tuple(reversed(TINY.cnn_ops))), resize=True)


def test_architecture_of_another_space_is_rejected() -> None:
    sample = random_architecture(TINY, seed=0)
    with pytest.raises(ArchitectureError, match="missing label"):
        validate_architecture(sample, TINY.replace(num_nodes=3))


def test_build_model_from_a_bare_sample_and_type_checks() -> None:
    sample = random_architecture(TINY, seed=0)
    model = build_model(sample, TINY)
    assert model.simplify() == {}
    with pytest.raises(TypeError):
        build_model(Architecture(TINY, sample), TINY)


@pytest.mark.parametrize("config", [TINY, TINY.replace(num_cells=1, reduction_cells=(0,)),
                                    TINY.replace(reduction_cells=())], ids=["tiny", "reduce_only", "normal_only"])
def test_draw_cells_writes_a_png(config: SpaceConfig, tmp_path: Path) -> None:
    arch = Architecture(config, random_architecture(config, seed=0))
    path = draw_cells(arch, tmp_path / "cells.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5000
    assert [p.name for p in tmp_path.iterdir()] == ["cells.png"]


def test_a_seeded_build_does_not_depend_on_what_was_built_before() -> None:
    """The architecture checks build the space once per config (cached); that must not move the
    global RNG, or a fold's weights would depend on the folds run before it in the process."""
    import torch

    from ser_space import SpaceConfig, build_model
    from ser_space.arch import _label_specs
    from strategies.baselines import hand_designed_architecture

    space = SpaceConfig.tiny().replace(affine=True)
    sample = hand_designed_architecture("cnn_lstm", space)
    weights = []
    for _ in range(2):  # cold cache, then warm
        if not weights:
            _label_specs.cache_clear()
        torch.manual_seed(0)
        model = build_model(sample, space)
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
