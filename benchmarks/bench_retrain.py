"""Retraining step time and inference latency / throughput of fixed (found) models.

Two architectures of ``SERSpace``: the hand-designed ``cnn_lstm`` baseline
(:func:`strategies.baselines.hand_designed_architecture`) and a random one
(:func:`ser_space.random_architecture`, seed 0). A retraining step is forward + backward
of one batch, gradient clipping 5 and SGD (the retraining recipe; drop-path off), on the model
accelerated as the shared evaluator trains it (:func:`ser_space.fast.accelerate`). Inference
is the plain model (as ``ser-nas predict`` loads it) in eval mode without gradients: latency
at batch 1 and throughput at batch 64.

    python benchmarks/bench_retrain.py --batch-sizes 8,16,32,64 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

NAME = "bench_retrain"


def architectures(config: Any) -> dict[str, dict[str, Any]]:
    from ser_space import random_architecture
    from strategies.baselines import hand_designed_architecture

    return {"cnn_lstm": hand_designed_architecture("cnn_lstm", config),
            "random_seed0": random_architecture(config, seed=0)}


def worker(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from ser_space import build_model, fast

    config = _common.start_worker(args)
    device = args.device
    arch = architectures(config)[args.arch]
    model = build_model(arch, config).to(device)
    weights = [p for p in model.parameters() if p.requires_grad]
    shape = (config.in_channels, config.n_mfcc, config.frames)
    result: dict[str, Any] = {"arch": args.arch, "params_m": sum(p.numel() for p in weights) / 1e6,
                              "precision": args.precision}
    if args.mode == "train":
        batch = int(args.batch_sizes)
        optimizer = torch.optim.SGD(weights, lr=0.025, momentum=0.9, weight_decay=3e-4)
        x = torch.randn((batch, *shape), device=device)
        y = torch.randint(0, config.num_classes, (batch,), device=device)
        fast.accelerate(model)   # as the shared evaluator trains it (ser_space.fast)
        model.train()

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with _common.autocast(device, args.precision):
                logits = model(x)
            F.cross_entropy(logits.float(), y).backward()
            torch.nn.utils.clip_grad_norm_(weights, 5.0)
            optimizer.step()

        with _common.PeakRSS() as rss:
            timing = _common.time_steps(step, args.repeats, device)
        result.update({"mode": "train", "batch_size": batch, "step_s": timing["median_s"],
                       "times_s": timing["times_s"], "peak_rss_delta_mb": rss.delta_mb})
    else:
        model.eval()
        for batch, key in ((1, "latency_ms"), (64, "throughput_per_s")):
            x = torch.randn((batch, *shape), device=device)

            @torch.no_grad()
            def infer() -> None:
                with _common.autocast(device, args.precision):
                    model(x)

            timing = _common.time_steps(infer, max(args.repeats, 3), device)
            result[key] = 1e3 * timing["median_s"] if batch == 1 else batch / timing["median_s"]
        result["mode"] = "inference"
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common.common_args(parser, "8,16,32,64")
    parser.add_argument("--arch", default="cnn_lstm", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="train", help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per case")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    rows = []
    base = ["--device", args.device, "--repeats", str(args.repeats), "--config", args.config,
            "--threads", str(args.threads), "--precision", args.precision]
    for arch in ("cnn_lstm", "random_seed0"):
        for batch in args.batch_sizes.split(","):
            row = _common.run_worker(Path(__file__), [*base, "--arch", arch, "--mode", "train", "--batch-sizes", batch],
                                     timeout=args.timeout)
            row.setdefault("arch", arch)
            row.setdefault("batch_size", int(batch))
            rows.append(row)
        row = _common.run_worker(Path(__file__), [*base, "--arch", arch, "--mode", "inference", "--batch-sizes", "1"],
                                 timeout=args.timeout)
        row.setdefault("arch", arch)
        row.setdefault("mode", "inference")
        rows.append(row)
    _common.print_table([r for r in rows if r.get("mode") == "train"],
                        ["arch", "batch_size", "step_s", "peak_rss_delta_mb", "params_m"])
    print()
    _common.print_table([r for r in rows if r.get("mode") == "inference"],
                        ["arch", "latency_ms", "throughput_per_s", "params_m"])
    payload = {"benchmark": NAME, "machine": _common.machine_info(args.device), "config": args.config,
               "precision": args.precision, "repeats": args.repeats, "rows": rows}
    print(f"wrote {_common.write_results(NAME, payload, args.out_dir)}")
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
