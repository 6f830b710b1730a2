"""Where the data module keeps downloads and rendered arrays, and atomic writes into it."""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["CACHE_ENV", "cache_dir", "load_npz", "save_npz_atomic"]

CACHE_ENV = "METALEARN_KIT_CACHE_DIR"


def cache_dir(sub: str = "") -> Path:
    """The kit's cache folder: ``$METALEARN_KIT_CACHE_DIR`` if set, else the platform's user cache dir."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        import platformdirs

        root = platformdirs.user_cache_dir("metalearn_kit", appauthor=False)
    path = Path(root) / sub if sub else Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    """Write ``arrays`` to ``path`` through a temporary file and a rename, so a crash or a second
    process never leaves a half-written cache entry under the final name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_npz(path: Path) -> dict[str, np.ndarray] | None:
    """Read a cache entry; ``None`` if it is missing or unreadable (then the caller rebuilds it)."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # truncated or foreign file: rebuild it
        return None
