"""The house's layers, read from the import statements of every module (ast, no imports run).

- ``ser_space`` imports nothing of ``strategies`` (tests/test_space.py guards it too);
- ``strategies.data`` imports nothing of ``strategies`` outside ``strategies.data``;
- library code never imports the command line (``strategies.cli``, ``strategies.cli_fields``);
- the ops and cells are plain PyTorch: only ``ser_space.fast`` holds the speed code.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> list[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[:len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return names


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_the_import_reader_resolves_relative_imports(tmp_path: Path) -> None:
    module = ROOT / "strategies" / "data" / "prepare.py"
    assert "strategies.data.presets" in _imports(module)  # `from .presets import ...`
    assert "strategies.data.features" in _imports(module)


def test_ser_space_imports_nothing_of_strategies() -> None:
    offenders = {str(p.relative_to(ROOT)): n for p in _modules("ser_space") for n in _imports(p)
                 if n.split(".")[0] == "strategies"}
    assert not offenders


def test_data_imports_nothing_above_it() -> None:
    offenders = {str(p.relative_to(ROOT)): n for p in _modules("strategies/data") for n in _imports(p)
                 if n.split(".")[0] == "strategies" and not n.startswith("strategies.data")}
    assert not offenders, offenders


def test_library_code_never_imports_the_cli() -> None:
    cli = ("strategies.cli", "strategies.cli_fields")
    offenders = {str(p.relative_to(ROOT)): n for folder in ("ser_space", "strategies") for p in _modules(folder)
                 if p.name not in ("cli.py", "cli_fields.py") for n in _imports(p)
                 if any(n == c or n.startswith(c + ".") for c in cli)}
    assert not offenders, offenders


def test_the_ops_and_cells_are_plain_pytorch_without_the_fast_path() -> None:
    # a found network is a stock PyTorch model: the modules it is built of import nothing of
    # ser_space.fast, and only ser_space.fast reaches its kernels
    plain = [ROOT / "ser_space" / name for name in ("ops.py", "cells.py", "config.py", "arch.py")]
    offenders = {str(p.relative_to(ROOT)): n for p in plain for n in _imports(p) if n.startswith("ser_space.fast")}
    assert not offenders, offenders
    kernels = {str(p.relative_to(ROOT)): n for folder in ("ser_space", "strategies") for p in _modules(folder)
               if "fast" not in p.relative_to(ROOT).parts for n in _imports(p)
               if n.startswith("ser_space.fast.kernels") or n.startswith("ser_space.fast.modules")}
    assert not kernels, kernels
