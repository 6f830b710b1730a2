"""A live plot of meta-training: ``meta_train(..., callbacks=[plot])`` redraws it in place as training runs.

The plot is an ordinary PNG output updated through an IPython display handle (``display(..., display_id=True)``
then ``handle.update``), so it needs no widget manager, works in JupyterLab, Colab and VS Code, and the saved
notebook keeps the last (final) picture, which GitHub shows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from .._checks import check_float, check_int
from . import render

__all__ = ["LiveMetaTrainingPlot"]


def _moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over the last ``window`` finite values (NaN where there is none yet)."""
    out = []
    for i in range(len(values)):
        recent = [v for v in values[max(0, i - window + 1): i + 1] if math.isfinite(v)]
        out.append(sum(recent) / len(recent) if recent else math.nan)
    return out


class LiveMetaTrainingPlot:
    """Query loss before and after adaptation, per meta-iteration, redrawn in place while ``meta_train`` runs.

    Called as ``plot(iteration, record)`` (the ``meta_train`` callback signature) with ``record`` holding
    ``query_loss_before`` / ``query_loss_after`` (and, on validation iterations, ``val_query_loss_before`` /
    ``val_query_loss_after``, drawn as larger markers). Redraws are throttled: at most one every ``every``
    iterations *and* every ``min_seconds`` seconds, so drawing never dominates a fast training loop. The first
    call always draws; :meth:`finish` draws the final picture (call it after training, or pass ``total``
    iterations and the last iteration draws it by itself).

    Args:
        every: iterations between redraws (>= 1).
        min_seconds: seconds between redraws (>= 0).
        total: the run's number of iterations, if known (fixes the x axis and draws the end automatically).
        title: figure title.
        show: display the plot in the notebook (``False`` keeps it off-screen: tests, scripts).
        log_scale: plot losses on a log axis.
        clock: time source (seconds); tests pass a fake one.
    """

    def __init__(self, every: int = 10, min_seconds: float = 0.5, total: int | None = None,
                 title: str = "meta-training", show: bool = True, log_scale: bool = True,
                 dpi: int = render.DPI, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = check_int("every", every, minimum=1)
        self.min_seconds = check_float("min_seconds", min_seconds, minimum=0.0)
        self.total = None if total is None else check_int("total", total, minimum=1)
        self.dpi = check_int("dpi", dpi, minimum=20, maximum=300)
        self.title, self.show, self.log_scale, self.clock = title, bool(show), bool(log_scale), clock
        self.history: dict[str, list[float]] = {"iteration": [], "query_loss_before": [], "query_loss_after": [],
                                                "val_iteration": [], "val_query_loss_before": [],
                                                "val_query_loss_after": []}
        self.draw_count = 0
        self.png: bytes = b""
        self._handle: Any = None
        self._last_draw_iteration: int | None = None
        self._last_draw_time = -math.inf
        self.finished = False

    # -- the callback
    def __call__(self, iteration: int, record: Mapping[str, Any]) -> None:
        check_int("iteration", iteration, minimum=0)
        if not isinstance(record, Mapping):
            raise TypeError(f"record must be a dict of training values (meta_train's callback record), got "
                            f"{type(record).__name__}")
        if "query_loss_after" not in record:
            raise ValueError(f"record must hold 'query_loss_after' (and ideally 'query_loss_before'), got keys "
                             f"{sorted(record)}")
        h = self.history
        h["iteration"].append(iteration)
        h["query_loss_before"].append(float(record.get("query_loss_before", math.nan)))
        h["query_loss_after"].append(float(record["query_loss_after"]))
        if "val_query_loss_after" in record:
            h["val_iteration"].append(iteration)
            h["val_query_loss_before"].append(float(record.get("val_query_loss_before", math.nan)))
            h["val_query_loss_after"].append(float(record["val_query_loss_after"]))
        if self.total is not None and iteration >= self.total:
            self.finish()
        elif self._due(iteration):
            self.draw()

    def _due(self, iteration: int) -> bool:
        if self._last_draw_iteration is None:
            return True
        return (iteration - self._last_draw_iteration >= self.every
                and self.clock() - self._last_draw_time >= self.min_seconds)

    # -- drawing
    def figure(self) -> Any:
        """The plot of everything recorded so far as a matplotlib ``Figure`` (a static copy: ``display(fig)``)."""
        h = self.history
        fig = render.new_figure(6.0, 3.2)
        ax = fig.add_subplot(1, 1, 1)
        if h["iteration"]:
            # raw per-iteration losses are noisy (a few tasks each): draw them faint, and a moving average over
            # about a twentieth of the run on top
            window = max(1, len(h["iteration"]) // 20)
            for key, colour, label in (("query_loss_before", "tab:red", "query loss before adaptation"),
                                       ("query_loss_after", "tab:blue", "query loss after adaptation")):
                values = [v if math.isfinite(v) else math.nan for v in h[key]]
                if not any(math.isfinite(v) for v in values):
                    continue
                ax.plot(h["iteration"], values, color=colour, alpha=0.3, linewidth=0.8)
                ax.plot(h["iteration"], _moving_average(values, window), color=colour, linewidth=1.5, label=label)
        if h["val_iteration"]:
            ax.plot(h["val_iteration"], h["val_query_loss_before"], "s", color="tab:red", markersize=5,
                    label="validation, before")
            ax.plot(h["val_iteration"], h["val_query_loss_after"], "s", color="tab:blue", markersize=5,
                    label="validation, after")
        positive = [v for v in h["query_loss_after"] + h["query_loss_before"] if math.isfinite(v)]
        if self.log_scale and positive and min(positive) > 0:
            ax.set_yscale("log")
        if self.total is not None:
            ax.set_xlim(0, self.total)
        ax.set_xlabel("meta-iteration", fontsize=8)
        ax.set_ylabel("query loss", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        last = f", iteration {h['iteration'][-1]}" if h["iteration"] else ""
        ax.set_title(f"{self.title}{last}" + (" (finished)" if self.finished else ""), fontsize=9)
        if h["iteration"]:
            ax.legend(fontsize=7)
        fig.tight_layout()
        return fig

    def draw(self) -> None:
        """Redraw now (ignores the throttle)."""
        self.png = render.figure_to_png(self.figure(), self.dpi)
        self.draw_count += 1
        self._last_draw_iteration = self.history["iteration"][-1] if self.history["iteration"] else 0
        self._last_draw_time = self.clock()
        if self.show:
            from IPython.display import Image, display

            picture = Image(data=self.png, format="png")
            if self._handle is None:
                self._handle = display(picture, display_id=True)
            else:
                self._handle.update(picture)

    def finish(self) -> None:
        """Draw the final picture in place (the saved notebook keeps it; :meth:`figure` gives a static copy)."""
        self.finished = True
        self.draw()
