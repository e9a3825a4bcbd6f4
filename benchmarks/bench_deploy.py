"""What a found network costs once it leaves the toolkit: PyTorch eager against ONNX Runtime (issue 31).

Per network: parameters, multiply-adds per window, ONNX file size, batch-1 latency of the
network alone and of front end + network, in PyTorch eager and in ONNX Runtime, one thread
each; then the real-time factor of ``ser-nas predict`` (seconds of compute per second of audio)
on a 60-s recording, through the run's model (PyTorch) and through the exported file (ONNX
Runtime), both on one thread, voice activity and windowing included, reading excluded.

Networks: the hand-designed CNN of the real-speech recipe's ``small`` space, a network DARTS
found (``--darts-architecture``, an ``architecture.json`` of a real-speech run; default: the
first of ``benchmarks/results/ablation/darts*/fold-0/``, else a fixed point of the space), and
the ``paper`` preset's CNN on the paper's 128 x 128 MFCC (8 s at 16 kHz). Weights are random: latency
does not depend on them.

    python benchmarks/bench_deploy.py --repeats 200
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _common  # noqa: E402

NAME = "bench_deploy"


def _networks(darts_architecture: str | None) -> dict[str, tuple[Any, Any, Any]]:
    """name -> (architecture sample, space config, feature config)."""
    from ser_space import SpaceConfig, load_architecture, random_architecture
    from strategies.baselines import hand_designed_architecture
    from strategies.data.features import FeatureConfig
    from strategies.recipes import REAL_SPEECH

    speech = FeatureConfig.speech(2.0)
    small = REAL_SPEECH.space.replace(n_mfcc=speech.n_mels, frames=speech.frames, num_classes=7, affine=True,
                                      min_frames=16)
    paper_features = dataclasses.replace(FeatureConfig.default(), sample_rate=16000)  # one rate, as a graph needs
    paper = SpaceConfig.paper().replace(num_classes=7, affine=True)
    found = darts_architecture or next(iter(sorted(_common.RESULTS.glob("ablation/darts*/fold-0/architecture.json"))),
                                       None)
    if found:
        arch = load_architecture(found, resize=True)
        darts = (arch.sample, arch.config.replace(affine=True), speech)
    else:
        darts = (random_architecture(small, seed=0), small, speech)
    return {"cnn (small space)": (hand_designed_architecture("cnn", small), small, speech),
            "darts (small space)": darts,
            "cnn (paper space)": (hand_designed_architecture("cnn", paper), paper, paper_features)}


def _latency(call: Any, repeats: int) -> float:
    timed = _common.time_steps(call, repeats, "cpu", warmup=5)
    return timed["median_s"] * 1000.0


def measure(name: str, sample: dict[str, Any], space: Any, features: Any, repeats: int, folder: Path) -> dict[str, Any]:
    import numpy as np
    import torch

    from ser_space import build_model, count_multiply_adds, count_parameters, export_architecture
    from strategies.data.features import Normalizer, compute_features
    from strategies.export import export_onnx, onnx_session
    from strategies.predict import load_predictor
    from strategies.runs import save_model_bundle

    torch.manual_seed(0)
    network = build_model(sample, space).eval()
    sample_rate = features.sample_rate or 16000
    normalizer = Normalizer(kind="per_coefficient", mean=np.full(features.num_coefficients, -40.0),
                            std=np.full(features.num_coefficients, 12.0))
    bundle = save_model_bundle(folder / name.replace(" ", "_") / "fold-0" / "model.pt", network.state_dict(),
                               export_architecture(sample, space), [str(i) for i in range(space.num_classes)],
                               features.to_dict(), normalizer.to_dict())
    onnx_file = export_onnx(bundle, bundle.with_suffix(".onnx"))
    session = onnx_session(onnx_file, threads=1)
    # the network alone: its ONNX graph without the front end
    net_file = bundle.with_name("network.onnx")
    x = torch.zeros(1, 1, features.num_coefficients, features.frames)
    torch.onnx.export(network, (x,), str(net_file), input_names=["features"], output_names=["logits"],
                      opset_version=17, dynamo=False)
    net_session = onnx_session(net_file, threads=1)
    audio = (np.random.default_rng(0).normal(size=(1, features.clip_samples(sample_rate))) * 0.1).astype(np.float32)
    torch.set_num_threads(1)

    def torch_whole() -> None:
        raw = compute_features(audio[0], sample_rate, features)
        with torch.no_grad():
            torch.softmax(network(torch.from_numpy(normalizer.transform(raw))[None, None]), dim=1)

    def torch_network() -> None:
        with torch.no_grad():
            network(x)

    row = {
        "network": name, "parameters": count_parameters(network),
        "multiply_adds": count_multiply_adds(network, tuple(x.shape)),
        "onnx_kib": onnx_file.stat().st_size / 1024,
        "input": f"{features.num_coefficients} x {features.frames} ({features.clip_seconds:g} s at {sample_rate} Hz)",
        "torch_network_ms": _latency(torch_network, repeats),
        "onnx_network_ms": _latency(lambda: net_session.run(None, {"features": x.numpy()}), repeats),
        "torch_front_end_and_network_ms": _latency(torch_whole, repeats),
        "onnx_front_end_and_network_ms": _latency(lambda: session.run(None, {"audio": audio}), repeats),
    }
    # ser-nas predict on a 60-s recording: windows, voice activity, scoring; reading the file excluded
    import soundfile

    t = np.arange(60 * sample_rate) / sample_rate
    speechlike = (0.3 * np.sin(2 * np.pi * 150 * t * (1 + 0.1 * np.sin(2 * np.pi * 3 * t)))
                  * (np.sin(2 * np.pi * 0.7 * t) > -0.3)).astype(np.float32)
    recording = folder / "recording.wav"
    soundfile.write(recording, speechlike, sample_rate)
    for backend, path in (("torch", bundle), ("onnx", onnx_file)):
        predictor = load_predictor(path)
        if backend == "onnx":
            predictor.session = onnx_session(onnx_file, threads=1)
        predictor.analyse([recording])  # warm
        started = time.perf_counter()
        result = predictor.analyse([recording])
        row[f"{backend}_predict_rtf"] = (time.perf_counter() - started) / 60.0
        row[f"{backend}_predict_windows"] = int(result.files["windows"].iloc[0])
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per latency figure (median kept)")
    parser.add_argument("--darts-architecture", default=None, help="architecture.json of a real-speech DARTS run")
    parser.add_argument("--name", default=NAME, help="results file name (NAME.json)")
    parser.add_argument("--out-dir", default=None, help="where NAME.json goes (default benchmarks/results)")
    args = parser.parse_args(argv)
    import logging
    import warnings

    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (sample, space, features) in _networks(args.darts_architecture).items():
            rows.append(measure(name, sample, space, features, args.repeats, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    lines = ["| network | parameters | multiply-adds | ONNX file | network: PyTorch / ONNX Runtime | front end + "
             "network: PyTorch / ONNX Runtime | predict, 60 s: real-time factor PyTorch / ONNX Runtime |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['network']} ({r['input']}) | {r['parameters']:,} | {r['multiply_adds'] / 1e6:.1f} M | "
                     f"{r['onnx_kib']:.0f} KiB | {r['torch_network_ms']:.2f} / {r['onnx_network_ms']:.2f} ms | "
                     f"{r['torch_front_end_and_network_ms']:.2f} / {r['onnx_front_end_and_network_ms']:.2f} ms | "
                     f"{r['torch_predict_rtf']:.4f} / {r['onnx_predict_rtf']:.4f} |")
    print("\n".join(lines))
    _common.write_results(args.name, {"machine": _common.machine_info("cpu"), "repeats": args.repeats, "rows": rows,
                                      "table": "\n".join(lines)}, out_dir=args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
