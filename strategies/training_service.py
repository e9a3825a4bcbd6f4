"""Where multi-trial searches run their trials: NNI's local, remote or any other training service.

One function, :func:`configure_training_service`, turns the training-service fields of a
:class:`strategies.search.SearchConfig` into the NNI config of an ``NasExperiment``
(docs/scaling.md):

- ``local`` (default): trials are subprocesses of this machine, ``trial_concurrency`` at once.
- ``remote``: trials run on the machines of ``remote_machines`` (``user@host:port``) over SSH,
  with NNI's ``RemoteConfig``. Every machine needs this package installed in the Python of
  ``remote_python`` and the prepared features at the same absolute path (a shared file
  system, or the same ``ser-nas data prepare`` run there).
- ``training_service_config``: a JSON or YAML file holding one NNI training-service config
  dict (``platform: kubeflow``, ``frameworkcontroller``, ``aml``, ``openpai``, ``remote``...)
  applied verbatim through NNI's config classes.

What NNI 3.0 does on a remote machine (nni_node/training_service/remote_v3/worker.js): it
runs ``python -m pip install nni --upgrade`` there, starts a trial keeper that connects back
to this machine's NNI manager (``nni_manager_ip``: NNI 3.0 uses ``localhost`` when it is not
set), and uploads the working directory (NasExperiment's fixed trial code directory) as a
tarball, refusing more than 2000 files or 300 MB unless a ``.nniignore`` there excludes them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

from .compat import LOOPBACK, check_manager_host, is_loopback

logger = logging.getLogger(__name__)

__all__ = ["configure_training_service", "manager_listen_host", "parse_machine", "load_training_service_file",
           "trial_python", "check_code_directory"]

#: Training services selectable by name; any other platform goes through ``training_service_config``.
PLATFORMS = ("local", "remote")

_MACHINE = re.compile(r"^(?P<user>[^@\s:]+)@(?P<host>\[[0-9A-Fa-f:.]+\]|[^@\s:\[\]]+)(?::(?P<port>\d+))?$")
# NNI's tarball limits for the uploaded trial code directory (nni_node/common/tarball.js)
_MAX_FILES = 2000
_MAX_BYTES = 300 * 1024 * 1024


def parse_machine(text: str) -> tuple[str, str, int]:
    """``"user@host:port"`` (port optional, 22) -> ``(user, host, port)``; ValueError when malformed."""
    match = _MACHINE.match(text.strip())
    if not match:
        raise ValueError(f"remote machine {text!r} is not user@host:port (e.g. root@10.0.0.5:22)")
    port = int(match.group("port") or 22)
    if not 0 < port < 65536:
        raise ValueError(f"remote machine {text!r}: port {port} is not in 1..65535")
    return match.group("user"), match.group("host").strip("[]"), port


def load_training_service_file(path: str | Path) -> Any:
    """An NNI ``TrainingServiceConfig`` from a JSON/YAML file (the dict itself, or under ``trainingService``)."""
    from nni.experiment.config.training_service import TrainingServiceConfig
    from nni.experiment.config.utils import load_training_service_config

    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"training_service_config {path}: no such file")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as error:  # json / yaml syntax errors, one line
        raise ValueError(f"training_service_config {path}: not valid JSON/YAML ({error})".replace("\n", " ")) from None
    if isinstance(data, dict):
        for key in ("trainingService", "training_service"):
            if key in data:
                data = data[key]
                break
    if not isinstance(data, dict) or "platform" not in data:
        raise ValueError(f"training_service_config {path}: expected a mapping with a 'platform' key")
    try:
        config = load_training_service_config(dict(data))
    except Exception as error:  # NNI: AttributeError for unknown keys, ValueError for bad values
        raise ValueError(f"training_service_config {path}: {error}".replace("\n", " ")) from None
    if not isinstance(config, TrainingServiceConfig):
        raise ValueError(f"training_service_config {path}: unknown NNI platform {data['platform']!r}")
    return config


def trial_python(search: Any, platform: str) -> str:
    """The Python command that trials run: ``remote_python``, else this one (local, remote) or ``python3``."""
    if search.remote_python:
        return str(search.remote_python)
    return sys.executable if platform in PLATFORMS else "python3"


def check_code_directory(directory: str | Path) -> None:
    """Raise a one-line error when NNI would fail to upload ``directory`` (empty or too big) to remote machines.

    Skipped when the folder has a ``.nniignore`` (NNI applies it; we do not re-implement it).
    """
    directory = Path(directory)
    if (directory / ".nniignore").exists():
        return
    files = size = 0
    for _root, _dirs, names in os.walk(directory):
        for name in names:
            files += 1
            try:
                size += os.lstat(os.path.join(_root, name)).st_size
            except OSError:
                continue
            if files > _MAX_FILES or size > _MAX_BYTES:
                raise ValueError(
                    f"remote: NNI uploads the working directory {directory} to every machine and refuses more "
                    f"than {_MAX_FILES} files or 300 MB; run from a small folder (e.g. the output folder) or add "
                    f"a .nniignore there")
    if files == 0:  # NNI's tar step fails on an empty folder ("no files or directories specified")
        raise ValueError(f"remote: NNI cannot upload the empty working directory {directory}; run from a folder "
                         f"holding at least one file (e.g. the output folder)")


def manager_listen_host(config: Any, requested: str | None = None) -> str:
    """Where the NNI manager of an experiment with NNI config ``config`` must listen.

    ``requested`` (``--webui-host``) wins when given. Otherwise the loopback address, unless
    trial machines dial the manager over the network: a non-local training service whose
    ``nni_manager_ip`` is not a loopback address (NNI 3.0's remote service dials ``localhost``
    when it is unset; its other services dial this machine's IPv4 address). Then every
    interface, and :func:`strategies.compat.manager_host` warns that this exposes the API.
    A requested loopback address that such trials could not reach is a one-line ValueError.
    """

    platform = getattr(config.training_service, "platform", "local")
    ip = config.nni_manager_ip
    if platform == "local" or (ip and is_loopback(ip)) or (platform == "remote" and not ip):
        over_network = None
    else:
        over_network = ip or "this machine's IPv4 address"
    if requested is None:
        return "0.0.0.0" if over_network else LOOPBACK
    host = check_manager_host(requested)
    if over_network and is_loopback(host):
        raise ValueError(f"web UI host {host}: the {platform} trial machines reach the NNI manager at "
                         f"{over_network}, which a loopback-only manager refuses; leave --webui-host unset")
    return host


def configure_training_service(experiment: Any, search: Any, code_directory: str | Path | None = None) -> None:
    """Set ``experiment``'s training service, trial concurrency and GPUs per trial from ``search``.

    Call after :func:`strategies.compat.configure_experiment` (it sets the trial command's
    Python, which is replaced here by the trial machines' ``remote_python``).

    Parameters
    ----------
    experiment : nni.nas.experiment.NasExperiment
        A multi-trial experiment, not yet started.
    search : strategies.search.SearchConfig
        Its ``training_service``, ``training_service_config``, ``remote_*``, ``nni_manager_ip``,
        ``trial_concurrency`` and ``trial_gpu_number`` fields are used.
    code_directory : path, optional
        The folder NNI uploads to remote machines (the experiment's trial code directory;
        default: the working directory).
    """
    from nni.experiment.config.training_services import LocalConfig, RemoteConfig, RemoteMachineConfig

    config = experiment.config
    config.trial_concurrency = search.trial_concurrency
    config.trial_gpu_number = search.trial_gpu_number
    if search.nni_manager_ip:
        config.nni_manager_ip = search.nni_manager_ip

    if search.training_service_config:
        service = load_training_service_file(search.training_service_config)
        platform = service.platform
        if platform == "remote":
            check_code_directory(code_directory or Path.cwd())
    elif search.training_service == "remote":
        key = Path(search.remote_ssh_key or "~/.ssh/id_rsa").expanduser()
        if not key.is_file():
            raise ValueError(f"remote: SSH key file {key} not found (give remote_ssh_key / --remote-ssh-key)")
        python = trial_python(search, "remote")
        machines = []
        for text in search.remote_machines:
            user, host, port = parse_machine(text)
            # NNI's python_path is the interpreter's folder, put first on the remote PATH
            machines.append(RemoteMachineConfig(host=host, port=port, user=user, ssh_key_file=str(key),
                                                python_path=str(Path(python).parent)))
        service = RemoteConfig(machine_list=machines, reuse_mode=False)
        platform = "remote"
        check_code_directory(code_directory or Path.cwd())
        hosts = [m.host for m in machines]
        if not search.nni_manager_ip and not all(is_loopback(h) for h in hosts):
            # NNI 3.0's remote trial keepers dial "localhost" unless told otherwise
            from nni.experiment.config.utils import get_ipv4_address

            config.nni_manager_ip = get_ipv4_address()
            logger.info("remote: trial machines reach the NNI manager at %s (set nni_manager_ip to change)",
                        config.nni_manager_ip)
    elif search.training_service == "local":
        # with GPUs per trial NNI asks whether busy GPUs may be shared; they may (other work
        # on a GPU must not stall the search); pass a config file for finer control
        service = LocalConfig(use_active_gpu=True if search.trial_gpu_number else None)
        platform = "local"
    else:
        raise ValueError(f"training_service {search.training_service!r}: choose one of {', '.join(PLATFORMS)}, "
                         f"or give training_service_config (a JSON/YAML NNI training-service config)")
    config.training_service = service

    if platform != "local":
        # the trial command keeps strategies.compat's entry point, run by the trial machines' Python
        from .compat import TRIAL_ENTRY_MODULE

        params = dict(getattr(config, "_trial_command_params", None) or {})
        params["python"] = f"{trial_python(search, platform)} -m {TRIAL_ENTRY_MODULE}"
        config._trial_command_params = params
    logger.info("training service %s: %d trial(s) at once, %d GPU(s) per trial", platform,
                search.trial_concurrency, search.trial_gpu_number)


def _single_device(devices: Any) -> bool:
    if isinstance(devices, int):
        return devices == 1
    if isinstance(devices, (list, tuple)):
        return len(devices) == 1
    # Lightning reads "1" as one device and "3," as the device with index 3
    text = str(devices).strip()
    return text == "1" or (text.endswith(",") and len([p for p in text.split(",") if p.strip()]) == 1)


def check_oneshot_devices(train: Any) -> None:
    """Raise a one-line error for a one-shot search asked to train on several devices.

    Measured with NNI 3.0 and Lightning 2.0.9 (docs/scaling.md): ``ddp_spawn`` cannot pickle
    NNI's mutated supernet; ``ddp`` re-runs the whole program once per device, so every rank
    runs its own search and writes its own run folder and NNI experiment, and NNI's one-shot
    modules (manual optimization over a combined train/val loader, several backward passes
    per step) are not written for distributed gradient synchronisation. One device per
    one-shot search; scale out with multi-trial strategies (trial_concurrency, remote).
    """
    strategy = str(getattr(train, "strategy", "auto"))
    if strategy not in ("auto", "single_device") or not _single_device(train.devices):
        raise ValueError(
            f"one-shot strategies (darts, enas, ...) train on one device in NNI 3.0; got devices={train.devices!r}, "
            f"strategy={strategy!r}: use devices=1 and strategy='auto' (see docs/scaling.md)")
