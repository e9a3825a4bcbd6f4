"""A fair share of the CPU cores for every process the toolkit starts.

Two processes that each take every core run several times slower than two that split them
(docs/performance.md). So every process sets its torch and OpenMP threads to the cores it is
given: this machine's cores (those this process may run on) divided by the jobs that run at
once, at least 1. Who decides:

1. an explicit ``--threads`` (``RunConfig.threads``, ``run_compare(threads=)``);
2. a parent that started this process with its share (``$SER_NAS_THREADS``: compare's jobs,
   local trials of a multi-trial search, the web UI's one-shot trial);
3. ``$OMP_NUM_THREADS`` set by the user;
4. otherwise all cores (one job at a time).

:func:`use_threads` applies a count to torch and to the environment that child processes
inherit. The count a fold ran with is recorded in its ``metrics.json`` (``threads``).
"""

from __future__ import annotations

import os

__all__ = ["THREADS_VARIABLE", "available_cores", "fair_share", "use_threads", "threads_for_run"]

#: The share a parent gave this process (read by :func:`threads_for_run`).
THREADS_VARIABLE = "SER_NAS_THREADS"


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, else the machine's)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def fair_share(jobs: int, cores: int | None = None) -> int:
    """Threads for each of ``jobs`` processes running at once on ``cores`` (default: all): at least 1."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    return max(1, (cores or available_cores()) // jobs)


def use_threads(threads: int) -> int:
    """Run torch with ``threads`` threads here, and give child processes the same share."""
    import torch

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    for name in (THREADS_VARIABLE, "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    return threads


def threads_for_run(requested: int | None = None) -> int:
    """The thread count a run uses (see the module docstring for who decides)."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"threads must be >= 1, got {requested}")
        return requested
    for name in (THREADS_VARIABLE, "OMP_NUM_THREADS"):
        text = os.environ.get(name, "").strip()
        if text.isdigit() and int(text) >= 1:
            return int(text)
    return available_cores()
