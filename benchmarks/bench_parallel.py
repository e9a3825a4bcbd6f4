"""Wall-clock of parallel work on this machine: ``compare --jobs`` and local trials with the thread rule.

Two measurements, each a whole ``ser-nas`` command run in a fresh process, one after another
(nothing else should run on the machine):

1. a small comparison on the synthetic corpus (DARTS and Random, 2 folds, the tiny space)
   with ``--jobs 1``, ``--jobs 1 --threads 1``, ``--jobs 2`` and ``--jobs 2 --dispatch
   trials``: wall-clock and the mean seconds per run (``--retrain-epochs`` sets the runs'
   length). The one-thread row splits what ``--jobs 2`` can gain: a run on one thread alone
   against two threads (how much the second thread helps one run) and beside another run
   (what two runs cost each other); ``ceiling`` = 2 x the two-thread run's seconds / the
   seconds of a run beside another, the speed-up ``--jobs 2`` would reach with no start-up;
2. a Random search of 4 local trials at ``--trial-concurrency`` 1 and 2, with the thread rule
   (each trial gets the search's threads / concurrency) and without it (``--threads`` set to
   the cores x concurrency, so each of the concurrent trials takes every core, as before).

    python benchmarks/bench_parallel.py                 # prints the table, writes results/bench_parallel.json
    python benchmarks/bench_parallel.py --retrain-epochs 30 --compare-only --name bench_parallel_long
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info, write_results  # noqa: E402

COMPARE = ["compare", "--strategies", "darts,random", "--seeds", "1", "--folds", "0,1", "--epochs", "2",
           "--trial-epochs", "1", "--baseline", "none", "--references", "none", "--space", "tiny",
           "--quiet", "--no-webui"]
TRIALS = ["search", "--strategy", "random", "--trials", "4", "--trial-epochs", "2", "--space", "tiny",
          "--retrain-max-epochs", "1", "--quiet", "--no-webui"]


def _run(argv: list[str]) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "SER_NAS_THREADS", "MKL_NUM_THREADS")}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "strategies.cli", *argv], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"bench_parallel: {' '.join(argv[:3])} failed: {done.stderr.strip().splitlines()[-1:]}")
    return seconds


def _per_run_seconds(output: Path) -> float:
    rows = []
    for path in output.glob("*-compare/*-seed*/fold-*/metrics.json"):
        metrics = json.loads(path.read_text())
        rows.append(metrics["search_seconds"] + metrics["retrain_seconds"])
    return sum(rows) / len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default=None, help="where bench_parallel.json goes (default benchmarks/results)")
    parser.add_argument("--name", default="bench_parallel", help="results file name (NAME.json)")
    parser.add_argument("--retrain-epochs", type=int, default=5, help="retraining epochs of each compared run")
    parser.add_argument("--compare-only", action="store_true", help="leave out the local-trials rows")
    args = parser.parse_args(argv)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-parallel-") as tmp:
        _run(["data", "prepare", "--quiet"])  # the synthetic corpus and features, outside the timings
        compare = [*COMPARE, "--retrain-max-epochs", str(args.retrain_epochs)]
        for jobs, extra in ((1, []), (1, ["--threads", "1"]), (2, []), (2, ["--dispatch", "trials"])):
            output = Path(tmp) / f"compare-jobs{jobs}{''.join(extra).replace('-', '')}"
            seconds = _run([*compare, "--jobs", str(jobs), *extra, "--output", str(output)])
            rows.append({"what": f"compare, 4 runs of {args.retrain_epochs} retraining epochs, --jobs {jobs}"
                                 f"{' ' + ' '.join(extra) if extra else ''}", "wall_seconds": seconds,
                         "per_run_seconds": _per_run_seconds(output),
                         "threads_each": 1 if "--threads" in extra else cores // jobs})
            print(rows[-1], flush=True)
        one, alone, two = rows[0], rows[1], rows[2]
        speed = {"jobs2_speedup": one["wall_seconds"] / two["wall_seconds"],
                 "second_thread_speedup_of_a_run": alone["per_run_seconds"] / one["per_run_seconds"],
                 "slowdown_beside_another_run": two["per_run_seconds"] / alone["per_run_seconds"],
                 "ceiling": 2 * one["per_run_seconds"] / two["per_run_seconds"]}
        print(speed, flush=True)
        for concurrency, rule in (() if args.compare_only else ((1, True), (2, True), (2, False))):
            threads = cores if rule else cores * concurrency  # off: each concurrent trial takes every core
            seconds = _run([*TRIALS, "--trial-concurrency", str(concurrency), "--threads", str(threads),
                            "--output", str(Path(tmp) / f"trials-{concurrency}-{rule}")])
            rows.append({"what": f"random search, 4 local trials, concurrency {concurrency}, thread rule "
                                 f"{'on' if rule else 'off'}", "wall_seconds": seconds,
                         "threads_each": max(1, threads // concurrency)})
            print(rows[-1], flush=True)
    print("\n| what | threads each | wall-clock (s) | per run (s) |\n|---|---:|---:|---:|")
    for row in rows:
        per_run = f"{row['per_run_seconds']:.0f}" if "per_run_seconds" in row else ""
        print(f"| {row['what']} | {row['threads_each']} | {row['wall_seconds']:.0f} | {per_run} |")
    print("\n" + ", ".join(f"{key} {value:.2f}" for key, value in speed.items()))
    write_results(args.name, {"machine": machine_info("cpu"), "retrain_epochs": args.retrain_epochs, "rows": rows,
                              **speed},
                  out_dir=args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
