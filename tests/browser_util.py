"""Helpers for the real-browser test: a private JupyterLab server and headless Chromium driven by Playwright.

The server runs on 127.0.0.1 with a random free port and a random token, in its own process group, on a
temporary copy of the notebooks; every process it starts (kernels start their own sessions) carries a marker
environment variable, so :func:`jupyter_lab` can verify on exit -- by reading ``/proc`` -- that nothing is
left running, and end whatever is.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MARKER = "METALEARN_KIT_BROWSER_TEST"
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def find_chromium() -> str | None:
    """A Chromium/Chrome executable: ``$METALEARN_KIT_CHROMIUM``, ``/usr/bin/chromium``, or one on ``PATH``."""
    explicit = os.environ.get("METALEARN_KIT_CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    url: str          # http://127.0.0.1:PORT
    token: str
    root_dir: Path
    process: subprocess.Popen
    log_path: Path

    def page_url(self, notebook: str) -> str:
        # ?reset: start from an empty workspace, so tabs of notebooks opened before are not restored (each
        # restored notebook would start a kernel of its own)
        return f"{self.url}/lab/tree/{notebook}?reset&token={self.token}"

    def api(self, path: str, method: str = "GET") -> object:
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""


def _marked_pids(marker_value: str) -> list[int]:
    """Processes (of this user) whose environment holds ``MARKER=marker_value``."""
    needle = f"{MARKER}={marker_value}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:  # gone, or another user's process
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, only not reaped yet
    except OSError:
        return False


def _wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while True:
        alive = [p for p in pids if _alive(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


@contextlib.contextmanager
def jupyter_lab(root_dir: Path, work_dir: Path, startup_timeout: float = 90.0,
                extra_env: dict[str, str] | None = None) -> Iterator[Lab]:
    """Run JupyterLab on ``root_dir`` for the duration of the ``with`` block; ``work_dir`` holds its settings,
    runtime files and log. On exit: shut the server down, end its process group and any marked process left."""
    port, token, marker_value = free_port(), secrets.token_hex(16), secrets.token_hex(8)
    env = dict(os.environ)
    env.update({MARKER: marker_value, "METALEARN_KIT_PROFILE": "fast", "TQDM_DISABLE": "1", "MPLBACKEND": "Agg",
                "PYTHONUNBUFFERED": "1",
                # a private config: no user server config or kernelspecs, no user settings, no saved workspace
                "JUPYTER_CONFIG_DIR": str(work_dir / "config"), "JUPYTER_DATA_DIR": str(work_dir / "data"),
                "JUPYTER_RUNTIME_DIR": str(work_dir / "runtime"),
                "JUPYTERLAB_SETTINGS_DIR": str(work_dir / "settings"),
                "JUPYTERLAB_WORKSPACES_DIR": str(work_dir / "workspaces")})
    env.update(extra_env or {})
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root_dir}", "--LabApp.expose_app_in_browser=True",
           "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    # no "get notified about Jupyter news?" toast over the screenshots, no update checks (no network anyway)
    notification = work_dir / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True, exist_ok=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    # every cell in the DOM and rendered (no windowing), so selectors see outputs far down the notebook
    tracker = work_dir / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True, exist_ok=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    log_path = work_dir / "jupyter-lab.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(cmd, cwd=root_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    lab = Lab(f"http://127.0.0.1:{port}", token, root_dir, process, log_path)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {process.returncode} while starting:\n{lab.log()}")
            try:
                lab.api("/api/status")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not answer within {startup_timeout:.0f} s:\n"
                                       f"{lab.log()}") from None
                time.sleep(0.3)
        yield lab
    finally:
        _stop(lab, marker_value)


def _stop(lab: Lab, marker_value: str) -> None:
    process = lab.process
    if process.poll() is None:
        with contextlib.suppress(Exception):  # polite first: the server shuts its kernels down itself
            lab.api("/api/shutdown", method="POST")
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)  # helpers the server left in its group
    # kernels run in sessions of their own: find them by the marker
    left = _wait_gone(_marked_pids(marker_value), 5.0)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    still = _wait_gone(left, 5.0)
    if still:
        raise RuntimeError(f"processes of the JupyterLab test survived SIGKILL: {still}")


def leftover_processes(marker_value: str) -> list[int]:
    return [p for p in _marked_pids(marker_value) if _alive(p)]


# ---------------------------------------------------------------------------------------------- in the page
# JavaScript run in the page; ``window.jupyterapp`` exists because of --LabApp.expose_app_in_browser.
JS_NOTEBOOK_STATE = """
() => {
  const app = window.jupyterapp;
  if (!app || !app.shell) return {ready: false, why: 'no app'};
  const panel = app.shell.currentWidget;
  if (!panel || !panel.content || !panel.sessionContext) return {ready: false, why: 'no notebook panel'};
  const ctx = panel.sessionContext;
  const kernel = ctx.session && ctx.session.kernel;
  const cells = [];
  const model = panel.content.model;
  for (let i = 0; i < model.cells.length; i++) {
    const cell = model.cells.get(i);
    if (cell.type !== 'code') continue;
    const outputs = cell.outputs ? cell.outputs.toJSON() : [];
    cells.push({index: i, count: cell.executionCount,
                errors: outputs.filter(o => o.output_type === 'error')
                               .map(o => o.ename + ': ' + o.evalue + '\\n' + (o.traceback || []).join('\\n')),
                stderr: outputs.filter(o => o.output_type === 'stream' && o.name === 'stderr')
                               .map(o => Array.isArray(o.text) ? o.text.join('') : o.text)});
  }
  return {ready: ctx.isReady, status: kernel ? kernel.status : 'none',
          connection: kernel ? kernel.connectionStatus : 'none',
          pending: document.querySelectorAll('.jp-InputPrompt').length
                   ? Array.from(document.querySelectorAll('.jp-Notebook .jp-InputPrompt'))
                          .filter(p => p.textContent.includes('*')).length : 0,
          cells: cells};
}
"""

JS_CLEAR_OUTPUTS = "() => window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')"
JS_RUN_ALL = "() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); return true; }"
