"""The architecture file: export, validate, save, load, and rebuild a fixed model.

An architecture is versioned JSON::

    {
      "format": "ser-nas-arch",
      "version": 1,
      "space_config": {...},                  # SpaceConfig.to_dict()
      "architecture": {label: value, ...},    # exactly the space's labels
      "meta": {...}                           # optional: strategy, metrics, ...
    }

Values are what NNI produces (``space.random()``, ``export_top_models(formatter="dict")``):
an op name (str) for ``.../op_*`` and ``rnn/pool``, a one-element list of input indices
for ``.../input_*``. Files are validated against ``SERSpace(space_config)`` and a model is
rebuilt only through NNI (``model_context``); nothing is ever evaluated or unpickled.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from nni.mutable import Categorical, CategoricalMultiple
from nni.nas.space import model_context
import torch
from torch import nn

from .config import RESIZABLE_FIELDS, SpaceConfig
from .io import write_atomically
from .space import SERSpace, as_config

__all__ = [
    "ARCH_FORMAT",
    "ARCH_VERSION",
    "Architecture",
    "ArchitectureError",
    "LabelSpec",
    "label_specs",
    "validate_architecture",
    "export_architecture",
    "save_architecture",
    "load_architecture",
    "parse_architecture",
    "build_model",
    "count_parameters",
    "count_multiply_adds",
    "random_architecture",
]

_logger = logging.getLogger(__name__)

ARCH_FORMAT = "ser-nas-arch"
"""Value of the ``format`` key."""
ARCH_VERSION = 1
"""Current (and only supported) ``version``."""


class ArchitectureError(ValueError):
    """An architecture (file or dict) that does not fit the format or the space."""


@dataclass(frozen=True)
class LabelSpec:
    """What one label accepts: ``values`` (candidates); ``n_chosen`` is set for input choices."""

    values: tuple[Any, ...]
    # None: the value is one of ``values``; an int: a list of that many distinct values.
    n_chosen: int | None = None


@dataclass(frozen=True)
class Architecture:
    """A loaded architecture: the space config, the ``{label: value}`` sample, and meta data."""

    config: SpaceConfig
    sample: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)


@lru_cache(maxsize=16)
def _label_specs(config: SpaceConfig) -> dict[str, LabelSpec]:
    specs: dict[str, LabelSpec] = {}
    # building the space initialises its weights: draw them from a forked RNG, so that whether
    # this cache was warm never changes the weights of the model built next (a fold's result
    # must not depend on what ran before it in the process)
    with torch.random.fork_rng(devices=[]):
        mutables = SERSpace(config).simplify()
    for label, mutable in mutables.items():
        if isinstance(mutable, CategoricalMultiple):
            specs[label] = LabelSpec(tuple(mutable.values), mutable.n_chosen)
        elif isinstance(mutable, Categorical):
            specs[label] = LabelSpec(tuple(mutable.values))
        else:  # pragma: no cover - SERSpace only creates categorical choices
            raise TypeError(f"unexpected mutable {mutable!r} for label {label}")
    return specs


def label_specs(config: SpaceConfig | dict[str, Any] | None = None) -> dict[str, LabelSpec]:
    """``{label: LabelSpec}`` of ``SERSpace(config)``, in construction order."""
    return dict(_label_specs(as_config(config)))


def _normalise(sample: dict[str, Any]) -> dict[str, Any]:
    # JSON gives lists, NNI gives lists, users may give tuples: store lists of ints.
    return {label: list(value) if isinstance(value, (list, tuple)) else value for label, value in sample.items()}


def validate_architecture(sample: dict[str, Any], config: SpaceConfig | dict[str, Any] | None = None) -> dict[str, Any]:
    """Check ``sample`` against ``SERSpace(config)``; return it normalised (lists, not tuples).

    Raises
    ------
    ArchitectureError
        Naming the first unknown label, the missing labels, or a label whose value is not
        among its candidates.
    """
    if not isinstance(sample, dict):
        raise ArchitectureError(f"architecture must be a dict of label -> value, got {type(sample).__name__}")
    specs = _label_specs(as_config(config))
    unknown = [label for label in sample if label not in specs]
    if unknown:
        raise ArchitectureError(f"unknown label {unknown[0]!r} (not in the space; {len(unknown)} unknown in all)")
    missing = [label for label in specs if label not in sample]
    if missing:
        raise ArchitectureError(f"missing label(s) {missing}")
    sample = _normalise(sample)
    for label, spec in specs.items():
        value = sample[label]
        if spec.n_chosen is None:
            ok = isinstance(value, str) and value in spec.values
        else:
            ok = (isinstance(value, list) and len(value) == spec.n_chosen
                  and all(isinstance(v, int) and not isinstance(v, bool) and v in spec.values for v in value)
                  and len(set(value)) == len(value))
        if not ok:
            expected = list(spec.values) if spec.n_chosen is None else \
                f"a list of {spec.n_chosen} of {list(spec.values)}"
            raise ArchitectureError(f"label {label!r}: value {value!r} is not among the candidates {expected}")
    return sample


def export_architecture(sample: dict[str, Any], config: SpaceConfig | dict[str, Any] | None = None,
                        meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON document (a dict) of a validated ``sample`` of ``SERSpace(config)``.

    Parameters
    ----------
    sample
        ``{label: value}`` as produced by NNI (``space.random(memo)``, a strategy's export).
    config
        The space it belongs to.
    meta
        Optional JSON-able extras (strategy, metrics, ...).
    """
    config = as_config(config)
    sample = validate_architecture(sample, config)
    document: dict[str, Any] = {
        "format": ARCH_FORMAT,
        "version": ARCH_VERSION,
        "space_config": json.loads(json.dumps(config.to_dict())),
        "architecture": {label: sample[label] for label in _label_specs(config)},
    }
    if meta is not None:
        if not isinstance(meta, dict):
            raise ArchitectureError(f"meta must be a dict, got {type(meta).__name__}")
        document["meta"] = meta
    return document


def save_architecture(path: str | os.PathLike[str], sample: dict[str, Any],
                      config: SpaceConfig | dict[str, Any] | None = None,
                      meta: dict[str, Any] | None = None) -> Path:
    """Validate and write an architecture file atomically (temp file, then ``os.replace``)."""
    path = Path(path)
    text = json.dumps(export_architecture(sample, config, meta), indent=2) + "\n"
    write_atomically(path, lambda stream: stream.write(text.encode("utf-8")))
    _logger.info("saved architecture to %s", path)
    return path


def parse_architecture(document: Any, expected_config: SpaceConfig | None = None,
                       resize: bool = False) -> Architecture:
    """An :class:`Architecture` from a parsed JSON document, fully validated.

    Parameters
    ----------
    document
        The decoded JSON.
    expected_config
        When given, the document's ``space_config`` must equal it.
    resize
        With ``expected_config``: the two may differ in the fields of
        :data:`~ser_space.config.RESIZABLE_FIELDS` (width and dropout), for retraining the
        architecture at ``expected_config``'s; every other field must still be equal.
    """
    if not isinstance(document, dict):
        raise ArchitectureError(f"expected a JSON object, got {type(document).__name__}")
    if document.get("format") != ARCH_FORMAT:
        raise ArchitectureError(f"not a {ARCH_FORMAT} file (format={document.get('format')!r})")
    if document.get("version") != ARCH_VERSION:
        raise ArchitectureError(
            f"unsupported version {document.get('version')!r} (this code reads version {ARCH_VERSION})")
    known = {"format", "version", "space_config", "architecture", "meta"}
    extra = sorted(set(document) - known)
    if extra:
        raise ArchitectureError(f"unknown top-level key(s) {extra}")
    try:
        config = SpaceConfig.from_dict(document.get("space_config"))
    except (ValueError, TypeError) as error:
        raise ArchitectureError(f"bad space_config: {error}") from None
    if expected_config is not None:
        diffs = [f"{f.name} (file {getattr(config, f.name)!r}, expected {getattr(expected_config, f.name)!r})"
                 for f in dataclasses.fields(config) if getattr(config, f.name) != getattr(expected_config, f.name)
                 and not (resize and f.name in RESIZABLE_FIELDS)]
        if diffs:
            raise ArchitectureError(f"space_config differs from the expected one: {', '.join(diffs)}")
    meta = document.get("meta", {})
    if not isinstance(meta, dict):
        raise ArchitectureError(f"meta must be an object, got {type(meta).__name__}")
    sample = validate_architecture(document.get("architecture"), config)
    return Architecture(config=config, sample=sample, meta=meta)


def load_architecture(path: str | os.PathLike[str], expected_config: SpaceConfig | None = None,
                      resize: bool = False) -> Architecture:
    """Read and validate an architecture file (``expected_config``, ``resize``: see
    :func:`parse_architecture`).

    Raises
    ------
    ArchitectureError
        One line naming the file and the problem: unreadable, not JSON, wrong format or
        version, bad or unexpected space config, unknown or missing label, bad value.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ArchitectureError(f"{path}: cannot read architecture file: {error}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ArchitectureError(f"{path}: not JSON ({error})") from None
    try:
        return parse_architecture(document, expected_config, resize)
    except ArchitectureError as error:
        raise ArchitectureError(f"{path}: {error}") from None


def build_model(arch: Architecture | dict[str, Any], config: SpaceConfig | dict[str, Any] | None = None) -> nn.Module:
    """A fixed PyTorch model for an architecture, freshly initialised, built through NNI.

    Parameters
    ----------
    arch
        An :class:`Architecture`, or a bare ``{label: value}`` sample (then ``config`` is
        its space).
    config
        Only with a bare sample.
    """
    if isinstance(arch, Architecture):
        if config is not None:
            raise TypeError("pass config only with a bare sample; an Architecture carries its own")
        config, sample = arch.config, arch.sample
    else:
        config = as_config(config)
        sample = arch
    sample = validate_architecture(sample, config)
    with model_context(sample):
        return SERSpace(config)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def count_multiply_adds(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass of ``model`` on an input of ``input_shape``.

    Matrix products and convolutions as torch's FLOP counter counts them (half its FLOPs), plus
    the recurrences, which it does not see (a fused op): per step, layer and direction, gates x
    (input + hidden) x hidden.
    """
    from torch.utils.flop_counter import FlopCounterMode

    recurrent = [0]

    def count(module: nn.RNNBase, inputs: tuple[torch.Tensor, ...], output: Any) -> None:
        x = inputs[0]
        steps = x.shape[1] if module.batch_first else x.shape[0]
        batch = x.shape[0] if module.batch_first else x.shape[1]
        directions = 2 if module.bidirectional else 1
        for layer in range(module.num_layers):
            width = module.input_size if layer == 0 else module.hidden_size * directions
            recurrent[0] += (_GATES[module.mode] * (width + module.hidden_size) * module.hidden_size
                             * steps * batch * directions)

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.RNNBase)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(*input_shape))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return int(math.ceil(counter.get_total_flops() / 2)) + recurrent[0]


def random_architecture(config: SpaceConfig | dict[str, Any] | None = None, seed: int | None = None) -> dict[str, Any]:
    """A uniformly random ``{label: value}`` sample of ``SERSpace(config)`` (as NNI's ``random``)."""
    random_state = np.random.RandomState(seed)
    sample: dict[str, Any] = {}
    for label, spec in _label_specs(as_config(config)).items():
        if spec.n_chosen is None:
            sample[label] = spec.values[random_state.randint(len(spec.values))]
        else:
            chosen = random_state.choice(len(spec.values), spec.n_chosen, replace=False)
            sample[label] = [int(spec.values[i]) for i in chosen]
    return sample
