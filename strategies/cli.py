"""``ser-nas``: prepare data, search, retrain, evaluate, predict, view.

Every command runs on the embedded synthetic corpus unless ``--dataset``/``--root`` say
otherwise. Flags of the configs are generated from their dataclass fields
(:mod:`strategies.cli_fields`): ``--<search field>``, ``--search-train-<field>``,
``--retrain-<field>``, ``--space-<field>``, ``--features-<field>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from .cli_fields import add_config_flags, config_from_flags

logger = logging.getLogger("strategies.cli")

SPACE_PRESETS = ("tiny", "small", "paper")
FEATURE_PRESETS = ("small", "speech", "default", "compat")


class _NotFromNNI(logging.Filter):
    """NNI prints its own records through its own handler: keep them off ours (no duplicates)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "nni" or record.name.startswith("nni."))


class _StderrHandler(logging.StreamHandler):
    """A stream handler on whatever ``sys.stderr`` is when a record is emitted.

    Progress bars, notebooks and test runners replace ``sys.stderr``; a handler bound to the
    stream of the moment it was made would write to an old, possibly closed one.
    """

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname).1s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        handlers=[_StderrHandler()], force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_NotFromNNI())
    for noisy in ("nni", "pytorch_lightning", "lightning", "lightning_fabric", "numba", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    if verbose:  # other packages' warnings too (strategies.compat, fix 2), in trial processes as well
        from .compat import VERBOSE_VARIABLE

        os.environ[VERBOSE_VARIABLE] = "1"


def _space_preset(name: str) -> Any:
    from ser_space import SpaceConfig

    return SpaceConfig.preset(name)


def _feature_preset(name: str) -> Any:
    from .data.features import FeatureConfig

    return FeatureConfig.preset(name)


# ----------------------------------------------------------------------------- parsers

def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    from .data.features import FeatureConfig
    from .data.config import DATASETS

    group = parser.add_argument_group("data")
    group.add_argument("--dataset", default="synthetic", choices=DATASETS,
                       help="corpus (default: the embedded synthetic corpus)")
    group.add_argument("--root", default=None, help="corpus folder (CSV file for --dataset csv)")
    group.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                       help="corpus loader option, e.g. improvised_only=true (repeatable)")
    group.add_argument("--protocol", default=None,
                       help="fold protocol: loso, loo-session, kfold-speaker, official (default: the corpus's)")
    group.add_argument("--k", type=int, default=None, help="folds for kfold protocols")
    group.add_argument("--val-speakers", type=float, default=1,
                       help="training speakers held out for validation (count, or fraction < 1)")
    group.add_argument("--fold-seed", type=int, default=0, help="seed of fold grouping and validation speakers")
    group.add_argument("--features", default=None, choices=FEATURE_PRESETS,
                       help="feature recipe preset (default: small for synthetic, speech otherwise)")
    group.add_argument("--data-dir", default=None, help="cache of prepared data (default ~/.cache/ser-nas)")
    add_config_flags(parser, FeatureConfig, prefix="features-",
                     group_title="feature recipe fields (over the --features preset; real speech fits the window "
                                 "to the corpus)",
                     defaults={label: recipe.data.features for label, recipe in _recipes().items()})


def _recipes() -> dict[str, Any]:
    """The default recipes, labelled as a flag's help shows them."""
    from .recipes import RECIPES

    return {"synthetic": RECIPES["synthetic"], "real speech": RECIPES["real-speech"]}


def _add_run_flags(parser: argparse.ArgumentParser, search: bool = True) -> None:
    from ser_space import SpaceConfig

    from .evaluator import TrainConfig
    from .search import SearchConfig

    parser.add_argument("--folds", default="0",
                        help="fold indices to run, comma separated, or 'all' (default: 0)")
    parser.add_argument("--space", default=None, choices=SPACE_PRESETS,
                        help="search space preset (default: the recipe's: tiny on the synthetic corpus, small on real speech)")
    parser.add_argument("--seq-op-set", default=None, help="emoDARTS sequence op set: lstm, lstm_att, rnn, rnn_att, all")
    parser.add_argument("--output", default="runs", help="where run folders are created")
    parser.add_argument("--config", default=None, help="a run config.json to start from (flags override it)")
    parser.add_argument("--resume", default=None, metavar="RUN_DIR",
                        help="finish an interrupted run: skip finished folds, redo the rest")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--verbose", action="store_true", help="debug logging, NNI's included")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch / OpenMP threads (default: all cores, or $OMP_NUM_THREADS); recorded per fold")
    recipes = _recipes()
    if search:
        # the CLI shows one-shot searches in the web UI (the library default is off)
        add_config_flags(parser, SearchConfig, group_title="search",
                         defaults={k: r.search.replace(webui=True) for k, r in recipes.items()})
        add_config_flags(parser, TrainConfig, prefix="search-train-", group_title="weight training during search",
                         skip=("train_on_val", "average_last"), defaults={k: r.search_train for k, r in recipes.items()})
    add_config_flags(parser, TrainConfig, prefix="retrain-", group_title="retraining",
                     defaults={k: r.retrain for k, r in recipes.items()})
    add_config_flags(parser, SpaceConfig, prefix="space-", group_title="space fields (over --space)",
                     defaults={k: r.space for k, r in recipes.items()})


PREDICT_EXAMPLE = """\
example (an EmoDB model of docs/results.md, on clips of its held-out speaker; exit 1: one file failed):
  $ ser-nas predict runs-emodb clips/ --timeline timeline
               path    status emotion  p_ang  p_bor  p_dis  p_fea  p_hap  p_neu  p_sad  seconds  speech_seconds  windows
  clips/03a01Fa.wav        ok     neu  0.059  0.023  0.036  0.251  0.304  0.309  0.018    2.000           1.740        1
  clips/03a02Ta.wav        ok     neu  0.012  0.299  0.026  0.086  0.023  0.386  0.168    2.000           1.620        1
  clips/03a02Wb.wav        ok     ang  0.741  0.005  0.107  0.048  0.082  0.004  0.012    2.000           1.980        1
     clips/blip.wav too_short              -      -      -      -      -      -      -    0.050           0.030        0
   clips/broken.wav     error              -      -      -      -      -      -      -        -               -        0
    clips/call.flac        ok     hap  0.298  0.014  0.067  0.154  0.371  0.079  0.017   18.000           6.540        9
  clips/silence.wav no_speech              -      -      -      -      -      -      -    3.000           0.000        0
  wrote the emotion of 20 windows to timeline/timeline.csv and 1 plot(s)
  not judged (too_short): clips/blip.wav: 0.05 s of audio; the least judged is 0.5 s
  error: clips/broken.wav: not a readable audio file (Error opening 'clips/broken.wav': Format not recognised.)
  not judged (no_speech): clips/silence.wav: no speech found
  1 of 7 file(s) could not be read
"""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the problem and where the options are, not the whole usage."""

    def error(self, message: str) -> Any:
        self.exit(2, f"error: {self.prog}: {message} (options: {self.prog} --help)\n")


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: X)" to a flag's help unless the help already says its default or X is None
    (then the help says what happens without it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default" in text or action.default is None:
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ser-nas", description=__doc__.splitlines()[0],
                     formatter_class=_DefaultsFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="corpus preparation")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    prepare = data_sub.add_parser("prepare", help="build manifest, folds and features; print a summary")
    _add_data_flags(prepare)
    prepare.add_argument("--workers", type=int, default=1, help="processes for feature extraction")
    prepare.add_argument("--quiet", action="store_true", help="no progress bar")
    prepare.add_argument("--verbose", action="store_true")

    search = sub.add_parser("search", help="search -> retrain -> test on the held-out speakers")
    _add_data_flags(search)
    _add_run_flags(search)
    search.add_argument("--baseline", default=None,
                        help="instead of searching: a hand-designed network (cnn, cnn_lstm, cnn_lstm_att) or a reference "
                             "baseline (mfcc_stats, egemaps, compare2016; :logreg or :svm picks the classifier)")

    retrain = sub.add_parser("retrain", help="retrain an architecture file, or each fold's architecture of a run, "
                                             "from scratch and test it")
    retrain.add_argument("architecture", help="architecture JSON (e.g. runs/.../fold-0/architecture.json), or a run "
                                              "folder: each fold retrains the architecture that run found on it")
    _add_data_flags(retrain)
    _add_run_flags(retrain, search=False)

    evaluate = sub.add_parser("evaluate", help="score a run's models on their test folds again")
    evaluate.add_argument("run", help="run folder")
    evaluate.add_argument("--data-dir", default=None)
    evaluate.add_argument("--verbose", action="store_true")

    predict = sub.add_parser("predict", help="emotion and class probabilities of recordings of any length",
                             formatter_class=argparse.RawDescriptionHelpFormatter, epilog=PREDICT_EXAMPLE)
    predict.add_argument("model", help="model.pt, a run folder (its first finished fold), or an .onnx file of "
                                       "ser-nas export (run in ONNX Runtime)")
    predict.add_argument("inputs", nargs="+", help="audio files or folders")
    predict.add_argument("--fold", type=int, default=None, help="which fold's model of a run folder")
    predict.add_argument("--output", default=None,
                         help="write every file's row (with its status) to .csv or .json (default: print a table)")
    predict.add_argument("--timeline", default=None, metavar="DIR",
                         help="also write the emotion per window over time: DIR/timeline.csv and a plot per recording")
    predict.add_argument("--min-speech", type=float, default=0.5, metavar="SECONDS",
                         help="least speech a window (and a recording) needs to be judged; less is flagged too_short")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.add_argument("--verbose", action="store_true")

    export = sub.add_parser("export", help="write a found network as one ONNX file per fold: raw audio in, class "
                                           "probabilities out (needs pip install 'ser-nas[deploy]')")
    export.add_argument("model", help="a run folder (every finished fold) or a model.pt")
    export.add_argument("--fold", type=int, default=None, help="only this fold of a run folder")
    export.add_argument("--output", default=None,
                        help="the .onnx file (one model), or a folder for a run's folds (default: model.onnx beside "
                             "each model.pt)")
    export.add_argument("--verbose", action="store_true")

    view = sub.add_parser("view", help="open a finished run's NNI experiment(s) in the NNI web UI")
    view.add_argument("run", help="run folder or NNI experiment folder")
    view.add_argument("--port", type=int, default=8080, help="web UI port (0: a free port)")
    view.add_argument("--webui-host", default=None, metavar="ADDRESS",
                      help="where the web UI listens: 127.0.0.1 (default), or 0.0.0.0 for every interface "
                           "(NNI's API has no authentication; prefer an SSH tunnel)")
    view.add_argument("--experiment", default=None, metavar="ID",
                      help="which NNI experiment of the run to open (default: the first listed)")
    view.add_argument("--timeout", type=float, default=None,
                      help="stop the web UI after this many seconds (default: until Ctrl-C)")
    view.add_argument("--verbose", action="store_true")
    add_compare_parser(sub)
    add_reproduce_parser(sub)
    return parser


# ----------------------------------------------------------------------------- configs

def _parse_option(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ValueError(f"--option {text!r}: expected KEY=VALUE")
    key, value = text.split("=", 1)
    lowered = value.strip().lower()
    parsed: Any = value
    if lowered in ("true", "false"):
        parsed = lowered == "true"
    else:
        try:
            parsed = int(value)
        except ValueError:
            try:
                parsed = float(value)
            except ValueError:
                parsed = value
    return key.strip(), parsed


def _data_config(args: argparse.Namespace) -> Any:
    from .data.features import FeatureConfig
    from .data.config import DataConfig

    preset = args.features or ("small" if args.dataset == "synthetic" else "speech")
    val_speakers: int | float = args.val_speakers
    if float(val_speakers).is_integer() and val_speakers >= 1:
        val_speakers = int(val_speakers)
    root = str(Path(args.root).expanduser()) if args.root else None
    data = DataConfig(dataset=args.dataset, root=root, options=tuple(sorted(_parse_option(o) for o in args.option)),
                      protocol=args.protocol, k=args.k, val_speakers=val_speakers, fold_seed=args.fold_seed,
                      features=_feature_preset(preset))
    if preset == "speech":
        # the window follows the corpus's durations unless --features-clip-seconds says otherwise;
        # the frames follow the window either way
        if hasattr(args, "features_clip_seconds"):
            features = FeatureConfig.speech(args.features_clip_seconds)
        else:
            from .recipes import corpus_features

            features = corpus_features(data)
            logger.info("feature window %g s: the corpus's median duration (--features-clip-seconds changes it)",
                        features.clip_seconds)
        data = dataclasses.replace(data, features=features)
    return dataclasses.replace(data, features=config_from_flags(data.features, args, prefix="features_"))


def _folds(text: str) -> tuple[int, ...] | None:
    if text.strip().lower() == "all":
        return None
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"--folds {text!r}: expected comma-separated fold numbers or 'all'") from None


def _run_config(args: argparse.Namespace, search: bool = True) -> Any:
    import dataclasses

    from .recipes import RunConfig
    from .recipes import recipe_for
    from .runs import read_json

    # the corpus's recipe: the one-minute default on the synthetic corpus, real-speech otherwise
    base = RunConfig.from_dict(read_json(args.config)) if args.config else recipe_for(args.dataset)
    if not args.config and search:
        # the CLI shows one-shot searches in the NNI web UI unless --no-webui (the library default is off)
        base = dataclasses.replace(base, search=base.search.replace(webui=True))
    if search and hasattr(args, "seed"):
        # --seed seeds the whole run, the search and both trainings; --search-train-seed and
        # --retrain-seed (applied below) still override their training's seed
        base = base.seeded(args.seed)
    space = _space_preset(args.space) if args.space else base.space
    if args.seq_op_set:
        space = space.with_seq_op_set(args.seq_op_set)
    space = config_from_flags(space, args, prefix="space_")
    changes: dict[str, Any] = {
        "data": _data_config(args) if not args.config or args.root or args.dataset != "synthetic" else base.data,
        "space": space,
        "retrain": config_from_flags(base.retrain, args, prefix="retrain_"),
        "folds": _folds(args.folds),
    }
    if search:
        changes["search"] = config_from_flags(base.search, args)
        changes["search_train"] = config_from_flags(base.search_train, args, prefix="search_train_")
        changes["baseline"] = args.baseline
    else:
        changes["architecture"] = str(Path(args.architecture).resolve())
    return dataclasses.replace(base, **changes)


# ----------------------------------------------------------------------------- commands

def _print_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    print(f"run folder: {run_dir}")
    for fold in summary["per_fold"]:
        print(f"  fold {fold['fold']}: test UA {fold['test_ua']:.4f}  WA {fold['test_wa']:.4f}  "
              f"F1 {fold['test_f1']:.4f}  params {fold['parameters']}  "
              f"search {fold['search_seconds']:.0f} s  retrain {fold['retrain_seconds']:.0f} s")
    ua, wa = summary["test_ua"], summary["test_wa"]
    print(f"{summary['method']} on {summary['dataset']} ({summary['folds']} fold(s)): "
          f"test UA {ua['mean']:.4f} +- {ua['std']:.4f}, WA {wa['mean']:.4f} +- {wa['std']:.4f}")


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from .data.prepare import prepare_data, summary_table

    prepared = prepare_data(_data_config(args), data_dir=args.data_dir, progress=not args.quiet,
                            num_workers=args.workers)
    print(summary_table(prepared))
    return 0


def cmd_search(args: argparse.Namespace, search: bool = True) -> int:
    from .pipeline import run_pipeline

    config = _run_config(args, search=search) if not args.resume else None
    started = time.perf_counter()
    run_dir, summary = run_pipeline(config, output_dir=args.output, data_dir=args.data_dir, resume=args.resume,
                                    progress=not args.quiet, threads=args.threads) if config is not None else \
        run_pipeline(None, data_dir=args.data_dir, resume=args.resume, progress=not args.quiet,  # type: ignore[arg-type]
                     threads=args.threads)
    _print_summary(run_dir, summary)
    print(f"total time {time.perf_counter() - started:.0f} s")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_run

    rows = evaluate_run(args.run, data_dir=args.data_dir)
    for row in rows:
        print(f"fold {row['fold']}: test UA {row['test_ua']:.4f}  WA {row['test_wa']:.4f}  F1 {row['test_f1']:.4f}"
              f"  (recorded UA {row['recorded_test_ua']:.4f})")
    return 0


def _write_table(table: Any, out: Path) -> None:
    from ser_space.io import write_atomically

    if out.suffix.lower() == ".json":
        text = json.dumps(json.loads(table.to_json(orient="records")), indent=2)  # NaN -> null
        write_atomically(out, lambda h: h.write(text.encode()))
    else:
        write_atomically(out, lambda h: table.to_csv(h, index=False))


def cmd_predict(args: argparse.Namespace) -> int:
    """Score every input; write what was scored; list the files that failed; exit 1 if any did."""
    from .plots import plot_timeline
    from .predict import audio_files, load_predictor

    predictor = load_predictor(args.model, args.fold)
    result = predictor.analyse(audio_files(args.inputs), min_speech=args.min_speech, progress=not args.quiet)
    table = result.files
    if args.output:
        _write_table(table, Path(args.output))
        print(f"wrote {len(table)} rows to {args.output} ({(table['status'] == 'ok').sum()} scored)")
    else:
        shown = table.drop(columns=["message"])
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="-"))
    if args.timeline:
        folder = Path(args.timeline)
        _write_table(result.windows, folder / "timeline.csv")
        plots = 0
        for number, (path, windows) in enumerate(result.windows.groupby("path", sort=False)):
            if len(windows) > 1:
                plot_timeline(windows, predictor.classes, folder / f"{number:03d}-{Path(path).stem}.png",
                              title=f"{path}: emotion over time (grey: too little speech, not used)")
                plots += 1
        print(f"wrote the emotion of {len(result.windows)} windows to {folder / 'timeline.csv'} and {plots} plot(s)")
    for _, row in table[table["status"] != "ok"].iterrows():
        kind = "error" if row["status"] == "error" else f"not judged ({row['status']})"
        print(f"{kind}: {row['path']}: {row['message']}", file=sys.stderr)
    failed = len(result.failed)
    if failed:
        print(f"{failed} of {len(table)} file(s) could not be read", file=sys.stderr)
    return 1 if failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export one model, or every finished fold of a run, to ONNX; print each file written."""
    from .export import export_onnx
    from .predict import find_model
    from .runs import RunError

    source = Path(args.model)
    if source.is_dir() and args.fold is None:
        models = sorted(source.glob("fold-*/model.pt"), key=lambda p: int(p.parent.name.split("-")[1]))
        if not models:
            find_model(source)  # the one-line error of a folder without a finished fold
    else:
        models = [find_model(source, args.fold)]
    output = Path(args.output) if args.output else None
    if output is not None and output.suffix.lower() == ".onnx" and len(models) > 1:
        raise RunError(f"--output {output}: {len(models)} folds to export; give a folder, or --fold K")
    for model in models:
        if output is None:
            target = model.with_suffix(".onnx")
        elif output.suffix.lower() == ".onnx":
            target = output
        else:
            target = output / f"{model.parent.parent.name}-{model.parent.name}.onnx"
        export_onnx(model, target)
        print(f"wrote {target} ({target.stat().st_size / 1024:.0f} KiB)")
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    from .webui import describe, view

    def announce(server: Any, experiments: list[Path]) -> None:
        if len(experiments) > 1:
            print(f"{len(experiments)} NNI experiments here (open another with --experiment ID):")
            for folder in experiments:
                info = describe(folder)
                mark = "*" if folder == server.experiment_dir else " "
                print(f" {mark} {info['id']}  {info['name'] or ''}")
        print(f"NNI web UI for experiment {server.experiment_id}: {server.url}  (Ctrl-C stops it)", flush=True)

    view(args.run, port=args.port, timeout=args.timeout, experiment=args.experiment, on_ready=announce,
         host=args.webui_host)
    return 0


# ----------------------------------------------------------------------------- ser-nas reproduce

def add_reproduce_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``ser-nas reproduce ROW --root PATH [...]`` to the CLI's subparsers."""
    from ser_space import SEQ_OP_SETS

    from .recipes import DEFAULT_RETRAIN_EPOCHS
    from .reproduce import PROTOCOL_CHOICES, ROWS

    parser = subparsers.add_parser(
        "reproduce", help="rerun a published row (search -> retrain -> test, every fold); ours vs published",
        description="Rerun a published row of Rajapakshe et al. with the paper's settings on the authors' "
                    "protocol (or the standard one) and print our figures beside the published ones.")
    parser.add_argument("row", nargs="?", default=None, help=f"row to rerun: {', '.join(ROWS)}")
    parser.add_argument("--root", default=None, help="corpus folder of the row's corpus")
    parser.add_argument("--protocol", default="authors", choices=PROTOCOL_CHOICES,
                        help="the authors' protocol (as published), the standard one, or both side by side")
    parser.add_argument("--epochs", type=int, default=None, help="search epochs (default 50, the paper's)")
    parser.add_argument("--retrain-epochs", type=int, default=None,
                        help=f"retraining epochs (default {DEFAULT_RETRAIN_EPOCHS}; the authors' code: 600)")
    parser.add_argument("--order", default="second", choices=("second", "first"),
                        help="DARTS order: second as published; first for a cheap smoke run")
    parser.add_argument("--seq-op-set", default=None, choices=sorted(SEQ_OP_SETS),
                        help="another sequence op set than the row's (the emoDARTS ablation)")
    parser.add_argument("--space", default="paper", choices=("paper", "tiny"),
                        help="search space: the paper's, or the tiny one for a smoke run (the op set applies to both)")
    parser.add_argument("--features", default="compat", choices=("compat", "default", "small"),
                        help="feature recipe: the authors' (compat), ours at native rate, or small for a smoke run")
    parser.add_argument("--folds", default="all", help="fold indices, comma separated, or 'all' (as published)")
    parser.add_argument("--output", default="runs", help="where run folders are created")
    parser.add_argument("--data-dir", default=None, help="cache of prepared data (default ~/.cache/ser-nas)")
    parser.add_argument("--list", action="store_true", help="list the rows and their published figures")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Run ``ser-nas reproduce``; prints the rows (``--list``) or the ours-vs-published table."""
    from ser_space import SpaceConfig

    from .data.features import FeatureConfig
    from .reproduce import ROWS, format_results, get_row, list_rows, run_reproduce

    if args.list:
        print(list_rows())
        return 0
    if args.row is None:
        raise ValueError(f"name a row (one of {', '.join(ROWS)}) or use --list")
    row = get_row(args.row)
    if args.root is None:
        raise ValueError(f"row {row.name} needs --root (the {row.corpus} corpus folder)")
    folds = None if args.folds.strip().lower() == "all" else tuple(int(v) for v in args.folds.split(",") if v.strip())
    overrides: dict[str, Any] = {"protocol": args.protocol, "order": args.order, "epochs": args.epochs,
                                 "retrain_epochs": args.retrain_epochs, "seq_op_set": args.seq_op_set,
                                 "folds": folds, "data_dir": args.data_dir, "progress": not args.quiet,
                                 "space": SpaceConfig.tiny() if args.space == "tiny" else None,
                                 "features": {"compat": FeatureConfig.compat, "default": FeatureConfig.default,
                                              "small": FeatureConfig.small}[args.features]()}
    result = run_reproduce(row, str(Path(args.root).expanduser()), output_dir=args.output, overrides=overrides)
    print(format_results(result))
    return 0


# ----------------------------------------------------------------------------- ser-nas compare

def add_compare_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``compare`` subcommand to the ``ser-nas`` subparsers."""
    from .baselines import BASELINES
    from .compare import CompareConfig
    from .evaluator import TrainConfig

    defaults = CompareConfig()
    parser = subparsers.add_parser(
        "compare", help="compare NAS strategies (+ a hand-designed baseline) under equal search budgets",
        description="Run every strategy x seed x fold with equal search budgets, retrain each found "
                    "architecture with the same settings, test it, and write a report (results.csv, "
                    "table.md, table.csv, figures) into one comparison folder.",
        formatter_class=_DefaultsFormatter)
    parser.add_argument("--strategies", default=",".join(defaults.strategies),
                        help="registered strategies, comma separated")
    parser.add_argument("--seeds", default="1",
                        help="number of seeds N (seeds 0..N-1), or a comma-separated list such as 3,7")
    parser.add_argument("--folds", default="0", help="fold indices, comma separated, or 'all'")
    parser.add_argument("--epochs", type=int, default=defaults.epochs,
                        help="search budget: one-shot supernet epochs; multi-trial strategies get "
                             "round(2 * epochs / trial-epochs) trials")
    parser.add_argument("--trial-epochs", type=int, default=defaults.trial_epochs,
                        help="multi-trial: training epochs per trial")
    parser.add_argument("--baseline", default=defaults.baseline,
                        help=f"hand-designed baseline row ({', '.join(BASELINES)}) or 'none'")
    parser.add_argument("--references", default="default",
                        help="reference baseline rows, comma separated (mfcc_stats, egemaps, compare2016, each "
                             "optionally :logreg or :svm), 'none', or 'default' (mfcc_stats, plus the openSMILE "
                             "sets where the opensmile extra is installed)")
    parser.add_argument("--space", default=None, choices=SPACE_PRESETS,
                        help="search space preset (default: tiny on the synthetic corpus, small on real speech)")
    parser.add_argument("--output", default="runs", help="where the comparison folder is created")
    parser.add_argument("--resume", default=None, metavar="COMPARE_DIR",
                        help="finish an interrupted comparison: skip finished runs, run the rest "
                             "(its compare.json gives every setting)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--verbose", action="store_true", help="debug logging, NNI's included")
    parser.add_argument("--webui", action=argparse.BooleanOptionalAction, default=True,
                        help="show all runs together as the trials of one NNI experiment (ser-nas view DIR)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="runs at once, each in its own process with its share of the cores (default: 1)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch threads of each run (default: the cores divided by --jobs)")
    parser.add_argument("--webui-host", default=None, metavar="ADDRESS",
                        help="where that web UI listens: 127.0.0.1 (default), or 0.0.0.0 for every interface "
                             "(NNI's API has no authentication; prefer an SSH tunnel)")
    dispatch = parser.add_argument_group("where the runs go (--dispatch trials)")
    dispatch.add_argument("--dispatch", choices=("processes", "trials"), default="processes",
                          help="processes: on this machine (default); trials: every run a trial of one NNI "
                               "experiment on the training service below, --jobs at once, in the web UI while it runs")
    dispatch.add_argument("--training-service", default=None, choices=("local", "remote"),
                          help="NNI training service of the trials (default: local)")
    dispatch.add_argument("--remote-machines", default=None, metavar="USER@HOST:PORT,...",
                          help="remote: trial machines; they need ser-nas, the corpus and the comparison folder "
                               "at the same paths (a shared filesystem)")
    dispatch.add_argument("--remote-ssh-key", default=None, metavar="FILE",
                          help="remote: SSH private key (default ~/.ssh/id_rsa)")
    dispatch.add_argument("--remote-python", default=None, metavar="PATH",
                          help="remote: the trial machines' Python (default: this one's path)")
    dispatch.add_argument("--nni-manager-ip", default=None, metavar="ADDRESS",
                          help="remote: this machine's address as the trial machines reach it")
    dispatch.add_argument("--training-service-config", default=None, metavar="FILE",
                          help="a JSON/YAML NNI training-service config for the trials (other platforms)")
    _add_data_flags(parser)
    add_config_flags(parser, TrainConfig, prefix="search-train-", group_title="weight training during search",
                     skip=("max_epochs", "seed", "train_on_val", "average_last"))
    add_config_flags(parser, TrainConfig, prefix="retrain-", group_title="retraining (the same for every run)",
                     skip=("seed",))
    return parser


def _parse_seeds(text: str) -> tuple[int, ...] | int:
    text = text.strip()
    try:
        if "," in text:
            return tuple(int(v) for v in text.split(",") if v.strip())
        return int(text)
    except ValueError:
        raise ValueError(f"--seeds {text!r}: expected a count N or comma-separated seeds") from None


def compare_config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`CompareConfig` of parsed ``compare`` arguments."""
    from .compare import CompareConfig
    from .recipes import recipe_for

    defaults = CompareConfig()
    if args.dataset != "synthetic":
        # real speech: the real-speech recipe's space and training (strategies.recipes)
        recipe = recipe_for(args.dataset)
        defaults = defaults.replace(space=recipe.space, search_train=recipe.search_train, retrain=recipe.retrain)
    baseline = None if str(args.baseline).lower() in ("none", "") else args.baseline
    strategies = tuple(s.strip() for s in args.strategies.split(",") if s.strip())
    text = str(args.references).strip().lower()
    references = defaults.references if text == "default" else () if text in ("none", "") else \
        tuple(r.strip() for r in args.references.split(",") if r.strip())
    return CompareConfig(strategies=strategies, seeds=_parse_seeds(args.seeds), folds=_folds(args.folds),
                         baseline=baseline, references=references, epochs=args.epochs,
                         trial_epochs=args.trial_epochs, data=_data_config(args),
                         space=_space_preset(args.space) if args.space else defaults.space,
                         search_train=config_from_flags(defaults.search_train, args, prefix="search_train_"),
                         retrain=config_from_flags(defaults.retrain, args, prefix="retrain_"))


def _dispatch_service(args: argparse.Namespace) -> Any:
    """The training service of ``--dispatch trials`` (a SearchConfig's service fields), or None."""
    from .search import SearchConfig

    given = {name: getattr(args, name) for name in ("training_service", "remote_machines", "remote_ssh_key",
                                                    "remote_python", "nni_manager_ip", "training_service_config")
             if getattr(args, name) is not None}
    if not given:
        return None
    if args.dispatch != "trials":
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise ValueError(f"{flags}: only with --dispatch trials")
    if "remote_machines" in given:
        given["remote_machines"] = tuple(m.strip() for m in given["remote_machines"].split(",") if m.strip())
        given.setdefault("training_service", "remote")
    return SearchConfig(**given)


def cmd_compare(args: argparse.Namespace) -> int:
    """``ser-nas compare``: run (or resume) a comparison and print its Markdown table."""
    from .compare import run_compare

    started = time.perf_counter()
    where = {"dispatch": args.dispatch, "service": _dispatch_service(args)}
    if args.resume:
        compare_dir, report = run_compare(None, data_dir=args.data_dir, resume=args.resume, progress=not args.quiet,
                                          webui=args.webui, webui_host=args.webui_host, jobs=args.jobs,
                                          threads=args.threads, **where)
    else:
        compare_dir, report = run_compare(compare_config_from_args(args), output_dir=args.output,
                                          data_dir=args.data_dir, progress=not args.quiet, webui=args.webui,
                                          webui_host=args.webui_host, jobs=args.jobs, threads=args.threads, **where)
    print(f"comparison folder: {compare_dir}")
    print(report["markdown"], end="")
    if report["missing"]:
        print(f"unfinished runs: {', '.join(report['missing'])}")
    if "webui" in report:
        print(f"all runs in the NNI web UI: experiment {report['webui']['experiment_id']} "
              f"(reopen with: ser-nas view {compare_dir})")
    print(f"total time {time.perf_counter() - started:.0f} s")
    return 0


_RECEIVED: list[int] = []  # signals turned into Stopped during this process


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a scheduler's time limit, ``timeout``, a container stop, a closed
    terminal), raised in the main thread so that it unwinds exactly as Ctrl-C does: NNI
    experiments and managers are stopped, finished folds are kept."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop_on_signals() -> dict[int, Any]:
    """Turn SIGTERM and SIGHUP into :class:`Stopped` (main thread only); the previous handlers."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}

    def stop(signum: int, frame: Any) -> None:
        _RECEIVED.append(signum)  # NNI's run() swallows the exception and the caller raises a plain one
        raise Stopped(signum)

    return {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}


def _interrupted(args: argparse.Namespace, error: KeyboardInterrupt) -> int:
    """The one message of an interrupted command: what was kept and how to go on; 128 + signal."""
    import signal

    signum = error.signum if isinstance(error, Stopped) else _RECEIVED[-1] if _RECEIVED else signal.SIGINT
    name = signal.Signals(signum).name
    folder = getattr(error, "resume_dir", None)
    command = "compare" if args.command == "compare" else "search"
    if args.command in ("search", "retrain", "compare", "reproduce") and folder is not None:
        advice = f"finished folds are kept in {folder}; complete it with: ser-nas {command} --resume {folder}"
    elif args.command in ("search", "retrain", "compare", "reproduce"):
        advice = "no run folder was written yet"
    elif args.command == "data":
        advice = "features computed so far are cached; the same command continues from them"
    else:
        advice = "stopped"
    print(f"interrupted ({name}): {advice}", file=sys.stderr)
    return 128 + int(signum)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(getattr(args, "verbose", False))
    previous = _stop_on_signals()
    try:
        return _main(parser, args)
    finally:
        import signal

        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from ser_space import ArchitectureError

    from . import compat, lifeline
    from .data.errors import DataError
    from .runs import RunError

    lifeline.claim(force=True)  # every process this command starts ends with it (strategies.lifeline)
    compat.apply()
    try:
        if args.command == "data":
            return cmd_data_prepare(args)
        if args.command == "search":
            return cmd_search(args)
        if args.command == "retrain":
            return cmd_search(args, search=False)
        if args.command == "evaluate":
            return cmd_evaluate(args)
        if args.command == "predict":
            return cmd_predict(args)
        if args.command == "view":
            return cmd_view(args)
        if args.command == "export":
            return cmd_export(args)
        if args.command == "compare":
            return cmd_compare(args)
        if args.command == "reproduce":
            return cmd_reproduce(args)
    except (DataError, RunError, ArchitectureError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ValueError as error:  # config checks raise ValueError with a one-line message
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        return _interrupted(args, error)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
