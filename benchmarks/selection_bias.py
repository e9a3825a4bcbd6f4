"""How much test UA is inflated when the epoch is picked on the test fold.

The authors select the best epoch on the held-out fold, which is both their validation and
their test set (../shared/PAPER.md section 7). This project picks it on a validation split of
training speakers and touches the test fold once. This benchmark measures the difference on
one fixed architecture, so nothing but the selection rule changes:

- the hand-designed ``cnn_lstm`` baseline (strategies.baselines) in the tiny space (or the
  small one), small features (40 MFCC x 64 frames), trained
  with the shared evaluator and the pipeline's default retraining settings;
- per fold and seed, after every epoch: validation UA (training speakers) and test UA (the
  held-out speaker). Scoring the test fold every epoch happens ONLY here, because measuring
  this bias is the point; the pipeline never does it;
- ``honest`` = test UA at the epoch of best validation UA (the pipeline's rule, first epoch
  among ties); ``oracle`` = best test UA over all epochs (the authors' rule);
  ``inflation`` = oracle - honest.

Run (from the repository root; about 10 minutes on 2 CPU cores)::

    python benchmarks/selection_bias.py --root ../shared/data/emodb-dev --epochs 20 --seeds 0 1 \
        --output runs/selection_bias.json
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from ser_space import SpaceConfig, build_model
from strategies import compat
from strategies.baselines import hand_designed_architecture
from strategies.data.features import FeatureConfig
from strategies.data.config import DataConfig
from strategies.data.prepare import prepare_data
from strategies.evaluator import SERModule, evaluate_model, make_lightning
from strategies.pipeline import adapt_space, fold_datasets
from strategies.recipes import RunConfig

logger = logging.getLogger("benchmarks.selection_bias")


def small_space() -> SpaceConfig:
    """The CLI's ``small`` space: the paper's cell structure at CPU-friendly width."""
    return SpaceConfig.paper().replace(channels=4, num_cells=3, reduction_cells=(1,), num_nodes=3,
                                       hidden_size=32, seq_num_nodes=1)


class TestEveryEpoch(pl.Callback):
    """Scores the test fold after each epoch (after validation), beside that epoch's val UA."""

    def __init__(self, module: SERModule, test_loader: DataLoader, num_classes: int) -> None:
        self.module = module
        self.test_loader = test_loader
        self.num_classes = num_classes
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        if not self.module.history:
            return
        entry = self.module.history[-1]
        test = evaluate_model(self.module.model, self.test_loader, self.num_classes)
        self.rows.append({"epoch": entry["epoch"], "val_ua": entry["val_ua"], "test_ua": test["ua"],
                          "test_wa": test["wa"]})


def measure(rows: list[dict[str, float]]) -> dict[str, float]:
    """Honest (best-val epoch) and oracle (best-test epoch) test UA of one training run."""
    val = np.asarray([-math.inf if math.isnan(r["val_ua"]) else r["val_ua"] for r in rows])
    test = np.asarray([r["test_ua"] for r in rows])
    chosen = int(np.argmax(val))  # first epoch among ties, as the pipeline's _KeepBest
    best = int(np.argmax(test))
    return {"honest_ua": float(test[chosen]), "honest_epoch": chosen, "oracle_ua": float(test[best]),
            "oracle_epoch": best, "last_ua": float(test[-1]), "inflation": float(test[best] - test[chosen])}


def run(root: str, epochs: int, seeds: list[int], folds: list[int] | None, data_dir: str | None,
        space_name: str = "tiny") -> dict[str, Any]:
    compat.apply()
    data = DataConfig(dataset="emodb", root=root, features=FeatureConfig.small())
    prepared = prepare_data(data, data_dir=data_dir, progress=False)
    space = adapt_space(SpaceConfig.tiny() if space_name == "tiny" else small_space(), prepared)
    sample = hand_designed_architecture("cnn_lstm", space)
    train_config = RunConfig().retrain.replace(max_epochs=epochs)
    retrain_space = space.replace(affine=True, drop_path_prob=train_config.drop_path_prob)
    results = []
    started = time.perf_counter()
    for fold in prepared.folds:
        if folds is not None and fold.index not in folds:
            continue
        datasets, _ = fold_datasets(prepared, fold)
        test_loader = DataLoader(datasets["test"], batch_size=64, shuffle=False)
        for seed in seeds:
            config = train_config.replace(seed=seed)
            pl.seed_everything(seed, workers=True)
            model = build_model(sample, retrain_space)
            module = SERModule.from_config(config, space.num_classes, datasets["train"].labels.tolist())
            probe = TestEveryEpoch(module, test_loader, space.num_classes)
            lightning = make_lightning(module, config, datasets["train"], datasets["val"], callbacks=[probe])
            lightning.evaluate(model)
            figures = measure(probe.rows)
            results.append({"fold": fold.index, "test_speakers": list(fold.test_speakers),
                            "val_speakers": list(fold.val_speakers), "seed": seed, **figures,
                            "per_epoch": probe.rows})
            logger.info("fold %d seed %d: honest %.3f (epoch %d)  oracle %.3f (epoch %d)  inflation %+.3f",
                        fold.index, seed, figures["honest_ua"], figures["honest_epoch"], figures["oracle_ua"],
                        figures["oracle_epoch"], figures["inflation"])
    seconds = time.perf_counter() - started

    def stats(key: str) -> dict[str, float]:
        values = np.asarray([r[key] for r in results], dtype=np.float64)
        return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}

    return {
        "dataset": "emodb-dev", "root": str(root), "architecture": f"baseline cnn_lstm, {space_name} space",
        "features": data.features.to_dict(), "train": config.to_dict(), "epochs": epochs, "seeds": seeds,
        "runs": len(results), "parameters": int(sum(p.numel() for p in build_model(sample, retrain_space).parameters())),
        "honest_ua": stats("honest_ua"), "oracle_ua": stats("oracle_ua"), "last_ua": stats("last_ua"),
        "inflation": stats("inflation"),
        "inflation_positive_runs": int(sum(r["inflation"] > 0 for r in results)),
        "seconds": seconds, "machine": f"{platform.processor() or platform.machine()}, "
                                       f"{torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "per_run": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data/emodb-dev", help="EmoDB(-dev) corpus folder")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--folds", type=int, nargs="*", default=None, help="fold indices (default: all)")
    parser.add_argument("--space", default="tiny", choices=("tiny", "small"),
                        help="space the cnn_lstm baseline is written in (tiny: cheapest)")
    parser.add_argument("--data-dir", default=None, help="cache of prepared data")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--output", default=None, help="write the full results as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("pytorch_lightning", "lightning", "lightning_fabric", "nni"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(args.root, args.epochs, args.seeds, args.folds, args.data_dir, args.space)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=1))
    print(f"{result['runs']} runs ({len(set(r['fold'] for r in result['per_run']))} folds x {len(args.seeds)} seeds), "
          f"{args.epochs} epochs, {result['seconds']:.0f} s on {result['machine']}")
    for key in ("honest_ua", "oracle_ua", "last_ua", "inflation"):
        print(f"  {key:<10} {100 * result[key]['mean']:6.2f} ± {100 * result[key]['std']:5.2f} (percent)")
    print(f"  oracle > honest in {result['inflation_positive_runs']} of {result['runs']} runs")


if __name__ == "__main__":
    main()
