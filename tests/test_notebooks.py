"""The tutorial notebooks (examples/notebooks/) run top to bottom on the toy world, in this interpreter.

Each notebook is executed by nbclient in a fresh kernel whose spec points at ``sys.executable`` (written to a
temporary Jupyter path, which takes precedence over any user or system ``python3`` kernel), from a temporary
working directory; the committed notebook (with its outputs) is never written back.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
kernelspec = pytest.importorskip("ipykernel.kernelspec")

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "examples" / "notebooks").glob("*.ipynb"))


@pytest.fixture
def kernel(tmp_path_factory, monkeypatch) -> str:
    """The name of a kernel that runs this interpreter (the notebooks' own kernel name, ``python3``)."""
    jupyter = tmp_path_factory.mktemp("jupyter")
    kernelspec.write_kernel_spec(jupyter / "kernels" / "python3")
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter))
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "error")
    return "python3"


def execute(notebook, kernel: str, cwd: Path) -> None:
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name=kernel, resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()


def test_the_kernel_is_this_interpreter(kernel, tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys; print(sys.executable)")])
    execute(notebook, kernel, tmp_path)
    assert notebook.cells[0].outputs[0]["text"].strip() == sys.executable


def test_there_are_three_tutorials():
    assert [p.name for p in NOTEBOOKS] == ["01_quickstart.ipynb", "02_your_own_agent.ipynb", "03_train_grpo.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, kernel, tmp_path):
    committed = nbformat.read(path, as_version=4)
    assert all(cell.execution_count for cell in committed.cells if cell.cell_type == "code"), (
        f"{path.name} is committed without its outputs: execute it once and commit it"
    )
    notebook = nbformat.read(path, as_version=4)
    execute(notebook, kernel, tmp_path)  # raises CellExecutionError naming the failing cell
    errors = [o for cell in notebook.cells for o in cell.get("outputs", []) if o["output_type"] == "error"]
    assert not errors
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, f"{path.name} shows no picture"
