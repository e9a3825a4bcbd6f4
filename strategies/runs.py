"""Run folders: atomic files, package versions, and the model bundle.

Every run writes its config, the versions of the packages it ran with, and its metrics into
its own folder. Files are written to a temporary name and renamed, so an interrupted run
never leaves a half-written file, and nothing already written is lost.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import sys
import time
from importlib import metadata
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ser_space.io import write_atomically

__all__ = ["write_json", "read_json", "package_versions", "new_run_dir", "RunError",
           "MODEL_FORMAT", "save_model_bundle", "load_model_bundle", "writer_lock"]

MODEL_FORMAT = "ser-nas-model"
MODEL_VERSION = 1

_PACKAGES = ("ser-nas", "torch", "nni", "pytorch-lightning", "numpy", "pandas", "librosa", "soundfile",
             "tianshou", "gym", "matplotlib", "espeakng-loader")


_MODULES = {"ser-nas": "strategies", "pytorch-lightning": "pytorch_lightning", "espeakng-loader": "espeakng_loader"}


class RunError(ValueError):
    """A run folder or model file that cannot be used (one-line message naming the path)."""




def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically (NaN and inf become null)."""
    text = json.dumps(_finite(data), indent=2, default=_json_default, sort_keys=False)
    return write_atomically(path, lambda h: h.write((text + "\n").encode()))


def read_json(path: str | Path) -> Any:
    """Read a JSON file; a missing or broken file is a one-line :class:`RunError`."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{path}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunError(f"{path}: not valid JSON ({error})") from None


def package_versions() -> dict[str, Any]:
    """Python, platform, accelerator and the versions of the packages a run depends on."""
    versions: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    for name in _PACKAGES:
        # an imported module's own version first: what ran, even where another copy is installed
        module = sys.modules.get(_MODULES.get(name, name.replace("-", "_")))
        version = getattr(module, "__version__", None)
        if version is None:
            try:
                version = metadata.version(name)
            except metadata.PackageNotFoundError:
                version = None
        versions[name] = str(version) if version is not None else None
    try:
        import torch

        versions["cuda"] = torch.version.cuda
        versions["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except Exception:  # pragma: no cover - informative only
        pass
    return versions


def new_run_dir(output_dir: str | Path, name: str) -> Path:
    """A fresh run folder ``output_dir/<UTC time>-<name>`` (never an existing one)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for suffix in [""] + [f"-{i}" for i in range(2, 1000)]:
        path = output_dir / f"{stamp}-{name}{suffix}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RunError(f"{output_dir}: cannot create a new run folder")


LOCK_NAME = ".lock"
"""The file in a run or comparison folder that its writer holds an OS lock on."""


@contextlib.contextmanager
def writer_lock(folder: str | Path, also: Sequence[str | Path] = ()) -> Iterator[None]:
    """Be the one writer of ``folder`` (and of the folders ``also``) inside the block.

    An exclusive ``flock`` on ``folder/.lock``, which dies with its holder (a crash or SIGKILL
    frees it, so the next ``--resume`` needs no cleanup); the file holds the holder's PID, which
    the one-line :class:`RunError` of a second writer names. Without ``fcntl`` (Windows) the
    block runs unlocked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks here
        yield
        return
    handles = []
    try:
        for path in (folder, *also):
            lock = Path(path) / LOCK_NAME
            handle = open(lock, "a+", encoding="ascii")
            handles.append(handle)
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                raise RunError(f"{path}: another ser-nas command (PID {holder}) is writing this folder; wait for it "
                               f"to finish or stop it, then try again") from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
        yield
    finally:
        for handle in handles:
            handle.close()  # closing releases the lock


def save_model_bundle(path: str | Path, state_dict: dict[str, Any], architecture: dict[str, Any],
                      classes: list[str], features: dict[str, Any], normalizer: dict[str, Any]) -> Path:
    """Save everything ``predict`` needs: weights, architecture document, classes, feature recipe."""
    import torch

    bundle = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "architecture": json.dumps(architecture),
        "classes": list(classes),
        "features": json.dumps(features),
        "normalizer": json.dumps(_finite(normalizer), default=_json_default),
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
    }
    return write_atomically(path, lambda h: torch.save(bundle, h))


def load_model_bundle(path: str | Path) -> dict[str, Any]:
    """Load a model bundle with ``torch.load(weights_only=True)`` (no code is unpickled)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: no such model file")
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad file
        raise RunError(f"{path}: not a ser-nas model file ({type(error).__name__})") from None
    if not isinstance(bundle, dict) or bundle.get("format") != MODEL_FORMAT:
        raise RunError(f"{path}: not a ser-nas model file")
    if bundle.get("version") != MODEL_VERSION:
        raise RunError(f"{path}: model format version {bundle.get('version')} is not supported "
                       f"(expected {MODEL_VERSION})")
    return {
        "architecture": json.loads(bundle["architecture"]),
        "classes": list(bundle["classes"]),
        "features": json.loads(bundle["features"]),
        "normalizer": json.loads(bundle["normalizer"]),
        "state_dict": bundle["state_dict"],
    }
