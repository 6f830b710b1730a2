"""Matplotlib figures drawn off-screen and turned into PNG bytes for ``ipywidgets.Image``.

Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas, never with pyplot, so a widget
redraw neither shows a stray figure in the notebook nor keeps figures alive in pyplot's registry."""

from __future__ import annotations

import io
import textwrap
from typing import Any

import torch

from .._checks import check_images, check_int

__all__ = ["DPI", "as_picture", "figure_to_png", "image_grid_png", "new_figure", "show_image", "wrap_title"]

DPI = 90  # small PNGs: fast to send to the browser and small in saved notebooks


def new_figure(width: float, height: float) -> Any:
    """A pyplot-free ``Figure`` of ``width`` x ``height`` inches with an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def figure_to_png(fig: Any, dpi: int = DPI) -> bytes:
    """Render a matplotlib ``Figure`` to PNG bytes (``dpi`` dots per inch)."""
    check_int("dpi", dpi, minimum=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def as_picture(image: torch.Tensor) -> tuple[Any, str | None]:
    """``[C, H, W]`` (C = 1 or 3) in [0, 1] -> (array for ``imshow``, colormap)."""
    image = image.detach().float().cpu().clamp(0.0, 1.0)
    if image.shape[0] == 1:
        return image[0].numpy(), "gray"
    return image.permute(1, 2, 0).numpy(), None


def wrap_title(title: str, width: int) -> str:
    """``title`` with each of its lines wrapped at ``width`` characters (at spaces), so
    a long name such as "gaussian noise" shows in full under a small image instead of being cut (a word longer
    than ``width`` stays whole on its own line)."""
    check_int("width", width, minimum=1)
    return "\n".join(textwrap.fill(line, width, break_long_words=False) or line for line in title.split("\n"))


def show_image(ax: Any, image: torch.Tensor, title: str | None = None) -> None:
    """Draw one ``[C, H, W]`` image in ``ax`` without ticks, with an optional small title."""
    picture, cmap = as_picture(image)
    ax.imshow(picture, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=8)


def image_grid_png(images: torch.Tensor, columns: int = 8, titles: list[str] | None = None,
                   suptitle: str | None = None, cell_inches: float = 0.9, dpi: int = DPI) -> bytes:
    """PNG bytes of ``images`` ``[N, C, H, W]`` (C = 1 or 3, values in [0, 1]) laid out ``columns`` wide."""
    images = check_images("images", images)
    if images.shape[1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels to be drawn, got shape {tuple(images.shape)}")
    check_int("columns", columns, minimum=1)
    n = images.shape[0]
    if n == 0:
        raise ValueError("images holds no image; pass at least one [C, H, W] image")
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles must have one entry per image ({n}), got {len(titles)}")
    cols = min(columns, n)
    rows = (n + cols - 1) // cols
    fig = new_figure(cell_inches * cols + 0.2, cell_inches * rows + (0.4 if suptitle else 0.1))
    for i in range(rows * cols):
        ax = fig.add_subplot(rows, cols, i + 1)
        if i < n:
            # about 11 characters of the 8-point title font fit in one inch of cell width
            title = wrap_title(titles[i], max(6, int(11 * cell_inches))) if titles is not None else None
            show_image(ax, images[i], title)
        else:
            ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    return figure_to_png(fig, dpi)
