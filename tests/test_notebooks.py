"""Execute every notebook in notebooks/ top to bottom; any cell error fails the test.

The kernel is ipykernel's built-in `python3` spec, which always launches the interpreter running pytest
(`sys.executable`), so the notebook sees the same environment as the tests. No `ipykernel install` is needed, and a
user-level `python3` kernelspec that points at another interpreter can't take over.
"""

from __future__ import annotations

import os
import pathlib
import tempfile

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
from jupyter_client import KernelManager  # noqa: E402  (a dependency of nbclient)
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = REPO / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


def _kernel_manager() -> KernelManager:
    # With no kernel directories, the only spec is ipykernel's native one, which jupyter_client builds with
    # argv [sys.executable, "-m", "ipykernel_launcher", ...].
    return KernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[]))


def test_notebooks_found():
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOKS_DIR}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch, tmp_path):
    # The kernel inherits the environment: it finds the packages even without an installed checkout, TensorFlow's
    # C++ logging stays quiet, and the demo runs it makes in temporary directories go to pytest's, which pytest
    # prunes (Ray keeps its usual directory: its socket paths must stay short).
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("RAY_TMPDIR", os.environ.get("RAY_TMPDIR") or tempfile.gettempdir())
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", km=_kernel_manager(),
                                     resources={"metadata": {"path": str(NOTEBOOKS_DIR)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:  # the message holds the cell source and traceback
        pytest.fail(f"{path.name} failed:\n{err}", pytrace=False)
    errors = [out for cell in nb.cells if cell.cell_type == "code"
              for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors, f"{path.name}: error outputs {errors}"
