"""Pictures of an architecture: the normal and reduction CNN cells and the sequence part.

Pure matplotlib on an Agg canvas (no display, no pyplot state, no graphviz).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .arch import Architecture, validate_architecture
from .io import write_atomically
from .cells import NUM_OPS_PER_NODE, NUM_PREDECESSORS, SEQ_NUM_OPS_PER_NODE, SEQ_NUM_PREDECESSORS
from .config import SpaceConfig

__all__ = ["cell_edges", "draw_cells"]

_logger = logging.getLogger(__name__)


def cell_edges(sample: dict[str, Any], prefix: str, num_nodes: int, num_predecessors: int,
               num_ops_per_node: int) -> list[tuple[int, int, str]]:
    """Edges ``(input index, node index, op name)`` of one cell kind in ``sample``.

    Indices follow NNI's ``Cell``: predecessors first (0 .. num_predecessors-1), then nodes.
    """
    edges = []
    for node in range(num_predecessors, num_predecessors + num_nodes):
        for k in range(num_ops_per_node):
            (source,) = sample[f"{prefix}/input_{node}_{k}"]
            edges.append((int(source), node, str(sample[f"{prefix}/op_{node}_{k}"])))
    return edges


def _draw_dag(ax: Any, title: str, inputs: list[str], num_nodes: int, output: str,
              edges: list[tuple[int, int, str]]) -> None:
    num_inputs = len(inputs)
    positions: dict[int, tuple[float, float]] = {}
    for i in range(num_inputs):
        positions[i] = (0.0, (num_inputs - 1) / 2 - i)
    for n in range(num_nodes):
        # Zig-zag so edges from earlier nodes do not overlap the straight chain.
        positions[num_inputs + n] = (1.0 + n, 0.6 * (1 if n % 2 == 0 else -1) if num_nodes > 1 else 0.0)
    out_index = num_inputs + num_nodes
    positions[out_index] = (1.0 + num_nodes, 0.0)
    names = inputs + [str(n) for n in range(num_nodes)] + [output]

    for number, (source, target, op) in enumerate(edges):
        (x0, y0), (x1, y1) = positions[source], positions[target]
        # Alternate the bend so two ops on the same pair of states stay apart; the label
        # sits at the middle of matplotlib's arc3 Bezier curve.
        rad = 0.18 if number % 2 == 0 else -0.18
        style = dict(arrowstyle="->", color="0.6" if op == "none" else "tab:blue",
                     linestyle="--" if op == "none" else "-", connectionstyle=f"arc3,rad={rad}",
                     shrinkA=8, shrinkB=8)
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=style)
        label_x = (x0 + x1) / 2 + 0.5 * rad * (y1 - y0)
        label_y = (y0 + y1) / 2 - 0.5 * rad * (x1 - x0)
        ax.text(label_x, label_y, op, fontsize=7, ha="center", va="center", color="0.2",
                bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.85))
    for n in range(num_nodes):
        (x0, y0), (x1, y1) = positions[num_inputs + n], positions[out_index]
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="->", color="0.75", linestyle=":"))
    for index, (x, y) in positions.items():
        colour = "lightgreen" if index < num_inputs else "khaki" if index == out_index else "lightskyblue"
        ax.text(x, y, names[index], ha="center", va="center", fontsize=9,
                bbox=dict(boxstyle="round,pad=0.3", fc=colour, ec="0.3"))
    ax.set_title(title, fontsize=10)
    ax.set_xlim(-0.6, num_nodes + 1.6)
    ax.set_ylim(-1.4, 1.4)
    ax.axis("off")


def draw_cells(arch: Architecture, path: str | os.PathLike[str]) -> Path:
    """Draw the normal and reduction CNN cells and the sequence part of ``arch`` to a PNG.

    Edges carry op names (``none`` dashed grey); dotted grey arrows are the concatenation
    into the cell output. The file is written atomically.
    """
    config: SpaceConfig = arch.config
    sample = validate_architecture(arch.sample, config)
    panels = []
    for kind, present in (("normal", config.num_cells > config.num_reductions), ("reduce", config.num_reductions > 0)):
        if present:
            panels.append((f"cnn/{kind}", f"CNN {kind} cell (node j is NNI index j + 2)", ["$c_{k-2}$", "$c_{k-1}$"], config.num_nodes,
                           "$c_{k}$", cell_edges(sample, f"cnn/{kind}", config.num_nodes, NUM_PREDECESSORS,
                                               NUM_OPS_PER_NODE)))
    seq_title = (f"sequence cell (node j is NNI index j + 1): {config.seq_input} -> Linear {config.hidden_size}"
                 f" -> nodes -> pool: {sample['rnn/pool']}")
    panels.append(("rnn", seq_title, ["x"], config.seq_num_nodes, f"pool:{sample['rnn/pool']}",
                   cell_edges(sample, "rnn", config.seq_num_nodes, SEQ_NUM_PREDECESSORS, SEQ_NUM_OPS_PER_NODE)))

    ratios = [1.0] * (len(panels) - 1) + [0.7 if config.seq_num_nodes == 1 else 1.0]
    figure = Figure(figsize=(9, 2.8 * sum(ratios)))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(panels), 1, squeeze=False, gridspec_kw={"height_ratios": ratios})[:, 0]
    for ax, (_, title, inputs, num_nodes, output, edges) in zip(axes, panels):
        _draw_dag(ax, title, inputs, num_nodes, output, edges)
    figure.tight_layout()

    path = write_atomically(path, lambda stream: figure.savefig(stream, format="png", dpi=110))
    _logger.info("drew cells to %s", path)
    return path
