"""Pictures of tasks: support and query sets side by side."""

from __future__ import annotations

from typing import Any

import torch

from .._checks import check_int
from ..tasks.task import Task, TaskBatch

__all__ = ["plot_task", "task_title"]


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return "[" + ", ".join(_format_value(v) for v in value[:6]) + (", ..." if len(value) > 6 else "") + "]"
    return str(value)


def task_title(info: dict[str, Any]) -> str:
    """A one-line description of a task from its ``info`` (family and parameters, or classes)."""
    if "family" in info:
        params = info.get("params", {})
        shown = ", ".join(f"{k}={_format_value(v)}" for k, v in params.items() if k != "mask_seed")
        split = f" [{info['split']}]" if info.get("split") else ""
        return f"{info['family']}{split}: {shown}" if shown else f"{info['family']}{split}"
    if "classes" in info:
        return f"{info.get('ways', len(info['classes']))}-way generation task: classes {_format_value(info['classes'])}"
    return ", ".join(f"{k}={_format_value(v)}" for k, v in info.items()) or "task"


def _row(images: torch.Tensor, count: int, pad: int) -> torch.Tensor:
    """``images`` ``[N, C, H, W]`` -> one strip ``[C, H, count*(W+pad)-pad]``, blank (white) where N < count."""
    _, c, h, w = images.shape
    strip = torch.ones(c, h, count * (w + pad) - pad)
    for i, image in enumerate(images[:count]):
        strip[:, :, i * (w + pad): i * (w + pad) + w] = image
    return strip


def _labelled_rows(task: Task, max_images: int) -> list[tuple[str, torch.Tensor]]:
    """The rows to draw, ``(label, images [N, C, H, W])``: degraded and clean support and query for restoration,
    else a support and a query row (a pair per label when there are several ways)."""
    first = task.support[0]
    if first.dim() != 4:
        raise ValueError(f"task.support[0] must be images [K, C, H, W] to be plotted, got shape {tuple(first.shape)}")
    if len(task.support) >= 2 and task.support[1].dim() == 4:
        return [("support\ndegraded", task.support[0]), ("support\nclean", task.support[1]),
                ("query\ndegraded", task.query[0]), ("query\nclean", task.query[1])]
    if len(task.support) > 1 and len(task.query) > 1 and task.support[1].dim() == 1 \
            and int(task.support[1].max()) > 0:
        # Several ways: one support row and one query row per label (at most max_images labels).
        names = task.info.get("classes", [])
        rows = []
        for label in task.support[1].unique().tolist()[:max_images]:
            name = str(names[label]).rsplit("/", 1)[-1] if label < len(names) else str(label)
            short = name if len(name) <= 12 else name[:11] + "~"  # the title carries the full names
            rows.append((f"support {label}\n{short}", task.support[0][task.support[1] == label]))
            rows.append((f"query {label}", task.query[0][task.query[1] == label]))
        return rows
    return [("support", task.support[0]), ("query", task.query[0])]


def _stacked(rows: list[tuple[str, torch.Tensor]], count: int, pad: int) -> torch.Tensor:
    """The rows' first ``count`` images as one white-padded picture ``[C, rows*(H+pad)-pad, count*(W+pad)-pad]``."""
    strips = [_row(images.detach().float().cpu().clamp(0, 1), count, pad) for _, images in rows]
    _, h, width = strips[0].shape
    canvas = torch.ones(strips[0].shape[0], len(strips) * (h + pad) - pad, width)
    for r, strip in enumerate(strips):
        canvas[:, r * (h + pad): r * (h + pad) + h] = strip
    return canvas


def plot_task(task: Task, max_images: int = 5, ax: Any = None, fig: Any = None):
    """Draw a task's support and query sets as labelled rows and return the matplotlib ``Figure``.

    Restoration tasks (``support = (degraded, clean)``) get four rows: support degraded, support clean,
    query degraded, query clean. Generation tasks (``support = (images, labels)``) get a support and a query
    row (a pair of rows per label when there are several ways). The title comes from ``task.info``.

    Args:
        task: a :class:`~metalearn_kit.tasks.Task` (pick one from a batch with ``batch[i]``).
        max_images: images shown per row (>= 1).
        ax: draw into this matplotlib ``Axes``; or
        fig: draw into this (cleared) ``Figure``; with neither, a new figure is made with pyplot.
    """
    if isinstance(task, TaskBatch):
        raise TypeError("task must be one Task, got a TaskBatch; plot one of its tasks with plot_task(batch[0])")
    if not isinstance(task, Task):
        raise TypeError(f"task must be a metalearn_kit.tasks.Task, got {type(task).__name__}")
    check_int("max_images", max_images, minimum=1)
    if ax is not None and fig is not None:
        raise ValueError("give ax or fig, not both")
    rows = _labelled_rows(task, max_images)
    count = min(max_images, max(images.shape[0] for _, images in rows))
    pad = 2
    canvas = _stacked(rows, count, pad)
    h = rows[0][1].shape[-2]
    channels = canvas.shape[0]
    picture = canvas.permute(1, 2, 0).numpy() if channels == 3 else canvas[0].numpy()
    if ax is None:
        if fig is None:
            import matplotlib.pyplot as plt

            fig = plt.figure(figsize=(1.1 * count + 1.4, 1.1 * len(rows) + 0.6))
        else:
            fig.clear()
        ax = fig.add_subplot(1, 1, 1)
    figure = ax.figure
    ax.imshow(picture, cmap=None if channels == 3 else "gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_yticks([r * (h + pad) + h / 2 for r in range(len(rows))], [name for name, _ in rows], fontsize=8)
    ax.set_xticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(task_title(task.info), fontsize=9)
    if ax.figure is not None and fig is not None:
        figure.tight_layout()
    return figure
