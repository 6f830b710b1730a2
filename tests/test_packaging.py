"""The install story: dependency lists agree, the package imports fast and without Jupyter."""

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
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


def test_import_is_lazy_and_jupyter_free():
    """Importing the package loads neither Jupyter nor matplotlib nor its own sub-packages (they load on first
    use); what the import costs beyond torch is measured by structure here, not by a clock on a shared machine."""
    code = ("import sys; import metalearn_kit; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'ipywidgets', 'IPython', 'jupyter_client', 'ipykernel', 'matplotlib', 'nbformat'})); "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('metalearn_kit.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    heavy, own = out[0], out[1].split()
    assert heavy == "[]", f"importing metalearn_kit pulled in {heavy}"
    eager = [m for m in own if m.split(".")[1] in {"data", "tasks", "models", "meta", "evaluation", "store", "viz",
                                                   "widgets", "pretrained", "experiments"}]
    assert not eager, f"importing metalearn_kit loaded {eager}; sub-packages load on first use"


def test_cli_info_reports_this_install():
    """``metalearn-kit info`` reports the profile and device the environment chooses, and the versions installed."""
    import torch

    import metalearn_kit

    env = {**os.environ, "METALEARN_KIT_PROFILE": "full", "METALEARN_KIT_DEVICE": "cpu"}
    command = [sys.executable, "-m", "metalearn_kit.cli", "info"]
    info = json.loads(subprocess.run([*command, "--json"], capture_output=True, text=True, check=True,
                                     env=env).stdout)
    assert (info["profile"], info["device"]) == ("full", "cpu")
    assert info["metalearn_kit"] == metalearn_kit.__version__ and info["torch"] == torch.__version__
    assert info["cpu_count"] == os.cpu_count()
    text = subprocess.run(command, capture_output=True, text=True, check=True,
                          env={**env, "METALEARN_KIT_PROFILE": "fast"}).stdout
    lines = dict(line.strip().split(": ", 1) for line in text.splitlines())
    assert set(lines) == set(info) and (lines["profile"], lines["device"]) == ("fast", "cpu")


def test_benchmark_table_reads_the_shipped_tables():
    import metalearn_kit as mk

    names = mk.benchmark_names()
    assert names == sorted(p.stem for p in (ROOT / "docs" / "benchmarks").glob("*.json")) and names
    for name in names:
        assert mk.benchmark_table(name) == json.loads((ROOT / "docs" / "benchmarks" / f"{name}.json").read_text())
    assert mk.benchmark_names("generation_") == [n for n in names if n.startswith("generation_")]
    with pytest.raises(ValueError, match="no shipped benchmark table 'restoration_huge'.*metalearn-kit bench"):
        mk.benchmark_table("restoration_huge")
    with pytest.raises(ValueError, match="no shipped benchmark table"):
        mk.benchmark_table("../pyproject")
    with pytest.raises(TypeError, match="name must be a table name"):
        mk.benchmark_table(3)


@pytest.mark.slow
def test_benchmark_tables_ship_in_the_wheel(tmp_path):
    """A wheel built from the sources (as ``pip install`` from a clone or from git builds one) holds the benchmark
    JSON, and ``benchmark_table`` finds it after a plain, non-editable install, run away from the repository."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "docs" / "benchmarks", source / "docs" / "benchmarks")
    shutil.copytree(ROOT / "metalearn_kit", source / "metalearn_kit", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    assert (source / "metalearn_kit" / "benchmarks_data").is_symlink()
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PIP_REQUIRE_VIRTUALENV"}}
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path / "dist"),
                            str(source)], env=env, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    # -v shows setuptools' own output: the pyproject.toml it reads raises no deprecation (e.g. a license table)
    assert "SetuptoolsDeprecationWarning" not in built.stdout + built.stderr, built.stdout[-3000:]
    (wheel,) = (tmp_path / "dist").glob("metalearn_kit-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {Path(n).name for n in archive.namelist() if n.startswith("metalearn_kit/benchmarks_data/")}
    assert shipped == {p.name for p in (ROOT / "docs" / "benchmarks").glob("*.json")}

    # a second environment that sees this one's packages (torch, ...) and holds the installed wheel of its own
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(target)
    python = str(target / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    here = sysconfig.get_paths()["purelib"]
    Path(site, "_parent_env.pth").write_text(f"import site; site.addsitedir({here!r})\n")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, env=env,
                   capture_output=True, timeout=600)
    code = ("import metalearn_kit as mk; t = mk.benchmark_table('restoration_fast'); "
            "print(mk.__file__); print(mk.benchmark_tables.BENCHMARK_DIR); print(len(t['rows']))")
    out = subprocess.run([python, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    module_file, folder, rows = out.stdout.strip().splitlines()
    assert Path(module_file).is_relative_to(target), f"imported {module_file}, not the installed wheel"
    assert Path(folder).is_relative_to(target) and not Path(folder).is_symlink(), folder
    assert int(rows) == len(json.loads((ROOT / "docs" / "benchmarks" / "restoration_fast.json").read_text())["rows"])


def test_write_table_writes_readable_json_and_refuses_a_non_table(tmp_path):
    from metalearn_kit.benchmark_tables import write_table

    path = tmp_path / "bench.json"
    write_table(path, {"rows": [{"value": 1.5}], "machine": {"cpu_count": 2}})
    assert json.loads(path.read_text()) == {"rows": [{"value": 1.5}], "machine": {"cpu_count": 2}}
    for bad in ([1, 2], {"machine": {}}):
        with pytest.raises(TypeError, match="payload must be a dict with 'rows'"):
            write_table(path, bad)
    assert json.loads(path.read_text())["rows"] == [{"value": 1.5}]  # the refused write left the table whole
