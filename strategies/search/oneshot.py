"""What the one-shot strategies (DARTS, ENAS) share: per-epoch validation and genotype tracking.

NNI 3.0's one-shot strategies consume the validation split themselves (architecture steps or
controller rewards) and run no Lightning validation loop, so the evaluator would see no
validation metrics. :class:`EpochValidation` scores the supernet on the validation split at
the end of every epoch and records the architecture the strategy would export at that
moment, so the run folder has validation curves and the "best epoch" genotype (the
authors' choice) beside the last one (plain DARTS).

For DARTS the supernet is scored as it trains (the softmax-weighted mixture). For sampling
strategies (ENAS) the exported architecture's path is fixed in the supernet and scored with
the shared weights. A strategy that has nothing to export (NNI's ``RandomOneShot``, whose
``export`` returns an arbitrary path) has ``candidates`` random paths scored instead, each
with the shared weights, and the best of them recorded: random search with weight sharing
(Li and Talwalkar 2019).
"""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl
import torch

from ..evaluator import SERModule, classification_metrics, confusion_matrix, predict_logits

logger = logging.getLogger(__name__)

__all__ = ["EpochValidation", "darts_genotype"]

ZERO_OP = "none"


def darts_genotype(pl_module: Any) -> dict[str, Any]:
    """The DARTS derivation of the current architecture weights (Liu et al. 2019, sec. 2.4).

    For every node of every differentiable cell: the ``num_ops_per_node`` strongest incoming
    edges (distinct inputs), an edge's strength being its best non-zero op's softmax weight,
    each with that best non-zero op. NNI 3.0's own cell export ranks (edge, op) pairs with
    ``none`` included, so it can export the zero op, which DARTS never does. Labels outside
    cells (``rnn/pool``) keep NNI's export (argmax).
    """
    from nni.nas.oneshot.pytorch.supermodule.differentiable import DifferentiableMixedCell

    genotype = dict(pl_module.export())
    for module in pl_module.supernet_modules():
        if not isinstance(module, DifferentiableMixedCell):
            continue
        names = list(module.op_names)
        for i in range(module.num_predecessors, module.num_nodes + module.num_predecessors):
            edges: list[tuple[float, int, str]] = []
            for j in range(i):
                probs = torch.softmax(module._arch_alpha[f"{module.label}/{i}_{j}"].detach().float(), dim=-1)
                candidates = [(float(p), name) for p, name in zip(probs.tolist(), names) if name != ZERO_OP]
                if not candidates:
                    continue
                weight, name = max(candidates)
                edges.append((weight, j, name))
            edges.sort(key=lambda e: (-e[0], e[1]))
            if not edges:
                continue
            for k in range(module.num_ops_per_node):
                _, j, name = edges[k % len(edges)]
                genotype[f"{module.label}/op_{i}_{k}"] = name
                genotype[f"{module.label}/input_{i}_{k}"] = [j]
    return genotype


def plain_value(value: Any) -> Any:
    """A choice value as plain JSON data (tensors and numpy scalars -> Python, tuples -> lists)."""
    if isinstance(value, (list, tuple)):
        return [plain_value(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value


class EpochValidation(pl.Callback):
    """Score the supernet on a validation loader after each training epoch."""

    def __init__(self, val_loader: Any, training_module: SERModule, fix_exported_path: bool,
                 differentiable: bool, candidates: int = 0) -> None:
        self.val_loader = val_loader
        self.training_module = training_module
        self.fix_exported_path = fix_exported_path
        self.differentiable = differentiable
        self.candidates = candidates  # > 0: score this many random paths, record the best

    @torch.no_grad()
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if self.candidates:
            arch, logits, targets = self._best_random_path(pl_module)
        else:
            exported = darts_genotype(pl_module) if self.differentiable else pl_module.export()
            arch = {label: plain_value(v) for label, v in exported.items()}
            if self.fix_exported_path:
                _fix_path(pl_module, arch)
            logits, targets = predict_logits(pl_module.model, self.val_loader, pl_module.device)
        self.training_module.record_validation(torch.from_numpy(logits), torch.from_numpy(targets),
                                               extra={"architecture": arch})

    def _best_random_path(self, pl_module: Any) -> tuple[dict[str, Any], Any, Any]:
        # the strategy's own sampler draws each path; the first of equal validation UAs is kept
        best: tuple[float, dict[str, Any], Any, Any] | None = None
        for _ in range(self.candidates):
            memo: dict[str, Any] = {}
            for module in pl_module.supernet_modules():
                memo.update(module.resample(memo=memo))
            arch = {label: plain_value(v) for label, v in memo.items()}
            logits, targets = predict_logits(pl_module.model, self.val_loader, pl_module.device)
            ua = classification_metrics(confusion_matrix(targets, logits.argmax(axis=1),
                                                         logits.shape[1]))["ua"]
            if best is None or ua > best[0]:
                best = (ua, arch, logits, targets)
        assert best is not None
        _fix_path(pl_module, best[1])  # the supernet ends the epoch on the recorded path
        return best[1], best[2], best[3]


def _fix_path(pl_module: Any, arch: dict[str, Any]) -> None:
    memo = dict(arch)
    for module in pl_module.supernet_modules():
        module.resample(memo=memo)
