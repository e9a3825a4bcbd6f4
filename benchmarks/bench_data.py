"""Data path: feature extraction, the feature cache, and batches as the trainers load them.

Measures, on a corpus folder (EmoDB's development copy at ``../shared/data/emodb-dev`` when
it is there, else the embedded synthetic corpus), each in a fresh temporary data folder:

- **extraction**: ``prepare_data`` from the audio (manifest, folds, features computed and
  cached), per utterance, for each ``--workers`` count;
- **reuse**: ``prepare_data`` again (the prepared folder and feature cache are found);
- **first use**: a fold's ``FeatureDataset`` loading its rows from the cached ``.npy`` and
  normalising them (once per dataset: an epoch never touches the disk afterwards);
- **batches**: one epoch of the training ``DataLoader`` exactly as the evaluator builds it
  (``shuffle=True``, ``num_workers`` 0), per batch, at each batch size; the time of a
  training step beside it says whether loading matters.

    python benchmarks/bench_data.py --features default --workers 1,2
    python benchmarks/bench_data.py --root path/to/emodb --dataset emodb --features small
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

NAME = "bench_data"
EMODB_DEV = _common.REPO.parent / "shared" / "data" / "emodb-dev"


def _positive_ints(text: str) -> list[int]:
    """``"1,2"`` -> [1, 2]; anything else is argparse's one-line error."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of positive integers")
    return values


def data_config(args: argparse.Namespace) -> Any:
    from strategies.data.features import FeatureConfig
    from strategies.data.config import DataConfig

    features = {"default": FeatureConfig.default, "small": FeatureConfig.small}[args.features]()
    if args.dataset == "synthetic":
        return DataConfig(features=features)
    return DataConfig(dataset=args.dataset, root=str(args.root), features=features)


def loader_epoch(dataset: Any, batch: int) -> dict[str, Any]:
    """One epoch of the evaluator's training loader: per-batch times (s)."""
    import torch
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=0, drop_last=False)
    times = []
    start = time.perf_counter()
    for _ in loader:
        now = time.perf_counter()
        times.append(now - start)
        start = now
    return {"batches": len(times), "batch_ms": 1e3 * statistics.median(times), "epoch_ms": 1e3 * sum(times)}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from strategies.data.prepare import prepare_data
    from strategies.pipeline import fold_datasets

    config = data_config(args)
    result: dict[str, Any] = {"dataset": config.dataset, "root": config.root, "features": args.features,
                              "extraction": []}
    prepared = None
    with tempfile.TemporaryDirectory(prefix="ser-nas-bench-data-") as tmp:
        for workers in args.workers:
            folder = Path(tmp) / f"workers{workers}"
            start = time.perf_counter()
            prepared = prepare_data(config, data_dir=folder, progress=False, num_workers=workers)
            seconds = time.perf_counter() - start
            count = len(prepared.manifest)
            result["extraction"].append({"workers": workers, "seconds": seconds, "utterances": count,
                                         "ms_per_utterance": 1e3 * seconds / count})
        assert prepared is not None
        start = time.perf_counter()
        prepared = prepare_data(config, data_dir=folder, progress=False)
        result["reuse_s"] = time.perf_counter() - start
        result["feature_shape"] = list(prepared.features().shape[1:])
        fold = prepared.folds[0]
        datasets, _ = fold_datasets(prepared, fold)
        train = datasets["train"]
        start = time.perf_counter()
        train.tensors  # noqa: B018 - the first use loads and normalises the rows
        result["first_use_s"] = time.perf_counter() - start
        result["train_utterances"] = len(train)
        result["batches"] = [{"batch_size": batch, **loader_epoch(train, batch)} for batch in args.batch_sizes]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=None,
                        help="corpus name (default: emodb when ../shared/data/emodb-dev exists, else synthetic)")
    parser.add_argument("--root", type=Path, default=None, help="corpus folder (default: the EmoDB development copy)")
    parser.add_argument("--features", choices=("default", "small"), default="default",
                        help="feature recipe: default (the paper's 128 x 128 MFCC) or small")
    parser.add_argument("--workers", type=_positive_ints, default=[1, 2], help="extraction processes, comma-separated")
    parser.add_argument("--batch-sizes", type=_positive_ints, default=[8, 64], help="loader batch sizes, comma-separated")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out-dir", default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    if args.dataset is None:
        args.dataset = "emodb" if args.root is not None or EMODB_DEV.is_dir() else "synthetic"
    if args.dataset != "synthetic":
        args.root = args.root or EMODB_DEV
        if not args.root.is_dir():
            parser.error(f"--root {args.root}: not a folder")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    os.environ.setdefault("TQDM_DISABLE", "1")

    from strategies.data.errors import DataError

    try:
        result = measure(args)
    except DataError as error:   # a corpus that cannot be read: the loader's one line, as the CLI gives it
        raise SystemExit(f"bench_data: {error}") from None
    print(f"{result['dataset']} ({result['root'] or 'embedded'}), features {result['features']} "
          f"{'x'.join(map(str, result['feature_shape']))}")
    _common.print_table(result["extraction"], ["workers", "utterances", "seconds", "ms_per_utterance"])
    print(f"\nreuse (prepared folder found): {result['reuse_s']:.3f} s; first use of the training split "
          f"({result['train_utterances']} utterances): {result['first_use_s']:.3f} s\n")
    _common.print_table(result["batches"], ["batch_size", "batches", "batch_ms", "epoch_ms"])
    payload = {"benchmark": NAME, "machine": _common.machine_info("cpu"), **result}
    print(f"wrote {_common.write_results(NAME, payload, args.out_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
