"""``scripts/kit``, the newcomer's entry point: which torch it installs, in which order, and how it starts Lab.

The script runs for real (bash), in a copy of ``scripts/`` inside a temporary folder, with an environment whose
``python`` is a stand-in: it records every command it is given and answers as the test says (is torch importable,
does the PyTorch CPU index answer). So these tests check the script's decisions without installing anything;
:func:`test_lab_command_serves_the_repository_root` then runs the Lab command the script chose with the real
JupyterLab.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

# The stand-in python: one line per call in $KIT_LOG, answers from $FAKE_* variables.
FAKE_PYTHON = r"""#!/usr/bin/env bash
printf '%s\n' "$(printf '%q ' "$@")" >> "$KIT_LOG"
case "$1" in
  -c)
    case "$2" in
      "import torch") [ -e "$FAKE_STATE/torch" ] ;;
      *torch.version*) cat "$FAKE_STATE/torch" ;;
      *ipywidgets*) echo "ipywidgets 7.8.5" ;;
      *sysconfig*) echo "$FAKE_STATE/site" ;;
      *) exit 0 ;;
    esac ;;
  -m)
    case "$2" in
      venv) mkdir -p "$3/bin"; cp "$0" "$3/bin/python"; cp "$(dirname "$0")/activate" "$3/bin/activate" ;;
      pip)
        if [[ " $* " == *" install "*torch* ]]; then
          if [[ " $* " == *download.pytorch.org* ]]; then
            [ "${FAKE_CPU_INDEX:-ok}" = ok ] || { echo "no route to host" >&2; exit 1; }
            echo "torch 2.13.0+cpu, CPU build" > "$FAKE_STATE/torch"
          else
            echo "${FAKE_DEFAULT_BUILD:-torch 2.13.0+cpu, CPU build}" > "$FAKE_STATE/torch"
          fi
        fi ;;
      *) exit 0 ;;
    esac ;;
esac
"""
FAKE_ACTIVATE = """VIRTUAL_ENV="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export VIRTUAL_ENV PATH="$VIRTUAL_ENV/bin:$PATH"
deactivate() { :; }
"""


def _run_kit(tmp_path: Path, *args: str, torch_installed: str | None = None, cpu_index: str = "ok",
             env: dict[str, str] | None = None, wheel_folder: bool = False) -> tuple[subprocess.CompletedProcess,
                                                                                      list[list[str]]]:
    """Run ``bash scripts/kit ARGS`` in a scratch copy of the repository's scripts; return (result, calls)."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO / "scripts", repo / "scripts")
    if wheel_folder:
        (repo / ".whl").mkdir()
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text(FAKE_PYTHON)
    (venv / "bin" / "python").chmod(0o755)
    (venv / "bin" / "activate").write_text(FAKE_ACTIVATE)
    state = tmp_path / "state"
    (state / "site").mkdir(parents=True)
    if torch_installed:
        (state / "torch").write_text(torch_installed + "\n")
    log = tmp_path / "calls.log"
    log.touch()
    run_env = {key: value for key, value in os.environ.items() if not key.startswith("METALEARN_KIT_")}
    run_env.update({"METALEARN_KIT_VENV": str(venv), "KIT_LOG": str(log), "FAKE_STATE": str(state),
                    "FAKE_CPU_INDEX": cpu_index})
    run_env.update(env or {})
    result = subprocess.run(["bash", str(repo / "scripts" / "kit"), *args], capture_output=True, text=True,
                            env=run_env, timeout=60)
    calls = [shlex.split(line) for line in log.read_text().splitlines()]
    return result, calls


def _torch_installs(calls: list[list[str]]) -> list[list[str]]:
    """The pip installs whose requirements (not option values such as the .whl folder) name torch."""
    found = []
    for call in calls:
        if call[:3] != ["-m", "pip", "install"]:
            continue
        options_with_value = {"--find-links", "--index-url", "--timeout", "--retries"}
        requirements = [a for i, a in enumerate(call[3:], 3) if not a.startswith("-")
                        and call[i - 1] not in options_with_value]
        if any(a.startswith("torch") or a.endswith(".whl") for a in requirements):
            found.append(call)
    return found


def test_cpu_index_first_with_a_short_timeout_then_the_same_version_from_the_default_index(tmp_path):
    result, calls = _run_kit(tmp_path, "test", "-k", "nothing", cpu_index="unreachable")
    assert result.returncode == 0, result.stderr
    first, second = _torch_installs(calls)
    assert "torch==2.13.0" in first and first[first.index("--index-url") + 1] == CPU_INDEX
    assert first[first.index("--timeout") + 1] == "5" and first[first.index("--retries") + 1] == "0"
    assert "torch==2.13.0" in second and "--index-url" not in second  # the pinned version, never a bare `torch`
    assert calls[-1] == ["-m", "pytest", "-k", "nothing"]
    assert "set-up took" in result.stdout and "torch 2.13.0+cpu, CPU build" in result.stdout


def test_cpu_index_that_answers_is_the_only_torch_install(tmp_path):
    result, calls = _run_kit(tmp_path, "test")
    assert result.returncode == 0, result.stderr
    (only,) = _torch_installs(calls)
    assert CPU_INDEX in only
    assert "torch 2.13.0+cpu, CPU build" in result.stdout.splitlines()[-1]


def test_an_installed_torch_is_kept(tmp_path):
    result, calls = _run_kit(tmp_path, "test", torch_installed="torch 2.5.1+cu121, CUDA 12.1 build")
    assert result.returncode == 0, result.stderr
    assert _torch_installs(calls) == []
    assert "torch 2.5.1+cu121, CUDA 12.1 build (kept: it was installed already)" in result.stdout


def test_a_cuda_build_where_cpu_was_asked_is_reported(tmp_path):
    result, _ = _run_kit(tmp_path, "test", cpu_index="unreachable",
                         env={"FAKE_DEFAULT_BUILD": "torch 2.13.0, CUDA 12.8 build"})
    assert result.returncode == 0
    assert "a CPU build was asked for but torch 2.13.0, CUDA 12.8 build was installed" in result.stderr


def test_a_local_wheel_and_the_offline_folder(tmp_path):
    wheel = tmp_path / "torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl"
    wheel.write_bytes(b"")
    result, calls = _run_kit(tmp_path, "test", env={"METALEARN_KIT_TORCH": str(wheel), "METALEARN_KIT_OFFLINE": "1"},
                             wheel_folder=True)
    assert result.returncode == 0, result.stderr
    (only,) = _torch_installs(calls)
    assert str(wheel) in only and CPU_INDEX not in " ".join(only)
    for call in calls:
        if call[:3] == ["-m", "pip", "install"]:  # every install sees only the .whl folder
            assert "--no-index" in call and call[call.index("--find-links") + 1].endswith("/.whl"), call


@pytest.mark.parametrize("choice, message", [("gpu", "METALEARN_KIT_TORCH must be cpu, cuda, a version"),
                                             ("/nowhere/torch.whl", "no such wheel file")])
def test_a_wrong_torch_choice_stops_with_the_reason(tmp_path, choice, message):
    result, calls = _run_kit(tmp_path, "test", env={"METALEARN_KIT_TORCH": choice})
    assert result.returncode == 2 and message in result.stderr
    assert not any(c[:2] == ["-m", "pytest"] for c in calls)


def test_ipywidgets7_run_layers_a_second_environment(tmp_path):
    result, calls = _run_kit(tmp_path, "test-ipywidgets7", "-q", torch_installed="torch 2.13.0+cpu, CPU build")
    assert result.returncode == 0, result.stderr
    overlay = tmp_path / "venv-ipywidgets7"
    pth = next((tmp_path / "state" / "site").glob("*.pth"))
    assert pth.read_text().strip() == f"import site; site.addsitedir('{tmp_path / 'state' / 'site'}')"
    assert ["-m", "venv", str(overlay)] in calls
    assert ["-m", "pip", "install", "-q", "ipywidgets>=7.7,<8"] in calls
    assert calls[-1] == ["-m", "pytest", "tests/test_widgets.py", "-q"]


def _lab_command(tmp_path: Path) -> list[str]:
    result, calls = _run_kit(tmp_path, "lab", torch_installed="torch 2.13.0+cpu, CPU build")
    assert result.returncode == 0, result.stderr
    assert ["-m", "pip", "install", "-q", "-q", "-e", ".[lab]"] in calls
    lab = calls[-1]
    assert lab[:3] == ["-m", "jupyter", "lab"], lab
    return lab


def test_lab_opens_the_repository_root_with_the_first_notebook(tmp_path):
    lab = _lab_command(tmp_path)
    assert f"--ServerApp.root_dir={tmp_path / 'repo'}" in lab
    assert "notebooks/00_welcome.ipynb" in lab


@pytest.mark.slow
def test_lab_command_serves_the_repository_root(tmp_path):
    """The script's own Lab arguments, run by the real JupyterLab on this repository: the file browser's root
    holds the README, docs and notebooks, and the first notebook is the page it opens."""
    pytest.importorskip("jupyterlab")
    args = [a.replace(str(tmp_path / "repo"), str(REPO)) for a in _lab_command(tmp_path)]
    import browser_util as bu

    port, token = bu.free_port(), "kit-test-token"
    work = tmp_path / "jupyter"
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(work / "config"), JUPYTER_DATA_DIR=str(work / "data"),
               JUPYTER_RUNTIME_DIR=str(work / "runtime"), JUPYTERLAB_WORKSPACES_DIR=str(work / "workspaces"))
    # the "browser" only keeps the page it is sent to: Jupyter's redirect file, which names the address
    opened = tmp_path / "opened.html"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\ncat "${{1#file://}}" > {opened}.part && mv {opened}.part {opened}\n')
    browser.chmod(0o755)
    cmd = [sys.executable, *args, "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.browser={browser} %s"]
    if os.geteuid() == 0 and "--allow-root" not in cmd:
        cmd.append("--allow-root")
    log = tmp_path / "lab.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)

    def api(path: str) -> dict:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"JupyterLab exited:\n{log.read_text()[-3000:]}"
            try:
                root = api("/api/contents/?content=1")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                assert time.monotonic() < deadline, f"JupyterLab did not answer:\n{log.read_text()[-3000:]}"
                time.sleep(0.5)
        names = {item["name"] for item in root["content"]}
        assert {"README.md", "docs", "notebooks", "metalearn_kit"} <= names, names
        assert api("/api/contents/notebooks/00_welcome.ipynb?content=0")["type"] == "notebook"
        # the page the server sends the browser to: the first notebook, under the root
        while not opened.exists():
            assert time.monotonic() < deadline, f"JupyterLab opened no browser:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        assert f"127.0.0.1:{port}/lab/tree/notebooks/00_welcome.ipynb" in opened.read_text()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.mark.parametrize("chromium", [False, True], ids=["chromium-missing", "chromium-found"])
def test_the_run_ends_with_a_notice_when_browser_tests_were_skipped(tmp_path, chromium):
    """tests/conftest.py's summary hook, in a pytest run of its own: one NOTE line naming the reason, or none."""
    shutil.copy(REPO / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_fake_browser.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.browser\n"
        f"def test_page():\n    if not {chromium}:\n        pytest.skip('no Chromium found (for this test)')\n\n"
        "def test_other():\n    pytest.skip('not a browser test')\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                           "-m", "browser or not browser", str(tmp_path)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    notes = [line for line in done.stdout.splitlines() if line.startswith("NOTE:")]
    if chromium:
        assert notes == [], done.stdout
    else:
        assert notes == ["NOTE: 1 browser test(s) skipped: no Chromium found (for this test) "
                         "(README, Quick start: Chromium for the browser test)"], done.stdout
