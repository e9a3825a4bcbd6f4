"""Memory traffic of one DARTS step, and the floor it puts on the step's time on this CPU.

Counts, for every ATen operator that one DARTS step runs (the step ``bench_supernet.py``
times: the architecture phase with the weights frozen, then the weight phase with the
alphas frozen), the bytes of its tensor inputs and outputs:

- views cost nothing, and neither does an allocation (``empty``, ``empty_like``...): the
  operator that fills the tensor counts its write;
- an in-place operator counts its tensor as read and written (as written only where it
  overwrites it: ``copy_``, ``fill_``, ``zero_``, random fills);
- an input whose values are not read is left out: the input of ``convolution_backward``
  when only the input gradient is asked for (it gives the shape).

Tensors of at least ``--cache-mb`` (default 2 MiB: the two cores' L2 together here, 1 MiB
each) do not stay in the cores' caches from one operator to the next, so their bytes go
through the shared L3 and memory. The machine's bandwidth for such maps is measured the
same way: the fastest of a copy, a ReLU and an add of map-sized tensors, cycled over a
working set four times the L3, bytes read plus written. Map traffic divided by that bandwidth is a floor on the step's
time for this split into operators, however fast each operator's kernel is.

The same step on the smallest input the space takes (batch 1, ``min_frames`` frames) gives
the part of the step's time that does not scale with the data: the per-call costs of
PyTorch, oneDNN and Python. The operators table times single operators on the first cell's
map in the same cold setting, each as a multiple of the floor of its own bytes (1.0: as
fast as the machine streams them).

    python benchmarks/bench_traffic.py                 # paper shape, batch 8
    python benchmarks/bench_traffic.py --batch-sizes 16
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from bench_supernet import cpu_darts_step, make_step  # noqa: E402

NAME = "bench_traffic"


def l3_bytes(default: int = 32 << 20) -> int:
    """The L3 cache size of CPU 0 from sysfs (``default`` where it cannot be read)."""
    path = Path("/sys/devices/system/cpu/cpu0/cache/index3/size")
    try:
        text = path.read_text().strip().upper()
    except OSError:
        return default
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    try:
        return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)
    except (ValueError, IndexError):
        return default


def tensor_bytes(t: Any) -> int:
    """Bytes a dense read or write of ``t`` touches (an expanded view counts its storage once)."""
    if t.numel() == 0:
        return 0
    span = 1 + sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()) if stride > 0)
    return min(t.numel(), span) * t.element_size()


class TrafficCounter:
    """A ``TorchDispatchMode`` that adds up the bytes each ATen operator reads and writes.

    ``calls``, ``bytes``, ``map_bytes`` (tensors of at least ``threshold`` bytes) and
    ``seconds`` (wall time inside the operator, the mode's own cost excluded) are counters
    keyed by the operator's name (``convolution_backward``, ``add_``...).
    """

    def __init__(self, threshold: int) -> None:
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        self.threshold = threshold
        self.calls: collections.Counter[str] = collections.Counter()
        self.bytes: collections.Counter[str] = collections.Counter()
        self.map_bytes: collections.Counter[str] = collections.Counter()
        self.seconds: collections.Counter[str] = collections.Counter()
        self.small = [0, 0.0]   # calls under SMALL_S, their seconds
        counter = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
                kwargs = kwargs or {}
                start = time.perf_counter()
                out = func(*args, **kwargs)
                elapsed = time.perf_counter() - start
                name = func.overloadpacket.__name__
                if func.is_view or name.startswith(("empty", "new_empty")) or name in _FREE:
                    return out
                read = list(args)
                if name == "convolution_backward" and not args[10][1]:
                    read[1] = None          # only the input's shape is used
                elif name in _OVERWRITES:
                    read[0] = None          # written, not read
                tensors = [t for t in tree_flatten((read, kwargs))[0] if isinstance(t, torch.Tensor)]
                tensors += [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
                sizes = [tensor_bytes(t) for t in tensors]
                counter.calls[name] += 1
                counter.seconds[name] += elapsed
                if elapsed < SMALL_S:
                    counter.small[0] += 1
                    counter.small[1] += elapsed
                counter.bytes[name] += sum(sizes)
                counter.map_bytes[name] += sum(size for size in sizes if size >= counter.threshold)
                return out

        self._mode = _Mode()

    def __enter__(self) -> TrafficCounter:
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._mode.__exit__(*exc)

    def totals(self) -> dict[str, float]:
        return {"ops": sum(self.calls.values()), "bytes": sum(self.bytes.values()),
                "map_bytes": sum(self.map_bytes.values()), "seconds": sum(self.seconds.values()),
                "small_ops": self.small[0], "small_seconds": self.small[1]}


STREAMING = ("copy", "relu", "add")
"""The operators whose best bytes per second is the machine's bandwidth for maps."""

SMALL_S = 50e-6
"""An operator call under this many seconds counts as small (its cost is mostly per-call overhead)."""

# in-place operators that overwrite their tensor without reading it
_OVERWRITES = {"copy_", "fill_", "zero_", "normal_", "uniform_", "random_", "bernoulli_", "exponential_"}

# bookkeeping operators that move no tensor data
_FREE = {"detach", "lift_fresh", "resize_", "set_", "_local_scalar_dense", "is_same_size", "sym_size",
         "sym_stride", "sym_numel", "sym_storage_offset", "dim", "size", "stride"}


def cold_time(fn: Any, inputs: list[Any], repeats: int) -> float:
    """Seconds per call of ``fn(*inputs[i])`` cycled over ``inputs`` (each call on data out of
    cache), the fastest of ``repeats`` rounds: a floor wants the best the machine does."""
    for args in inputs[:2]:
        fn(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for args in inputs:
            fn(*args)
        times.append((time.perf_counter() - start) / len(inputs))
    return min(times)


def operator_rows(shape: tuple[int, ...], threshold: int, repeats: int) -> tuple[float, list[dict[str, Any]]]:
    """(streaming bandwidth in B/s, one row per operator) on maps of ``shape`` (channels-last, cold)."""
    import torch
    import torch.nn.functional as F

    channels = shape[1]
    map_bytes = 4 * int(torch.Size(shape).numel())
    copies = max(8, -(-4 * l3_bytes() // map_bytes))   # a working set of 4 x the L3 per operand

    def maps() -> list[Any]:
        return [torch.randn(shape).contiguous(memory_format=torch.channels_last) for _ in range(copies)]

    xs, ys = maps(), maps()
    dw3, dw5 = torch.randn(channels, 1, 3, 3), torch.randn(channels, 1, 5, 5)
    pw = torch.randn(channels, channels, 1, 1)

    def conv_backward(grad: Any, x: Any, weight: Any, padding: int, groups: int) -> Any:
        return torch.ops.aten.convolution_backward(grad, x, weight, None, [1, 1], [padding, padding], [1, 1],
                                                   False, [0, 0], groups, [True, True, False])

    cases = [
        ("copy", lambda x, y: y.copy_(x)),
        ("relu", lambda x, y: F.relu(x)),
        ("add", lambda x, y: x + y),
        ("depthwise 3x3", lambda x, y: F.conv2d(x, dw3, None, 1, 1, 1, channels)),
        ("depthwise 5x5", lambda x, y: F.conv2d(x, dw5, None, 1, 2, 1, channels)),
        ("1x1 conv", lambda x, y: F.conv2d(x, pw)),
        ("depthwise 3x3 backward", lambda x, y: conv_backward(y, x, dw3, 1, channels)),
        ("1x1 conv backward", lambda x, y: conv_backward(y, x, pw, 0, 1)),
    ]
    rows = []
    for name, fn in cases:
        with TrafficCounter(threshold) as counter:
            fn(xs[0], ys[0])
        moved = counter.totals()["bytes"]
        seconds = cold_time(fn, list(zip(xs, ys)), repeats)
        rows.append({"operator": name, "bytes_mb": moved / 1e6, "time_ms": seconds * 1e3,
                     "gb_per_s": moved / seconds / 1e9})
    # the best the machine streams maps: copy, or relu / add, whose fresh outputs often reuse
    # a block just freed (still in the L3) as they do in the step
    bandwidth = max(row["gb_per_s"] for row in rows if row["operator"] in STREAMING) * 1e9
    for row in rows:
        row["over_floor"] = row["time_ms"] * 1e-3 / (row["bytes_mb"] * 1e6 / bandwidth)
    return bandwidth, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common.common_args(parser, "8")
    parser.add_argument("--cache-mb", type=float, default=2.0,
                        help="tensors of at least this many MiB count as map traffic (default: 2, the L2s)")
    args = parser.parse_args(argv)
    if args.device != "cpu" or args.precision != "32":
        parser.error("bench_traffic measures the CPU step in float32 (--device cpu, --precision 32)")
    batch = _common.one_batch_size(parser, args.batch_sizes)
    if args.cache_mb < 0:
        parser.error(f"--cache-mb must not be negative, got {args.cache_mb}")
    import torch

    config = _common.start_worker(args)
    threshold = int(args.cache_mb * (1 << 20))
    model, arch, weights, step = cpu_darts_step(config, batch)
    timing = _common.time_steps(step, args.repeats, "cpu")
    with TrafficCounter(threshold) as counter:
        step()
    totals = counter.totals()
    # the same step on the smallest input the space takes: the cost that does not scale with the data
    small_config = dataclasses.replace(config, frames=config.min_frames)
    small_step, _ = make_step(model, arch, weights, small_config, 1, "cpu")
    small_timing = _common.time_steps(small_step, args.repeats, "cpu")
    shape = (batch, config.channels, config.n_mfcc, config.frames)
    bandwidth, rows = operator_rows(shape, threshold, max(args.repeats, 3))
    floor_s = totals["map_bytes"] / bandwidth
    step_row = {"batch_size": batch, "step_s": timing["median_s"], "step_min_s": timing["min_s"],
                "ops": totals["ops"], "ops_s": totals["seconds"], "small_ops": totals["small_ops"],
                "small_ops_s": totals["small_seconds"], "traffic_gb": totals["bytes"] / 1e9,
                "map_traffic_gb": totals["map_bytes"] / 1e9, "bandwidth_gb_s": bandwidth / 1e9,
                "floor_s": floor_s, "floor_share": floor_s / timing["median_s"],
                "small_input": f"1x{config.in_channels}x{config.n_mfcc}x{config.min_frames}",
                "small_input_step_s": small_timing["median_s"]}
    by_operator = [{"operator": name, "calls": counter.calls[name], "time_s": seconds,
                    "map_traffic_gb": counter.map_bytes[name] / 1e9,
                    "floor_s": counter.map_bytes[name] / bandwidth,
                    "over_floor": seconds / (counter.map_bytes[name] / bandwidth) if counter.map_bytes[name] else None}
                   for name, seconds in counter.seconds.most_common()]
    print(f"DARTS step, {config.n_mfcc}x{config.frames} input, batch {batch}, {torch.get_num_threads()} threads:")
    _common.print_table([step_row], list(step_row))
    print("\noperators by time inside them (first 12; floor: their map traffic at the streaming bandwidth):")
    _common.print_table(by_operator[:12], ["operator", "calls", "time_s", "map_traffic_gb", "floor_s", "over_floor"])
    print(f"\nsingle operators on {tuple(shape)} channels-last maps, out of cache:")
    _common.print_table(rows, ["operator", "bytes_mb", "time_ms", "gb_per_s", "over_floor"])
    payload = {"benchmark": NAME, "machine": _common.machine_info("cpu"), "config": args.config,
               "cache_mb": args.cache_mb, "l3_mb": l3_bytes() / (1 << 20), "repeats": args.repeats,
               "step": step_row, "by_operator": by_operator, "operators": rows}
    print(f"wrote {_common.write_results(NAME, payload, args.out_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
