"""Validation / test UA of a short fixed-seed DARTS search, with NNI's supernet cell or ours.

Shows that the speed changes (``DartsMixedCell``, the fast path of :mod:`ser_space.fast`,
``LeanDARTS``'s step) do not change what the search learns: run it once per implementation
and compare the per-epoch validation UA and the test UA. ``nni``: NNI's cell and NNI's own
DARTS step, the fast path off; ``ours-plain``: our cell and step with the fast path off.
Runs ``ser-nas search --strategy darts`` in this process (default synthetic corpus and tiny
space, ``--epochs`` short) with an isolated ``SER_NAS_HOME``.

    python benchmarks/check_ua.py --impl nni  --epochs 5
    python benchmarks/check_ua.py --impl ours --epochs 5
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

sys.path.insert(0, str(_common.REPO))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--impl", choices=("ours", "nni", "ours-plain"), default="ours")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out-dir", default=None)
    parser.add_argument("extra", nargs="*", help="extra flags for ser-nas search (after --)")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="ser-nas-ua-"))
    os.environ["SER_NAS_HOME"] = str(tmp / "home")
    from ser_space import SERSpace, fast
    from strategies import cli

    if args.impl in ("nni", "ours-plain"):
        fast.set_enabled(False)
    if args.impl == "nni":
        from nni.nas.strategy import DARTS

        import strategies.search.darts_step

        SERSpace.extra_oneshot_hooks = lambda self, strategy: []  # type: ignore[method-assign]
        strategies.search.darts_step.LeanDARTS = DARTS  # type: ignore[misc]  # NNI's own step
    flags = ["search", "--strategy", "darts", "--epochs", str(args.epochs), "--output", str(tmp / "runs"),
             "--quiet", *args.extra]
    if "--no-webui" in cli.build_parser().format_help() or _has_no_webui(cli):
        flags.append("--no-webui")
    rc = cli.main(flags)
    search_history, retrain_history = [], []
    for path in sorted((tmp / "runs").rglob("search.json")):
        search_history.extend(json.loads(path.read_text()).get("history") or [])
    for path in sorted((tmp / "runs").rglob("retrain.csv")):
        with path.open() as handle:
            retrain_history.extend(csv.DictReader(handle))
    metrics = [json.loads(p.read_text()) for p in sorted((tmp / "runs").rglob("metrics.json"))]
    for name, history in (("search", search_history), ("retrain", retrain_history)):
        for row in history:
            print(f"{args.impl} {name} " + "  ".join(f"{k} {_short(v)}" for k, v in row.items()
                                                     if not isinstance(v, (dict, list))))
    for m in metrics:
        print(f"{args.impl} test UA {m.get('test_ua')}  WA {m.get('test_wa')}")
    payload = {"impl": args.impl, "epochs": args.epochs, "flags": flags, "returncode": rc,
               "search_history": search_history, "retrain_history": retrain_history, "metrics": metrics}
    print(f"wrote {_common.write_results(f'check_ua_{args.impl}', payload, args.out_dir)}")
    return int(rc or 0)


def _short(value: object) -> str:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    return f"{number:.4f}" if not number.is_integer() else str(int(number))


def _has_no_webui(cli) -> bool:  # noqa: ANN001
    try:
        return "--no-webui" in cli.build_parser()._subparsers._group_actions[0].choices["search"].format_help()
    except Exception:
        return False


if __name__ == "__main__":
    sys.exit(main())
