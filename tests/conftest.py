"""Test-wide settings: the CPU ``fast`` profile, no progress bars, and deterministic torch."""

import os

# Set before any kernel starts, so nbval's and nbclient's kernels inherit them.
os.environ.setdefault("METALEARN_KIT_PROFILE", "fast")
os.environ["TQDM_DISABLE"] = "1"
os.environ.setdefault("METALEARN_KIT_DEVICE", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)
    yield


@pytest.fixture
def artifacts_dir():
    """Where tests leave pictures and screenshots for a person to look at (``artifacts/`` at the top)."""
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "artifacts")
    os.makedirs(path, exist_ok=True)
    return path
