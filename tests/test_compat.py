"""Guards of strategies.compat: each NNI 3.0 fix is tested here (see docs/installation.md)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from typing import Any

import json_tricks
import nni
import pytest

from strategies import compat

# A string as a config, path or note may hold it: an escaped quote, then "//" and "#".
TRICKY = 'corpus "v2" at C:\\data//emodb #1'


def _wire_message(parameter_id: int = 7) -> str:
    """A TrialEnd command as NNI's manager sends it: JSON in JSON in JSON."""
    from nni.runtime.tuner_command_channel.command_type import CommandType

    hyper = nni.dump({"parameter_id": parameter_id, "parameters": {"model_kwargs": {"note": TRICKY}}})
    content = json.dumps({"trial_job_id": "abc", "event": "SUCCEEDED", "hyper_params": hyper})
    return json.dumps({"type": CommandType.TrialEnd.value, "content": content})


def test_comment_stripping_really_cuts_such_payloads() -> None:
    """The defect exists: json_tricks' comment stripper corrupts this message (guards the tests below)."""
    with pytest.raises(ValueError):
        json_tricks.loads(_wire_message(), ignore_comments=True)


def test_nni_load_keeps_payload_after_apply() -> None:
    compat.apply()
    message = nni.dump({"parameter_id": 3, "parameters": {"note": TRICKY, "url": "http://x//y"}})
    assert nni.load(message) == {"parameter_id": 3, "parameters": {"note": TRICKY, "url": "http://x//y"}}
    # the function object itself is fixed, so names imported before apply() see it too
    from nni.common.serializer import load

    assert load.__kwdefaults__["ignore_comments"] is False


def test_tuner_channel_receives_trial_end_with_tricky_payload() -> None:
    """A TrialEnd whose hyper_params hold the payload survives the tuner channel's parsing."""
    from nni.runtime.tuner_command_channel.channel import TunerCommandChannel

    compat.apply()
    wire = _wire_message(7)

    class FakeClient:
        def receive(self) -> dict:
            return nni.load(wire)  # what NNI's websocket connection does with each message

    channel = TunerCommandChannel("ws://127.0.0.1:1/tuner")
    channel._channel = FakeClient()
    command = channel.receive()
    assert type(command).__name__ == "TrialEnd"
    assert command.trial_job_id == "abc"
    assert command.parameter_ids == [7]


def test_configure_experiment_routes_trials_through_compat(tmp_path) -> None:
    from nni.nas.experiment.config import NasExperimentConfig

    config = NasExperimentConfig("ts", "simplified", "local")
    config.trial_concurrency = 1
    config.max_trial_number = 1

    class Holder:
        pass

    holder = Holder()
    holder.config = config
    compat.configure_experiment(holder, seed=5)
    canonical = config.canonical_copy()
    assert canonical.trial_command.endswith("-m nni.nas.execution.training_service trial")
    assert f"-m {compat.TRIAL_ENTRY_MODULE} -m nni.nas.execution.training_service" in canonical.trial_command
    assert canonical.trial_command.startswith("SER_NAS_TRIAL_SEED=5 ")


def test_trial_entry_applies_fixes_then_runs_module(tmp_path) -> None:
    module = tmp_path / "probe_module.py"
    module.write_text(textwrap.dedent("""
        import sys, random
        from nni.common.serializer import load
        print(load.__kwdefaults__["ignore_comments"], sys.argv[1:], random.random())
    """))
    env = {"PYTHONPATH": str(tmp_path), "SER_NAS_TRIAL_SEED": "11", "PATH": "/usr/bin:/bin"}
    runs = [subprocess.run([sys.executable, "-m", "strategies.compat", "-m", "probe_module", "a", "b"],
                           capture_output=True, text=True, env=env, timeout=120) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    first = runs[0].stdout.strip().splitlines()[-1]
    assert first.startswith("False ['a', 'b']")
    assert first == runs[1].stdout.strip().splitlines()[-1]  # seeded: same random number


def test_trial_entry_usage_error() -> None:
    run = subprocess.run([sys.executable, "-m", "strategies.compat", "oops"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode != 0
    assert "usage" in run.stderr


def test_buffer_warnings_are_quiet() -> None:
    run = subprocess.run([sys.executable, "-W", "default", "-c", "import ser_space, strategies.compat"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "not a nn.Module" not in run.stderr


def test_stack_check_passes_on_pinned_stack() -> None:
    compat.check_stack()


# ----------------------------------------------------------------------------- fix 4: where the manager listens


def _listen_address(host: str | None, nni_listen: bool) -> str:
    """The address a node server gets when it asks, as NNI's RestServer does, for 0.0.0.0."""
    from pathlib import Path

    node = Path(nni.__file__).resolve().parent.parent / "nni_node" / "node"
    env = {k: v for k, v in os.environ.items() if k not in ("NODE_OPTIONS", compat.MANAGER_HOST_VARIABLE)}
    if nni_listen:  # the environment a manager started inside manager_host(host) inherits
        with compat.manager_host(host):
            env["NODE_OPTIONS"] = os.environ["NODE_OPTIONS"]
            env[compat.MANAGER_HOST_VARIABLE] = os.environ[compat.MANAGER_HOST_VARIABLE]
    script = ("const s = require('http').createServer(); "
              "s.listen(0, '0.0.0.0', () => { console.log(s.address().address); s.close(); });")
    done = subprocess.run([str(node), "-e", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_nni_node_listens_on_every_interface_by_itself() -> None:
    """The defect exists: NNI's node asked for 0.0.0.0 gets every interface (guards the tests below)."""
    assert _listen_address(None, nni_listen=False) == "0.0.0.0"


def test_managers_listen_on_loopback_after_apply() -> None:
    compat.apply()
    assert compat._LISTEN_SCRIPT in os.environ["NODE_OPTIONS"]
    compat.apply()  # idempotent: the option is added once
    assert os.environ["NODE_OPTIONS"].count(compat._LISTEN_SCRIPT) == 1
    assert _listen_address(None, nni_listen=True) == "127.0.0.1"
    assert _listen_address("0.0.0.0", nni_listen=True) == "0.0.0.0"


def test_manager_host_restores_the_environment_and_warns_for_every_interface(caplog) -> None:
    before = os.environ.get(compat.MANAGER_HOST_VARIABLE)
    with compat.manager_host() as host:
        assert host == os.environ[compat.MANAGER_HOST_VARIABLE] == "127.0.0.1"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    with caplog.at_level(logging.WARNING, logger="strategies.compat"), compat.manager_host("0.0.0.0", 8123):
        assert os.environ[compat.MANAGER_HOST_VARIABLE] == "0.0.0.0"
    warning = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warning) == 1 and "no authentication" in warning[0]
    assert "ssh -L 8123:127.0.0.1:8123" in warning[0] and "\n" not in warning[0]
    assert os.environ.get(compat.MANAGER_HOST_VARIABLE) == before


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "0.0.0.0", "::"])
def test_manager_hosts_nni_can_reach(host: str) -> None:
    assert compat.check_manager_host(host) == host


@pytest.mark.parametrize("host", ["192.0.2.7", "example.org", ""])
def test_a_manager_host_nni_cannot_reach_is_a_one_line_error(host: str) -> None:
    from strategies.search import SearchConfig

    with pytest.raises(ValueError, match="localhost") as error:
        compat.check_manager_host(host)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="0.0.0.0"):
        SearchConfig(webui_host=host)


def test_manager_listens_where_trial_machines_reach_it() -> None:
    from nni.experiment import ExperimentConfig
    from nni.experiment.config.training_services import RemoteConfig

    from strategies.training_service import manager_listen_host

    local = ExperimentConfig("local")
    assert manager_listen_host(local) == "127.0.0.1"
    assert manager_listen_host(local, "0.0.0.0") == "0.0.0.0"
    remote = ExperimentConfig("remote")
    remote.training_service = RemoteConfig(machine_list=[], reuse_mode=False)
    assert manager_listen_host(remote) == "127.0.0.1"  # NNI's remote trial keepers dial localhost
    remote.nni_manager_ip = "127.0.0.1"
    assert manager_listen_host(remote) == "127.0.0.1"
    remote.nni_manager_ip = "192.0.2.7"  # trial machines dial this machine over the network
    assert manager_listen_host(remote) == "0.0.0.0"
    with pytest.raises(ValueError, match="192.0.2.7.*leave --webui-host unset"):
        manager_listen_host(remote, "127.0.0.1")


# ----------------------------------------------------------------------------- fix 2: a quiet console

NOISE = ("Gym has been unmaintained", "LeafSpec", "updated_called", "Checkpoint callback is found to be None",
         "Validation dataloaders are missing", "will be ignored for sequential execution engine",
         "not a nn.Module", "\x1b[")


def _search(tmp_path, *flags: str) -> tuple[str, str]:
    env = {k: v for k, v in os.environ.items() if k != compat.VERBOSE_VARIABLE}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run([sys.executable, "-m", "strategies.cli", "search", "--epochs", "1",
                           "--retrain-max-epochs", "1", "--quiet", "--output", str(tmp_path), *flags],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


@pytest.mark.slow
def test_a_default_search_prints_none_of_the_other_packages_noise(tmp_path) -> None:
    for flags in ((), ("--no-webui",)):  # the web UI's trial process, and the in-process search
        out, err = _search(tmp_path, *flags)
        found = [text for text in NOISE if text in out + err]
        assert not found, (flags, found, err)
        assert "test UA" in out


@pytest.mark.slow
def test_verbose_shows_the_other_packages_warnings_again(tmp_path) -> None:
    out, err = _search(tmp_path, "--no-webui", "--verbose")
    assert "Checkpoint callback is found to be None" in out + err
    assert "LeafSpec" in err


# ----------------------------------------------------------------------------- TPE and cell inputs (ser_space/nni_fixes.py)


def test_a_cell_input_choice_is_a_categorical_choice_for_hpo_tuners() -> None:
    from nni.algorithms.hpo.tpe_tuner import TpeTuner
    from nni.mutable import CategoricalMultiple

    import ser_space  # noqa: F401  (its NNI fix comes with it: ser_space/nni_fixes.py)

    one = CategoricalMultiple([0, 1, 2], n_chosen=1, label="input_2_0")
    assert one.as_legacy_dict() == {"_type": "choice", "_value": [[0], [1], [2]]}
    tuner = TpeTuner(seed=0)
    tuner.update_search_space({one.label: one.as_legacy_dict()})
    for index in range(3):  # what TPE proposes (3 distinct choices), the mutable takes back
        sample = tuner.generate_parameters(index)
        assert one.freeze(sample) == sample[one.label] and len(sample[one.label]) == 1
    with pytest.raises(NotImplementedError):  # more than one chosen is not one categorical choice
        CategoricalMultiple([0, 1, 2], n_chosen=2, label="two").as_legacy_dict()


def test_tpe_reads_the_whole_ser_space() -> None:
    """The defect: NNI's TPE strategy builds its search space with as_legacy_dict on every mutable."""
    from ser_space import SERSpace, SpaceConfig

    space = SERSpace(SpaceConfig.tiny().to_dict())
    legacy = {label: mutable.as_legacy_dict() for label, mutable in space.simplify().items()}
    inputs = [label for label in legacy if "/input_" in label]
    assert inputs and all(legacy[label]["_type"] == "choice" for label in legacy)


def _serve_check_status_after(delay: float) -> tuple[int, Any]:
    """A stand-in NNI manager on a free loopback port that starts answering after ``delay`` s."""
    import http.server
    import socket
    import threading
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            body = b'{"status": "RUNNING"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    def serve() -> None:
        time.sleep(delay)
        with http.server.HTTPServer(("127.0.0.1", port), Handler) as server:
            server.timeout = 10  # nobody asked: give up
            server.handle_request()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return port, thread


def test_nni_gives_a_slow_manager_three_seconds_and_apply_gives_it_more() -> None:
    # The defect: NNI's launcher asks /check-status 3 times, a second apart, then gives up, so a
    # manager that needs 5 s on a loaded machine never starts.  After apply() it is found.
    import requests
    from nni.experiment import launcher

    saved = launcher._check_rest_server.__defaults__
    try:
        launcher._check_rest_server.__defaults__ = (3,) + saved[1:]  # NNI's own default
        port, thread = _serve_check_status_after(5.0)
        with pytest.raises(requests.exceptions.ConnectionError):
            launcher._check_rest_server(port)

        compat._patient_manager_start()
        assert launcher._check_rest_server.__defaults__[0] == compat.MANAGER_START_SECONDS
        port, thread = _serve_check_status_after(5.0)
        launcher._check_rest_server(port)  # answers after 5 s: found
        thread.join()
    finally:
        launcher._check_rest_server.__defaults__ = saved
        compat._patient_manager_start()
