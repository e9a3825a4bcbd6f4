"""A found network leaves the toolkit: ONNX export, parity with the toolkit, ONNX prediction (issue 31)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ser_space import CNN_OPS, POOL_OPS, SEQ_OPS, SpaceConfig, build_model, count_multiply_adds, export_architecture
from strategies.baselines import hand_designed_architecture
from strategies.data.audio import read_audio
from strategies.data.features import FeatureConfig, Normalizer, compute_features, standardise_per_speaker
from strategies.runs import save_model_bundle

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'ser-nas[deploy]')")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'ser-nas[deploy]')")

from strategies.export import Deployable, FrontEnd, export_onnx, metadata, onnx_session, read_metadata, write_onnx  # noqa: E402
from strategies.predict import load_predictor  # noqa: E402

EMODB = Path(__file__).resolve().parents[2] / "shared/data/emodb-dev"
CLASSES = ["ang", "bor", "dis", "fea", "hap", "neu", "sad"]


def _clips(count: int | None = None, speaker: str = "03") -> list[Path]:
    clips = sorted((EMODB / "wav").glob(f"{speaker}*.wav")) if EMODB.is_dir() else []
    if not clips:
        pytest.skip(f"real-speech clips not found: {EMODB}/wav (EmoDB dev copy absent)")
    return clips[:count] if count else clips


def _space(features: FeatureConfig) -> SpaceConfig:
    return SpaceConfig.small().replace(n_mfcc=features.num_coefficients, frames=features.frames,
                                       num_classes=len(CLASSES), affine=True, min_frames=8)


def _with_op(sample: dict, config: SpaceConfig, cnn: str | None = None, seq: str | None = None,
             pool: str | None = None) -> dict:
    out = dict(sample)
    for label in sample:
        if cnn and label.startswith("cnn/") and "/op_" in label:
            out[label] = cnn
        if seq and label.startswith("rnn/op_"):
            out[label] = seq
        if pool and label == "rnn/pool":
            out[label] = pool
    return out


def _reference(model: torch.nn.Module, features: FeatureConfig, normalizer: Normalizer, waves: list[np.ndarray],
               sr: int) -> np.ndarray:
    """The toolkit's probabilities of each whole wave: its features over its full length (no crop),
    normalised as the model's run, the network, the softmax."""
    hop = features.hop_for(sr)
    inputs = []
    for wave in waves:
        full = dataclasses.replace(features, clip_seconds=len(wave) / sr, hop_length=hop,
                                   frames=(1 + len(wave) // hop) // features.time_pool)
        inputs.append(compute_features(wave, sr, full))
    if normalizer.kind == "per_speaker":
        inputs = list(standardise_per_speaker(np.stack(inputs), ["one"] * len(inputs)))
    else:
        inputs = [normalizer.transform(x) for x in inputs]
    with torch.no_grad():
        return np.concatenate([torch.softmax(model(torch.from_numpy(x)[None, None]), dim=1).numpy() for x in inputs])


def _export(model: torch.nn.Module, features: FeatureConfig, normalizer: Normalizer, path: Path) -> object:
    deployable = Deployable(FrontEnd(features, normalizer, features.sample_rate), model)
    write_onnx(deployable, path, metadata(CLASSES, features, normalizer))
    return onnx_session(path)


def _model(features: FeatureConfig, name: str = "cnn_lstm_att", seed: int = 0) -> torch.nn.Module:
    space = _space(features)
    torch.manual_seed(seed)
    return build_model(hand_designed_architecture(name, space), space).eval()


# ----------------------------------------------------------------------------- parity

@pytest.mark.parametrize("rate", [16000, 22050])
def test_the_graphs_front_end_equals_the_toolkits_features_on_real_speech(rate: int) -> None:
    features = dataclasses.replace(FeatureConfig.speech(2.0), sample_rate=rate) if rate != 16000 else \
        FeatureConfig.speech(2.0)
    mfcc = dataclasses.replace(FeatureConfig.small(), sample_rate=rate, clip_seconds=2.0)
    for config in (features, mfcc):
        front = FrontEnd(config, Normalizer(kind="none"), rate).eval()
        for path in _clips(4):
            wave, sr = read_audio(path, rate)
            wave = wave[:config.clip_samples(sr)]
            ours = front(torch.from_numpy(wave)[None]).numpy()[0, 0]
            theirs = compute_features(wave, sr, config)
            # the graph reads the whole input; the toolkit keeps the recipe's frames, the first ones
            assert ours.shape[0] == theirs.shape[0] and ours.shape[1] >= theirs.shape[1]
            ours = ours[:, :theirs.shape[1]]
            assert np.abs(ours - theirs).max() <= 1e-4 * max(1.0, np.abs(theirs).max()), (path.name, config.kind)


def test_the_onnx_graph_equals_the_model_on_real_clips(tmp_path: Path) -> None:
    """The quick version of the test below: 5 clips, 2 lengths, the default normalisation."""
    _check_graph_parity("per_coefficient", _clips(5), (0.5, 7.3), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("normalization", ["per_coefficient", "per_utterance", "per_speaker"])
def test_the_onnx_graph_equals_the_model_on_a_test_fold_at_every_length(normalization: str, tmp_path: Path) -> None:
    _check_graph_parity(normalization, _clips(), (0.5, 2.0, 7.3, 30.0), tmp_path)  # speaker 03: fold 0's test speaker


def _check_graph_parity(normalization: str, clips: list[Path], lengths: tuple[float, ...], tmp_path: Path) -> None:
    features = dataclasses.replace(FeatureConfig.speech(2.0), normalization=normalization)
    model = _model(features)
    waves = [read_audio(path, 16000)[0] for path in clips]
    if normalization == "per_coefficient":
        stats = np.stack([compute_features(w, 16000, features) for w in waves[:20]])
        normalizer = Normalizer.fit(stats)
    else:
        normalizer = Normalizer(kind=normalization)
    session = _export(model, features, normalizer, tmp_path / "model.onnx")
    worst = 0.0
    for seconds in lengths:
        batch = [np.resize(w, int(seconds * 16000)).astype(np.float32) for w in waves]
        if normalization == "per_speaker":  # one call, one speaker: the batch is standardised together
            chunks = [batch]
        else:
            chunks = [[w] for w in batch] if seconds == 30.0 else [batch]
        for chunk in chunks:
            ours = session.run(None, {"audio": np.stack(chunk)})[0]
            worst = max(worst, float(np.abs(ours - _reference(model, features, normalizer, chunk, 16000)).max()))
    assert worst <= 1e-4


def _every_op() -> list[tuple[str, str]]:
    return ([("cnn", op) for op in sorted(CNN_OPS) if op != "none"]
            + [("seq", op) for op in sorted(SEQ_OPS) if op != "none"]
            + [("seq-residual", op) for op in sorted(SEQ_OPS) if op not in ("none", "skip_connect")]
            + [("pool", op) for op in sorted(POOL_OPS)])


@pytest.mark.slow
@pytest.mark.parametrize("kind,op", _every_op(), ids=[f"{k}-{o}" for k, o in _every_op()])
def test_every_candidate_op_exports_and_matches_pytorch(kind: str, op: str, tmp_path: Path) -> None:
    features = dataclasses.replace(FeatureConfig.small(), clip_seconds=1.0, frames=32)
    space = _space(features).replace(
        cnn_ops=tuple(sorted(set(CNN_OPS) - {"none"})) + ("none",), seq_ops=tuple(sorted(SEQ_OPS)),
        pool_ops=tuple(sorted(POOL_OPS)), seq_residual=kind == "seq-residual", hidden_size=8, channels=4)
    sample = _with_op(hand_designed_architecture("cnn_lstm", space), space, cnn=op if kind == "cnn" else None,
                      seq=op if kind.startswith("seq") else None, pool=op if kind == "pool" else None)
    torch.manual_seed(1)
    model = build_model(sample, space).eval()
    session = _export(model, features, Normalizer(kind="per_utterance"), tmp_path / "op.onnx")
    rng = np.random.default_rng(0)
    for seconds in (0.6, 1.0, 3.3):
        audio = (rng.normal(size=(3, int(seconds * 16000))) * 0.1).astype(np.float32)
        ours = session.run(None, {"audio": audio})[0]
        theirs = _reference(model, features, Normalizer(kind="per_utterance"), list(audio), 16000)
        np.testing.assert_allclose(ours, theirs, atol=1e-4)


# ----------------------------------------------------------------------------- the command and predict

@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A model file of the small space on the speech features, per normalisation (random weights)."""
    folder = tmp_path_factory.mktemp("models")
    out = {}
    for kind in ("per_coefficient", "per_speaker"):
        features = dataclasses.replace(FeatureConfig.speech(2.0), normalization=kind)
        space = _space(features)
        sample = hand_designed_architecture("cnn_lstm", space)
        torch.manual_seed(3)
        model = build_model(sample, space)
        normalizer = Normalizer(kind=kind) if kind != "per_coefficient" else \
            Normalizer(kind=kind, mean=np.full(64, -40.0), std=np.full(64, 12.0))
        run = folder / kind / "fold-0"
        run.mkdir(parents=True)
        out[kind] = save_model_bundle(run / "model.pt", model.state_dict(), export_architecture(sample, space),
                                      CLASSES, features.to_dict(), normalizer.to_dict())
    return out


def test_export_writes_a_checked_file_with_its_metadata_and_predict_reads_it(bundles: dict[str, Path],
                                                                              tmp_path: Path, capsys) -> None:
    from strategies.cli import main

    code = main(["export", str(bundles["per_coefficient"].parents[1])])
    out = capsys.readouterr().out
    onnx_file = bundles["per_coefficient"].with_suffix(".onnx")
    assert code == 0 and f"wrote {onnx_file}" in out
    onnx.checker.check_model(onnx.load(str(onnx_file)))
    meta = read_metadata(onnx_file)
    assert meta["classes"] == CLASSES and meta["sample_rate"] == 16000 and meta["window_seconds"] == 2.0
    assert meta["normalization"] == "per_coefficient" and meta["features"]["kind"] == "logmel"
    # predict through ONNX Runtime gives the run's rows: statuses, windows, probabilities
    clips = _clips(3)
    long = tmp_path / "long.wav"
    waves = [read_audio(p, 16000)[0] for p in clips]
    sf.write(long, np.concatenate(waves + waves), 16000)  # 12 s: several windows
    sf.write(tmp_path / "silence.wav", np.zeros(32000, dtype=np.float32), 16000)
    files = [*clips, long, tmp_path / "silence.wav", tmp_path / "missing.wav"]
    for kind, bundle in bundles.items():
        target = tmp_path / f"{kind}.onnx"
        export_onnx(bundle, target)
        torch_rows = load_predictor(bundle).analyse(files)
        onnx_rows = load_predictor(target).analyse(files)
        assert list(onnx_rows.files["status"]) == list(torch_rows.files["status"]) == ["ok"] * 4 + ["no_speech", "error"]
        columns = [f"p_{c}" for c in CLASSES]
        np.testing.assert_allclose(onnx_rows.files[columns].to_numpy(dtype=float)[:4],
                                   torch_rows.files[columns].to_numpy(dtype=float)[:4], atol=1e-4)
        np.testing.assert_allclose(onnx_rows.windows[columns].to_numpy(dtype=float),
                                   torch_rows.windows[columns].to_numpy(dtype=float), atol=1e-4)
        assert list(onnx_rows.windows["start"]) == list(torch_rows.windows["start"])


def test_bad_inputs_are_one_line_errors_and_leave_nothing_half_written(bundles: dict[str, Path], tmp_path: Path,
                                                                       capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    from strategies.cli import main

    def error_of(*argv: str) -> str:
        code = main(list(argv))
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
        return lines[0]

    assert "no finished fold" in error_of("export", str(tmp_path))
    assert "for fold 7" in error_of("export", str(bundles["per_speaker"].parents[1]), "--fold", "7")
    (tmp_path / "corrupt.onnx").write_bytes(b"\x00\x01 not a graph")
    assert "not a readable ONNX file" in error_of("predict", str(tmp_path / "corrupt.onnx"), str(tmp_path))
    foreign = tmp_path / "foreign.onnx"
    torch.onnx.export(torch.nn.Linear(3, 2), (torch.zeros(1, 3),), str(foreign), dynamo=False)
    assert "not one ser-nas exported" in error_of("predict", str(foreign), str(tmp_path))
    # an op the exporter cannot write: named, and no file at the target
    import strategies.export as export

    def unsupported(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Exporting the operator 'aten::frobnicate' to ONNX opset version 17 is not supported.\nmore")

    monkeypatch.setattr(export.torch.onnx, "export", unsupported)
    target = tmp_path / "out" / "model.onnx"
    assert "aten::frobnicate" in error_of("export", str(bundles["per_speaker"]), "--output", str(target))
    assert not target.exists() and not list((tmp_path / "out").glob("*"))
    # no onnx installed: one line saying how to install it
    import importlib

    real = importlib.import_module

    def no_onnx(name: str, *args: object) -> object:
        if name in ("onnx", "onnxruntime"):
            raise ImportError(name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_onnx)
    assert "pip install 'ser-nas[deploy]'" in error_of("export", str(bundles["per_speaker"]))


def test_run_folders_record_parameters_and_multiply_adds(tmp_path: Path, capsys) -> None:
    from strategies.cli import main

    code = main(["search", "--baseline", "cnn", "--retrain-max-epochs", "1", "--output", str(tmp_path), "--quiet"])
    assert code == 0, capsys.readouterr().err
    (run,) = list(tmp_path.iterdir())
    metrics = json.loads((run / "fold-0" / "metrics.json").read_text())
    from strategies.runs import load_model_bundle
    from ser_space import parse_architecture

    bundle = load_model_bundle(run / "fold-0" / "model.pt")
    model = build_model(parse_architecture(bundle["architecture"]))
    space = parse_architecture(bundle["architecture"]).config
    assert metrics["multiply_adds"] == count_multiply_adds(model, (1, 1, space.n_mfcc, space.frames)) > 10 ** 5
    assert json.loads((run / "summary.json").read_text())["per_fold"][0]["multiply_adds"] == metrics["multiply_adds"]
