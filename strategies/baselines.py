"""Hand-designed CNN-LSTM architectures, written as points of ``SERSpace``.

The papers compare the searched networks with hand-designed CNN, CNN-LSTM and
CNN-LSTM-with-attention models. Expressing them as architectures of the same space (fixed
conv -> pool order instead of a searched one) means they are built, trained and scored by
exactly the same code as the searched ones, so "searched vs hand-designed" differs only in
the architecture. Unlike the authors' baselines they use cross-entropy, shuffled batches
and a per-utterance recurrence.

- ``cnn``: every cell a chain of convolutions (normal) or a convolution then max pooling
  (reduction); no recurrence (``skip_connect``); mean over time.
- ``cnn_lstm``: the same CNN, then one LSTM layer over time; mean over time.
- ``cnn_lstm_att``: the same, pooled by attention over frames.
"""

from __future__ import annotations

from typing import Any

from ser_space import SpaceConfig, label_specs, validate_architecture

__all__ = ["BASELINES", "hand_designed_architecture"]

BASELINES: dict[str, dict[str, Any]] = {
    "cnn": {"seq": ("skip_connect",), "pool": ("mean",)},
    "cnn_lstm": {"seq": ("lstm_1", "bilstm_1", "gru_1", "rnn_1"), "pool": ("mean",)},
    "cnn_lstm_att": {"seq": ("lstm_1", "bilstm_1", "gru_1", "rnn_1"), "pool": ("attention",)},
}

_CONVS = ("sep_conv_3x3", "dil_conv_3x3", "sep_conv_5x5", "dil_conv_5x5", "conv_3x3")
_POOLS = ("max_pool_3x3", "avg_pool_3x3")


def _first(available: tuple[Any, ...], preferred: tuple[str, ...], what: str, name: str) -> str:
    for candidate in preferred:
        if candidate in available:
            return candidate
    raise ValueError(f"baseline {name!r} needs one of {', '.join(preferred)} among the space's {what} "
                     f"candidates ({', '.join(map(str, available))})")


def hand_designed_architecture(name: str, config: SpaceConfig) -> dict[str, Any]:
    """The architecture ``{label: value}`` of baseline ``name`` in the space of ``config``."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; available: {', '.join(BASELINES)}")
    recipe = BASELINES[name]
    specs = label_specs(config)
    sample: dict[str, Any] = {}
    for label, spec in specs.items():
        parts = label.split("/")
        if label == "rnn/pool":
            sample[label] = _first(spec.values, recipe["pool"], "time pooling", name)
        elif parts[0] == "rnn" and parts[1].startswith("op_"):
            node = int(parts[1].split("_")[1])
            # first node: the recurrent layer; further nodes: identity, so one recurrent layer in all
            sample[label] = _first(spec.values, recipe["seq"], "sequence", name) if node == 1 else \
                _first(spec.values, ("skip_connect",), "sequence", name)
        elif parts[0] == "rnn" and parts[1].startswith("input_"):
            node = int(parts[1].split("_")[1])
            sample[label] = [node - 1]  # a chain: each node reads the previous one
        elif parts[0] == "cnn":
            kind = parts[1]
            _, node, slot = parts[2].split("_")
            node_index, slot_index = int(node), int(slot)
            if parts[2].startswith("op_"):
                if kind == "reduce" and node_index == 2 and slot_index == 0:
                    sample[label] = _first(spec.values, _CONVS, "CNN", name)
                elif kind == "reduce" and node_index == 2:
                    sample[label] = _first(spec.values, _POOLS, "CNN", name)
                elif slot_index == 0:
                    sample[label] = _first(spec.values, _CONVS, "CNN", name)
                else:
                    sample[label] = _first(spec.values, ("skip_connect",), "CNN", name)
            else:
                # a chain through the nodes: node 2 reads c_{k-1}, node i reads node i-1
                sample[label] = [1] if node_index == 2 else [node_index - 1]
    return validate_architecture(sample, config)
