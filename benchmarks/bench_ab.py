"""Interleaved A/B timing of the DARTS step: two settings alternate, step by step, in one process.

On a host whose speed drifts by +-15 % from one run to the next (this VM shares its memory
bandwidth), two separate runs of ``bench_supernet.py`` cannot resolve a 5 % change. Here one
supernet runs the step of ``bench_supernet.py`` (first order, ``LeanDARTS``, batch 8 of the
paper shape by default) with setting A, then B, then A..., so both see the same drift; the
ratio of the medians and the median of the paired ratios (B over the A of the same round) are
reported with wall and CPU time. Rounds alternate A B and B A, so the order inside a pair
does not bias the ratio.

Toggles (A is the default of the code, B the alternative):

``fast``
    the switch of :mod:`ser_space.fast`: the fused kernels, channels-last maps and faster
    forwards (A) against plain PyTorch in our lean cell (B).
``subgrids``
    ``ser_space.fast.kernels.subgrids``, whose gradient keeps the map's channels-last layout
    (A), against plain slices and copies, whose backward builds NCHW maps (B).
``batched-middles``
    the separable convolutions' middles of a node through one ``kernels.pointwise_bns``
    (A) against one call per candidate (B).

Two toggles of earlier versions are gone with the code they timed, their gains inside this
host's noise: ``input-grad-by-forward`` (1.000x paired) and ``avg-pool-by-convolution``
(1.008x paired).

    python benchmarks/bench_ab.py --toggle subgrids --rounds 10
    python benchmarks/bench_ab.py --toggle fast --rounds 6
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
from bench_supernet import cpu_darts_step, set_fast  # noqa: E402

NAME = "bench_ab"


_ORIGINALS: dict[tuple[int, str], Any] = {}


def _swap(owners: tuple[Any, ...], name: str, alternative: Any, value: bool) -> None:
    """``owner.name`` on every owner: its original (``value`` True, A) or ``alternative`` (B)."""
    for owner in owners:
        original = _ORIGINALS.setdefault((id(owner), name), getattr(owner, name))
        setattr(owner, name, original if value else alternative)


def _sliced_subgrids(x: Any, offsets: Any, step: int = 2) -> tuple[Any, ...]:
    import torch

    layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    return tuple(x[:, :, r::step, c::step].contiguous(memory_format=layout) for r, c in offsets)


def _set_subgrids(value: bool) -> None:
    from ser_space.fast import kernels, modules

    # fast.modules binds the name at import; fast.cell looks it up in kernels at each call
    _swap((kernels, modules), "subgrids", _sliced_subgrids, value)


def _per_term_pointwise_bns(terms: Any, relu: bool = False) -> tuple[Any, ...]:
    from ser_space.fast import kernels

    batched = _ORIGINALS[(id(kernels), "pointwise_bns")]
    return tuple(batched([term], relu)[0] for term in terms)


def _set_batched_middles(value: bool) -> None:
    from ser_space.fast import kernels

    # fast.cell looks pointwise_bns up in kernels at each node
    _swap((kernels,), "pointwise_bns", _per_term_pointwise_bns, value)


TOGGLES: dict[str, Any] = {"fast": set_fast, "subgrids": _set_subgrids, "batched-middles": _set_batched_middles}
"""name -> setter(bool): True sets A (the code's default), False sets B."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common.common_args(parser, "8")
    parser.add_argument("--toggle", choices=sorted(TOGGLES), required=True, help="the setting A/B switches")
    parser.add_argument("--rounds", type=int, default=10, help="A/B pairs timed (after one untimed pair)")
    args = parser.parse_args(argv)
    if args.device != "cpu":
        parser.error("bench_ab times the CPU step (--device cpu)")
    batch = _common.one_batch_size(parser, args.batch_sizes)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    import torch

    config = _common.start_worker(args)
    _, _, _, step = cpu_darts_step(config, batch, args.precision)
    setter = TOGGLES[args.toggle]
    wall: dict[str, list[float]] = {"A": [], "B": []}
    cpu: dict[str, list[float]] = {"A": [], "B": []}
    try:
        for round_index in range(args.rounds + 1):
            # A B, then B A: the second step of a pair runs about 4 % faster here (the first
            # one's freed blocks), so alternating the order keeps that out of the ratio
            order = (("A", True), ("B", False)) if round_index % 2 else (("B", False), ("A", True))
            for label, value in order:
                setter(value)
                start, start_cpu = time.perf_counter(), time.process_time()
                step()
                if round_index:      # the first pair warms up both settings
                    wall[label].append(time.perf_counter() - start)
                    cpu[label].append(time.process_time() - start_cpu)
            if round_index:
                print(f"  round {round_index}: A {wall['A'][-1]:.3f} s  B {wall['B'][-1]:.3f} s", flush=True)
    finally:
        setter(True)
    rows = []
    for label in ("A", "B"):
        rows.append({"setting": label, "step_s": statistics.median(wall[label]), "step_min_s": min(wall[label]),
                     "cpu_s": statistics.median(cpu[label])})
    paired = statistics.median(b / a for a, b in zip(wall["A"], wall["B"]))
    summary = {"b_over_a_median": rows[1]["step_s"] / rows[0]["step_s"], "b_over_a_paired": paired,
               "b_over_a_cpu": rows[1]["cpu_s"] / rows[0]["cpu_s"]}
    print(f"{args.toggle}: A = the default, B = the alternative; batch {batch}, {torch.get_num_threads()} threads")
    _common.print_table(rows, ["setting", "step_s", "step_min_s", "cpu_s"])
    print("B / A: " + "  ".join(f"{key} {value:.3f}" for key, value in summary.items()))
    payload = {"benchmark": NAME, "machine": _common.machine_info("cpu"), "config": args.config,
               "toggle": args.toggle, "rounds": args.rounds, "rows": rows, "summary": summary,
               "times_s": wall, "cpu_times_s": cpu}
    print(f"wrote {_common.write_results(f'{NAME}_{args.toggle}', payload, args.out_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
