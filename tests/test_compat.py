"""Guards of strategies.compat: each NNI 3.0 fix is tested here (see docs/installation.md)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

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
