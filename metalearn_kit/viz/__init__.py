"""Plots for tasks, training histories and results. Importing this package loads no plotting library:
each helper imports matplotlib when it is first called."""

from __future__ import annotations

from .._lazy import lazy_exports

# public name -> submodule that defines it; submodules load on first use.
_EXPORTS = {
    "plot_task": ".tasks",
    "plot_benchmark_curves": ".benchmark",
    "task_title": ".tasks",
    "plot_meta_learning_loops": ".diagrams",
    "LOOP_DIAGRAM_LABELS": ".diagrams",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
