"""The tutorial notebooks run top to bottom and print sensible values.

Each notebook is executed with nbclient in a python3 kernel (this interpreter's ipykernel),
in a temporary working directory; the prepared-data cache is the test session's
(``SER_NAS_HOME`` from conftest.py, inherited by the kernel). The notebooks are tiny by
default, so no setting is overridden here.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CELL_TIMEOUT_S = 1800  # generous: a shared 2-core machine can be many times slower than usual


def _run(name: str, workdir: Path) -> str:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    client.execute()
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stdout":
                texts.append(output["text"])
            elif "data" in output and "text/plain" in output["data"]:
                texts.append(output["data"]["text/plain"])
            elif "data" in output and "text/markdown" in output["data"]:
                texts.append(output["data"]["text/markdown"])
    return "\n".join(texts)


def _floats(pattern: str, text: str) -> list[float]:
    return [float(v) for v in re.findall(pattern, text)]


def test_notebooks_are_generated_from_the_script() -> None:
    """The committed notebooks are what notebooks/make_notebooks.py writes (no hand edits)."""
    sys.path.insert(0, str(NOTEBOOKS))
    try:
        import make_notebooks
    finally:
        sys.path.pop(0)
    for name, cells in make_notebooks.NOTEBOOKS.items():
        expected = make_notebooks._notebook(cells)
        actual = nbformat.read(NOTEBOOKS / name, as_version=4)
        assert [c.source for c in actual.cells] == [c.source for c in expected.cells], name
        for cell in actual.cells:  # no stored outputs in the repository
            assert not cell.get("outputs"), name
        # notebooks import from the packages; they never define the classes NNI would pickle by value
        code = "\n".join(c.source for c in actual.cells if c.cell_type == "code")
        assert not re.search(r"^class ", code, re.MULTILINE), name


@pytest.mark.slow
def test_quickstart_notebook(tmp_path: Path) -> None:
    text = _run("01_quickstart.ipynb", tmp_path)
    (ua,) = _floats(r"test UA ([0-9.]+)", text)
    (wa,) = _floats(r"WA ([0-9.]+)  parameters", text)
    (metrics_path,) = tmp_path.glob("runs/*-synthetic-darts/fold-0/metrics.json")  # the run folder is in the cwd
    assert (metrics_path.parent / "model.pt").is_file()
    metrics = json.loads(metrics_path.read_text())
    # the notebook prints what the run recorded (4 decimals)
    assert (ua, wa) == (round(metrics["test_ua"], 4), round(metrics["test_wa"], 4))
    # the prediction table names a class for each of the 4 emotions' clips
    rows = [line for line in text.splitlines() if ".wav" in line]
    assert len(rows) == 4
    assert all(line.split()[1] in ("ang", "hap", "neu", "sad") and line.split()[2] in ("ang", "hap", "neu", "sad")
               for line in rows)


@pytest.mark.slow
def test_own_nni_experiment_notebook(tmp_path: Path) -> None:
    text = _run("02_ser_space_in_your_nni_experiment.ipynb", tmp_path)
    (ua,) = _floats(r"untrained validation UA ([0-9.]+)", text)
    assert 0.0 <= ua <= 1.0  # an untrained network: any UA; what is checked is that it was scored
    from ser_space import build_model, count_parameters, load_architecture

    # the architecture file the notebook wrote rebuilds into the network it printed
    rebuilt = build_model(load_architecture(tmp_path / "gumbel_darts_architecture.json"))
    assert _floats(r"parameters: ([0-9]+)", text)[0] == count_parameters(rebuilt)
    assert (tmp_path / "nni-experiments").is_dir()


@pytest.mark.slow
def test_compare_notebook(tmp_path: Path) -> None:
    text = _run("03_compare_strategies.ipynb", tmp_path)
    found = dict(re.findall(r"^([\w-]+): test UA ([0-9.]+) \+-", text, re.MULTILINE))
    assert set(found) == {"darts", "random", "baseline-cnn_lstm", "baseline-mfcc_stats"}
    (compare_dir,) = tmp_path.glob("runs/*-synthetic-compare")
    # the notebook prints the comparison's own table (recomputed from its run folders)
    table = pd.read_csv(compare_dir / "table.csv").set_index("method")
    for method, value in found.items():
        assert float(value) == pytest.approx(table.loc[method, "test_ua_mean"], abs=5e-4), method
    assert (compare_dir / "table.md").is_file() and (compare_dir / "ua_vs_cost.png").is_file()
