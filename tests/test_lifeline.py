"""Nothing a command starts outlives it; one writer per run folder; a full disk (issue 32)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from strategies import lifeline
from strategies.cli import main
from strategies.runs import RunError, writer_lock

REPO = Path(__file__).resolve().parents[1]


def _run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def _errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


# ----------------------------------------------------------------------------- the owner watch

def test_identity_tells_a_live_owner_from_a_gone_or_reused_one() -> None:
    me = lifeline.identity()
    assert me.startswith(f"{os.getpid()}:") and lifeline.is_alive(me)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not lifeline.is_alive(f"{child.pid}:")  # exited and reaped
    if me.partition(":")[2]:  # with /proc: the same PID with another start time is someone else
        assert not lifeline.is_alive(f"{os.getpid()}:{int(me.partition(':')[2]) + 1}")
    assert lifeline.is_alive("not-a-pid") and lifeline.is_alive("0:")  # never end a process over a bad value


def test_a_child_ends_when_its_owner_is_killed(tmp_path: Path) -> None:
    """A process started for an owner (here: a grandchild) ends within seconds of the owner's SIGKILL."""
    code = ("import subprocess, sys, time\n"
            "from strategies import lifeline\n"
            "lifeline.claim(force=True)\n"
            "child = subprocess.Popen([sys.executable, '-c', 'from strategies import lifeline; import time; "
            "lifeline.watch_owner(0.1); time.sleep(120)'])\n"
            "print(child.pid, flush=True)\n"
            "time.sleep(120)\n")
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    child = int(owner.stdout.readline())
    time.sleep(1.0)
    assert _running(child)
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    deadline = time.monotonic() + 10
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(child)


def _running(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_an_nni_manager_preload_stops_the_manager_when_its_owner_is_gone() -> None:
    """The manager's preload (strategies/nni_preload.js) ends a node process whose owner died."""
    import nni

    from strategies import compat

    node = Path(nni.__file__).resolve().parent.parent / "nni_node" / "node"
    compat.apply()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    env = {**os.environ, lifeline.OWNER_VARIABLE: f"{gone.pid}:1"}
    script = "process.on('SIGTERM', () => { console.log('sigterm'); process.exit(0); }); setInterval(() => {}, 1000);"
    started = time.monotonic()
    done = subprocess.run([str(node), "-e", script], env=env, capture_output=True, text=True, timeout=30)
    assert "sigterm" in done.stdout and time.monotonic() - started < 10
    assert "is gone; stopping" in done.stderr


@pytest.mark.slow
def test_sigkill_mid_search_leaves_no_process_and_resume_finishes(tmp_path: Path) -> None:
    """``kill -9`` of ``ser-nas search`` while a random search's trial trains: no process of the
    run is left after 30 s, and ``--resume`` finishes the run."""
    import psutil

    out = tmp_path / "runs"
    command = [sys.executable, "-m", "strategies.cli", "search", "--strategy", "random", "--trials", "3",
               "--trial-epochs", "4", "--retrain-max-epochs", "1", "--folds", "0", "--output", str(out), "--quiet"]
    search = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    family: set[int] = set()
    deadline = time.monotonic() + 240
    trial_seen = False
    while time.monotonic() < deadline and not trial_seen:
        time.sleep(1)
        try:
            children = psutil.Process(search.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            break
        family |= {c.pid for c in children}
        trial_seen = any("trial" in " ".join(_cmdline(c)) for c in children)
    assert trial_seen, "no trial process started"
    search.send_signal(signal.SIGKILL)
    search.wait()
    deadline = time.monotonic() + 30
    while any(_running(pid) for pid in family) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [pid for pid in family if _running(pid)]
    (run,) = list(out.iterdir())
    finished = subprocess.run([sys.executable, "-m", "strategies.cli", "search", "--resume", str(run), "--quiet"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=900,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    assert finished.returncode == 0, finished.stderr
    assert (run / "fold-0" / "metrics.json").is_file() and not list(run.glob(".fold-*"))


def _cmdline(process: object) -> list[str]:
    import psutil

    try:
        return process.cmdline()  # type: ignore[attr-defined]
    except psutil.Error:
        return []


# ----------------------------------------------------------------------------- one writer per folder

def _hold(folder: Path) -> subprocess.Popen:
    code = (f"import time\nfrom strategies.runs import writer_lock\n"
            f"with writer_lock({str(folder)!r}):\n    print('held', flush=True)\n    time.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_writer_is_refused_naming_the_holder_until_it_dies(tmp_path: Path) -> None:
    holder = _hold(tmp_path)
    with pytest.raises(RunError, match=f"another ser-nas command \\(PID {holder.pid}\\) is writing this folder"):
        with writer_lock(tmp_path):
            pass
    holder.send_signal(signal.SIGKILL)  # a crash: the OS frees the lock, no cleanup needed
    holder.wait()
    with writer_lock(tmp_path):
        assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())


def test_resume_of_a_folder_in_use_is_one_line_naming_the_pid(tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs"
    code, err = _run_cli(capsys, "search", "--baseline", "cnn", "--retrain-max-epochs", "1", "--output", str(out),
                         "--quiet")
    assert code == 0, err
    (run,) = list(out.iterdir())
    holder = _hold(run)
    try:
        code, err = _run_cli(capsys, "search", "--resume", str(run), "--quiet")
        assert code == 2 and len(_errors(err)) == 1 and f"(PID {holder.pid})" in _errors(err)[0]
        code, err = _run_cli(capsys, "retrain", str(run), "--resume", str(run), "--quiet")
        assert code == 2 and f"(PID {holder.pid})" in err
    finally:
        holder.kill()
        holder.wait()
    code, err = _run_cli(capsys, "search", "--resume", str(run), "--quiet")
    assert code == 0, err


# ----------------------------------------------------------------------------- a full disk

def test_a_full_disk_mid_run_keeps_the_finished_folds_and_resume_completes(tmp_path: Path, capsys,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import strategies.pipeline as pipeline

    original = pipeline.save_model_bundle

    def full_on_fold_1(path: Path, *args: object, **kwargs: object) -> Path:
        if Path(path).parent.name == ".fold-1.partial":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(pipeline, "save_model_bundle", full_on_fold_1)
    out = tmp_path / "runs"
    code, err = _run_cli(capsys, "search", "--baseline", "cnn", "--retrain-max-epochs", "1", "--folds", "0,1",
                         "--output", str(out), "--quiet")
    (run,) = list(out.iterdir())
    (line,) = _errors(err)
    assert code == 2 and "model.pt: no space left on the device" in line and f"--resume {run}" in line
    assert "Traceback" not in err
    assert (run / "fold-0" / "metrics.json").is_file()
    assert not (run / "fold-1").exists() and not list(run.glob(".fold-*"))  # only finished folds stay
    monkeypatch.setattr(pipeline, "save_model_bundle", original)
    code, err = _run_cli(capsys, "search", "--resume", str(run), "--quiet")
    assert code == 0, err
    assert json.loads((run / "summary.json").read_text())["folds"] == 2


def test_a_full_disk_while_caching_features_is_one_line_and_keeps_the_cache(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd
    import soundfile

    import strategies.data.features as features
    from strategies.data.errors import DataError

    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.wav")
        soundfile.write(paths[-1], np.random.default_rng(i).normal(size=16000).astype(np.float32) * 0.1, 16000)
    manifest = pd.DataFrame({"utt_id": ["a", "b", "c"], "path": [str(p) for p in paths]})
    config = features.FeatureConfig.small()
    cache = tmp_path / "cache"
    first = features.extract_features(manifest.iloc[:2], config, cache, progress=False)
    kept = np.asarray(first.features).copy()
    real = np.lib.format.open_memmap

    def full(*args: object, **kwargs: object) -> object:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np.lib.format, "open_memmap", full)
    with pytest.raises(DataError, match="no space left on the device for the feature cache") as caught:
        features.extract_features(manifest, config, cache, progress=False)
    assert str(cache) in str(caught.value) and "\n" not in str(caught.value)
    monkeypatch.setattr(np.lib.format, "open_memmap", real)
    assert not list(cache.rglob("*.tmp"))  # nothing half-written left behind
    again = features.extract_features(manifest.iloc[:2], config, cache, progress=False)
    assert np.array_equal(np.asarray(again.features), kept)  # the cache kept what it held
