"""Binder's install, rebuilt without conda: a plain environment with only what ``binder/environment.yml`` lists
for building, then ``binder/postBuild`` itself.

Binder makes a conda environment from ``binder/environment.yml`` and runs ``postBuild`` in it, which installs the
kit with ``pip install --no-deps --no-build-isolation -e .``: no build isolation, so the build tools of
``pyproject.toml``'s ``[build-system]`` must come from the environment file. Here the environment is a virtual
environment with pip alone (``setuptools`` that some Pythons' ``venv`` add is removed, as conda's ``python`` has
none either); the build tools the environment file lists are installed from the package registry at the versions
it asks for; then ``postBuild`` runs unchanged, with ``HOME`` in a temporary folder (it writes an IPython startup
file there) on a copy of the files the install reads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
NAME_END = ("<", ">", "=", "!", "~", " ", "[")


def _name(spec: str) -> str:
    cut = min((spec.index(c) for c in NAME_END if c in spec), default=len(spec))
    return spec[:cut].strip().lower()


def _conda_specs() -> dict[str, str]:
    """name -> spec of the environment file's conda (non-pip) dependencies."""
    env = yaml.safe_load((ROOT / "binder" / "environment.yml").read_text())
    return {_name(d): d for d in env["dependencies"] if isinstance(d, str)}


def _build_requires() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]


def test_environment_file_lists_every_build_requirement():
    specs = _conda_specs()
    missing = [req for req in _build_requires() if _name(req) not in specs]
    assert not missing, f"binder/environment.yml lacks {missing}, which postBuild's --no-build-isolation install needs"


def test_postbuild_installs_without_build_isolation():
    post = (ROOT / "binder" / "postBuild").read_text()
    assert "--no-build-isolation" in post and "--no-deps" in post  # what makes the build tools the file's business


@pytest.mark.slow
def test_postbuild_runs_in_a_plain_environment_with_the_files_build_tools(tmp_path):
    env_dir = tmp_path / "env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = str(env_dir / "bin" / "python")
    unset = {"PYTHONPATH", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV"}
    clean_env = {k: v for k, v in os.environ.items() if k not in unset}
    clean_env.update({"PATH": f"{env_dir / 'bin'}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path / "home")})

    def run(*cmd: str, cwd: Path = tmp_path) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, cwd=cwd, env=clean_env, capture_output=True, text=True, timeout=600)

    run(python, "-m", "pip", "uninstall", "-q", "-y", "setuptools", "wheel")
    assert run(python, "-c", "import setuptools").returncode != 0, "the plain environment still has setuptools"

    specs = _conda_specs()
    tools = [specs[_name(req)] for req in _build_requires()]
    done = run(python, "-m", "pip", "install", "-q", *tools)
    assert done.returncode == 0, f"installing the environment file's {tools} failed:\n{done.stderr[-3000:]}"

    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "binder", project / "binder")
    shutil.copytree(ROOT / "metalearn_kit", project / "metalearn_kit",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    done = run("bash", str(project / "binder" / "postBuild"), cwd=project)
    assert done.returncode == 0, f"postBuild failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"

    # installed, editable, from the copy (finding the package does not import it, so no torch is needed)
    origin = run(python, "-c", "import importlib.util as u; print(u.find_spec('metalearn_kit').origin)").stdout.strip()
    assert Path(origin) == project / "metalearn_kit" / "__init__.py", origin
    shown = run(python, "-m", "pip", "show", "metalearn-kit")
    assert shown.returncode == 0 and "Version: 0.1.0" in shown.stdout
    startup = tmp_path / "home" / ".ipython" / "profile_default" / "startup" / "00-metalearn-kit.py"
    assert "METALEARN_KIT_PROFILE" in startup.read_text()
    assert sys.version_info >= (3, 10)
