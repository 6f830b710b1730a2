"""Quality-vs-steps curves from the rows of a benchmark table (``bench restoration --json``): one panel per
experiment, one line per adapted method (meta-learned, joint pretraining, scratch, with the per-task standard
error as a band), and the step-free references (the best classical method, the oracle, the degraded input) as
horizontal lines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["ADAPTED_ROLES", "plot_benchmark_curves"]

ADAPTED_ROLES = ("meta", "joint", "scratch")  # rows with step counts: drawn as curves
_COLOURS = {"meta": ("tab:blue", "tab:cyan"), "joint": ("tab:orange",), "scratch": ("tab:grey",)}
_REFERENCE_STYLE = {"classical": ("tab:green", "--"), "oracle": ("tab:purple", ":"), "input": ("0.5", "-.")}


def _check_rows(rows: Any, metric: str) -> list[Mapping[str, Any]]:
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence) or not rows:
        raise ValueError("rows must be a non-empty list of benchmark rows (dicts with experiment, method, role, "
                         "steps, metric, value), e.g. mk.benchmark_table('restoration_fast')['rows']")
    keys = ("experiment", "method", "role", "steps", "metric", "value")
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping) or any(k not in row for k in keys):
            raise ValueError(f"rows[{i}] must be a dict with keys {list(keys)}, got {row!r:.200}; tables written "
                             "before the role field existed need `metalearn-kit bench restoration --json` again")
    picked = [row for row in rows if row["metric"] == metric]
    if not picked:
        raise ValueError(f"no row has metric {metric!r}; the rows have {sorted({r['metric'] for r in rows})}")
    return picked


def _picked_experiments(picked: list[Mapping[str, Any]], experiments: Sequence[str] | None) -> list[str]:
    """``experiments`` checked against those of the rows (default: all of them, in table order)."""
    order = list(dict.fromkeys(row["experiment"] for row in picked))
    if experiments is None:
        return order
    experiments = list(experiments)
    missing = [e for e in experiments if e not in order]
    if not experiments or missing:
        raise ValueError(f"experiments must name experiments of the rows {order}, got {experiments}")
    return experiments


def _draw_curves(ax: Any, rows: list[Mapping[str, Any]]) -> set[int]:
    """One line per adapted method of ``rows`` (one experiment's), with its standard-error band when every
    point has one; returns the step counts drawn."""
    steps_seen: set[int] = set()
    used: dict[str, int] = {}
    for method in dict.fromkeys(r["method"] for r in rows if r["role"] in ADAPTED_ROLES and r["steps"] is not None):
        curve = sorted((r for r in rows if r["method"] == method and r["steps"] is not None),
                       key=lambda r: r["steps"])
        role = curve[0]["role"]
        palette = _COLOURS[role]
        colour = palette[min(used.get(role, 0), len(palette) - 1)]
        used[role] = used.get(role, 0) + 1
        xs = [r["steps"] for r in curve]
        ys = [r["value"] for r in curve]
        steps_seen.update(xs)
        ax.plot(xs, ys, marker="o", markersize=3.5, color=colour, label=f"{method} [{role}]")
        errors = [r.get("stderr") for r in curve]
        if all(e is not None for e in errors):
            ax.fill_between(xs, [y - e for y, e in zip(ys, errors, strict=True)],
                            [y + e for y, e in zip(ys, errors, strict=True)], color=colour, alpha=0.15,
                            linewidth=0)
    return steps_seen


def _draw_references(ax: Any, rows: list[Mapping[str, Any]]) -> None:
    """Horizontal lines: each oracle, the input and the best tuned classical method."""
    references = [r for r in rows if r["role"] in ("oracle", "input")]
    classical = [r for r in rows if r["role"] == "classical"]
    if classical:
        references.append(max(classical, key=lambda r: r["value"]))  # the best tuned classical method
    for row in references:
        colour, style = _REFERENCE_STYLE[row["role"]]
        ax.axhline(row["value"], color=colour, linestyle=style, linewidth=1.3,
                   label=f"{row['method']} [{row['role']}]")


def _label_panel(ax: Any, experiment: str, steps_seen: set[int], metric: str) -> None:
    """Title, labels, legend and a symmetric-log step axis ticked at the steps drawn."""
    from matplotlib.ticker import NullLocator

    if steps_seen:
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xticks(sorted(steps_seen))
        ax.set_xticklabels([str(s) for s in sorted(steps_seen)])
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_title(experiment.replace("_", " "), fontsize=10)
    ax.set_xlabel("adaptation steps", fontsize=8)
    ax.set_ylabel(metric.upper() + (" (dB)" if metric == "psnr" else ""), fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=5.5, loc="best")


def plot_benchmark_curves(rows: Sequence[Mapping[str, Any]], experiments: Sequence[str] | None = None,
                          metric: str = "psnr", columns: int = 3, panel_inches: tuple[float, float] = (4.2, 3.2),
                          title: str | None = None) -> Any:
    """A pyplot-free matplotlib ``Figure``: for each experiment (default: every one in ``rows``, in table order)
    ``metric`` against adaptation steps. Rows of role ``meta``/``joint``/``scratch`` with a step count are curves
    (one per method, a band of +- one standard error where the row has ``stderr``); the best ``classical`` row, each
    ``oracle`` row and the ``input`` row are horizontal lines. Steps are on a symmetric-log axis (0 included)."""
    from .._checks import check_int

    picked = _check_rows(rows, metric)
    check_int("columns", columns, minimum=1)
    experiments = _picked_experiments(picked, experiments)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(experiments)
    cols = min(columns, n)
    lines = -(-n // cols)
    fig = Figure(figsize=(panel_inches[0] * cols, panel_inches[1] * lines + (0.4 if title else 0.0)),
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(lines, cols, squeeze=False)
    for index, experiment in enumerate(experiments):
        ax = axes[index // cols][index % cols]
        mine = [row for row in picked if row["experiment"] == experiment]
        steps_seen = _draw_curves(ax, mine)
        _draw_references(ax, mine)
        _label_panel(ax, experiment, steps_seen, metric)
    for index in range(n, lines * cols):
        axes[index // cols][index % cols].set_visible(False)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
