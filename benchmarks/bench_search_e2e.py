"""End-to-end wall time of the default ``ser-nas search --strategy darts`` and its test UA.

Runs the CLI in a subprocess with ``SER_NAS_HOME`` (data and feature caches) and the run
folder in a fresh temporary folder, so nothing is reused between runs; adds
``--no-webui`` when the CLI offers it. Extra CLI flags pass through after ``--``.

    python benchmarks/bench_search_e2e.py --repeats 1
    python benchmarks/bench_search_e2e.py --device cuda -- --epochs 50
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

NAME = "bench_search_e2e"
UA = re.compile(r"\btest\b[^\n]*?\bUA\b[^0-9\n]*([0-9]*\.?[0-9]+)", re.IGNORECASE)


def cli() -> list[str]:
    return [sys.executable, "-m", "strategies.cli"]


def has_flag(flag: str) -> bool:
    proc = subprocess.run([*cli(), "search", "--help"], capture_output=True, text=True, cwd=str(_common.REPO))
    return flag in proc.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--repeats", type=int, default=1, help="searches run (median reported)")
    parser.add_argument("--batch-sizes", default="", help="ignored (accepted for a uniform interface)")
    parser.add_argument("--threads", type=int, default=0, help="OMP_NUM_THREADS of the search (0: unset)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per search")
    parser.add_argument("--name", default=NAME, help="results file name")
    parser.add_argument("--out-dir", default=None, help="results folder (default benchmarks/results)")
    parser.add_argument("extra", nargs="*", help="extra flags for ser-nas search (after --)")
    args = parser.parse_args(argv)

    flags = ["--strategy", "darts", "--quiet"]
    if has_flag("--no-webui"):
        flags.append("--no-webui")
    if args.device == "cuda" and has_flag("--accelerator"):
        flags += ["--accelerator", "gpu"]
    flags += args.extra
    rows = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="ser-nas-bench-") as tmp:
            env = dict(os.environ, SER_NAS_HOME=str(Path(tmp) / "home"), XDG_CACHE_HOME=str(Path(tmp) / "xdg"))
            if args.threads:
                env["OMP_NUM_THREADS"] = str(args.threads)
            if args.device == "cpu":
                env["CUDA_VISIBLE_DEVICES"] = ""
            command = [*cli(), "search", *flags, "--output", str(Path(tmp) / "runs")]
            start = time.perf_counter()
            proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.timeout,
                                  cwd=str(_common.REPO))
            seconds = time.perf_counter() - start
            output = proc.stdout + proc.stderr
            match = UA.findall(output)
            rows.append({"repeat": repeat, "seconds": seconds, "returncode": proc.returncode,
                         "test_ua": float(match[-1]) if match else None, "command": " ".join(command[2:]),
                         "output_tail": output[-3000:]})
            print(f"  search {repeat}: {seconds:.1f} s, rc {proc.returncode}, test UA {rows[-1]['test_ua']}",
                  flush=True)
    ok = [r for r in rows if r["returncode"] == 0]
    summary = {"median_s": sorted(r["seconds"] for r in ok)[len(ok) // 2] if ok else None}
    _common.print_table(rows, ["repeat", "seconds", "returncode", "test_ua"])
    payload = {"benchmark": NAME, "machine": _common.machine_info(args.device), "flags": flags,
               "summary": summary, "rows": rows}
    print(f"wrote {_common.write_results(args.name, payload, args.out_dir)}")
    return 0 if len(ok) == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
