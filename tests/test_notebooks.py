"""The research notebooks run end to end in CI, and are committed without outputs.

Each notebook is executed with nbclient in a fresh kernel on this interpreter, with a small row
limit (``COLLECTGUARD_NB_ROWS``) and the shipped model (``COLLECTGUARD_MODEL`` unset), so a
notebook that drifts from the package API fails here rather than in a reader's hands.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest

from model.config import REPO_ROOT, SHIPPED_MODEL_DIR

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CI_ROWS = "60"
CELL_TIMEOUT_S = 300
KERNEL_NAME = "collectguard-test-python"


def test_notebooks_exist() -> None:
    names = {p.name for p in NOTEBOOKS}
    assert {"01_data.ipynb", "02_errors.ipynb", "03_explain.ipynb"} <= names, names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_is_stripped(path: Path) -> None:
    """Outputs in git bloat diffs and go stale; CI regenerates them instead."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs or execution counts; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_uses_the_package(path: Path) -> None:
    """Cells import the project's modules instead of re-implementing analysis in the notebook."""
    nb = nbformat.read(path, as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "from train import analysis" in source
    assert "def " not in source, f"{path.name} defines functions in cells; move them to train/ or model/"
    assert any(c.cell_type == "markdown" for c in nb.cells[1:]), f"{path.name} has no explanatory markdown"


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A throw-away kernelspec that runs ipykernel on *this* interpreter (the project venv).

    Relying on a globally installed ``python3`` kernelspec would run the notebooks on whatever
    Python that spec names; JUPYTER_PATH puts this one first without touching the user's setup.
    """
    root = tmp_path_factory.mktemp("jupyter")
    spec_dir = root / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "collectguard tests",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    previous = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(root), previous]))
    yield KERNEL_NAME
    if previous is None:
        os.environ.pop("JUPYTER_PATH", None)
    else:
        os.environ["JUPYTER_PATH"] = previous


def execute_notebook(path: Path, kernel: str, env_overrides: dict[str, str | None]) -> nbformat.NotebookNode:
    """Run every cell of ``path`` in a new kernel (cwd = repo root); raises on the first failing cell."""
    from nbclient import NotebookClient

    env = dict(os.environ)
    for key, value in env_overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name=kernel,
        resources={"metadata": {"path": str(REPO_ROOT)}},
    )
    client.execute(env=env)
    return nb


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path: Path, kernel_name: str) -> None:
    if "Classifier.load" in path.read_text(encoding="utf-8"):
        assert (SHIPPED_MODEL_DIR / "collectguard.json").exists(), (
            f"no shipped model at {SHIPPED_MODEL_DIR}; {path.name} is tested against the model users get"
        )
    nb = execute_notebook(path, kernel_name, {"COLLECTGUARD_MODEL": None, "COLLECTGUARD_NB_ROWS": CI_ROWS})
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code_cells)
    errors = [o for c in code_cells for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    # every figure- or table-producing cell rendered something
    silent = [i for i, c in enumerate(code_cells) if not c.outputs]
    assert not silent, f"{path.name}: code cells {silent} produced no output"
