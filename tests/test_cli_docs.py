"""docs/cli.md is generated from the parser: it must match the current flags."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_cli_docs", REPO / "benchmarks" / "gen_cli_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_doc_is_up_to_date() -> None:
    generator = _generator()
    expected = generator.render()
    current = (REPO / "docs" / "cli.md").read_text()
    assert current == expected, "docs/cli.md is out of date: run `python benchmarks/gen_cli_docs.py`"


def test_cli_doc_covers_every_command_and_flag() -> None:
    generator = _generator()
    parser = generator._parser()
    text = generator.render()
    for title, _ in generator._sections(parser):
        assert f"## `{title}`" in text
    for flag in ("--strategies", "--trial-epochs", "--resume", "--retrain-max-epochs", "--dataset", "--baseline"):
        assert flag in text.split("## `ser-nas compare`")[1], flag


def _documented_commands(text: str) -> list[list[str]]:
    import shlex

    commands = []
    for block in text.split("```bash")[1:]:
        body = block.split("```")[0].replace("\\\n", " ")
        for line in body.splitlines():
            line = line.split("#")[0].strip()
            if line.startswith("ser-nas "):
                commands.append(shlex.split(line)[1:])
    return commands


def test_user_guide_commands_parse_and_strategy_table_matches_registry() -> None:
    from strategies.search.registry import STRATEGIES

    generator = _generator()
    parser = generator._parser()
    text = (REPO / "docs" / "user_guide.md").read_text()
    commands = _documented_commands(text)
    assert len(commands) >= 8
    for argv in commands:
        try:
            parser.parse_args(argv)
        except SystemExit:
            raise AssertionError(f"docs/user_guide.md: `ser-nas {' '.join(argv)}` does not parse") from None
    for name, spec in STRATEGIES.items():
        kind = "one-shot" if spec.kind == "oneshot" else "multi-trial"
        assert f"| `{name}` | {kind} |" in text, name
