"""What the meta-database stores and how it finds it: the default path, its errors, JSON conversion of
configs and metrics, fingerprints of tensors and files, and the checks on names, ids and values."""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["ArtefactIntegrityError", "DB_ENV", "DEFAULT_FILENAME", "MetaDatabaseError", "SQLITE_MAGIC",
           "default_path", "file_sha256", "tensor_fingerprint", "to_jsonable"]

DB_ENV = "METALEARN_KIT_DB"
DEFAULT_FILENAME = "meta.sqlite"
SQLITE_MAGIC = b"SQLite format 3\x00"


class MetaDatabaseError(ValueError):
    """A file that is not (or no longer) a meta-database this kit can use."""


class ArtefactIntegrityError(MetaDatabaseError):
    """A stored model file whose content changed since it was recorded."""


def default_path() -> Path:
    """``$METALEARN_KIT_DB`` if set, else ``meta.sqlite`` in the user's data folder
    (``platformdirs.user_data_dir("metalearn-kit")``)."""
    env = os.environ.get(DB_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("metalearn-kit")) / DEFAULT_FILENAME


# ------------------------------------------------------------------ JSON and fingerprints


def to_jsonable(value: Any, max_tensor_numel: int = 4096) -> Any:
    """A JSON-safe copy of ``value``: tensors and arrays become lists (or a shape summary when larger than
    ``max_tensor_numel``), tuples/sets become lists, paths/devices/dtypes become strings."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, max_tensor_numel) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, max_tensor_numel) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((to_jsonable(v, max_tensor_numel) for v in value), key=repr)
    if hasattr(value, "detach") and hasattr(value, "shape"):  # torch.Tensor
        if value.numel() <= max_tensor_numel:
            return to_jsonable(value.detach().cpu().tolist(), max_tensor_numel)
        return {"tensor_shape": list(value.shape), "dtype": str(value.dtype)}
    if hasattr(value, "tolist") and hasattr(value, "shape"):  # numpy array or scalar
        if getattr(value, "size", 0) <= max_tensor_numel:
            return to_jsonable(value.tolist(), max_tensor_numel)
        return {"array_shape": list(value.shape), "dtype": str(value.dtype)}
    if hasattr(value, "item"):
        return to_jsonable(value.item(), max_tensor_numel)
    return str(value)


def _dumps(value: Any) -> str:
    return json.dumps(to_jsonable(value), sort_keys=True, separators=(",", ":"))


def tensor_fingerprint(tensors: Iterable[Any]) -> str:
    """sha256 over the dtype, shape and bytes of each tensor, in order (CPU copy; any dtype)."""
    import torch

    digest = hashlib.sha256()
    for tensor in tensors:
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"tensors must be torch.Tensor objects, got {type(tensor).__name__}")
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{flat.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_name(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TypeError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _check_id(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TypeError(f"{name} must be a positive int id (as returned by the add_* methods), got {value!r}")
    return value


def _check_value(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got bool {value!r}")
    if hasattr(value, "item"):
        value = value.item()
    if not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name} must not be NaN; record a finite value (or skip the step)")
    return value


