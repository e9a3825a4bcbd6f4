"""Write docs/cli.md from the ``ser-nas`` parser itself (``--help`` of every command).

Usage::

    python benchmarks/gen_cli_docs.py            # rewrite docs/cli.md
    python benchmarks/gen_cli_docs.py --check    # exit 1 if docs/cli.md is out of date

``tests/test_cli_docs.py`` fails when a flag changes and the page was not regenerated.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLI_DOC = REPO / "docs" / "cli.md"
WIDTH = 100  # help text wrap width, fixed so the page does not depend on the terminal

HEADER = """# `ser-nas` command reference

Generated from the parser by `python benchmarks/gen_cli_docs.py`; do not edit by hand
(`tests/test_cli_docs.py` checks that this page matches the parser). The flags of the config
dataclasses are generated from their fields (`strategies/cli_fields.py`): `--<search field>`,
`--search-train-<field>`, `--retrain-<field>`, `--space-<field>`, `--features-<field>`.
"""


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _parser() -> argparse.ArgumentParser:
    from strategies.cli import build_parser

    return build_parser()


def _sections(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    sections = [(" ".join(("ser-nas", *path)), parser.format_help())]
    for name, sub in _subparsers(parser).items():
        sections.extend(_sections(sub, (*path, name)))
    return sections


def render() -> str:
    """The Markdown page: one section per command with its ``--help`` text."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(WIDTH)
    try:
        sections = _sections(_parser())
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous
    parts = [HEADER, "Commands: " + ", ".join(f"`{title}`" for title, _ in sections[1:]) + ".\n"]
    for title, text in sections:
        parts.append(f"## `{title}`\n\n```text\n{text.rstrip()}\n```\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/cli.md is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = CLI_DOC.read_text() if CLI_DOC.exists() else ""
        if current != text:
            print(f"{CLI_DOC} is out of date: run python benchmarks/gen_cli_docs.py", file=sys.stderr)
            return 1
        return 0
    CLI_DOC.write_text(text)
    print(f"wrote {CLI_DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
