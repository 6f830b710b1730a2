"""A picture of meta-learning drawn by code: the inner loop (adapt on a task's support set) inside the outer
loop (improve what is shared from the query losses), then meta-testing on a new task."""

from __future__ import annotations

from typing import Any

__all__ = ["plot_meta_learning_loops", "LOOP_DIAGRAM_LABELS"]

# the words the diagram writes; tests and notebooks check them against the glossary
LOOP_DIAGRAM_LABELS = ("meta-training", "meta-testing", "support set", "query set", "inner loop", "outer loop")


def _box(ax: Any, x: float, y: float, w: float, h: float, text: str, colour: str, size: float = 8.5) -> None:
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.08", facecolor=colour,
                                edgecolor="0.25", linewidth=1.0))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size)


def _arrow(ax: Any, start: tuple[float, float], end: tuple[float, float], text: str = "", colour: str = "0.2",
           curve: float = 0.0, offset: tuple[float, float] = (0.0, 0.12), size: float = 8.0) -> None:
    from matplotlib.patches import FancyArrowPatch

    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, color=colour, linewidth=1.4,
                                 connectionstyle=f"arc3,rad={curve}"))
    if text:
        ax.text((start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1], text, ha="center",
                va="center", fontsize=size, color=colour)


def plot_meta_learning_loops(inner_steps: int = 3, tasks: int = 3, ax: Any = None):
    """Draw meta-training (an outer loop over ``tasks`` tasks, each with an inner loop of ``inner_steps``
    gradient steps on its support set, scored on its query set) and meta-testing (a new task: adapt on its
    support set, measure on its query set, θ unchanged). Returns the matplotlib ``Figure``.

    Args:
        inner_steps: the k written on the inner loop (>= 1).
        tasks: how many training tasks to draw (1 to 4).
        ax: draw into this ``Axes``; without it a new 10 x 4.2 inch figure is made with pyplot.
    """
    from .._checks import check_int

    check_int("inner_steps", inner_steps, minimum=1)
    check_int("tasks", tasks, minimum=1, maximum=4)
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(10, 4.2), dpi=90)
    ax.set(xlim=(0, 9.8), ylim=(0, 4.4))
    ax.axis("off")
    support_colour, query_colour, theta_colour = "#cfe3f7", "#f9d9c2", "#e3e3e3"

    # meta-training: theta at the top, one column per task
    ax.text(3.3, 4.25, "meta-training", ha="center", fontsize=10, weight="bold")
    _box(ax, 2.3, 3.45, 2.0, 0.55, "shared θ\n(initialisation)", theta_colour)
    column = 5.7 / tasks
    for i in range(tasks):
        left = 0.15 + i * column
        width = column - 0.3
        centre = left + width / 2
        _box(ax, left, 2.15, width, 0.5, f"task {i + 1}: support set", support_colour, 7.5)
        _box(ax, left, 1.15, width, 0.5, f"φ{i + 1} (adapted)", "white", 7.5)
        _box(ax, left, 0.2, width, 0.5, f"task {i + 1}: query set", query_colour, 7.5)
        _arrow(ax, (3.3, 3.45), (centre, 2.68), colour="0.45")
        label = f"inner loop:\n{inner_steps} steps" if i == 0 else ""
        _arrow(ax, (centre, 2.15), (centre, 1.68), label, colour="tab:blue", offset=(0.5, 0.0), size=7)
        _arrow(ax, (centre, 1.15), (centre, 0.73), colour="0.45")
    # the outer loop: the query losses flow back to theta
    _arrow(ax, (5.8, 0.45), (4.35, 3.7), colour="tab:red", curve=0.45)
    ax.text(6.35, 2.1, "outer loop:\nΣ query\nlosses\n→ update θ", ha="center", va="center", fontsize=8,
            color="tab:red")
    ax.plot([6.95, 6.95], [0.1, 4.2], color="0.6", linestyle=":", linewidth=1)

    # meta-testing: a new task, same inner loop, no outer update
    ax.text(8.4, 4.25, "meta-testing", ha="center", fontsize=10, weight="bold")
    _box(ax, 7.4, 3.45, 2.0, 0.55, "learned θ\n(frozen)", theta_colour)
    _box(ax, 7.2, 2.15, 2.4, 0.5, "new task: support set", support_colour, 7.5)
    _box(ax, 7.2, 1.15, 2.4, 0.5, "φ (adapted)", "white", 7.5)
    _box(ax, 7.2, 0.2, 2.4, 0.5, "new task: query set\n→ score only", query_colour, 7.5)
    _arrow(ax, (8.4, 3.45), (8.4, 2.68), colour="0.45")
    _arrow(ax, (8.4, 2.15), (8.4, 1.68), f"inner loop:\n{inner_steps} steps", colour="tab:blue",
           offset=(0.5, 0.0), size=7)
    _arrow(ax, (8.4, 1.15), (8.4, 0.73), colour="0.45")
    figure = ax.figure
    return figure
