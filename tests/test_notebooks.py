"""Every notebook runs on a fresh kernel without a single error output (nbval lets some pass, e.g. a
mistyped %magic), and the committed notebooks are in shape for a reader."""

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from metalearn_kit.commands.notebooks import error_outputs, execute_notebook, list_notebooks

NOTEBOOK_DIR = Path(os.environ.get("METALEARN_KIT_NOTEBOOK_DIR", Path(__file__).parent.parent / "notebooks"))
NOTEBOOKS = list_notebooks(NOTEBOOK_DIR)


def test_there_are_numbered_notebooks():
    assert NOTEBOOKS and NOTEBOOKS[0].name.startswith("00_")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_without_error_outputs(path):
    run = execute_notebook(path, profile="fast")
    assert run.ok, f"{path.name} produced error outputs: {run.errors}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebook_is_in_shape(path):
    assert path.stat().st_size < 2 * 1024 * 1024, f"{path.name} is over 2 MB"
    nb = nbformat.read(path, as_version=4)
    assert error_outputs(nb) == [], f"{path.name} was committed with error outputs"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "google.colab" in code[0].source, "the first code cell must be the Colab setup cell"
    assert any(c.get("outputs") for c in code), f"{path.name} was committed without outputs"
    assert "Learning goals" in nb.cells[0].source
    assert "assert" in code[-1].source, "the last code cell must check the notebook's claims"


def test_a_notebook_with_an_error_output_fails_the_suite(tmp_path):
    bad = nbformat.v4.new_notebook()
    bad.cells = [nbformat.v4.new_markdown_cell("# 00 bad\nLearning goals"),
                 nbformat.v4.new_code_cell("import sys  # google.colab\nprint('fine')"),
                 nbformat.v4.new_code_cell("%this_magic_does_not_exist"),
                 nbformat.v4.new_code_cell("assert True")]
    bad.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(bad, tmp_path / "00_bad.ipynb")
    run = execute_notebook(tmp_path / "00_bad.ipynb")
    assert not run.ok and "UsageError" in run.errors[0]
    # and the suite itself fails on it
    env = {**os.environ, "METALEARN_KIT_NOTEBOOK_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:nbval", "-o", "addopts=",
                             "-k", "runs_without_error_outputs"], capture_output=True, text=True, env=env,
                            cwd=Path(__file__).parent.parent)
    assert result.returncode == 1, result.stdout[-2000:]
    assert "UsageError" in result.stdout


def test_saved_notebooks_are_valid_json():
    for path in NOTEBOOKS:
        json.loads(path.read_text())
