"""Plots for tasks, training histories and results. Importing this package loads no plotting library:
each helper imports matplotlib when it is first called."""

from __future__ import annotations

import importlib
from typing import Any

# public name -> submodule that defines it; submodules load on first use.
_EXPORTS = {
    "plot_task": "tasks",
    "task_title": "tasks",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'metalearn_kit.viz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = sorted(_EXPORTS)
