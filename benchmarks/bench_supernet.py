"""DARTS / ENAS supernet step time, peak memory and parameter count of ``SERSpace``.

A DARTS step is what ``ser-nas search --strategy darts`` runs per batch pair
(:class:`strategies.search.darts_step.LeanDartsLightningModule`, NNI's first-order step): an
architecture step (forward + backward of the validation batch with the weights frozen,
Adam on the alphas) and a weight step (forward + backward of the training batch with the
alphas frozen, gradient clipping 5, SGD). ``--step nni`` takes NNI's own
``DartsLightningModule`` step instead (every gradient in both phases). Second order
replaces the architecture step by :func:`strategies.search.unrolled.unrolled_arch_gradient`
(3 more forward/backward passes). An ENAS step is a weight step on one sampled path (the
controller's update is not timed). Each case runs in a fresh process so its peak memory
is its own: CPU peak RSS increase over the RSS before the first step (sampled by a
thread), CUDA ``torch.cuda.max_memory_allocated``. The two phases are timed apart too.

    python benchmarks/bench_supernet.py --batch-sizes 8,16,32,64 --repeats 3
    python benchmarks/bench_supernet.py --impl nni --step nni --batch-sizes 8   # before
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

NAME = "bench_supernet"


def build_supernet(config: Any, strategy_name: str, impl: str) -> tuple[Any, list[Any], list[Any]]:
    """(supernet, architecture parameters, weights) as NNI's one-shot strategy builds it, and as
    the shared evaluator trains it (accelerated by :mod:`ser_space.fast` where the switch is on)."""
    import warnings

    warnings.filterwarnings("ignore")
    from nni.nas.oneshot.pytorch.supermodule.base import BaseSuperNetModule
    from nni.nas.strategy import DARTS, ENAS

    from ser_space import SERSpace, fast

    space = SERSpace(config)
    strategy = DARTS() if strategy_name == "darts" else ENAS()
    if impl == "nni":
        # the supernet as NNI builds it without our hooks, plain (NCHW)
        space.extra_oneshot_hooks = lambda _strategy: []  # type: ignore[method-assign]
    model = strategy.mutate_model(space)
    if impl != "nni":
        fast.accelerate(model)
    arch: dict[int, Any] = {}
    for module in model.modules():
        if isinstance(module, BaseSuperNetModule) and hasattr(module, "arch_parameters"):
            for p in module.arch_parameters():
                arch[id(p)] = p
    weights = [p for p in model.parameters() if id(p) not in arch]
    return model, list(arch.values()), weights


def set_fast(on: bool) -> None:
    """The fast path (:mod:`ser_space.fast`): its kernels, channels-last and faster forwards (True) or none."""
    from ser_space import fast

    fast.set_enabled(on)


def cpu_darts_step(config: Any, batch: int, precision: str = "32") -> tuple[Any, list[Any], list[Any], Any]:
    """(supernet, alphas, weights, step()) of the default step on the CPU: ours, ``LeanDARTS``, first order."""
    model, arch, weights = build_supernet(config, "darts", "ours")
    model.train()
    step, _ = make_step(model, arch, weights, config, batch, "cpu", precision=precision)
    return model, arch, weights, step


def make_step(model: Any, arch: list[Any], weights: list[Any], config: Any, batch: int, device: str,
              kind: str = "darts-first", step_kind: str = "lean",
              precision: str = "32") -> tuple[Any, dict[str, list[float]]]:
    """One training step of ``kind`` on random paper-shaped batches: (step(), phase times).

    ``kind``: darts-first, darts-second or enas; ``step_kind``: lean (LeanDARTS) or nni (every
    gradient in both phases, NNI's ``DartsLightningModule``). Each call of ``step`` appends
    the architecture and weight phases' wall times to the lists of the returned dict.
    """
    import torch
    import torch.nn.functional as F

    from strategies.search.darts_step import frozen

    w_optim = torch.optim.SGD(weights, lr=0.025, momentum=0.9, weight_decay=3e-4)
    a_optim = torch.optim.Adam(arch, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3) if arch else None
    shape = (batch, config.in_channels, config.n_mfcc, config.frames)
    x_trn, x_val = torch.randn(shape, device=device), torch.randn(shape, device=device)
    y_trn = torch.randint(0, config.num_classes, (batch,), device=device)
    y_val = torch.randint(0, config.num_classes, (batch,), device=device)
    scaler = torch.amp.GradScaler(device) if precision == "16-mixed" else None

    def loss_of(x: Any, y: Any) -> Any:
        with _common.autocast(device, precision):
            logits = model(x)
        return F.cross_entropy(logits.float(), y)

    def backward(loss: Any) -> None:
        (scaler.scale(loss) if scaler else loss).backward()

    lean = step_kind == "lean"

    def weight_step() -> None:
        w_optim.zero_grad(set_to_none=True)
        with frozen(arch if lean else []):
            backward(loss_of(x_trn, y_trn))
        if scaler:
            scaler.unscale_(w_optim)
        torch.nn.utils.clip_grad_norm_(weights, 5.0)
        if scaler:
            scaler.step(w_optim)
            scaler.update()
        else:
            w_optim.step()

    def arch_step() -> None:
        a_optim.zero_grad(set_to_none=True)
        if kind == "darts-second":
            from strategies.search.unrolled import unrolled_arch_gradient

            group = w_optim.param_groups[0]
            grads = unrolled_arch_gradient(
                model, arch, weights, lambda: loss_of(x_trn, y_trn), lambda: loss_of(x_val, y_val),
                xi=group["lr"], momentum_buffers=[w_optim.state.get(p, {}).get("momentum_buffer") for p in weights],
                weight_decay=group["weight_decay"], momentum=group["momentum"])
            for p, g in zip(arch, grads):
                p.grad = g
        else:
            with frozen(weights if lean else []):
                loss_of(x_val, y_val).backward()
        a_optim.step()

    phases: dict[str, list[float]] = {"arch": [], "weight": []}

    def step() -> None:
        start = time.perf_counter()
        if kind == "enas":
            from nni.nas.oneshot.pytorch.supermodule.base import BaseSuperNetModule

            memo: dict[str, Any] = {}
            for module in model.modules():
                if isinstance(module, BaseSuperNetModule):
                    module.resample(memo)
        else:
            arch_step()
            _common.synchronize(device)
            phases["arch"].append(time.perf_counter() - start)
            start = time.perf_counter()
        weight_step()
        _common.synchronize(device)
        phases["weight"].append(time.perf_counter() - start)

    return step, phases


def worker(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    config = _common.start_worker(args)
    device = args.device
    kind = args.case  # darts-first, darts-second, enas
    batch = int(args.batch_sizes)
    set_fast(args.fast == "on")
    model, arch, weights = build_supernet(config, "enas" if kind == "enas" else "darts", args.impl)
    model.to(device).train()
    step, phases = make_step(model, arch, weights, config, batch, device, kind, args.step, args.precision)

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        start_allocated = torch.cuda.memory_allocated()
    with _common.PeakRSS() as rss:
        timing = _common.time_steps(step, args.repeats, device)
    result = {
        "case": kind, "impl": args.impl, "step": args.step, "fast": args.fast, "batch_size": batch, "precision": args.precision,
        "params_m": sum(p.numel() for p in weights) / 1e6, "arch_params": sum(p.numel() for p in arch),
        "step_s": timing["median_s"], "step_min_s": timing["min_s"], "times_s": timing["times_s"],
        "peak_rss_delta_mb": rss.delta_mb,
        # phase medians over the timed steps (the first, untimed, step excluded)
        "arch_step_s": statistics.median(phases["arch"][1:]) if phases["arch"][1:] else None,
        "weight_step_s": statistics.median(phases["weight"][1:]),
    }
    if device == "cuda":
        result["peak_cuda_mb"] = (torch.cuda.max_memory_allocated() - start_allocated) / 2**20
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common.common_args(parser, "8,16,32,64")
    parser.add_argument("--cases", default="darts-first,darts-second,enas",
                        help="comma-separated: darts-first, darts-second, enas")
    parser.add_argument("--impl", choices=("ours", "nni"), default="ours",
                        help="ours: the SERSpace DARTS cell (DartsMixedCell); nni: NNI's DifferentiableMixedCell (before)")
    parser.add_argument("--step", choices=("lean", "nni"), default="lean",
                        help="lean: each phase computes only the gradients it uses (LeanDARTS, what "
                             "ser-nas runs); nni: NNI's DartsLightningModule (every gradient)")
    parser.add_argument("--fast", choices=("on", "off"), default="on",
                        help="the fast path of ser_space.fast (fused kernels, channels-last, faster forwards); "
                             "off: plain PyTorch (ours: still the lean cell)")
    parser.add_argument("--case", default="darts-first", help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per case")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    rows = []  # each case runs in its own worker process, which sets its threads
    for case in args.cases.split(","):
        for batch in args.batch_sizes.split(","):
            forwarded = ["--device", args.device, "--batch-sizes", batch, "--repeats", str(args.repeats),
                         "--config", args.config, "--threads", str(args.threads), "--precision", args.precision,
                         "--impl", args.impl, "--step", args.step, "--fast", args.fast, "--case", case]
            row = _common.run_worker(Path(__file__), forwarded, timeout=args.timeout)
            row.setdefault("case", case)
            row.setdefault("batch_size", int(batch))
            rows.append(row)
            print(f"  {case} batch {batch}: " + (f"{row['step_s']:.3f} s/step, "
                  f"{row.get('peak_cuda_mb', row['peak_rss_delta_mb']):.0f} MB" if "step_s" in row
                  else f"failed: {row.get('error', '')[-300:]}"), flush=True)
    columns = ["case", "batch_size", "step_s", "step_min_s", "arch_step_s", "weight_step_s", "peak_rss_delta_mb",
               "params_m"]
    if args.device == "cuda":
        columns.insert(5, "peak_cuda_mb")
    _common.print_table(rows, columns)
    payload = {"benchmark": NAME, "machine": _common.machine_info(args.device), "config": args.config,
               "impl": args.impl, "precision": args.precision,
               "step": args.step, "fast": args.fast, "repeats": args.repeats, "rows": rows}
    name = NAME + ("" if args.impl == "ours" else f"_{args.impl}") + \
        ("" if args.precision == "32" else f"_{args.precision}") + \
        ("" if args.step == "lean" else f"_step_{args.step}") + ("" if args.fast == "on" else "_fast_off")
    print(f"wrote {_common.write_results(name, payload, args.out_dir)}")
    return 0 if all("step_s" in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
