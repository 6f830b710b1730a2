"""Safe checkpoints: tensors in safetensors, metadata in JSON, written atomically. The kit never unpickles.

``save(path, model_or_state, meta)`` writes ``path`` (``.safetensors``) and ``path`` with suffix
``.json`` beside it; ``load(path)`` returns ``(state_dict, meta)`` or, given ``model=``, loads the
weights into it. A pickle-based ``.pt``/``.pth``/``.ckpt`` file is refused unless ``allow_pickle=True``,
and even then it goes through ``torch.load(weights_only=True)``, which cannot run code hidden in it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["PICKLE_SUFFIXES", "atomic_write_bytes", "load", "meta_path", "save"]

PICKLE_SUFFIXES = {".pt", ".pth", ".ckpt", ".pkl", ".bin"}
_META_KEY = "metalearn_kit_meta"


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, fsync, then rename over ``path``: a process
    killed half-way leaves the previous file intact (rename is atomic on POSIX and Windows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable where the platform allows it
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, flush + fsync, rename)."""
    _atomic_write(Path(path), lambda handle: handle.write(data))


def meta_path(path: str | os.PathLike) -> Path:
    return Path(path).with_suffix(".json")


def _state_of(model_or_state: nn.Module | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(model_or_state, nn.Module):
        state = model_or_state.state_dict()
    elif isinstance(model_or_state, dict):
        state = model_or_state
    else:
        raise TypeError(f"model_or_state must be an nn.Module or a dict of tensors, "
                        f"got {type(model_or_state).__name__}")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise TypeError(f"model_or_state values must all be tensors; not tensors: {bad[:5]}")
    # safetensors wants contiguous tensors that do not share memory
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save(path: str | os.PathLike, model_or_state: nn.Module | dict[str, torch.Tensor],
         meta: dict[str, Any] | None = None) -> Path:
    """Save weights to ``path`` (must end in ``.safetensors``) and ``meta`` (JSON-serialisable) beside it."""
    from safetensors.torch import save as st_save

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"path must end in .safetensors, got {str(path)!r}")
    meta = dict(meta or {})
    try:
        meta_text = json.dumps(meta, indent=2, sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as err:
        raise TypeError(f"meta must be JSON-serialisable: {err}") from err
    # The metadata travels inside the safetensors header too, so weights and metadata are replaced in one
    # atomic rename; the JSON file beside it is a readable copy for people and tools.
    blob = st_save(_state_of(model_or_state), metadata={_META_KEY: meta_text})
    atomic_write_bytes(path, blob)
    atomic_write_bytes(meta_path(path), meta_text.encode())
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, (Path, torch.device, torch.dtype)):
        return str(value)
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def load(path: str | os.PathLike, model: nn.Module | None = None, *, allow_pickle: bool = False,
         map_location: str | torch.device = "cpu", strict: bool = True):
    """Load a checkpoint. Returns ``(state_dict, meta)``; with ``model`` given, loads the weights into it
    and returns ``(model, meta)``.

    Pickle-based files are refused unless ``allow_pickle=True``; then they are read with
    ``torch.load(weights_only=True)`` (no arbitrary code) and ``meta`` is ``{}``.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    if path.suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise ValueError(f"refusing to load {str(path)!r}: {path.suffix} files are Python pickles, which can "
                             f"run arbitrary code when loaded. Convert it to .safetensors, or pass "
                             f"allow_pickle=True to read it with torch.load(weights_only=True)")
        try:
            state = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as err:  # torch raises UnpicklingError for anything beyond plain tensors
            raise ValueError(f"{str(path)!r} holds more than tensors and was refused by "
                             f"torch.load(weights_only=True): {err}") from err
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        meta: dict[str, Any] = {}
    elif path.suffix == ".safetensors":
        try:
            state = load_file(str(path), device=str(map_location))
            with safe_open(str(path), framework="pt") as handle:
                header = handle.metadata() or {}
        except (SafetensorError, OSError) as err:
            raise ValueError(f"{str(path)!r} is not a readable safetensors file ({err}); "
                             f"it may be truncated or corrupted") from err
        if _META_KEY in header:  # authoritative: written in the same atomic step as the weights
            meta = json.loads(header[_META_KEY])
        else:  # a safetensors file from elsewhere: use the JSON beside it if there is one
            mp = meta_path(path)
            meta = json.loads(mp.read_text()) if mp.exists() else {}
    else:
        raise ValueError(f"path must end in .safetensors (or a pickle suffix with allow_pickle=True), "
                         f"got {str(path)!r}")
    if model is None:
        return state, meta
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as err:
        raise ValueError(f"checkpoint {str(path)!r} does not fit model {type(model).__name__}: {err}") from err
    return model, meta
