"""The house's rules and layers, read from the import statements of every module (``ast``, no imports run).

Every import counts, inside functions too (only ``if TYPE_CHECKING:`` blocks are exempt):

- no import cycle between modules;
- no private name (``_x``) imported from another module;
- ``ser_space`` imports nothing of ``strategies`` (the space stands alone in plain NNI);
- ``strategies.data`` imports nothing of ``strategies`` above it;
- nothing imports the command line (``strategies.cli``, ``strategies.cli_fields``) but the CLI,
  and nothing imports the trial entry point (``strategies.trial_job``), which NNI starts by name;
- the layers of docs/architecture.md: a module imports only its own layer and those below;
- the ops and cells are plain PyTorch: only ``ser_space.fast`` holds the speed code;
- every config dataclass round-trips through the one serialisation helper.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ser_space", "strategies")

# docs/architecture.md, bottom up; a module not listed takes its package's (sub)folder entry
LAYERS: dict[str, int] = {
    "ser_space": 0,
    "strategies.data": 1, "strategies.compat": 1, "strategies.lifeline": 1, "strategies.threads": 1,
    "strategies.training_service": 1, "strategies.trials": 1, "strategies.runs": 1, "strategies.progress": 1,
    "strategies": 1,  # the package's __init__ (its version)
    "strategies.augment": 2, "strategies.evaluator": 2, "strategies.training": 2, "strategies.stats": 2,
    "strategies.plots": 2,
    "strategies.baselines": 2, "strategies.reference": 2,
    "strategies.search": 3,
    "strategies.recipes": 4, "strategies.pipeline": 4, "strategies.compare": 4, "strategies.reproduce": 4,
    "strategies.predict": 4, "strategies.export": 4, "strategies.evaluate": 4, "strategies.webui": 4,
    "strategies.trial_job": 5, "strategies.cli": 5, "strategies.cli_fields": 5,
}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The module of ours that ``name`` (a module or a name inside one) belongs to."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports() -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """Module -> the modules of ours it imports; and (importer, module, name) of private names."""
    edges: dict[str, set[str]] = defaultdict(set)
    private: list[tuple[str, str, str]] = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        exempt = {id(node) for branch in ast.walk(tree) if isinstance(branch, ast.If)
                  and "TYPE_CHECKING" in ast.unparse(branch.test) for node in ast.walk(branch)}
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(tree):
            if id(node) in exempt:
                continue
            if isinstance(node, ast.Import):
                targets = [(alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[:len(parts) - (node.level - 1)]
                    base = ".".join(parts + ([base] if base else []))
                targets = [(f"{base}.{alias.name}" if _owner(f"{base}.{alias.name}") == f"{base}.{alias.name}"
                            else base, alias.name) for alias in node.names]
            else:
                continue
            for target, name in targets:
                if target.split(".")[0] not in PACKAGES:
                    continue
                owner = _owner(target)
                if owner is None or owner == module:
                    continue
                edges[module].add(owner)
                if name and name.startswith("_") and not name.startswith("__") and owner != module:
                    private.append((module, owner, name))
    return edges, private


EDGES, PRIVATE = _imports()


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(MODULES):
        if v not in index:
            visit(v)
    return found


def _layer(module: str) -> int:
    name = module
    while name:
        if name in LAYERS:
            return LAYERS[name]
        name = name.rpartition(".")[0]
    raise AssertionError(f"{module} is in no layer of docs/architecture.md: add it to LAYERS and the picture")


def test_the_reader_sees_the_imports_it_must() -> None:
    # guards the reader itself: known edges, a function-level one included, are found
    assert "strategies.evaluator" in EDGES["strategies.pipeline"]
    assert "strategies.compare" in EDGES["strategies.trial_job"]  # imported inside a function
    assert "ser_space.arch" in EDGES["strategies.pipeline"] or "ser_space" in EDGES["strategies.pipeline"]


def test_no_import_cycle() -> None:
    assert _cycles(EDGES) == []


def test_no_private_name_crosses_modules() -> None:
    assert PRIVATE == []


def test_the_space_and_the_data_import_nothing_above_them() -> None:
    space = {m: sorted(t for t in EDGES[m] if t.startswith("strategies")) for m in MODULES if m.startswith("ser_space")}
    assert not {m: t for m, t in space.items() if t}
    data = {m: sorted(t for t in EDGES[m] if t.startswith("strategies") and not t.startswith("strategies.data"))
            for m in MODULES if m.startswith("strategies.data")}
    assert not {m: t for m, t in data.items() if t}


def test_nothing_imports_the_command_line_or_the_trial_entry_point() -> None:
    top = {"strategies.cli", "strategies.cli_fields", "strategies.trial_job"}
    importers = {m: sorted(EDGES[m] & top) for m in MODULES if m not in ("strategies.cli",)}
    assert not {m: t for m, t in importers.items() if t}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_its_layer_and_those_below(module: str) -> None:
    above = sorted(t for t in EDGES[module] if _layer(t) > _layer(module))
    assert above == [], f"{module} (layer {_layer(module)}) imports a higher layer: {above}"


def test_every_config_round_trips_through_the_one_helper() -> None:
    """Every config dataclass derives from ser_space.dictconfig.DictConfig and round-trips through JSON."""
    import json

    from ser_space import SpaceConfig
    from ser_space.dictconfig import DictConfig
    from strategies.compare import CompareConfig
    from strategies.data.config import DataConfig
    from strategies.data.features import FeatureConfig
    from strategies.data.synthetic import SyntheticConfig
    from strategies.evaluator import TrainConfig
    from strategies.recipes import REAL_SPEECH, RunConfig
    from strategies.search import SearchConfig

    configs = [SpaceConfig.small(), FeatureConfig.speech(2.0), DataConfig(), TrainConfig(gain_db=3.0),
               SearchConfig(arch_speakers=2, remote_machines=("u@h:22",)), REAL_SPEECH, RunConfig(folds=None),
               CompareConfig(seeds=2, references=())]
    for config in configs:
        assert isinstance(config, DictConfig)
        again = type(config).from_dict(json.loads(json.dumps(config.to_dict())))
        assert again == config, type(config).__name__
    assert isinstance(SyntheticConfig(), DictConfig)
    with pytest.raises(ValueError, match=r"TrainConfig: unknown keys \['epochs'\]"):
        TrainConfig.from_dict({"epochs": 3})
    # a stored layout of its own around the helper: the run's format number, and its one-line error
    from strategies.runs import RunError

    with pytest.raises(RunError, match="config.json: unknown field"):
        RunConfig.from_dict({**RunConfig().to_dict(), "extra": 1})


def test_the_ops_and_cells_are_plain_pytorch_without_the_fast_path() -> None:
    # a found network is a stock PyTorch model: the modules it is built of import nothing of
    # ser_space.fast, and only ser_space.fast reaches its kernels
    plain = ("ser_space.ops", "ser_space.cells", "ser_space.config", "ser_space.arch")
    offenders = {m: sorted(t for t in EDGES[m] if t.startswith("ser_space.fast")) for m in plain}
    assert not {m: t for m, t in offenders.items() if t}
    kernels = {m: sorted(t for t in EDGES[m] if t in ("ser_space.fast.kernels", "ser_space.fast.modules"))
               for m in MODULES if not m.startswith("ser_space.fast")}
    assert not {m: t for m, t in kernels.items() if t}
