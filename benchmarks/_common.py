"""Helpers shared by the benchmark scripts: machine info, peak-memory sampling, timing, output.

Not a library module: the scripts under ``benchmarks/`` import it by path (they are run as
plain scripts, ``python benchmarks/bench_supernet.py``).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str) -> dict[str, Any]:
    """CPU model, cores, load, torch version, threads and GPU name."""
    import torch

    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device,
        "gpu": None,
    }
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    try:
        import nni

        info["nni"] = nni.__version__
    except Exception:  # pragma: no cover - informative only
        pass
    return info


class PeakRSS:
    """Peak resident set size increase of this process while the ``with`` block runs.

    A thread samples ``psutil.Process().memory_info().rss`` every ``interval`` seconds;
    the baseline is the RSS on entry. (``tracemalloc`` does not see torch's allocations.)
    """

    def __init__(self, interval: float = 0.002) -> None:
        import psutil

        self._process = psutil.Process()
        self.interval = interval
        self.base = self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.base = self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def delta_mb(self) -> float:
        return (self.peak - self.base) / 2**20


def synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def time_steps(step: Callable[[], Any], repeats: int, device: str, warmup: int = 1) -> dict[str, Any]:
    """Median, min and all wall times (s) of ``step`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        step()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "times_s": times}


def run_worker(script: Path, args: list[str], timeout: float | None = None) -> dict[str, Any]:
    """Run ``script --worker ...`` in a fresh process (clean peak memory); its last JSON line."""
    proc = subprocess.run([sys.executable, str(script), "--worker", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=str(REPO))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr or proc.stdout)[-2000:], "returncode": proc.returncode}
    return json.loads(lines[-1])


def write_results(name: str, payload: dict[str, Any], out_dir: str | Path | None = None) -> Path:
    """Write ``<out_dir>/<name>.json`` whole or not at all (a temporary file, then a rename).

    An earlier result of the same name stays intact until the new one is complete; a folder
    that cannot be written ends the script with a one-line error naming it.
    """
    from ser_space.io import write_atomically  # the project's one atomic writer

    folder = Path(out_dir) if out_dir else RESULTS
    path = folder / f"{name}.json"
    text = json.dumps(payload, indent=2, default=str) + "\n"
    try:
        write_atomically(path, lambda handle: handle.write(text.encode()))
    except OSError as exc:
        raise SystemExit(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
        return "" if value is None else str(value)

    table = [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in table)) if table else len(c) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for t in table:
        print("  ".join(v.ljust(w) for v, w in zip(t, widths)))


def space_config(name: str) -> Any:
    """``paper`` (1 x 128 x 128, C = 8, the paper's CNN ops) or ``tiny``."""
    from ser_space import SpaceConfig

    if name == "paper":
        return SpaceConfig.paper()
    if name == "tiny":
        return SpaceConfig.tiny()
    raise ValueError(f"unknown config {name!r}; use paper or tiny")


def start_worker(args: Any) -> Any:
    """In a worker process: torch threads from ``--threads``, seed 0; returns the space config."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    return space_config(args.config)


def common_args(parser: Any, batch_sizes: str) -> None:
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch-sizes", default=batch_sizes, help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per case (median reported)")
    parser.add_argument("--config", choices=("paper", "tiny"), default="paper", help="space config")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--precision", choices=("32", "bf16-mixed", "16-mixed"), default="32",
                        help="autocast precision of the forward passes")
    parser.add_argument("--out-dir", default=None, help="results folder (default benchmarks/results)")
    parser.add_argument("--worker", action="store_true", help=argparse_suppress())


def one_batch_size(parser: Any, text: str) -> int:
    """``--batch-sizes`` of a script that takes one: a positive int, or the parser's one-line error."""
    try:
        batch = int(text)
    except ValueError:
        batch = 0
    if batch < 1:
        parser.error(f"--batch-sizes: one positive batch size expected, got {text!r}")
    return batch


def argparse_suppress() -> str:
    import argparse

    return argparse.SUPPRESS


def autocast(device: str, precision: str) -> Any:
    import contextlib

    import torch

    if precision == "32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16
    return torch.autocast(device_type=device, dtype=dtype)
