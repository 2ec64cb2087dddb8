"""docs/tutorial.ipynb runs top to bottom (at test size: NCSN_TUTORIAL_QUICK=1) and is committed
with the figures of a full run."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "tutorial.ipynb"
FIGURES = 7  # sections 1-7 each draw one figure


def _figures(notebook) -> int:
    return sum("image/png" in output.get("data", {}) for cell in notebook.cells
               if cell.cell_type == "code" for output in cell.outputs)


def test_committed_notebook_shows_its_figures_and_no_errors():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert _figures(notebook) == FIGURES
    assert not [o for o in outputs if o.output_type == "error"]
    assert all(c.execution_count is not None for c in notebook.cells if c.cell_type == "code")


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    monkeypatch.setenv("NCSN_TUTORIAL_QUICK", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    client = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    assert _figures(notebook) == FIGURES
    assert list(tmp_path.iterdir()) == []  # the run directory is a temporary folder
