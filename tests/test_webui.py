"""Runs in the NNI web UI: a one-shot search as an NNI trial, and ``view`` of finished experiments.

The DARTS search runs once per module (through the NNI manager, with a real trial process);
its experiment database must hold one SUCCEEDED trial with one intermediate result per
epoch and a final result. ``view`` must serve that experiment's web page and REST API, and
a multi-trial (Random, a NAS experiment NNI's own ``view`` cannot open) experiment too.
Every test checks that no NNI manager of its experiments is left running.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest
import torch

from ser_space import SpaceConfig, build_model, validate_architecture
from strategies.data.dataset import FeatureDataset
from strategies.evaluator import TrainConfig
from strategies.runs import RunError
from strategies.search import SearchConfig, SearchResult, run_search
from strategies.trials import free_port
from strategies.webui import ViewServer, find_experiments, view

from conftest import write_random_features

N_MFCC, FRAMES, CLASSES, EPOCHS = 16, 32, 4, 2


def _space() -> SpaceConfig:
    return SpaceConfig.tiny().replace(n_mfcc=N_MFCC, frames=FRAMES, num_classes=CLASSES)


def _datasets(folder: Path) -> tuple[FeatureDataset, FeatureDataset]:
    path, labels = write_random_features(folder, num=48, n_coefficients=N_MFCC, frames=FRAMES)
    return (FeatureDataset(str(path), list(range(32)), labels[:32]),
            FeatureDataset(str(path), list(range(32, 48)), labels[32:]))


def _managers(experiment_id: str) -> list[psutil.Process]:
    """NNI manager processes (node main.js) serving ``experiment_id``."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if any(part.endswith("main.js") for part in cmdline) and experiment_id in cmdline:
            found.append(proc)
    return found


def _metrics(experiment_dir: Path) -> tuple[list[tuple[str, str]], list[tuple[str, int, dict]]]:
    with sqlite3.connect(f"file:{experiment_dir / 'db' / 'nni.sqlite'}?mode=ro", uri=True) as db:
        events = list(db.execute("SELECT trialJobId, event FROM TrialJobEvent"))
        rows = list(db.execute("SELECT type, sequence, data FROM MetricData ORDER BY type, sequence"))
    # NNI stores the metric as a JSON string of a JSON string
    return events, [(kind, seq, json.loads(json.loads(data))) for kind, seq, data in rows]


def _listening(port: int) -> list[str]:
    """Local addresses with a TCP socket listening on ``port``, as the operating system reports them."""
    return sorted({c.laddr.ip for c in psutil.net_connections("tcp") if c.status == "LISTEN" and c.laddr.port == port})


def _outside_address() -> str | None:
    """An IPv4 address of this machine that is not loopback (None when it has none)."""
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return address.address
    return None


def _accepts(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        return sock.connect_ex((address, port)) == 0


def _record_listening(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, port_of: Any,
                      seen: list[list[str]]) -> None:
    """Wrap ``owner.name`` (called while an experiment runs) to record where its manager listens."""
    original = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        seen.append(_listening(port_of(*args, **kwargs)))
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=20) as response:
        assert response.status == 200
        return response.read()


LISTENING_DURING_DARTS: list[list[str]] = []  # where the one-shot search's manager listened


@pytest.fixture(scope="module")
def darts_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SearchResult, float]:
    from strategies import trials

    root = tmp_path_factory.mktemp("webui-darts")
    train, val = _datasets(root / "data")
    started = time.perf_counter()
    with pytest.MonkeyPatch.context() as patch:
        _record_listening(patch, trials, "_wait", lambda experiment, *_: experiment.port, LISTENING_DURING_DARTS)
        result = run_search(_space(), SearchConfig(strategy="darts", epochs=EPOCHS, webui=True),
                            TrainConfig(batch_size=8), train, val, root / "run" / "search", num_classes=CLASSES)
    return root / "run", result, time.perf_counter() - started


@pytest.mark.slow
def test_oneshot_search_runs_as_an_nni_trial_with_epoch_curves(darts_run: tuple[Path, SearchResult, float]) -> None:
    run_dir, result, _ = darts_run
    space = _space()
    validate_architecture(result.architecture, space)
    with torch.no_grad():
        out = build_model(result.architecture, space).eval()(torch.randn(2, 1, N_MFCC, FRAMES))
    assert out.shape == (2, CLASSES) and torch.isfinite(out).all()
    assert [e["epoch"] for e in result.history] == list(range(EPOCHS))
    assert result.last_architecture == result.history[-1]["architecture"]

    experiment_dir = Path(result.experiment_dir)
    assert result.experiment_id == experiment_dir.name
    assert experiment_dir.parent == (run_dir / "search" / "nni").resolve()
    events, metrics = _metrics(experiment_dir)
    trials = {trial for trial, _ in events}
    assert len(trials) == 1 and (trials.pop(), "SUCCEEDED") in events
    intermediate = [m for kind, _, m in metrics if kind == "PERIODICAL"]
    final = [m for kind, _, m in metrics if kind == "FINAL"]
    assert len(intermediate) == EPOCHS
    assert [m["default"] for m in intermediate] == pytest.approx([e["val_ua"] for e in result.history])
    # the learning curves: the training loss beside the validation loss, per epoch
    assert [m["train_loss"] for m in intermediate] == pytest.approx([e["train_loss"] for e in result.history])
    assert all("val_loss" in m for m in intermediate)
    assert len(final) == 1
    # genotype "last" (the default): the final result is the last epoch's validation UA
    assert final[0]["default"] == pytest.approx(result.history[-1]["val_ua"])
    assert set(final[0]) == {"default", "val_wa", "val_f1", "val_loss", "train_loss"}
    assert not _managers(result.experiment_id)
    # the web UI of a default search listens on the loopback address only
    assert LISTENING_DURING_DARTS == [["127.0.0.1"]]


@pytest.mark.slow
def test_view_serves_the_web_ui_and_rest_api(darts_run: tuple[Path, SearchResult, float]) -> None:
    run_dir, result, _ = darts_run
    assert find_experiments(run_dir) == [Path(result.experiment_dir)]
    port = free_port()
    served: list[Path] = []
    errors: list[BaseException] = []
    ready = threading.Event()
    servers: list[ViewServer] = []

    def on_ready(server: ViewServer, found: list[Path]) -> None:
        servers.append(server)
        ready.set()

    def serve() -> None:
        try:
            # long enough for the requests below on a loaded 2-core machine; view then stops itself
            served.append(view(run_dir, port=port, timeout=20, on_ready=on_ready))
        except BaseException as error:  # reported by the test thread
            errors.append(error)
            ready.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        assert ready.wait(timeout=60) and not errors, errors
        base = f"http://127.0.0.1:{port}"
        assert _listening(port) == ["127.0.0.1"]
        outside = _outside_address()
        if outside is not None:  # the rest of the network is refused
            assert not _accepts(outside, port)
        page = _get(base + "/").decode()
        assert "<html" in page.lower()
        trials = json.loads(_get(base + "/api/v1/nni/trial-jobs"))
        assert [t["status"] for t in trials] == ["SUCCEEDED"]
        assert json.loads(_get(base + "/api/v1/nni/check-status"))["status"] == "VIEWED"
        metrics = json.loads(_get(base + "/api/v1/nni/metric-data"))
        assert sorted(m["type"] for m in metrics) == ["FINAL"] + ["PERIODICAL"] * EPOCHS
        thread.join(timeout=60)  # view stops itself after its timeout
        assert not thread.is_alive() and not errors, errors
    finally:
        for server in servers:  # a failed assertion must not leave the manager running
            server.stop()
        thread.join(timeout=30)
    assert served == [Path(result.experiment_dir)]
    assert not _managers(result.experiment_id)


@pytest.mark.slow
def test_view_opens_a_multi_trial_nas_experiment(tmp_path: Path) -> None:
    # NNI's own `Experiment.view` fails for NAS experiments ("search_space field can not be customized")
    from nni.nas.experiment import NasExperiment

    train, val = _datasets(tmp_path / "data")
    seen: list[list[str]] = []
    with pytest.MonkeyPatch.context() as patch:  # where the search's manager listens while it runs
        _record_listening(patch, NasExperiment, "_wait_completion", lambda experiment: experiment.port, seen)
        result = run_search(_space(), SearchConfig(strategy="random", trials=1, trial_epochs=1),
                            TrainConfig(batch_size=16), train, val, tmp_path / "run", num_classes=CLASSES)
    assert seen == [["127.0.0.1"]]
    assert result.experiment_id and not _managers(result.experiment_id)
    experiment_dir = Path(result.experiment_dir)
    with ViewServer(experiment_dir, port=0) as server:
        assert _managers(result.experiment_id)
        with pytest.raises(RunError, match=r"--port 0"):  # a second web UI on a busy port says what to do
            ViewServer(experiment_dir, port=server.port).start()
        trials = json.loads(_get(server.url + "/api/v1/nni/trial-jobs"))
        assert [t["status"] for t in trials] == ["SUCCEEDED"]
        profile = json.loads(_get(server.url + "/api/v1/nni/experiment"))
        assert profile["id"] == result.experiment_id
    assert not _managers(result.experiment_id)
    # opting in to every interface: the rest of the network reaches it
    outside = _outside_address()
    with ViewServer(experiment_dir, port=0, host="0.0.0.0") as server:
        assert _listening(server.port) == ["0.0.0.0"]
        assert _accepts("127.0.0.1", server.port)
        if outside is not None:
            assert _accepts(outside, server.port)
    assert not _managers(result.experiment_id)


def test_view_of_a_missing_folder_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no such run folder") as info:
        view(tmp_path / "nope", port=free_port(), timeout=1)
    assert "\n" not in str(info.value)


def test_view_of_a_folder_without_experiments_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "fold-0" / "search" / "nni").mkdir(parents=True)
    with pytest.raises(RunError, match="no NNI experiment") as info:
        view(tmp_path, port=free_port(), timeout=1)
    assert str(tmp_path) in str(info.value) and "\n" not in str(info.value)


def test_view_of_an_unknown_experiment_id_lists_the_ones_found(tmp_path: Path) -> None:
    for name in ("aaaa1111", "bbbb2222"):
        (tmp_path / "nni" / name / "db").mkdir(parents=True)
        (tmp_path / "nni" / name / "db" / "nni.sqlite").touch()
    assert [p.name for p in find_experiments(tmp_path)] == ["aaaa1111", "bbbb2222"]
    with pytest.raises(RunError, match="aaaa1111, bbbb2222"):
        view(tmp_path, port=free_port(), timeout=1, experiment="cccc3333")


def test_cli_view_reports_errors_and_search_defaults_to_the_web_ui(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from strategies.cli import _run_config, build_parser, main

    assert main(["view", str(tmp_path / "nope")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    parser = build_parser()
    assert _run_config(parser.parse_args(["search"])).search.webui is True
    assert _run_config(parser.parse_args(["search", "--no-webui"])).search.webui is False
    assert SearchConfig().webui is False  # library default: in-process, fast tests


@pytest.mark.slow
def test_a_failed_trial_is_a_one_line_error_naming_its_log(tmp_path: Path) -> None:
    from strategies.trials import run_jobs_as_trials

    with pytest.raises(RuntimeError, match=r"FAILED: ValueError: job broken: unknown kind 'nope'.*trial\.log") as info:
        run_jobs_as_trials([{"id": "broken", "kind": "nope"}], tmp_path, experiment_name="ser-nas failing job")
    assert "\n" not in str(info.value)
    log = Path(str(info.value).rsplit("see ", 1)[1])
    assert log.is_file() and log.is_relative_to(tmp_path / "nni")
    assert not _managers(log.relative_to(tmp_path / "nni").parts[0])


@pytest.mark.slow
def test_sigterm_stops_view_and_its_manager(darts_run: tuple[Path, SearchResult, float]) -> None:
    import os
    import signal
    import subprocess
    import sys

    run_dir, result, _ = darts_run
    port = free_port()
    view_process = subprocess.Popen([sys.executable, "-m", "strategies.cli", "view", str(run_dir), "--port", str(port)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _listening(port):
        time.sleep(0.3)
    assert _managers(result.experiment_id) and _listening(port) == ["127.0.0.1"], "the web UI did not start"
    view_process.send_signal(signal.SIGTERM)
    _, err = view_process.communicate(timeout=60)
    assert view_process.returncode == 128 + signal.SIGTERM, err
    assert "interrupted (SIGTERM)" in err and "Traceback" not in err
    assert not _managers(result.experiment_id)


@pytest.mark.slow
def test_an_interrupted_start_leaves_no_manager(darts_run: tuple[Path, SearchResult, float],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """NNI's launcher kills the manager it started on an Exception but not on Ctrl-C / SIGTERM
    while it waits for it to answer (strategies.compat, fix 5)."""
    from nni.experiment import launcher

    _, result, _ = darts_run
    waited: list[int] = []

    def interrupted_wait(port: int, *args: Any, **kwargs: Any) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _managers(result.experiment_id):
            time.sleep(0.1)
        waited.append(len(_managers(result.experiment_id)))
        raise KeyboardInterrupt

    monkeypatch.setattr(launcher, "_check_rest_server", interrupted_wait)
    with pytest.raises(KeyboardInterrupt):
        ViewServer(Path(result.experiment_dir), port=0).start()
    assert waited == [1]  # the manager was running when the interrupt came
    assert not _managers(result.experiment_id)


@pytest.mark.slow
def test_relocated_experiments_show_their_new_folder(darts_run: tuple[Path, SearchResult, float],
                                                      tmp_path: Path) -> None:
    """A fold's folder is renamed when complete; the web UI then shows the new paths, not the old."""
    import shutil

    from strategies.trials import relocate_experiments

    run_dir, result, _ = darts_run
    moved = tmp_path / "fold-0"
    shutil.copytree(run_dir, moved)
    old, new = str(run_dir.resolve()), str(moved.resolve())
    assert relocate_experiments(moved, old, new) >= 1
    experiment_dir = moved / Path(result.experiment_dir).relative_to(run_dir)
    with sqlite3.connect(experiment_dir / "db" / "nni.sqlite") as db:
        profile = " ".join(str(v) for row in db.execute("SELECT params, logDir FROM ExperimentProfile") for v in row)
        logs = " ".join(str(v) for row in db.execute("SELECT logPath, data FROM TrialJobEvent") for v in row)
    assert new in profile and old + "/" not in profile and old + "/" not in logs
    with ViewServer(experiment_dir, port=0) as server:
        shown = json.loads(_get(server.url + "/api/v1/nni/experiment"))
    assert new in json.dumps(shown) and old + "/" not in json.dumps(shown)
