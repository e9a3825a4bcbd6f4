"""``strategies.training_service`` and scaling out: training-service configs, multi-device checks,
parallel local trials, and the commands of docs/scaling.md.

The remote training service against a real SSH server is in tests/test_remote.py.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest

from strategies.evaluator import SERModule, TrainConfig, make_lightning
from strategies.search import SearchConfig
from strategies.training_service import (check_oneshot_devices, configure_training_service,
                                         load_training_service_file, parse_machine)

REPO = Path(__file__).resolve().parents[1]


# ---- config ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("root@127.0.0.1:2222", ("root", "127.0.0.1", 2222)),
    ("alice@gpu-01.lab", ("alice", "gpu-01.lab", 22)),
    ("bob@[::1]:2200", ("bob", "::1", 2200)),
])
def test_parse_machine(text: str, expected: tuple) -> None:
    assert parse_machine(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1:22", "root@", "root@host:", "root@host:0", "root@host:70000",
                                  "a b@host", "root@host:22:33"])
def test_malformed_machines_are_one_line_errors(text: str) -> None:
    with pytest.raises(ValueError, match="remote machine") as error:
        SearchConfig(strategy="random", training_service="remote", remote_machines=(text,))
    assert "\n" not in str(error.value)


def test_search_config_training_service_checks() -> None:
    with pytest.raises(ValueError, match="needs remote_machines"):
        SearchConfig(strategy="random", training_service="remote")
    with pytest.raises(ValueError, match="training_service_config"):
        SearchConfig(strategy="random", training_service="kubeflow")
    with pytest.raises(ValueError, match="trial_gpu_number"):
        SearchConfig(strategy="random", trial_gpu_number=-1)
    config = SearchConfig(strategy="random", training_service="remote", remote_machines=["u@h:2"])
    assert config.remote_machines == ("u@h:2",)  # JSON round trips give lists
    assert SearchConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def _experiment(tmp_path: Path):
    """A multi-trial NasExperiment over the tiny space (not started)."""
    from nni.nas.experiment import NasExperiment

    from ser_space import SERSpace, SpaceConfig
    from strategies import compat
    from strategies.data.dataset import FeatureDataset
    from strategies.search.registry import get_strategy

    from conftest import write_random_features

    compat.apply()
    path, labels = write_random_features(tmp_path / "data")
    data = FeatureDataset(str(path), list(range(8)), labels[:8])
    space_config = SpaceConfig.tiny().replace(n_mfcc=16, frames=32, num_classes=4)
    search = SearchConfig(strategy="random", trials=2, trial_epochs=1)
    module = SERModule.from_config(TrainConfig(max_epochs=1), 4)
    evaluator = make_lightning(module, TrainConfig(max_epochs=1), data, data)
    experiment = NasExperiment(SERSpace(space_config.to_dict()), evaluator, get_strategy("random").build(search))
    compat.configure_experiment(experiment, seed=search.seed)
    return experiment


def test_remote_config_uses_the_trial_machines_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nni.experiment.config.training_services import RemoteConfig

    monkeypatch.chdir(tmp_path)
    key = tmp_path / "id_ed25519"
    key.write_text("not checked here\n")
    experiment = _experiment(tmp_path)
    search = SearchConfig(strategy="random", training_service="remote", trial_concurrency=3, trial_gpu_number=1,
                          remote_machines=("root@127.0.0.1:2222", "ubuntu@10.1.2.3"), remote_ssh_key=str(key),
                          remote_python="/opt/venv/bin/python")
    configure_training_service(experiment, search)
    config = experiment.config
    service = config.training_service
    assert isinstance(service, RemoteConfig)
    assert [(m.user, m.host, m.port) for m in service.machine_list] == [("root", "127.0.0.1", 2222),
                                                                          ("ubuntu", "10.1.2.3", 22)]
    assert {m.python_path for m in service.machine_list} == {"/opt/venv/bin"}  # NNI wants the folder
    assert {m.ssh_key_file for m in service.machine_list} == {str(key)}
    assert (config.trial_concurrency, config.trial_gpu_number) == (3, 1)
    assert config.nni_manager_ip  # a non-loopback machine must be told where the manager is
    canonical = config.canonical_copy()
    assert canonical.trial_command.startswith("SER_NAS_TRIAL_SEED=2 /opt/venv/bin/python -m strategies.compat -m ")
    assert canonical.training_service.trial_gpu_number == 1


def test_remote_config_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    experiment = _experiment(tmp_path)
    search = SearchConfig(strategy="random", training_service="remote", remote_machines=("root@127.0.0.1:22",),
                          remote_ssh_key=str(tmp_path / "missing_key"))
    with pytest.raises(ValueError, match=r"SSH key file .*missing_key not found"):
        configure_training_service(experiment, search)
    # NNI uploads the working directory: too many files, or none, is a clear error before anything starts
    key = tmp_path / "key"
    key.write_text("k")
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    with pytest.raises(ValueError, match="cannot upload the empty working directory"):
        configure_training_service(experiment, search.replace(remote_ssh_key=str(key)))
    crowded = tmp_path / "crowded"
    crowded.mkdir()
    for i in range(2001):
        (crowded / f"f{i}").write_bytes(b"")
    monkeypatch.chdir(crowded)
    with pytest.raises(ValueError, match="refuses more than 2000 files"):
        configure_training_service(experiment, search.replace(remote_ssh_key=str(key)))
    (crowded / ".nniignore").write_text("f*\n")  # NNI applies it: no refusal from us
    configure_training_service(experiment, search.replace(remote_ssh_key=str(key)))


def test_local_config_concurrency_and_gpus(tmp_path: Path) -> None:
    from nni.experiment.config.training_services import LocalConfig

    experiment = _experiment(tmp_path)
    configure_training_service(experiment, SearchConfig(strategy="random", trial_concurrency=2, trial_gpu_number=2))
    config = experiment.config
    assert isinstance(config.training_service, LocalConfig)
    assert (config.trial_concurrency, config.trial_gpu_number) == (2, 2)
    assert config.training_service.use_active_gpu is True  # NNI refuses GPUs per trial without this choice
    canonical = config.canonical_copy()
    assert f"{sys.executable} -m strategies.compat -m nni.nas.execution.training_service trial" in \
        canonical.trial_command


KUBEFLOW = {
    "platform": "kubeflow",
    "worker": {"replicas": 1, "command": "", "code_directory": ".", "gpuNumber": 1, "cpuNumber": 4,
               "memorySize": "16g", "dockerImage": "my-registry/ser-nas:latest"},
    "operator": "tf-operator",
    "apiVersion": "v1",
    "storage": {"storageType": "nfs", "server": "10.0.0.2", "path": "/exports/nni"},
}


def test_pass_through_config_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nni.experiment.config.training_services import FrameworkControllerConfig, KubeflowConfig

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "kubeflow.json"
    path.write_text(json.dumps(KUBEFLOW))
    service = load_training_service_file(path)
    assert isinstance(service, KubeflowConfig)
    assert service.worker.docker_image == "my-registry/ser-nas:latest"
    experiment = _experiment(tmp_path)
    configure_training_service(experiment, SearchConfig(strategy="random", training_service_config=str(path),
                                                        trial_concurrency=4, nni_manager_ip="10.0.0.9"))
    assert isinstance(experiment.config.training_service, KubeflowConfig)
    assert experiment.config.nni_manager_ip == "10.0.0.9"
    # a container's Python, not this machine's virtual environment
    assert experiment.config._trial_command_params["python"] == "python3 -m strategies.compat"
    # the YAML of docs/scaling.md (frameworkcontroller), also under an experiment's trainingService key
    yaml_path = tmp_path / "fc.yaml"
    yaml_path.write_text(_doc_block("yaml"))
    assert isinstance(load_training_service_file(yaml_path), FrameworkControllerConfig)
    doc_json = tmp_path / "doc.json"
    doc_json.write_text(_doc_block("json"))
    assert isinstance(load_training_service_file(doc_json), KubeflowConfig)
    # errors: one line naming the file
    for text, message in [("{", "not valid JSON"), ('{"platform": "moon"}', "unknown NNI platform"),
                          ('{"platform": "kubeflow", "colour": 1}', "kubeflow.json"), ("[]", "'platform' key")]:
        path.write_text(text)
        with pytest.raises(ValueError, match=message) as error:
            load_training_service_file(path)
        assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="no such file"):
        load_training_service_file(tmp_path / "absent.yaml")


def _doc_block(language: str) -> str:
    text = (REPO / "docs" / "scaling.md").read_text()
    return text.split(f"```{language}\n", 1)[1].split("```", 1)[0]


# ---- one-shot on several devices ------------------------------------------------------------

@pytest.mark.parametrize("devices, strategy", [(2, "auto"), ("auto", "auto"), (-1, "auto"), ("0,1", "auto"),
                                               (1, "ddp"), (1, "ddp_spawn")])
def test_oneshot_refuses_several_devices(devices: object, strategy: str) -> None:
    with pytest.raises(ValueError, match="one-shot strategies .* one device"):
        check_oneshot_devices(TrainConfig(devices=devices, strategy=strategy))


@pytest.mark.parametrize("devices", [1, "1", "0,", [3]])
def test_oneshot_single_device_is_fine(devices: object) -> None:
    check_oneshot_devices(TrainConfig(devices=devices))


def test_run_search_refuses_multi_device_oneshot(tmp_path: Path) -> None:
    from ser_space import SpaceConfig
    from strategies.search import run_search

    with pytest.raises(ValueError, match="one device"):
        run_search(SpaceConfig.tiny(), SearchConfig(strategy="darts", epochs=1), TrainConfig(devices=2), [], [],
                   tmp_path)
    assert not (tmp_path / "nni").exists()  # refused before anything started


def test_trainer_strategy_passes_through() -> None:
    data = [(np.zeros((1, 4, 4), dtype=np.float32), 0)] * 2
    module = SERModule.from_config(TrainConfig(max_epochs=1), 4)
    lightning = make_lightning(module, TrainConfig(max_epochs=1, accelerator="cpu", strategy="single_device"),
                               data, data)
    from pytorch_lightning.strategies import SingleDeviceStrategy

    assert isinstance(lightning.trainer.strategy, SingleDeviceStrategy)
    assert TrainConfig.from_dict(TrainConfig(strategy="ddp").to_dict()).strategy == "ddp"


# ---- parallel trials on the local service ---------------------------------------------------

def _trial_times(experiment_dir: Path) -> dict[str, dict[str, int]]:
    """Trial id -> {event: timestamp ms} from the NNI experiment database."""
    database = sqlite3.connect(experiment_dir / "db" / "nni.sqlite")
    try:
        rows = database.execute("SELECT trialJobId, event, timestamp FROM TrialJobEvent").fetchall()
    finally:
        database.close()
    times: dict[str, dict[str, int]] = {}
    for trial, event, timestamp in rows:
        times.setdefault(trial, {})[event] = int(timestamp)
    return times


@pytest.mark.slow
def test_local_trials_run_in_parallel(tmp_path: Path) -> None:
    from ser_space import SpaceConfig, validate_architecture
    from strategies.data.dataset import FeatureDataset
    from strategies.search import run_search

    from conftest import write_random_features

    path, labels = write_random_features(tmp_path / "data")
    train = FeatureDataset(str(path), list(range(32)), labels[:32])
    val = FeatureDataset(str(path), list(range(32, 48)), labels[32:])
    space = SpaceConfig.tiny().replace(n_mfcc=16, frames=32, num_classes=4)
    search = SearchConfig(strategy="random", trials=2, trial_epochs=1, trial_concurrency=2)
    result = run_search(space, search, TrainConfig(batch_size=16), train, val, tmp_path / "work", num_classes=4)
    validate_architecture(result.architecture, space)
    times = _trial_times(Path(result.experiment_dir))
    assert len(times) == 2, times
    assert all(t.get("SUCCEEDED") for t in times.values()), times
    starts = [t.get("RUNNING", t.get("WAITING")) for t in times.values()]
    ends = [t["SUCCEEDED"] for t in times.values()]
    assert max(starts) < min(ends), times  # the second trial started before the first one ended


def test_scaling_doc_commands_parse() -> None:
    import shlex

    from strategies.cli import build_parser

    parser = build_parser()
    text = (REPO / "docs" / "scaling.md").read_text()
    commands = []
    for block in text.split("```bash")[1:]:
        for line in block.split("```")[0].replace("\\\n", " ").splitlines():
            line = line.split("#")[0].strip()
            if line.startswith("ser-nas "):
                commands.append(shlex.split(line)[1:])
    assert len(commands) == 6
    for argv in commands:
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            raise AssertionError(f"docs/scaling.md: `ser-nas {' '.join(argv)}` does not parse") from None
        if args.command == "compare":
            assert args.jobs == 2 and "random" in args.strategies
            assert args.dispatch == ("trials" if "--remote-machines" in argv or "--dispatch" in argv else "processes")
        else:
            assert args.strategy == "random"
