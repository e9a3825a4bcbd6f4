"""Reproduce the published rows: one full run config per figure, ours beside the published one.

Each :class:`PaperRow` of :data:`ROWS` is one figure of ../shared/PAPER.md section 8, stored
with the figure itself, the authors' protocol preset it was measured on and the standard
preset of the same corpus (:mod:`strategies.data.presets`). :func:`row_config` turns a row into a
complete :class:`~strategies.pipeline.RunConfig`:

- features: the authors' exact recipe, ``FeatureConfig.compat()`` (32,750 Hz, 8 s, 128 x 128
  MFCC, no normalisation);
- space: ``SpaceConfig.paper()`` (C = 8, 4 cells, reductions at 1 and 2) with the row's
  sequence op set;
- search (PAPER.md section 5): second-order DARTS, 50 epochs, weights SGD 0.025 cosine to
  0.001, momentum 0.9, weight decay 3e-4, clip 5, batch 64 (code), alphas Adam 3e-4, the
  genotype of the best validation epoch (the authors' choice), seed 2;
- retraining (section 6): SGD 0.025 cosine to 0, momentum 0.9, weight decay 3e-4, clip 5,
  drop path 0.2, class-weighted cross-entropy, batch 96 (code), seed 2; epochs a config value,
  :data:`strategies.recipes.DEFAULT_RETRAIN_EPOCHS` by default (the code's 600 is a pt.darts inheritance);
- every fold of the protocol.

:func:`run_reproduce` runs search -> retrain -> test (:func:`strategies.pipeline.run_pipeline`)
on the authors' protocol, the standard one, or both, and returns our figures beside the
published one. ``ser-nas reproduce`` (:func:`add_reproduce_parser`, :func:`cmd_reproduce`)
is the command. docs/reproducing.md lists every deviation from the authors' code.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ser_space import SEQ_OP_SETS, SpaceConfig

from .data.features import FeatureConfig
from .data.presets import get_protocol_preset, preset_data_config
from .pipeline import run_pipeline
from .recipes import DEFAULT_RETRAIN_EPOCHS, RunConfig, paper_retrain, paper_search, paper_search_train

logger = logging.getLogger(__name__)

__all__ = [
    "PROTOCOL_CHOICES",
    "ROWS",
    "PaperRow",
    "format_results",
    "get_row",
    "list_rows",
    "row_config",
    "run_reproduce",
]

#: Which protocol(s) ``run_reproduce`` runs.
PROTOCOL_CHOICES = ("authors", "standard", "both")
Protocol = Literal["authors", "standard", "both"]


@dataclass(frozen=True)
class PaperRow:
    """One published figure and how to rerun it."""

    name: str  # row id used on the command line
    source: str  # paper and method the figure comes from
    corpus: str  # corpus name (strategies.data.corpora.CORPORA)
    published_ua: float  # published unweighted accuracy, percent (the authors' protocol)
    published_wa: float | None  # published weighted accuracy, percent; None where not published
    authors_preset: str  # protocol preset of the figure (strategies.data.presets)
    standard_preset: str  # the standard protocol of the same corpus, for the twin run
    seq_op_set: str | None  # emoDARTS sequence op set (ser_space SEQ_OP_SETS); None = SpaceConfig.paper()'s default
    note: str = ""  # what is assumed where the papers are silent

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


ROWS: dict[str, PaperRow] = {
    row.name: row
    for row in (
        PaperRow(
            name="darts-iemocap", source="2305.14402 (DARTS CNN-LSTM)", corpus="iemocap",
            published_ua=69.62, published_wa=None, authors_preset="iemocap-authors",
            standard_preset="iemocap", seq_op_set=None,
            note="the first paper's LSTM with attention: SpaceConfig.paper() (LSTM 1-4 layers, skip, none; "
                 "mean or attention pooling)"),
        PaperRow(
            name="emodarts-iemocap", source="emoDARTS (IEEE Access 2024)", corpus="iemocap",
            published_ua=76.55, published_wa=78.03, authors_preset="iemocap-authors",
            standard_preset="iemocap", seq_op_set="all",
            note="op set 'all', the code's default (--base_archi all); the paper's ablation reruns the others"),
        PaperRow(
            name="emodarts-msp-improv", source="emoDARTS (IEEE Access 2024)", corpus="msp-improv",
            published_ua=65.63, published_wa=None, authors_preset="msp-improv-authors",
            standard_preset="msp-improv", seq_op_set="all",
            note="op set 'all', the code's default (--base_archi all)"),
    )
}
"""The published rows of PAPER.md section 8 that this project's method reproduces.

Wu et al. 2022 (56.28 on IEMOCAP, their metric) is another method and not rerun here.
"""


def get_row(name: str) -> PaperRow:
    """The row called ``name``; ValueError listing the rows otherwise."""
    if name not in ROWS:
        raise ValueError(f"unknown row {name!r}; rows: {', '.join(ROWS)}")
    return ROWS[name]


# --- the papers' settings ----------------------------------------------------------------------


def row_config(row: PaperRow | str, root: str | Path, protocol: Literal["authors", "standard"] = "authors",
               epochs: int | None = None, retrain_epochs: int | None = None, seq_op_set: str | None = None,
               space: SpaceConfig | None = None, features: FeatureConfig | None = None,
               folds: tuple[int, ...] | None = None, fold_seed: int = 0,
               order: Literal["first", "second"] = "second") -> RunConfig:
    """The full run config of ``row`` on ``protocol`` for the corpus at ``root``.

    Parameters
    ----------
    row
        A :class:`PaperRow` or its name.
    root
        The corpus folder.
    protocol
        ``authors`` (the figure's protocol) or ``standard`` (its twin).
    epochs, retrain_epochs
        Search and retraining epochs (default 50 and :data:`DEFAULT_RETRAIN_EPOCHS`).
    seq_op_set
        Another sequence op set than the row's (the emoDARTS ablation).
    space, features
        Replace the paper space and the compat features (for smoke runs); the op set still applies.
    folds
        Fold indices; None = every fold, as published.
    fold_seed
        Seeds the validation speakers (and the MSP-Podcast sample).
    order
        DARTS order: ``second`` as published; ``first`` for cheap smoke runs.
    """
    row = get_row(row) if isinstance(row, str) else row
    if protocol not in ("authors", "standard"):
        raise ValueError(f"protocol must be 'authors' or 'standard', got {protocol!r}")
    preset = row.authors_preset if protocol == "authors" else row.standard_preset
    data = preset_data_config(preset, root, features=features or FeatureConfig.compat(), fold_seed=fold_seed)
    op_set = seq_op_set or row.seq_op_set
    if op_set is not None and op_set not in SEQ_OP_SETS:
        raise ValueError(f"unknown sequence op set {op_set!r}; known: {', '.join(sorted(SEQ_OP_SETS))}")
    space = space or SpaceConfig.paper()
    if op_set is not None:
        space = space.with_seq_op_set(op_set)
    return RunConfig(data=data, space=space, search=paper_search(epochs or 50).replace(order=order), search_train=paper_search_train(),
                     retrain=paper_retrain(retrain_epochs or DEFAULT_RETRAIN_EPOCHS), folds=folds)


# --- running -----------------------------------------------------------------------------------

_OVERRIDES = frozenset({"protocol", "order", "epochs", "retrain_epochs", "seq_op_set", "space", "features", "folds",
                        "fold_seed", "data_dir", "progress", "trainer_kwargs", "search_train", "retrain"})


def run_reproduce(row: PaperRow | str, root: str | Path, output_dir: str | Path = "runs",
                  overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Search -> retrain -> test ``row`` over every fold; our figures beside the published one.

    Parameters
    ----------
    row
        A :class:`PaperRow` or its name.
    root
        The corpus folder.
    output_dir
        Where the run folder(s) are created (one per protocol).
    overrides
        Optional: ``protocol`` (``authors`` default, ``standard``, ``both``), ``order``, ``epochs``,
        ``retrain_epochs``, ``seq_op_set``, ``space``, ``features``, ``folds``, ``fold_seed``
        (as :func:`row_config`); ``search_train`` / ``retrain`` (a dict of TrainConfig field
        changes, e.g. ``{"batch_size": 8}``); ``data_dir``, ``progress``, ``trainer_kwargs``
        (as :func:`strategies.pipeline.run_pipeline`).

    Returns
    -------
    dict
        ``row`` (the row's fields, published figures included) and ``runs``: one entry per
        protocol with ``protocol``, ``preset``, ``run_dir``, ``folds``, ``ua``, ``ua_std``,
        ``wa``, ``wa_std`` (percent, mean and sample std over folds), ``per_fold`` and
        ``seconds``.
    """
    row = get_row(row) if isinstance(row, str) else row
    options = dict(overrides or {})
    unknown = sorted(set(options) - _OVERRIDES)
    if unknown:
        raise ValueError(f"unknown override(s) {', '.join(unknown)}; known: {', '.join(sorted(_OVERRIDES))}")
    protocol = options.pop("protocol", "authors")
    if protocol not in PROTOCOL_CHOICES:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOL_CHOICES)}, got {protocol!r}")
    run_options = {k: options.pop(k) for k in ("data_dir", "progress", "trainer_kwargs") if k in options}
    search_train = options.pop("search_train", None) or {}
    retrain = options.pop("retrain", None) or {}
    runs = []
    for name in (("authors", "standard") if protocol == "both" else (protocol,)):
        config = row_config(row, root, protocol=name, **options)
        config = dataclasses.replace(config, search_train=config.search_train.replace(**search_train),
                                     retrain=config.retrain.replace(**retrain))
        logger.info("reproducing %s (%s) on the %s protocol (%s)", row.name, row.source, name, config.data.preset
                    or get_protocol_preset(row.standard_preset).name)
        started = time.perf_counter()
        run_dir, summary = run_pipeline(config, output_dir=output_dir, **run_options)
        runs.append({
            "protocol": name,
            "preset": row.authors_preset if name == "authors" else row.standard_preset,
            "run_dir": str(run_dir),
            "folds": summary["folds"],
            "ua": 100.0 * summary["test_ua"]["mean"],
            "ua_std": 100.0 * summary["test_ua"]["std"],
            "wa": 100.0 * summary["test_wa"]["mean"],
            "wa_std": 100.0 * summary["test_wa"]["std"],
            "per_fold": summary["per_fold"],
            "seconds": time.perf_counter() - started,
        })
    return {"row": row.to_dict(), "runs": runs}


def list_rows() -> str:
    """The rows and their published figures, one line each (``ser-nas reproduce --list``)."""
    lines = [f"{'row':<22}{'source':<30}{'corpus':<12}{'UA %':>7}{'WA %':>7}  protocol presets (authors / standard)"]
    for row in ROWS.values():
        wa = "-" if row.published_wa is None else f"{row.published_wa:.2f}"
        lines.append(f"{row.name:<22}{row.source:<30}{row.corpus:<12}{row.published_ua:>7.2f}{wa:>7}  "
                     f"{row.authors_preset} / {row.standard_preset}")
    return "\n".join(lines)


def format_results(result: dict[str, Any]) -> str:
    """A small plain-text table: our UA / WA per protocol beside the published figures."""
    row = result["row"]

    def published(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    lines = [f"{row['name']}: {row['source']} on {row['corpus']}",
             f"{'':<28}{'UA %':>16}{'WA %':>16}  folds  run folder",
             f"{'published (authors protocol)':<28}{published(row['published_ua']):>16}"
             f"{published(row['published_wa']):>16}"]
    for run in result["runs"]:
        label = f"ours, {run['protocol']} ({run['preset']})"
        lines.append(f"{label:<28}{run['ua']:>9.2f} ± {run['ua_std']:<4.2f}{run['wa']:>9.2f} ± "
                     f"{run['wa_std']:<4.2f}  {run['folds']:>5}  {run['run_dir']}")
    return "\n".join(lines)


# --- command line ------------------------------------------------------------------------------
