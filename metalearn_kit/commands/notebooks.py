"""Execute the kit's notebooks: save their outputs (``metalearn-kit notebooks execute``) and check them.

One function, :func:`execute_notebook`, runs a notebook top to bottom on a fresh kernel, collects every
error output (including ones nbval lets pass, such as a mistyped ``%magic``), and measures wall time and
the kernel's peak memory. The committed notebooks' outputs are made by ``metalearn-kit notebooks execute``
in the CPU ``fast`` profile, so a reader on GitHub sees real figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config import PROFILE_HELP, PROFILES, get_profile

__all__ = ["configure_parser", "main"]

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent.parent / "notebooks"

# Appended to a copy of the notebook to read the kernel's peak resident memory; removed before saving.
_MEASURE_SOURCE = (
    "import json as _j, resource as _r, sys as _s\n"
    "_kb = _r.getrusage(_r.RUSAGE_SELF).ru_maxrss\n"
    "print('__METALEARN_KIT_PEAK__' + _j.dumps(_kb / 1024 if _s.platform != 'darwin' else _kb / 2**20))"
)


@dataclass
class NotebookRun:
    """What one execution of a notebook showed."""

    name: str
    seconds: float
    peak_memory_mb: float | None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def list_notebooks(folder: str | os.PathLike = NOTEBOOK_DIR) -> list[Path]:
    """The numbered notebooks (``NN_name.ipynb``) in reading order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"notebook folder {str(folder)!r} does not exist")
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def error_outputs(notebook) -> list[str]:
    """Every error in an executed notebook, as ``"cell N: Ename: value"``: error outputs, and IPython's
    ``UsageError`` (a mistyped ``%magic``), which the kernel writes to stderr instead."""
    found = []
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                found.append(f"cell {index}: {output.get('ename')}: {output.get('evalue')}")
            elif output.get("output_type") == "stream" and output.get("name") == "stderr":
                for line in output.get("text", "").splitlines():
                    if line.startswith("UsageError:"):
                        found.append(f"cell {index}: {line}")
    return found


@contextlib.contextmanager
def _kernel_environment(profile: str | None) -> Iterator[None]:
    """The environment a notebook's kernel inherits (the kit's profile, no progress bars, the inline
    matplotlib backend), restored afterwards."""
    saved_env = {k: os.environ.get(k) for k in ("METALEARN_KIT_PROFILE", "TQDM_DISABLE", "MPLBACKEND")}
    if profile is not None:
        os.environ["METALEARN_KIT_PROFILE"] = profile
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.pop("MPLBACKEND", None)  # let the kernel use the inline backend, so figures are saved
    try:
        yield
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _kernel_config() -> Iterator[Any]:
    """The kernel manager's traitlets ``Config``: Unix sockets where there are some (over TCP every kernel
    warns that its traffic is not encrypted), in a folder of this run's own (the default socket names are
    relative to the notebook's folder and shared by all), removed afterwards. Set through config, so the client
    still creates (and shuts down) the kernel itself."""
    from traitlets.config import Config

    sockets = tempfile.mkdtemp(prefix="metalearn-kit-kernel-") if os.name == "posix" else None
    try:
        yield Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(sockets, "kernel")}}) if sockets \
            else Config()
    finally:
        if sockets:
            shutil.rmtree(sockets, ignore_errors=True)


def _peak_mb(measure_cell: Any) -> float | None:
    """The kernel's peak memory (MB) printed by the measuring cell, ``None`` if it printed none."""
    peak = None
    for output in measure_cell.get("outputs", []):
        text = output.get("text", "")
        if "__METALEARN_KIT_PEAK__" in text:
            peak = float(text.split("__METALEARN_KIT_PEAK__")[1].strip())
    return peak


def execute_notebook(path: str | os.PathLike, *, timeout: int = 900, save: bool = False,
                     profile: str | None = "fast", kernel_name: str = "python3") -> NotebookRun:
    """Run ``path`` on a fresh kernel (in ``profile``, default ``fast``) and report errors, time and memory.

    With ``save=True`` the executed notebook, outputs included, replaces the file.
    """
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    if not path.exists() or path.suffix != ".ipynb":
        raise FileNotFoundError(f"no notebook at {str(path)!r}")
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(_MEASURE_SOURCE))
    failed_replies: list[str] = []

    def on_cell_executed(cell, cell_index, execute_reply, **_):
        # the kernel's own verdict on the cell, whatever it printed
        if execute_reply.get("content", {}).get("status") == "error":
            failed_replies.append(f"cell {cell_index}: the kernel reported status 'error'")

    with _kernel_environment(profile), _kernel_config() as config:
        client = NotebookClient(notebook, timeout=timeout, kernel_name=kernel_name, allow_errors=True, config=config,
                                resources={"metadata": {"path": str(path.parent)}}, on_cell_executed=on_cell_executed)
        start = time.perf_counter()
        client.execute()
    seconds = time.perf_counter() - start
    peak = _peak_mb(notebook.cells.pop())
    errors = error_outputs(notebook)
    errors += [e for e in failed_replies if e.split(":")[0] not in {x.split(":")[0] for x in errors}]
    run = NotebookRun(path.name, seconds, peak, errors)
    if save:
        if run.errors:
            raise RuntimeError(f"{path.name} has error outputs, not saved: {run.errors}")
        nbformat.write(notebook, path)
    return run


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebooks", nargs="*", help="notebook files (default: all numbered notebooks)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    parser.add_argument("--profile", default=None, choices=PROFILES, help=PROFILE_HELP)


def main(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.notebooks] or list_notebooks()
    failed = 0
    for path in paths:
        run = execute_notebook(path, timeout=args.timeout, save=True, profile=get_profile(args.profile))
        print(f"{run.name:<40} {run.seconds:7.1f} s  peak {run.peak_memory_mb or 0:7.0f} MB  saved")
        failed += not run.ok
    return 1 if failed else 0


def runs_table(runs: list[NotebookRun]) -> str:
    lines = [f"{'notebook':<40} {'seconds':>8} {'peak MB':>8}  errors"]
    for run in runs:
        lines.append(f"{run.name:<40} {run.seconds:8.1f} {run.peak_memory_mb or float('nan'):8.0f}  "
                     f"{len(run.errors)}")
    return "\n".join(lines)


def runs_json(runs: list[NotebookRun]) -> list[dict]:
    return [asdict(run) for run in runs]


def dump_json(path: str | os.PathLike, payload: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=2))
