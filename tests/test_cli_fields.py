"""Command-line flags generated from the config dataclasses (strategies.cli_fields): flags and fields cannot drift."""

from __future__ import annotations


def test_cli_flags_come_from_the_fields() -> None:
    from strategies.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["search", "--strategy", "random", "--training-service", "remote",
                              "--remote-machines", "root@10.0.0.1:22, root@10.0.0.2:2222",
                              "--remote-ssh-key", "/k", "--remote-python", "/venv/bin/python",
                              "--trial-gpu-number", "1", "--trial-concurrency", "4",
                              "--training-service-config", "ts.json", "--nni-manager-ip", "10.0.0.9"])
    assert args.remote_machines == ("root@10.0.0.1:22", "root@10.0.0.2:2222")
    assert (args.remote_ssh_key, args.remote_python, args.trial_gpu_number, args.trial_concurrency) == \
        ("/k", "/venv/bin/python", 1, 4)
    assert (args.training_service_config, args.nni_manager_ip) == ("ts.json", "10.0.0.9")
