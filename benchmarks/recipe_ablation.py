"""Which training recipe lets the networks learn emotion from real speech: one row per ingredient.

Each row is a recipe (features, space, training config, architecture) written as changes to a
base recipe; each row runs through the toolkit's own pipeline (``run_pipeline``: the shared
evaluator, the speaker-independent folds, run folders) once per seed over the selected folds,
and the script prints and writes a table of test UA / WA (mean +- sample std over seeds x
folds, and the std of the per-seed means), the selected epoch and the wall-clock minutes.
Finished (row, seed) runs are reused, so an interrupted ablation resumes where it stopped.

    python benchmarks/recipe_ablation.py --root ../shared/data/emodb-dev --rows recipe,no-mixup --seeds 0,1,2

``--list`` prints the rows. The test fold is touched only by the final figure of each run;
the epoch is chosen on the validation speaker, as in every run of the toolkit.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import RESULTS, machine_info, write_results  # noqa: E402
from _networks import run_network  # noqa: E402

from ser_space import SpaceConfig  # noqa: E402
from strategies.data.features import FeatureConfig  # noqa: E402
from strategies.data.config import DataConfig  # noqa: E402
from strategies.evaluator import TrainConfig  # noqa: E402
from strategies.pipeline import run_pipeline  # noqa: E402
from strategies.recipes import REAL_SPEECH, RunConfig, real_speech_recipe  # noqa: E402
from strategies.search.registry import get_strategy  # noqa: E402
from strategies.search import equal_budget  # noqa: E402
from strategies import stats  # noqa: E402

# issue 30's plain-CNN recipe as changes to the real-speech retraining (its 80 epochs left out: 40
# scored the same for the plain CNN, as row double-epochs did for the CNN), and its augmentation
# for the search's weight training (whose epochs stay the search budget)
V2_TRAIN = {"lr_warmup_epochs": 3, "gain_db": 4.3, "time_shift": 0.15}
V2_SEARCH_TRAIN = {"gain_db": 4.3, "time_shift": 0.15}
# the paper's candidates and a plain 3x3 convolution
CONV3_OPS = tuple(op for op in REAL_SPEECH.space.cnn_ops if op != "none") + ("conv_3x3", "none")

ROWS: dict[str, dict[str, Any]] = {
    # the toolkit's defaults before this work: 128 x 128 MFCC of an 8-s window, tiny space,
    # 30 epochs of Adam, class weights, no augmentation, the hand-designed CNN-LSTM
    "old-default": {"features": dataclasses.asdict(FeatureConfig.default()), "space_preset": "tiny",
                    "retrain": dataclasses.asdict(RunConfig().retrain), "baseline": "cnn_lstm"},
    # the real-speech recipe (strategies.recipes.REAL_SPEECH, window fitted to the corpus) and
    # one change to it per row
    "recipe": {},
    "cell-dropout-0.3": {"space": {"cell_dropout": 0.3}},
    "mfcc": {"features": {"kind": "mfcc", "n_mfcc": 40}},
    "3s-window": {"features": {"clip_seconds": 3.0, "frames": 150}},
    "8s-window": {"features": {"clip_seconds": 8.0, "frames": 400}},
    "no-class-weights": {"retrain": {"class_weighted": False}},
    "no-label-smoothing": {"retrain": {"label_smoothing": 0.0}},
    "no-mixup": {"retrain": {"mixup_alpha": 0.0}},
    "no-specaugment": {"retrain": {"freq_masks": 0, "time_masks": 0}},
    "no-time-shift": {"retrain": {"time_shift": 0.0}},
    "no-augmentation": {"retrain": {"mixup_alpha": 0.0, "freq_masks": 0, "time_masks": 0, "time_shift": 0.0,
                                    "label_smoothing": 0.0}},
    "adam-no-decay": {"retrain": {"optimizer": "adam", "weight_decay": 3e-4}},
    "double-epochs": {"retrain": {"max_epochs": REAL_SPEECH.retrain.max_epochs * 2}},
    "cnn_lstm": {"baseline": "cnn_lstm"},
    # the authors' recurrence, replacing the CNN's features by its states (the small space's
    # recurrences are residual: x + LSTM(x))
    "cnn_lstm-plain-rnn": {"baseline": "cnn_lstm", "space": {"seq_residual": False}},
    "wide": {"space": {"channels": REAL_SPEECH.space.channels * 2}},
    "best-val-epoch": {"retrain": {"model_selection": "best"}},
    # the mean of the weights of the last quarter of the epochs (batch-norm statistics recomputed)
    "weight-averaging": {"retrain": {"average_last": 0.25}},
    # the validation speaker joins the retraining (the last epoch is kept, so it steers nothing there)
    "train-on-val": {"retrain": {"train_on_val": True}},
    "cnn_lstm-train-on-val": {"baseline": "cnn_lstm", "retrain": {"train_on_val": True}},
    # the search the recipe runs: DARTS on a C = 4 supernet, the found cells retrained at C = 8
    "darts": {"strategy": "darts"},
    # issue 30's regularised DARTS: alphas that move (Adam 3e-3: with 3e-4 the 130 architecture steps
    # leave the mixture almost uniform), the architecture data rotating over every non-test speaker
    # epoch by epoch, and SDARTS-RS random smoothing of the architecture weights (bound 0.3)
    "darts-regularised": {"strategy": "darts", "search": {"arc_learning_rate": 3e-3, "rotate_arch_speakers": True,
                                                          "smoothing": 0.3}},
    "darts-arc3e-3": {"strategy": "darts", "search": {"arc_learning_rate": 3e-3}},
    "darts-arc3e-3-rotate": {"strategy": "darts", "search": {"arc_learning_rate": 3e-3, "rotate_arch_speakers": True}},
    "darts-arc3e-3-sdarts": {"strategy": "darts", "search": {"arc_learning_rate": 3e-3, "smoothing": 0.3}},
    # rows that change only the retraining retrain the very architectures row "darts" found (same
    # seed, same fold: `ser-nas retrain <run folder>`), so the difference is the retraining's alone
    "darts-train-on-val": {"architectures_from": "darts", "retrain": {"train_on_val": True}},
    "darts-double-epochs": {"architectures_from": "darts",
                            "retrain": {"max_epochs": REAL_SPEECH.retrain.max_epochs * 2}},
    "darts-weight-averaging": {"architectures_from": "darts", "retrain": {"average_last": 0.25}},
    "darts-plain-rnn": {"strategy": "darts", "space": {"seq_residual": False}},
    # row darts's cells retrained at the wide CNN's width (C = 16): DARTS against the wide CNN at
    # the same width, as row darts against row recipe (ser_space.config.RESIZABLE_FIELDS)
    "darts-wide": {"architectures_from": "darts", "space": {"channels": REAL_SPEECH.space.channels * 2}},
    # the other strategies under the same budget: one-shot ones 10 supernet epochs, random search
    # strategies.search.equal_budget of it (4 trials of 5 epochs, the same passes over the data)
    "enas": {"strategy": "enas"},
    "gumbel_darts": {"strategy": "gumbel_darts"},
    "random": {"strategy": "random"},
    # the same strategies with the authors' plain recurrences; darts-warmup-plain-rnn: DARTS with
    # 5 warm-up epochs of weight training before the architecture moves (15 in all)
    "darts-warmup-plain-rnn": {"strategy": "darts", "search": {"epochs": 15, "warmup_epochs": 5},
                               "space": {"seq_residual": False}},
    "enas-plain-rnn": {"strategy": "enas", "space": {"seq_residual": False}},
    "gumbel_darts-plain-rnn": {"strategy": "gumbel_darts", "space": {"seq_residual": False}},
    "random-plain-rnn": {"strategy": "random", "space": {"seq_residual": False}},
    # reference baselines (strategies.reference) on the same folds: deterministic, one seed suffices
    **{f"ref-{name}": {"baseline": name} for name in (
        "mfcc_stats", "mfcc_stats:svm", "egemaps", "egemaps:logreg", "compare2016", "compare2016:logreg")},
    # per-speaker normalisation: every speaker (the test speaker too) standardised with its own
    # utterances' statistics, no labels read (transductive); the networks and the references alike
    "recipe-speaker-norm": {"features": {"normalization": "per_speaker"}},
    "wide-speaker-norm": {"features": {"normalization": "per_speaker"},
                          "space": {"channels": REAL_SPEECH.space.channels * 2}},
    "cnn_lstm-speaker-norm": {"baseline": "cnn_lstm", "features": {"normalization": "per_speaker"}},
    "darts-speaker-norm": {"strategy": "darts", "features": {"normalization": "per_speaker"}},
    "darts-wide-speaker-norm": {"architectures_from": "darts-speaker-norm", "features": {"normalization": "per_speaker"},
                                "space": {"channels": REAL_SPEECH.space.channels * 2}},
    **{f"ref-{name}-speaker-norm": {"baseline": name, "features": {"normalization": "per_speaker"}} for name in (
        "mfcc_stats", "egemaps", "egemaps:logreg", "compare2016", "compare2016:logreg")},
    # the references refitted on the training and validation speakers once C is chosen (issue 30)
    **{f"ref-{name}-train-on-val": {"baseline": name, "retrain": {"train_on_val": True}} for name in (
        "mfcc_stats", "egemaps", "egemaps:logreg", "compare2016", "compare2016:logreg")},
    # issue 30: the plain four-block CNN (benchmarks/_networks.py), a network outside the space,
    # under the recipe; and the recipe issue 30's plain CNN trained with (V2: 3 epochs of linear
    # warm-up, gain augmentation of +-4.3 dB (+-1 in natural-log power), time shift 15 %)
    "plain_cnn": {"network": "plain_cnn"},
    "plain_cnn-v2": {"network": "plain_cnn", "retrain": V2_TRAIN},
    "recipe-v2": {"retrain": V2_TRAIN},
    "plain_cnn-v2-noclip": {"network": "plain_cnn", "retrain": {**V2_TRAIN, "gradient_clip": None}},
    # every 10-ms frame kept (200 per 2 s) instead of the max of each pair (100): the CNN's two
    # reductions then end at 50 frames
    "recipe-200": {"features": {"frames": 200, "time_pool": 1}},
    "plain_cnn-200": {"network": "plain_cnn", "features": {"frames": 200, "time_pool": 1}},
    "recipe-v2-noclip": {"retrain": {**V2_TRAIN, "gradient_clip": None}},
    "wide-v2": {"retrain": V2_TRAIN, "space": {"channels": REAL_SPEECH.space.channels * 2}},
    "recipe-v2-per-utterance": {"retrain": V2_TRAIN, "features": {"normalization": "per_utterance"}},
    "recipe-v2-no-gain": {"retrain": {**V2_TRAIN, "gain_db": 0.0}},
    # the searches under V2 (the search's weight training gets V2's augmentation, not its schedule)
    "darts-v2": {"strategy": "darts", "retrain": V2_TRAIN, "search_train": V2_SEARCH_TRAIN},
    # alphas that move: Adam moves each by about its learning rate per step (130 steps in all)
    "darts-v2-arc3e-3": {"strategy": "darts", "retrain": V2_TRAIN, "search_train": V2_SEARCH_TRAIN,
                         "search": {"arc_learning_rate": 3e-3}},
    "darts-v2-arc3e-3-rotate": {"strategy": "darts", "retrain": V2_TRAIN, "search_train": V2_SEARCH_TRAIN,
                                "search": {"arc_learning_rate": 3e-3, "rotate_arch_speakers": True}},
    "darts-v2-arc3e-3-arch2": {"strategy": "darts", "retrain": V2_TRAIN, "search_train": V2_SEARCH_TRAIN,
                               "search": {"arc_learning_rate": 3e-3, "arch_speakers": 2}},
    "darts-v2-arc3e-3-sdarts": {"strategy": "darts", "retrain": V2_TRAIN, "search_train": V2_SEARCH_TRAIN,
                                "search": {"arc_learning_rate": 3e-3, "smoothing": 0.3}},
    "darts-v2-rotate": {"strategy": "darts", "retrain": V2_TRAIN, "search_train": V2_SEARCH_TRAIN,
                        "search": {"rotate_arch_speakers": True}},
    "darts-v2-conv3": {"strategy": "darts", "retrain": V2_TRAIN, "search_train": V2_SEARCH_TRAIN,
                       "space": {"cnn_ops": CONV3_OPS}},
}


def row_config(name: str, root: str, folds: tuple[int, ...] | None, seed: int, out: Path = RESULTS / "ablation") -> RunConfig:
    """The RunConfig of row ``name`` at ``seed`` (``out``: where the rows' runs are, for
    ``architectures_from``)."""
    changes = ROWS[name]
    base = real_speech_recipe(DataConfig(dataset="emodb", root=root))
    features = base.data.features
    if "features" in changes:
        features = dataclasses.replace(features, **changes["features"]) if name != "old-default" else \
            FeatureConfig(**changes["features"])
    space = base.space
    if "space_preset" in changes:
        space = SpaceConfig.preset(changes["space_preset"])
    space = space.replace(**changes.get("space", {}))
    search_train = base.search_train.replace(**changes.get("search_train", {}))
    retrain = base.retrain
    if name == "old-default":
        retrain = TrainConfig(**changes["retrain"])
    else:
        retrain = retrain.replace(**changes.get("retrain", {}))
    search = base.search.replace(seed=seed, strategy=changes.get("strategy", "darts"), **changes.get("search", {}))
    if get_strategy(search.strategy).kind == "multi":
        search = equal_budget(search)
    return dataclasses.replace(base.seeded(seed), data=dataclasses.replace(base.data, features=features), space=space,
                               retrain=retrain.replace(seed=seed), search_train=search_train.replace(seed=seed),
                               search=search,
                               folds=folds,
                               baseline=None if "strategy" in changes or "architectures_from" in changes
                               or "network" in changes else changes.get("baseline", "cnn"),
                               architecture=str(run_folder(out, changes["architectures_from"], seed))
                               if "architectures_from" in changes else None)


def run_folder(out: Path, name: str, seed: int) -> Path:
    """Where row ``name``'s run at ``seed`` is kept under ``out``."""
    return out / f"{name.replace(':', '_')}-seed{seed}"


def run_row(name: str, root: str, folds: tuple[int, ...] | None, seeds: list[int], out: Path,
            report_only: bool = False) -> dict[str, Any] | None:
    runs = []
    done_seeds = []
    for seed in seeds:
        folder = run_folder(out, name, seed)
        summary_path = folder / "summary.json"
        if report_only and not summary_path.is_file():
            continue
        done_seeds.append(seed)
        if summary_path.is_file():
            summary = json.loads(summary_path.read_text())
            logging.info("%s seed %d: reused %s", name, seed, folder)
        else:
            config = row_config(name, root, folds, seed, out)
            started = time.perf_counter()
            partial = folder.with_name(f".{folder.name}")
            partial.mkdir(parents=True, exist_ok=True)
            if "network" in ROWS[name]:  # a named network outside the space (benchmarks/_networks.py)
                run_dir = partial / folder.name
                summary = run_network(ROWS[name]["network"], config, run_dir)
            else:
                run_dir, summary = run_pipeline(config, output_dir=partial, progress=False)
            summary["wall_seconds"] = time.perf_counter() - started
            (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
            if folder.exists():
                import shutil

                shutil.rmtree(folder)
            run_dir.rename(folder)
            partial.rmdir()
        runs.append(summary)
    if not runs:
        return None
    seeds = done_seeds
    ua = np.array([f["test_ua"] for s in runs for f in s["per_fold"]])
    wa = np.array([f["test_wa"] for s in runs for f in s["per_fold"]])
    seed_means = np.array([np.mean([f["test_ua"] for f in s["per_fold"]]) for s in runs])
    search_val = [f.get("search_val_ua") for s in runs for f in s["per_fold"] if f.get("search_val_ua") is not None]
    return {
        "row": name, "changes": ROWS[name], "seeds": seeds, "runs": len(ua),
        "test_ua_mean": float(ua.mean()), "test_ua_std": float(ua.std(ddof=1)) if len(ua) > 1 else 0.0,
        "test_ua_seed_std": float(seed_means.std(ddof=1)) if len(seed_means) > 1 else 0.0,
        "test_wa_mean": float(wa.mean()), "test_wa_std": float(wa.std(ddof=1)) if len(wa) > 1 else 0.0,
        "parameters": int(np.mean([s["parameters"]["mean"] for s in runs])),
        "minutes": float(sum(s.get("wall_seconds", 0.0) for s in runs) / 60.0),
        "per_fold_ua": {str(seed): {str(f["fold"]): f["test_ua"] for f in s["per_fold"]}
                        for seed, s in zip(seeds, runs)},
        # what the search saw of its own choice (its architecture data), beside what the test fold says
        "search_val_ua_mean": float(np.mean(search_val)) if search_val else None,
    }


def fold_means(row: dict[str, Any]) -> dict[str, float]:
    """Test UA per fold, averaged over the row's seeds."""
    return stats.fold_means((fold, ua) for per_fold in row["per_fold_ua"].values() for fold, ua in per_fold.items())


def paired(row: dict[str, Any], base: dict[str, Any]) -> dict[str, Any] | None:
    """Row minus base over the folds both have (each side averaged over its seeds first):
    mean, 95 % t interval over folds, Wilcoxon signed-rank p (:func:`strategies.stats.paired_difference`)."""
    return stats.paired_difference(fold_means(row), fold_means(base))


paired_text = stats.paired_text


def table(rows: list[dict[str, Any]], base: str = "recipe", twin_suffix: str | None = None) -> str:
    """The rows as a markdown table, each paired against row ``base`` or, with ``twin_suffix``,
    each row named ``<name><twin_suffix>`` against row ``<name>`` (the same row without that change)."""
    by_name = {r["row"]: r for r in rows}

    def base_of(name: str) -> dict[str, Any] | None:
        if twin_suffix is None:
            return by_name.get(base) if name != base else None
        return by_name.get(name.removesuffix(twin_suffix)) if name.endswith(twin_suffix) else None

    against = f"the same row without {twin_suffix}" if twin_suffix else base
    searched = any(r.get("search_val_ua_mean") is not None for r in rows)
    extra = " search's own val UA |" if searched else ""
    lines = [f"| row | seeds | runs | test UA | seed std | test WA | minus {against}, paired over folds: mean [95 % CI], "
             f"p |{extra} parameters | minutes |",
             "|---|---|---:|---:|---:|---:|---|" + ("---:|" if searched else "") + "---:|---:|"]
    for r in rows:
        baseline = base_of(r["row"])
        diff = paired(r, baseline) if baseline is not None else None
        r["paired"] = diff
        text = paired_text(diff)
        own = "" if not searched else (" - |" if r.get("search_val_ua_mean") is None
                                       else f" {r['search_val_ua_mean']:.3f} |")
        lines.append(f"| {r['row']} | {','.join(map(str, r['seeds']))} | {r['runs']} | "
                     f"{r['test_ua_mean']:.3f} ± {r['test_ua_std']:.3f} | "
                     f"{r['test_ua_seed_std']:.3f} | {r['test_wa_mean']:.3f} ± {r['test_wa_std']:.3f} | {text} |{own} "
                     f"{r['parameters']:,} | {r['minutes']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data/emodb-dev", help="EmoDB folder")
    parser.add_argument("--rows", default="recipe", help="comma-separated row names (see --list)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--folds", default="all", help="comma-separated folds, or all")
    parser.add_argument("--out", default=str(RESULTS / "ablation"), help="where the runs go")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's, all cores); give each of N parallel scripts cores / N")
    parser.add_argument("--report", action="store_true",
                        help="run nothing: tabulate the finished runs of the rows and seeds given")
    parser.add_argument("--name", default="recipe_ablation", help="results file name (NAME.json)")
    parser.add_argument("--out-dir", default=None, help="where NAME.json goes (default benchmarks/results)")
    parser.add_argument("--base", default="recipe",
                        help="the row the paired differences are taken against (default: recipe)")
    parser.add_argument("--twin-suffix", default=None, metavar="SUFFIX",
                        help="pair each row <name>SUFFIX against row <name> instead of against --base "
                             "(e.g. --twin-suffix=-speaker-norm: each row's change from per-speaker normalisation)")
    parser.add_argument("--list", action="store_true", help="print the rows and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, changes in ROWS.items():
            print(f"{name}: {changes or 'the real-speech recipe'}")
        return 0
    names = [n.strip() for n in args.rows.split(",") if n.strip()]
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        print(f"recipe_ablation: unknown row(s) {', '.join(unknown)}; --list shows them", file=sys.stderr)
        return 2
    if not Path(args.root).is_dir():
        print(f"recipe_ablation: {args.root}: no such corpus folder", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("nni", "pytorch_lightning", "lightning", "lightning_fabric", "strategies", "numba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    folds = None if args.folds == "all" else tuple(int(f) for f in args.folds.split(","))
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    rows = []
    started = time.perf_counter()
    for number, name in enumerate(names, 1):
        row = run_row(name, args.root, folds, seeds, out, report_only=args.report)
        if row is None:
            logging.info("%s: no finished run", name)
            continue
        rows.append(row)
        elapsed = (time.perf_counter() - started) / 60
        logging.info("[%d/%d] %s: test UA %.3f ± %.3f (%.1f min); about %.0f min left", number, len(names), name,
                     rows[-1]["test_ua_mean"], rows[-1]["test_ua_std"], rows[-1]["minutes"],
                     elapsed / number * (len(names) - number))
    print(table(rows, base=args.base, twin_suffix=args.twin_suffix))
    write_results(args.name, {"machine": machine_info("cpu"), "folds": args.folds, "rows": rows},
                  out_dir=args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
