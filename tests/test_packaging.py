"""The install story: dependency lists agree, the package imports fast and without Jupyter."""

import re
import subprocess
import sys
from pathlib import Path

import yaml

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
# conda-forge names that differ from PyPI names
CONDA_TO_PYPI = {"pytorch": "torch"}
NOT_RUNTIME = {"python", "pip", "jupyterlab"}


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ \[@]", spec.strip(), maxsplit=1)[0].lower()


def _yaml_names(path: Path) -> set[str]:
    env = yaml.safe_load(path.read_text())
    names = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            names |= {_name(p) for p in dep.get("pip", []) if not p.startswith("-")}
        else:
            names.add(CONDA_TO_PYPI.get(_name(dep), _name(dep)))
    return names - NOT_RUNTIME


def test_environment_files_match_pyproject():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = {_name(d) for d in pyproject["project"]["dependencies"]}
    build = {_name(d) for d in pyproject["build-system"]["requires"]}  # binder's postBuild builds without isolation
    for path in [ROOT / "environment.yml", ROOT / "binder" / "environment.yml"]:
        names = _yaml_names(path) - build
        assert names == runtime, f"{path.relative_to(ROOT)} differs from pyproject: " \
                                 f"missing {sorted(runtime - names)}, extra {sorted(names - runtime)}"


def test_binder_files():
    post = (ROOT / "binder" / "postBuild").read_text()
    assert "set -euo pipefail" in post
    assert "cpu" in (ROOT / "binder" / "environment.yml").read_text()


def test_import_is_fast_and_jupyter_free():
    code = ("import sys, time; t = time.perf_counter(); import metalearn_kit; "
            "print(time.perf_counter() - t); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'ipywidgets', 'IPython', 'jupyter_client', 'ipykernel', 'matplotlib', 'nbformat'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    seconds, heavy = float(out[0]), out[1]
    assert heavy == "[]", f"importing metalearn_kit pulled in {heavy}"
    assert seconds < 2.0, f"import took {seconds:.2f} s"


def test_cli_info_runs():
    out = subprocess.run([sys.executable, "-m", "metalearn_kit.cli", "info", "--json"], capture_output=True,
                         text=True, check=True).stdout
    assert '"profile"' in out and '"device"' in out
