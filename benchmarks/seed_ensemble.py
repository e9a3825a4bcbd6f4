"""Seed ensembles of the recipe-ablation rows: each row's seeds averaged, per test fold.

For each row and fold, every seed's saved network (the run folders of
``benchmarks/recipe_ablation.py``) scores the fold's test speakers; the ensemble averages
their class probabilities and takes the most probable class. Every row gets the same
treatment (all its seeds, equal weights), so an ensemble of three CNNs stands against an
ensemble of three DARTS networks at the same count. Nothing is chosen on the test fold, and
the validation speaker chooses nothing either: there is nothing to choose.

The single-network figures are recomputed from the same saved models and must equal the
recorded ones (a check of the run folders).

    python benchmarks/seed_ensemble.py --rows recipe,cnn_lstm,darts,enas,random,gumbel_darts --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine_info, write_results  # noqa: E402
from recipe_ablation import paired, paired_text, run_folder  # noqa: E402

from strategies.data.prepare import prepare_data  # noqa: E402
from strategies.evaluate import fold_models  # noqa: E402
from strategies.evaluator import classification_metrics, confusion_matrix, predict_logits  # noqa: E402
from strategies.recipes import RunConfig  # noqa: E402
from strategies.runs import read_json  # noqa: E402


def _fold_probabilities(folder: Path, prepared: Any) -> dict[int, tuple[np.ndarray, np.ndarray, float]]:
    """fold -> (test probabilities, targets, recorded test UA) of one seed's run folder."""
    import torch
    from torch.utils.data import DataLoader

    out = {}
    for index, recorded, predictor, dataset in fold_models(folder, prepared):
        with torch.no_grad():
            logits, targets = predict_logits(predictor.model, DataLoader(dataset, batch_size=64))
        out[index] = (torch.softmax(torch.from_numpy(logits), dim=1).numpy(), targets, float(recorded["test_ua"]))
    return out


def ensemble_row(name: str, out: Path, seeds: list[int]) -> dict[str, Any] | None:
    folders = [run_folder(out, name, seed) for seed in seeds]
    folders = [f for f in folders if (f / "summary.json").is_file()]
    if len(folders) < 2:
        logging.info("%s: fewer than 2 finished seeds, no ensemble", name)
        return None
    config = RunConfig.from_dict(read_json(folders[0] / "config.json"))
    prepared = prepare_data(config.data, progress=False)
    classes = len(prepared.classes)
    per_seed = [_fold_probabilities(folder, prepared) for folder in folders]
    folds = sorted(set.intersection(*(set(p) for p in per_seed)))
    single: dict[str, dict[str, float]] = {}
    ensemble: dict[str, float] = {}
    ensemble_wa: dict[str, float] = {}
    for seed_folder, probabilities in zip(folders, per_seed):
        seed = seed_folder.name.rsplit("seed", 1)[1]
        single[seed] = {}
        for fold in folds:
            p, y, recorded = probabilities[fold]
            ua = classification_metrics(confusion_matrix(y, p.argmax(1), classes))["ua"]
            if abs(ua - recorded) > 1e-6:
                logging.warning("%s fold %d: recomputed test UA %.4f differs from the recorded %.4f",
                                seed_folder, fold, ua, recorded)
            single[seed][str(fold)] = ua
    for fold in folds:
        mean = np.mean([probabilities[fold][0] for probabilities in per_seed], axis=0)
        y = per_seed[0][fold][1]
        metrics = classification_metrics(confusion_matrix(y, mean.argmax(1), classes))
        ensemble[str(fold)], ensemble_wa[str(fold)] = metrics["ua"], metrics["wa"]
    values = np.array(list(ensemble.values()))
    singles = np.array([ua for per_fold in single.values() for ua in per_fold.values()])
    return {
        "row": name, "seeds": [int(f.name.rsplit("seed", 1)[1]) for f in folders], "folds": len(folds),
        "single_ua_mean": float(singles.mean()),
        "ensemble_ua_mean": float(values.mean()), "ensemble_ua_std": float(values.std(ddof=1)),
        "ensemble_wa_mean": float(np.mean(list(ensemble_wa.values()))),
        # in the shape recipe_ablation.paired reads: {"seed": {"fold": ua}}
        "per_fold_ua": {"ensemble": ensemble}, "single_per_fold_ua": single,
    }


def table(rows: list[dict[str, Any]], base: str) -> str:
    baseline = next((r for r in rows if r["row"] == base), None)
    lines = [f"| row | seeds | one network: test UA | ensemble: test UA | ensemble minus one network, paired | "
             f"ensemble minus {base} ensemble, paired: mean [95 % CI], p |",
             "|---|---|---:|---:|---|---|"]
    for r in rows:
        gain = paired(r, {"per_fold_ua": r["single_per_fold_ua"]})
        diff = paired(r, baseline) if baseline is not None and r is not baseline else None
        r["gain_over_single"], r["paired"] = gain, diff
        lines.append(f"| {r['row']} | {','.join(map(str, r['seeds']))} | {r['single_ua_mean']:.3f} | "
                     f"{r['ensemble_ua_mean']:.3f} ± {r['ensemble_ua_std']:.3f} | {paired_text(gain)} | "
                     f"{paired_text(diff)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="recipe,cnn_lstm,darts", help="comma-separated rows of recipe_ablation")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--out", default=str(RESULTS / "ablation"), help="where recipe_ablation's runs are")
    parser.add_argument("--base", default="recipe", help="the row the ensembles are compared with")
    parser.add_argument("--name", default="seed_ensemble", help="results file name (NAME.json)")
    parser.add_argument("--out-dir", default=None, help="where NAME.json goes (default benchmarks/results)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("nni", "pytorch_lightning", "lightning", "lightning_fabric", "strategies"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = [r for r in (ensemble_row(n.strip(), Path(args.out), seeds) for n in args.rows.split(",") if n.strip())
            if r is not None]
    print(table(rows, args.base))
    write_results(args.name, {"machine": machine_info("cpu"), "rows": rows}, out_dir=args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
