"""Test-wide settings: the CPU ``fast`` profile, no progress bars, and deterministic torch."""

import os
from pathlib import Path

# Set before any kernel starts, so nbval's and nbclient's kernels inherit them.
os.environ.setdefault("METALEARN_KIT_PROFILE", "fast")
os.environ["TQDM_DISABLE"] = "1"
os.environ.setdefault("METALEARN_KIT_DEVICE", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
# The standard photograph sets from the shared data folder beside the repository (CI lays it there), so nothing
# downloads; without it the loaders fall back to the kit's embedded photographs and say so.
_SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"
for _name, _variable in (("kodak24", "METALEARN_KIT_KODAK24"), ("cbsd68", "METALEARN_KIT_CBSD68")):
    if (_SHARED / _name).is_dir():
        os.environ.setdefault(_variable, str(_SHARED / _name))

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one torch thread avoids OpenMP start-up and oversubscription on a shared CPU; the count is put
    back after the module. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def artifacts_dir():
    """Where tests leave pictures and screenshots for a person to look at (``artifacts/`` at the top)."""
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "artifacts")
    os.makedirs(path, exist_ok=True)
    return path


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """One line at the end when the browser tests were skipped, with the reason: a bare ``s`` is easy to miss."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "browser" in getattr(r, "keywords", {})]
    if not skipped:
        return
    longrepr = skipped[0].longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    reason = reason.removeprefix("Skipped: ")
    terminalreporter.write_line(f"NOTE: {len(skipped)} browser test(s) skipped: {reason} "
                                "(README, Quick start: Chromium for the browser test)", yellow=True, bold=True)
