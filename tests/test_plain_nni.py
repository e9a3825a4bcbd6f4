"""SERSpace in an NNI experiment that knows nothing of this project (docs/search_space.md).

Each NNI 3.0 strategy searches ``SERSpace`` with NNI's own ``Classification`` evaluator in a
fresh process that never imports ``strategies`` (so none of strategies.compat's fixes apply;
the one the space needs, for TPE, comes with ``ser_space``), exports, and the export rebuilds
through the architecture file into a model that trains. Proxyless stays refused
(strategies.search.registry.REFUSED says why).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("plain_nni_search.py")


def _search(name: str, folder: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    # NNI's local trials start `python` from PATH (this interpreter's) and import the dataset's module
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(SCRIPT.parent) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    process = subprocess.Popen([sys.executable, str(SCRIPT), name, str(folder)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env, cwd=folder, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # NNI's manager (node) too: it holds port 8080
        stdout, stderr = process.communicate()
        pytest.fail(f"{name} did not finish in 300 s:\n{stdout[-2000:]}{stderr[-4000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.parametrize("name", ["DARTS", "GumbelDARTS", "ENAS", "RandomOneShot", "Random",
                                  "RegularizedEvolution", "TPE", "GridSearch", "PolicyBasedRL"])
def test_nni_strategy_searches_ser_space_without_this_project(name: str, tmp_path: Path) -> None:
    done = _search(name, tmp_path)
    assert done.returncode == 0 and "OK" in done.stdout, done.stdout[-2000:] + done.stderr[-4000:]
    assert (tmp_path / "architecture.json").is_file()
