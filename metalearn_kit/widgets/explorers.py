"""Explorer widgets: each is an ``ipywidgets.VBox`` (display it, or leave it last in a cell).

Only core ipywidgets features that exist in both ipywidgets 7 (Colab) and 8 (JupyterLab 4) are used;
pictures are matplotlib figures rendered to PNG bytes in an ``ipywidgets.Image``.

Every explorer keeps the data it shows as attributes (``task``, ``png``, ``last_error``) and has plain methods
(``redraw()``, ``generate()``, ``run()``) doing what its controls do, so it can be driven from code and tested
without a browser. An error raised inside a control's handler is shown in the explorer's status line (a
handler's exception would otherwise only reach the browser's log console).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as widgets
import torch

from .._checks import check_int
from . import render
from .results import check_adaptation_results
from .severity import SeverityKnob

__all__ = ["AdaptationExplorer", "TaskExplorer"]


def _channels_of(source: Any) -> int | None:
    """Channels of an image source (a tensor ``[N, C, H, W]`` or a source with ``channels``), None if unknown."""
    if isinstance(source, torch.Tensor):
        return int(source.shape[1]) if source.dim() == 4 else None
    return getattr(source, "channels", None)


def _status(text: str, error: bool = False) -> str:
    colour = "#b00020" if error else "#333"
    return f'<span style="color:{colour}">{html.escape(text)}</span>'


class _Explorer(widgets.VBox):
    """Shared parts: an Image for the picture, an HTML status line, error capture for handlers."""

    def _init_parts(self, dpi: int) -> None:
        self.dpi = check_int("dpi", dpi, minimum=20, maximum=300)
        # align_self: a VBox stretches its children to its width, which would blur the PNG by upscaling it
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%", align_self="flex-start"))
        self.status = widgets.HTML(value="")
        self.last_error: BaseException | None = None
        self.png: bytes = b""

    def _show_png(self, png: bytes) -> None:
        self.png = png
        self.image.value = png

    def _guarded(self, action: Callable[[], Any]) -> Callable[..., None]:
        def handler(*_: Any) -> None:
            try:
                action()
                self.last_error = None
            except Exception as err:  # shown to the reader; the traceback would be lost in the browser console
                self.last_error = err
                self.status.value = _status(f"{type(err).__name__}: {err}", error=True)

        return handler


# ---------------------------------------------------------------------------------------------- tasks
def _family_knobs(families: Sequence[Any] | None, channels: set[int | None]) -> dict[str, SeverityKnob]:
    """One severity knob per family; ``None``: every registered family that can be built from its name alone
    (kernel_blur needs kernels) and applied to sources of ``channels`` (colour-only families need 3 channels)."""
    from ..tasks.degradations import Degradation, list_degradations, make_degradation

    knobs: dict[str, SeverityKnob] = {}
    if families is None:
        # the built-in families first, so the first view stays theirs, then the operator families of
        # tasks/operators.py
        names = sorted(list_degradations(), key=lambda n: type(make_degradation(n)).__module__.endswith(
            ".operators") if n != "kernel_blur" else False)
        for name in names:
            try:
                knobs[name] = SeverityKnob(name)
            except (TypeError, ValueError):
                continue
            required = getattr(knobs[name].template, "required_channels", None)
            if required is not None and channels != {required}:
                del knobs[name]
        return knobs
    if isinstance(families, (str, Degradation)) or not isinstance(families, Sequence) or not families:
        raise ValueError(f"families must be a non-empty list of family names, classes or Degradation "
                         f"instances, got {families!r}")
    for family in families:
        knob = SeverityKnob(family)
        if knob.name in knobs:
            raise ValueError(f"families lists {knob.name!r} twice; give each family once")
        knobs[knob.name] = knob
    return knobs


class TaskExplorer(_Explorer):
    """Pick a degradation family, its severity and the shots, and see one restoration task: the support and
    query sets, degraded and clean (drawn by :func:`metalearn_kit.viz.plot_task`).

    Controls: ``family`` (Dropdown), ``source`` (Dropdown, only with several sources), ``severity``
    (FloatSlider, 0 = mildest training level, 1 = harshest test level, see
    :class:`~metalearn_kit.widgets.severity.SeverityKnob`), ``shots`` (IntSlider) and a ``new task`` button
    (next seed: new images and new random parameters). Any change redraws.

    Args:
        sources: an image source (glyphs, photos, or an image tensor ``[N, C, H, W]``) or a dict
            ``{name: source}``.
        families: family names, ``Degradation`` classes or instances (user-defined ones too); default all
            registered family that can be built from its name alone (``metalearn_kit.tasks.list_degradations()``;
            ``kernel_blur`` needs kernels, so pass an instance).
        shots: initial support size (1 to ``max_shots``).
        queries: query images per task.
        seed: seed of the first task; ``new task`` adds one.
        severity: initial severity in [0, 1].
    """

    def __init__(self, sources: Any, families: Sequence[Any] | None = None, shots: int = 5, queries: int = 3,
                 seed: int = 0, severity: float = 0.3, max_shots: int = 10, dpi: int = render.DPI) -> None:
        super().__init__()
        self._init_parts(dpi)
        if isinstance(sources, Mapping):
            if not sources:
                raise ValueError("sources must hold at least one image source, got an empty dict")
            self.sources = dict(sources)
        else:
            self.sources = {"images": sources}
        self.knobs = _family_knobs(families, {_channels_of(s) for s in self.sources.values()})
        check_int("max_shots", max_shots, minimum=1)
        check_int("shots", shots, minimum=1, maximum=max_shots)
        self.queries = check_int("queries", queries, minimum=1)
        self.seed = check_int("seed", seed, minimum=0)
        if not 0.0 <= float(severity) <= 1.0:
            raise ValueError(f"severity must be in [0, 1] (0 = mildest training level), got {severity!r}")
        self.task = None
        self._build_controls(shots, max_shots, float(severity))
        self.redraw()

    def _build_controls(self, shots: int, max_shots: int, severity: float) -> None:
        self.family = widgets.Dropdown(options=list(self.knobs), value=next(iter(self.knobs)), description="family")
        self.source = widgets.Dropdown(options=list(self.sources), value=next(iter(self.sources)),
                                       description="source")
        self.severity = widgets.FloatSlider(value=severity, min=0.0, max=1.0, step=0.05,
                                            description="severity", continuous_update=False, readout_format=".2f")
        self.shots = widgets.IntSlider(value=shots, min=1, max=max_shots, step=1, description="shots",
                                       continuous_update=False)
        self.new_task = widgets.Button(description="new task", tooltip="draw another task (next seed)")
        self.params = widgets.HTML(value="")
        top = [self.family] + ([self.source] if len(self.sources) > 1 else [])
        self.children = [widgets.HBox(top), widgets.HBox([self.severity, self.shots]),
                         widgets.HBox([self.new_task, self.params]), self.image, self.status]
        redraw = self._guarded(self.redraw)
        for control in (self.family, self.source, self.severity, self.shots):
            control.observe(redraw, names="value")
        self.new_task.on_click(self._guarded(self.next_task))

    def make_task(self) -> Any:
        """The task the controls describe (``family``, ``severity``, ``shots``, ``source``, current seed)."""
        from ..tasks.restoration import RestorationTasks

        knob = self.knobs[self.family.value]
        degradation = knob.degradation(self.severity.value)
        tasks = RestorationTasks(self.sources[self.source.value], degradation, shots=self.shots.value,
                                 queries=self.queries)
        return tasks.sample(self.seed)

    def redraw(self) -> None:
        """Sample the task the controls describe and draw it."""
        from ..viz.tasks import plot_task

        knob = self.knobs[self.family.value]
        self.severity.disabled = not knob.adjustable
        self.params.value = _status(knob.describe(self.severity.value))
        self.task = self.make_task()
        count = max(self.shots.value, self.queries)
        fig = render.new_figure(0.95 * count + 1.4, 0.95 * 4 + 0.6)
        plot_task(self.task, max_images=count, fig=fig)
        self._show_png(render.figure_to_png(fig, self.dpi))
        self.status.value = _status(f"seed {self.seed}: {self.task.shots} support and {self.task.queries} query "
                                    f"pairs, images {tuple(self.task.support[0].shape[1:])}")

    def next_task(self) -> None:
        """What the ``new task`` button does: the next seed, redrawn."""
        self.seed += 1
        self.redraw()


# ---------------------------------------------------------------------------------------------- adaptation
def _finite(values: Sequence[float]) -> list[float]:
    return [v if math.isfinite(v) else float("nan") for v in values]


def _db(value: float) -> str:
    return f"{value:.2f} dB" if math.isfinite(value) else "inf dB"


def _draw_method_images(fig: Any, grid: Any, entries: Mapping[str, Mapping], methods: Sequence[str],
                        step: int) -> None:
    """Each method's image after ``step`` steps, in columns 1, 2, ... of ``grid``'s top row, its PSNR in the
    title (``entries``: ``{method: {"images", "psnr"}}``)."""
    for i, name in enumerate(methods, start=1):
        entry = entries[name]
        render.show_image(fig.add_subplot(grid[0, i]), entry["images"][step],
                          f"{name}, step {step}\n{_db(entry['psnr'][step])}")


def _draw_psnr_curves(curves: Any, entries: Mapping[str, Mapping], methods: Sequence[str], step: int, xlabel: str,
                      ylabel: str, baseline: float | None = None) -> None:
    """Each method's PSNR per step in the axes ``curves``, a large marker and a vertical line at ``step``;
    ``baseline``: a dotted line for the degraded input's PSNR."""
    for name in methods:
        values = _finite(entries[name]["psnr"])
        (line,) = curves.plot(range(len(values)), values, marker="o", markersize=3, label=name)
        curves.plot([step], [values[step]], marker="o", markersize=7, color=line.get_color())
    if baseline is not None:
        curves.axhline(baseline, color="grey", linestyle=":", linewidth=1, label="degraded input")
    curves.axvline(step, color="black", linewidth=1)
    curves.set_xlabel(xlabel, fontsize=8)
    curves.set_ylabel(ylabel, fontsize=8)
    curves.tick_params(labelsize=7)
    curves.legend(fontsize=7, loc="best")
    curves.grid(alpha=0.3)


class AdaptationExplorer(_Explorer):
    """Scrub through adaptation steps on one unseen task: the degraded input, each method's output after ``k``
    steps (PSNR in the titles), the clean target, and the PSNR curves with a line at ``k``.

    Controls: ``step`` (IntSlider, ``continuous_update=False``) and a Play button. The text line reads
    ``"step k: method PSNR dB, ..."``. All frames are rendered once (``prerender=True``) or on first view and
    cached, so scrubbing is instant.

    Args:
        results: ``{method: {"images": [C, H, W] per step, "psnr": float per step}, "degraded": [C, H, W],
            "clean": [C, H, W]}`` (see :mod:`metalearn_kit.widgets.results`; :func:`adaptation_results` makes it).
        step: initial step (default 0: before adaptation).
        prerender: render every step now rather than on first view.
        title: figure title.
    """

    def __init__(self, results: Mapping[str, Any], step: int = 0, prerender: bool = True, title: str | None = None,
                 dpi: int = render.DPI, play_interval_ms: int = 500) -> None:
        super().__init__()
        self._init_parts(dpi)
        self.title = title
        self.slider = widgets.IntSlider(value=0, min=0, max=1, step=1, description="step", continuous_update=False)
        self.play = widgets.Play(value=0, min=0, max=1, step=1,
                                 interval=check_int("play_interval_ms", play_interval_ms, minimum=50))
        widgets.jslink((self.play, "value"), (self.slider, "value"))
        self.label = widgets.HTML(value="")
        self.status = self.label  # a handler's error replaces the step text
        self.children = [widgets.HBox([self.play, self.slider]), self.label, self.image]
        self.slider.observe(self._guarded(lambda: self.show_step(self.slider.value)), names="value")
        self.set_results(results, step=step, prerender=prerender)

    # -- data
    def set_results(self, results: Mapping[str, Any], step: int = 0, prerender: bool = True) -> None:
        """Show new results (checked first; the frame cache is cleared)."""
        data = check_adaptation_results(results)
        check_int("step", step, minimum=0, maximum=data["steps"])
        self.data = data
        self.steps = data["steps"]
        self.methods = list(data["methods"])
        self._cache: dict[int, bytes] = {}
        # the input's PSNR computed as the methods' (mean over the query set) when the results carry it
        self._input_psnr = (data["degraded_psnr"] if data["degraded_psnr"] is not None
                            else self._psnr(data["degraded"]))
        # max before value: ipywidgets refuses a value above max
        for control in (self.slider, self.play):
            control.max = max(self.steps, 1)
        self.slider.disabled = self.play.disabled = self.steps == 0
        if prerender:
            for k in range(self.steps + 1):
                self.png_at(k)
        if self.slider.value == step:
            self.show_step(step)
        else:
            self.slider.value = step  # the observer shows it

    def _psnr(self, image: torch.Tensor) -> float | None:
        from ..evaluation.metrics import psnr

        if self.data["clean"] is None:
            return None
        return float(psnr(image[None], self.data["clean"][None]))

    def text_at(self, step: int) -> str:
        """The label text: ``"step k: method PSNR dB, ..."``."""
        parts = [f"{name} {_db(self.data['methods'][name]['psnr'][step])}" for name in self.methods]
        text = f"step {step}: " + ", ".join(parts)
        if self._input_psnr is not None:
            text += f" (degraded input {_db(self._input_psnr)})"
        return text

    # -- drawing
    def figure(self, step: int | None = None) -> Any:
        """The matplotlib ``Figure`` for ``step`` (default: the slider's), e.g. for a static copy."""
        step = self.slider.value if step is None else check_int("step", step, minimum=0, maximum=self.steps)
        data = self.data
        columns = len(self.methods) + 1 + (data["clean"] is not None)
        fig = render.new_figure(max(1.55 * columns, 5.0), 3.9)
        grid = fig.add_gridspec(2, columns, height_ratios=[1.0, 0.85])
        input_title = "degraded" + (f"\n{_db(self._input_psnr)}" if self._input_psnr is not None else "")
        render.show_image(fig.add_subplot(grid[0, 0]), data["degraded"], input_title)
        _draw_method_images(fig, grid, data["methods"], self.methods, step)
        if data["clean"] is not None:
            render.show_image(fig.add_subplot(grid[0, columns - 1]), data["clean"], "clean")
        baseline = self._input_psnr if self._input_psnr is not None and math.isfinite(self._input_psnr) else None
        _draw_psnr_curves(fig.add_subplot(grid[1, :]), data["methods"], self.methods, step, "adaptation steps",
                          "query PSNR (dB)", baseline)
        if self.title:
            fig.suptitle(self.title, fontsize=9)
        fig.tight_layout()
        return fig

    def png_at(self, step: int) -> bytes:
        """PNG bytes of ``step``'s frame (rendered once, then cached)."""
        check_int("step", step, minimum=0, maximum=self.steps)
        if step not in self._cache:
            self._cache[step] = render.figure_to_png(self.figure(step), self.dpi)
        return self._cache[step]

    def show_step(self, step: int) -> None:
        """Show ``step`` (what moving the slider does)."""
        png = self.png_at(step)
        self._show_png(png)
        self.label.value = _status(self.text_at(step))
        if self.slider.value != step:
            self.slider.value = step


# ---------------------------------------------------------------------------------------------- generation
