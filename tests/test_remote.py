"""NNI's remote training service against a real SSH server on loopback.

A private ``sshd`` (its own host key, user key, config and port, all in ``tmp_path``) serves
127.0.0.1; a Random search then runs two trials at once through ``training_service="remote"``
exactly as it would on another machine: NNI connects over SSH, starts its trial keeper,
uploads the working directory and runs the trials with ``remote_python``.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ser_space import SpaceConfig, build_model, validate_architecture
from strategies.data.dataset import FeatureDataset
from strategies.evaluator import TrainConfig
from strategies.search import SearchConfig, run_search

from conftest import write_random_features

pytestmark = pytest.mark.slow

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}: {process.stderr.read().decode()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"sshd did not listen on 127.0.0.1:{port} within {timeout} s")


@pytest.fixture()
def ssh_server(tmp_path: Path):
    """(user@127.0.0.1:port, private key path) of a private sshd; killed afterwards."""
    if SSHD is None:
        pytest.skip("sshd not installed: apt-get install openssh-server")
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen not installed: apt-get install openssh-client")
    folder = tmp_path / "sshd"
    folder.mkdir()
    host_key, user_key = folder / "host_ed25519", folder / "user_ed25519"
    for key in (host_key, user_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    authorized = folder / "authorized_keys"
    authorized.write_text(Path(f"{user_key}.pub").read_text())
    authorized.chmod(0o600)
    port = _free_port()
    config = folder / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {host_key}",
        f"PidFile {folder / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "PermitRootLogin yes",
        "Subsystem sftp internal-sftp",  # NNI uploads over SFTP
        "LogLevel ERROR",
    ]) + "\n")
    if os.geteuid() == 0:  # sshd started by root needs its privilege-separation folder
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        _wait_for_port(port, process)
        user = os.environ.get("USER") or ("root" if os.geteuid() == 0 else os.getlogin())
        yield f"{user}@127.0.0.1:{port}", user_key
    finally:
        process.kill()
        process.wait(timeout=10)


def test_random_search_through_the_remote_training_service(ssh_server: tuple[str, Path], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    machine, key = ssh_server
    # NNI uploads the working directory to every machine: run from a small one, as documented
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    (workdir / "README").write_text("trial code folder of a test search\n")  # NNI cannot upload an empty one
    monkeypatch.chdir(workdir)
    path, labels = write_random_features(tmp_path / "data")
    train = FeatureDataset(str(path), list(range(32)), labels[:32])
    val = FeatureDataset(str(path), list(range(32, 48)), labels[32:])
    space = SpaceConfig.tiny().replace(n_mfcc=16, frames=32, num_classes=4)
    search = SearchConfig(strategy="random", trials=2, trial_epochs=1, trial_concurrency=2,
                          training_service="remote", remote_machines=(machine,), remote_ssh_key=str(key),
                          remote_python=sys.executable)
    result = run_search(space, search, TrainConfig(batch_size=16), train, val, tmp_path / "work", num_classes=4)

    validate_architecture(result.architecture, space)
    import torch

    with torch.no_grad():
        out = build_model(result.architecture, space).eval()(torch.randn(2, 1, 16, 32))
    assert out.shape == (2, 4) and torch.isfinite(out).all()
    database = sqlite3.connect(Path(result.experiment_dir) / "db" / "nni.sqlite")
    try:
        events = database.execute("SELECT trialJobId, event FROM TrialJobEvent").fetchall()
        platform = database.execute("SELECT params FROM ExperimentProfile").fetchone()[0]
    finally:
        database.close()
    succeeded = {trial for trial, event in events if event == "SUCCEEDED"}
    assert len(succeeded) == 2, events
    assert '"platform": "remote"' in platform or '"platform":"remote"' in platform
    assert len(result.history) == 2
    assert all(entry["final"] is not None and 0.0 <= entry["final"] <= 1.0 for entry in result.history)


def test_a_comparison_runs_as_trials_on_the_remote_training_service(ssh_server: tuple[str, Path], tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """``ser-nas compare --dispatch trials --training-service remote``: every run is a trial that
    NNI starts over SSH; the trial machine (here this one) shares the comparison folder."""
    import argparse
    import contextlib
    import io
    import json

    from strategies.cli import add_compare_parser, cmd_compare
    from strategies.runs import read_json

    machine, key = ssh_server
    monkeypatch.chdir(tmp_path)
    parser = argparse.ArgumentParser(prog="ser-nas")
    add_compare_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([
        "compare", "--strategies", "darts", "--seeds", "1", "--folds", "0,1", "--epochs", "1", "--baseline", "none",
        "--references", "none", "--space", "tiny", "--retrain-max-epochs", "1", "--quiet", "--webui",
        "--output", str(tmp_path / "out"), "--data-dir", str(tmp_path / "data"), "--jobs", "2",
        "--dispatch", "trials", "--remote-machines", machine, "--remote-ssh-key", str(key),
        "--remote-python", sys.executable])
    with contextlib.redirect_stdout(io.StringIO()):
        assert cmd_compare(args) == 0
    (compare_dir,) = (tmp_path / "out").glob("*-synthetic-compare")
    assert sorted(p.parent.name for p in compare_dir.glob("darts-seed0/fold-*/metrics.json")) == ["fold-0", "fold-1"]
    info = read_json(compare_dir / "webui.json")
    database = sqlite3.connect(Path(info["experiment_dir"]) / "db" / "nni.sqlite")
    try:
        events = database.execute("SELECT trialJobId, event FROM TrialJobEvent").fetchall()
        platform = json.loads(database.execute("SELECT params FROM ExperimentProfile").fetchone()[0])
    finally:
        database.close()
    assert platform["trainingService"]["platform"] == "remote"
    assert {trial for trial, event in events if event == "SUCCEEDED"} == set(info["trials"].values())
