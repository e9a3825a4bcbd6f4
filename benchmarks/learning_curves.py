"""Learning curves of the recipe-ablation rows: the retraining epoch by epoch, and the test folds.

For each row, every (seed, fold) run's ``retrain.csv`` (the run folders of
``benchmarks/recipe_ablation.py``) gives the training loss, the validation loss and the
validation UA per epoch; the script averages them over the row's runs (mean and std per
epoch) and collects the row's test UA per fold (each seed, and their mean). It writes
``NAME.json`` (the curves and the figures the text quotes: the last epoch's means, the epoch
where the mean validation UA peaks, the spread of test UA over folds and over seeds) and
``NAME.png`` (four panels: the three curves and test UA per fold).

Rows that train on the validation speakers (``train_on_val``) have in-sample validation curves:
they are marked so in the JSON and the legend.

    python benchmarks/learning_curves.py --rows recipe,darts --seeds 0,1,2 --name learning_curves_emodb --out-dir docs/figures
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import RESULTS, machine_info, write_results  # noqa: E402
from recipe_ablation import run_folder  # noqa: E402

from strategies.evaluate import finished_folds  # noqa: E402
from ser_space.io import write_atomically  # noqa: E402
from strategies.runs import read_json  # noqa: E402

CURVES = ("train_loss", "val_loss", "val_ua")


def row_curves(name: str, out: Path, seeds: list[int]) -> dict[str, Any] | None:
    """The row's curves (mean and std per epoch over its runs) and its test UA per fold and seed."""
    histories: list[pd.DataFrame] = []
    test: dict[str, dict[str, float]] = {}
    in_sample = False
    done = []
    for seed in seeds:
        run = run_folder(out, name, seed)
        folds = finished_folds(run) if (run / "summary.json").is_file() else []
        if not folds:
            continue
        done.append(seed)
        for folder in folds:
            metrics = read_json(folder / "metrics.json")
            in_sample = in_sample or bool(metrics.get("val_in_training"))
            test.setdefault(str(metrics["fold"]), {})[str(seed)] = float(metrics["test_ua"])
            if (folder / "retrain.csv").is_file():
                histories.append(pd.read_csv(folder / "retrain.csv"))
    if not histories:
        logging.info("%s: no finished run with a retrain.csv", name)
        return None
    epochs = min(len(h) for h in histories)
    curves = {}
    for key in CURVES:
        values = np.array([h[key].to_numpy()[:epochs] for h in histories], dtype=np.float64)
        curves[key] = {"mean": values.mean(axis=0).tolist(), "std": values.std(axis=0).tolist()}
    fold_means = {fold: float(np.mean(list(by_seed.values()))) for fold, by_seed in sorted(test.items())}
    seed_means = [float(np.mean([test[f][str(s)] for f in test if str(s) in test[f]])) for s in done]
    val_ua = np.array(curves["val_ua"]["mean"])
    return {
        "row": name, "seeds": done, "runs": len(histories), "epochs": epochs, "val_in_training": in_sample,
        "curves": curves, "test_ua_per_fold": test, "test_ua_fold_means": fold_means,
        "last_epoch": {key: curves[key]["mean"][-1] for key in CURVES},
        "val_ua_peak_epoch": int(val_ua.argmax()), "val_ua_peak": float(val_ua.max()),
        "test_ua_fold_spread": float(max(fold_means.values()) - min(fold_means.values())),
        "test_ua_seed_spread": float(max(seed_means) - min(seed_means)) if len(seed_means) > 1 else 0.0,
    }


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13.0, 3.4), dpi=100)
    axes = fig.subplots(1, 4)
    titles = {"train_loss": "training loss (augmented batches)", "val_loss": "validation loss",
              "val_ua": "validation UA"}
    for ax, key in zip(axes, CURVES):
        for row in rows:
            mean = np.array(row["curves"][key]["mean"])
            std = np.array(row["curves"][key]["std"])
            epochs = np.arange(1, len(mean) + 1)
            label = row["row"] + (" (val in training)" if row["val_in_training"] else "")
            ax.plot(epochs, mean, label=label)
            ax.fill_between(epochs, mean - std, mean + std, alpha=0.15)
        ax.set_title(titles[key], fontsize=9)
        ax.set_xlabel("epoch")
    axes[0].legend(fontsize=7)
    ax = axes[3]
    folds = sorted({f for row in rows for f in row["test_ua_per_fold"]}, key=int)
    for offset, row in zip(np.linspace(-0.2, 0.2, len(rows)), rows):
        xs = [folds.index(f) + offset for f in row["test_ua_per_fold"]]
        ax.plot(sorted(xs), [row["test_ua_fold_means"][f] for f in sorted(row["test_ua_per_fold"], key=int)],
                "o-", markersize=4, label=row["row"])
        for f, by_seed in row["test_ua_per_fold"].items():
            ax.plot([folds.index(f) + offset] * len(by_seed), list(by_seed.values()), ".", color="grey",
                    markersize=3)
    ax.set_xticks(range(len(folds)), [f"fold {f}" for f in folds], fontsize=7)
    ax.set_title("test UA per fold (line: mean over seeds; dots: seeds)", fontsize=9)
    fig.tight_layout()
    return write_atomically(path, lambda h: fig.savefig(h, format="png", bbox_inches="tight"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="recipe,darts", help="comma-separated rows of recipe_ablation")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--out", default=str(RESULTS / "ablation"), help="where recipe_ablation's runs are")
    parser.add_argument("--name", default="learning_curves", help="results file names (NAME.json, NAME.png)")
    parser.add_argument("--out-dir", default=None, help="where they go (default benchmarks/results)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = [r for r in (row_curves(n.strip(), Path(args.out), seeds) for n in args.rows.split(",") if n.strip())
            if r is not None]
    if not rows:
        print(f"error: no finished runs of rows {args.rows} under {args.out}", file=sys.stderr)
        return 2
    print("| row | runs | last epoch: train loss | val loss | val UA | mean val UA peaks at epoch | "
          "test UA: fold spread | seed spread |")
    print("|---|---:|---:|---:|---:|---|---:|---:|")
    for r in rows:
        last = r["last_epoch"]
        print(f"| {r['row']} | {r['runs']} | {last['train_loss']:.2f} | {last['val_loss']:.2f} | {last['val_ua']:.3f} | "
              f"{r['val_ua_peak_epoch'] + 1} of {r['epochs']} ({r['val_ua_peak']:.3f}) | "
              f"{r['test_ua_fold_spread']:.3f} | {r['test_ua_seed_spread']:.3f} |")
    folder = Path(args.out_dir) if args.out_dir else RESULTS
    picture = plot(rows, folder / f"{args.name}.png")
    write_results(args.name, {"machine": machine_info("cpu"), "picture": picture.name, "rows": rows},
                  out_dir=args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
