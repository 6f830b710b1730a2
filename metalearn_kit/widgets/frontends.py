"""Generic explorer front-ends for user-given functions: :class:`GenerationExplorer` (class, shots, steps ->
samples) and :class:`RestorationExplorer` (image, degradation, steps -> restorations), built on the explorer
base of :mod:`metalearn_kit.widgets.explorers`."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import ipywidgets as widgets
import torch

from .._checks import check_images, check_int
from . import render
from .explorers import AdaptationExplorer, _Explorer, _status
from .results import check_adaptation_results

__all__ = ["GenerationExplorer", "RestorationExplorer"]


@contextlib.contextmanager
def _busy(explorer: _Explorer, message: str) -> Iterator[None]:
    """While the block runs, ``explorer.button`` is disabled (a second press would queue a second run) and
    the status line shows ``message``."""
    explorer.button.disabled = True
    explorer.status.value = _status(message)
    try:
        yield
    finally:
        explorer.button.disabled = False


class GenerationExplorer(_Explorer):
    """Pick a class, the shots and the adaptation steps; press ``generate`` to draw samples with a user-given
    ``sample_fn(class_index, shots, steps) -> images [N, C, H, W]`` (C = 1 or 3, values in [0, 1]).

    Args:
        sample_fn: the generator front-end (e.g. adapt a meta-learned generator on ``shots`` images of the class
            for ``steps`` steps and sample).
        classes: the number of classes, or their names (index = position).
        shots, steps: initial values; ``max_shots``, ``max_steps`` the slider ends.
        columns: images per row.
        support_fn: optional ``support_fn(class_index, shots) -> images [K, C, H, W]`` shown above the samples.
    """

    def __init__(self, sample_fn: Callable[[int, int, int], torch.Tensor], classes: int | Sequence[str],
                 shots: int = 5, steps: int = 5, max_shots: int = 20, max_steps: int = 50, columns: int = 8,
                 support_fn: Callable[[int, int], torch.Tensor] | None = None, dpi: int = render.DPI) -> None:
        super().__init__()
        self._init_parts(dpi)
        if not callable(sample_fn):
            raise TypeError(f"sample_fn must be callable sample_fn(class_index, shots, steps) -> images, got "
                            f"{type(sample_fn).__name__}")
        if support_fn is not None and not callable(support_fn):
            raise TypeError(f"support_fn must be callable support_fn(class_index, shots) -> images or None, got "
                            f"{type(support_fn).__name__}")
        self.sample_fn, self.support_fn = sample_fn, support_fn
        if isinstance(classes, int) and not isinstance(classes, bool):
            check_int("classes", classes, minimum=1)
            names = [str(i) for i in range(classes)]
        elif isinstance(classes, Sequence) and not isinstance(classes, str) and classes:
            names = [str(c) for c in classes]
        else:
            raise ValueError(f"classes must be a number of classes (>= 1) or a non-empty list of class names, "
                             f"got {classes!r}")
        check_int("max_shots", max_shots, minimum=1)
        check_int("max_steps", max_steps, minimum=0)
        check_int("shots", shots, minimum=1, maximum=max_shots)
        check_int("steps", steps, minimum=0, maximum=max_steps)
        self.columns = check_int("columns", columns, minimum=1)
        self.class_index = widgets.Dropdown(options=[(f"{i}: {n}" if n != str(i) else n, i)
                                                     for i, n in enumerate(names)], value=0, description="class")
        self.shots = widgets.IntSlider(value=shots, min=1, max=max_shots, description="shots",
                                       continuous_update=False)
        self.steps = widgets.IntSlider(value=steps, min=0, max=max_steps, description="steps",
                                       continuous_update=False)
        self.button = widgets.Button(description="generate", button_style="primary")
        self.samples: torch.Tensor | None = None
        self.status.value = _status("press generate")
        self.children = [widgets.HBox([self.class_index, self.shots, self.steps]),
                         widgets.HBox([self.button, self.status]), self.image]
        self.button.on_click(self._guarded(self.generate))

    def generate(self) -> torch.Tensor:
        """What the button does: call ``sample_fn`` with the controls' values and show the samples."""
        c, shots, steps = self.class_index.value, self.shots.value, self.steps.value
        with _busy(self, f"generating class {c} ({shots} shots, {steps} steps) ..."):
            start = time.perf_counter()
            samples = self.sample_fn(c, shots, steps)
            samples = check_images("sample_fn output", samples).detach().cpu()
            seconds = time.perf_counter() - start
            rows, titles = [samples], ["sample"] * samples.shape[0]
            if self.support_fn is not None:
                support = check_images("support_fn output", self.support_fn(c, shots)).detach().cpu()
                if support.shape[1:] != samples.shape[1:]:
                    raise ValueError(f"support_fn output has images {tuple(support.shape[1:])} but sample_fn gives "
                                     f"{tuple(samples.shape[1:])}; they must match")
                rows, titles = [support, samples], ["support"] * support.shape[0] + titles
            grid = torch.cat(rows)
            label = self.class_index.label
            png = render.image_grid_png(grid, columns=self.columns, titles=titles,
                                        suptitle=f"class {label}: {shots} shots, {steps} steps", dpi=self.dpi)
        self.samples = samples
        self._show_png(png)
        self.status.value = _status(f"{samples.shape[0]} samples of class {label} in {seconds:.2f} s")
        return samples


# ---------------------------------------------------------------------------------------------- restoration
class RestorationExplorer(_Explorer):
    """Pick an image and a degradation, press ``adapt``, then watch the adaptation step by step.

    ``restore_fn(image_index, degradation, steps)`` does the work and returns adaptation results in the format
    of :class:`AdaptationExplorer` (``{method: {"images", "psnr"}, "degraded", "clean"}``; one method is fine),
    e.g. degrade the image, build a task from it, and call :func:`adaptation_results`.

    Args:
        restore_fn: the user-given adaptation function.
        images: names of the images to choose from, their number, or the images ``[N, C, H, W]`` themselves.
        degradations: names (or ``Degradation`` instances) to choose from; ``restore_fn`` gets the name.
        steps: initial adaptation steps; ``max_steps`` the slider end.
    """

    def __init__(self, restore_fn: Callable[[int, str, int], Mapping[str, Any]], images: Any,
                 degradations: Sequence[Any], steps: int = 10, max_steps: int = 100,
                 dpi: int = render.DPI) -> None:
        super().__init__()
        self._init_parts(dpi)
        if not callable(restore_fn):
            raise TypeError(f"restore_fn must be callable restore_fn(image_index, degradation, steps) -> results, "
                            f"got {type(restore_fn).__name__}")
        self.restore_fn = restore_fn
        if isinstance(images, torch.Tensor):
            check_images("images", images)
            names = [f"image {i}" for i in range(images.shape[0])]
        elif isinstance(images, int) and not isinstance(images, bool):
            check_int("images", images, minimum=1)
            names = [f"image {i}" for i in range(images)]
        elif isinstance(images, Sequence) and not isinstance(images, str):
            names = [str(n) for n in images]
        else:
            raise TypeError(f"images must be a list of names, a count or a tensor [N, C, H, W], got "
                            f"{type(images).__name__}")
        if not names:
            raise ValueError("images must offer at least one image to choose")
        if isinstance(degradations, str) or not isinstance(degradations, Sequence) or not degradations:
            raise ValueError(f"degradations must be a non-empty list of family names, got {degradations!r}")
        labels = [d if isinstance(d, str) else (getattr(d, "name", "") or type(d).__name__) for d in degradations]
        check_int("max_steps", max_steps, minimum=1)
        check_int("steps", steps, minimum=1, maximum=max_steps)
        self.image_index = widgets.Dropdown(options=[(n, i) for i, n in enumerate(names)], value=0,
                                            description="image")
        self.degradation = widgets.Dropdown(options=labels, value=labels[0], description="degradation")
        self.steps = widgets.IntSlider(value=steps, min=1, max=max_steps, description="steps",
                                       continuous_update=False)
        self.button = widgets.Button(description="adapt", button_style="primary")
        self.view: AdaptationExplorer | None = None
        self.results: Mapping[str, Any] | None = None
        self.status.value = _status("press adapt")
        self.children = [widgets.HBox([self.image_index, self.degradation, self.steps]),
                         widgets.HBox([self.button, self.status])]
        self.button.on_click(self._guarded(self.run))

    def run(self) -> Mapping[str, Any]:
        """What the button does: call ``restore_fn`` and show its results at the last step."""
        i, name, steps = self.image_index.value, self.degradation.value, self.steps.value
        with _busy(self, f"adapting to {name} on image {i} for {steps} steps ..."):
            start = time.perf_counter()
            results = self.restore_fn(i, name, steps)
            seconds = time.perf_counter() - start
            data = check_adaptation_results(results)
            if self.view is None:
                self.view = AdaptationExplorer(results, step=data["steps"], dpi=self.dpi)
                self.children = [*self.children, self.view]
            else:
                self.view.set_results(results, step=data["steps"])
        self.results = results
        self._show_png(self.view.png)
        self.status.value = _status(f"{name} on {self.image_index.label}: {data['steps']} steps in {seconds:.2f} s; "
                                    f"move the step slider or press play to watch")
        return results
