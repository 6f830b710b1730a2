"""SIREN image fitting as a widget: one held-out photograph fitted step by step from a meta-learned
initialisation and from the standard one, a step slider, the images side by side and the PSNR curves.

:func:`siren_fit_results` runs the fits (a learner with its own inner loop -- Meta-SGD's learned step sizes,
MAML's SGD --, or ``(model, lr, optimizer)`` for plain fitting from any init); :class:`SirenFitExplorer` shows
them. Frames are rendered once and cached, so scrubbing is instant.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ipywidgets as widgets
import torch

from .._checks import check_images, check_int
from . import render
from .explorers import _db, _draw_method_images, _draw_psnr_curves, _Explorer, _status


def _fit_loss(model, batch):
    return torch.nn.functional.mse_loss(model(batch[0]), batch[1])


def siren_fit_results(methods: Mapping[str, Any], image: torch.Tensor, steps: int) -> dict[str, Any]:
    """Fit ``image`` ``[C, H, W]`` (C = 1 or 3, in [0, 1]) with every method for ``steps`` steps.

    Args:
        methods: ``{name: how}``, ``how`` a meta-learner (``.adapt(support, loss_fn, steps=, query=, metric=)``,
            e.g. a loaded ``restoration_siren_metasgd``) or ``(model, lr)`` / ``(model, lr, optimizer)`` for
            plain fitting of a SIREN ``model`` (``optimizer`` ``"adam"`` by default, SIREN's usual one).
        image: the photograph to fit.
        steps: fitting steps (>= 1).

    Returns:
        ``{name: {"images": [steps + 1 tensors [C, H, W]], "psnr": [steps + 1 floats]}, "clean": image}``.
    """
    from ..evaluation.metrics import psnr
    from ..meta.baselines import finetune
    from ..models.siren import image_to_pixels, pixels_to_image

    if not isinstance(methods, Mapping) or not methods:
        raise ValueError(f"methods must be a non-empty dict {{name: learner or (model, lr[, optimizer])}}, got "
                         f"{methods!r}")
    image = check_images("image", image, rank=3)
    if image.shape[0] not in (1, 3):
        raise ValueError(f"image must have 1 or 3 channels, got shape {tuple(image.shape)}")
    check_int("steps", steps, minimum=1)
    _, h, w = image.shape
    pixels = image_to_pixels(image)
    results: dict[str, Any] = {"clean": image}
    for name, how in methods.items():
        frames: list[torch.Tensor] = []
        scores: list[float] = []

        def record(model, batch, frames=frames, scores=scores) -> float:
            with torch.no_grad():
                fitted = pixels_to_image(model(batch[0]), h, w).clamp(0, 1)
            frames.append(fitted)
            scores.append(float(psnr(fitted[None], image[None])))
            return scores[-1]

        if hasattr(how, "adapt"):
            how.adapt(pixels, _fit_loss, steps=steps, query=pixels, metric=record)
        elif isinstance(how, tuple) and len(how) in (2, 3) and isinstance(how[0], torch.nn.Module):
            optimizer = how[2] if len(how) == 3 else "adam"
            finetune(how[0], pixels, _fit_loss, steps, how[1], optimizer, query=pixels, metric=record)
        else:
            raise TypeError(f"methods[{name!r}] must be a meta-learner (with .adapt) or (model, lr[, optimizer]), "
                            f"got {type(how).__name__}")
        results[name] = {"images": frames, "psnr": scores}
    return results


class SirenFitExplorer(_Explorer):
    """Scrub through the fitting steps of :func:`siren_fit_results`: the photograph, each method's fit after
    ``k`` steps (PSNR in the titles) and the PSNR curves with a line at ``k``. Controls: ``step`` (IntSlider)
    and a Play button; the text line reads ``"step k: method PSNR dB, ..."``.

    Args:
        results: what :func:`siren_fit_results` returns.
        step: initial step.
        note: one line shown under the plot (e.g. why the meta-learned init is ahead).
    """

    def __init__(self, results: Mapping[str, Any], step: int = 0, note: str = "", dpi: int = render.DPI) -> None:
        super().__init__()
        self._init_parts(dpi)
        if not isinstance(results, Mapping) or "clean" not in results:
            raise ValueError("results must be what siren_fit_results returns: {'clean': image, name: {'images', "
                             "'psnr'}}")
        self.clean = check_images("results['clean']", results["clean"], rank=3)
        self.methods = [k for k in results if k != "clean"]
        if not self.methods:
            raise ValueError("results holds no method; siren_fit_results(methods, image, steps) makes them")
        lengths = {len(results[m]["images"]) for m in self.methods} | {len(results[m]["psnr"]) for m in self.methods}
        if len(lengths) != 1:
            raise ValueError(f"every method in results must have the same number of steps, got lengths {lengths}")
        self.results = results
        self.steps = lengths.pop() - 1
        check_int("step", step, minimum=0, maximum=self.steps)
        self._cache: dict[int, bytes] = {}
        self.slider = widgets.IntSlider(value=step, min=0, max=max(self.steps, 1), description="step",
                                        continuous_update=False)
        self.play = widgets.Play(value=step, min=0, max=max(self.steps, 1), interval=400)
        widgets.jslink((self.play, "value"), (self.slider, "value"))
        self.label = widgets.HTML(value="")
        self.status = self.label
        self.note = widgets.HTML(value=_status(note) if note else "")
        self.children = [widgets.HBox([self.play, self.slider]), self.label, self.image, self.note]
        self.slider.observe(self._guarded(lambda: self.show_step(self.slider.value)), names="value")
        self.show_step(step)

    def text_at(self, step: int) -> str:
        """``"step k: method PSNR dB, ..."``."""
        return f"step {step}: " + ", ".join(f"{m} {_db(self.results[m]['psnr'][step])}" for m in self.methods)

    def figure(self, step: int) -> Any:
        """The matplotlib figure of ``step``."""
        check_int("step", step, minimum=0, maximum=self.steps)
        columns = len(self.methods) + 1
        fig = render.new_figure(max(2.0 * columns, 5.5), 4.6)
        grid = fig.add_gridspec(2, columns, height_ratios=[1.0, 0.8])
        render.show_image(fig.add_subplot(grid[0, 0]), self.clean, "photograph")
        _draw_method_images(fig, grid, self.results, self.methods, step)
        _draw_psnr_curves(fig.add_subplot(grid[1, :]), self.results, self.methods, step, "fitting steps", "PSNR (dB)")
        fig.tight_layout()
        return fig

    def png_at(self, step: int) -> bytes:
        """PNG bytes of ``step``'s frame (rendered once, then cached)."""
        if step not in self._cache:
            self._cache[step] = render.figure_to_png(self.figure(step), self.dpi)
        return self._cache[step]

    def show_step(self, step: int) -> None:
        """Show ``step`` (what moving the slider does)."""
        self._show_png(self.png_at(step))
        self.label.value = _status(self.text_at(step))
        if self.slider.value != step:
            self.slider.value = step
