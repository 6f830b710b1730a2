"""metalearn-kit: meta-learning for image generation and restoration, for learners and researchers.

Importing the package is cheap: sub-packages (``data``, ``tasks``, ``models``, ``meta``,
``evaluation``, ``store``, ``viz``, ``widgets``) load on first attribute access, and nothing here
imports Jupyter or widget modules.
"""

from __future__ import annotations

import importlib
from typing import Any

from .benchmark_tables import benchmark_names, benchmark_table
from .config import describe_machine, get_device, get_profile, profile_sizes, seed_everything

__version__ = "0.1.0"

_SUBMODULES = {
    "checkpoints", "cli", "config", "data", "evaluation", "meta", "models", "store", "tasks", "viz", "widgets",
}

__all__ = [
    "__version__", "benchmark_names", "benchmark_table",
    "describe_machine", "get_device", "get_profile", "profile_sizes", "seed_everything",
    *sorted(_SUBMODULES),
]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'metalearn_kit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBMODULES)
