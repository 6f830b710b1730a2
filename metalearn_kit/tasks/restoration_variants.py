"""Restoration task distributions beyond "one degradation, a few pairs" (:class:`RestorationTasks`), each a
:class:`~metalearn_kit.tasks.task.TaskDistribution` (``sample`` here, ``sample_batch`` from the base class):

- :class:`OperatorTasks`: a :class:`RestorationTasks` whose tasks also carry their known operator (blur kernels
  or masks), the third tensor an unrolled restorer takes.
- :class:`ZeroShotSRTasks`: MZSR's zero-shot super-resolution, support pairs made from the low-resolution image.
- :class:`BicubicSRTasks`: bicubic pairs for SR pretraining on external data (MZSR's first stage).
- :class:`SelfSupervisedDenoisingTasks`: one noisy image per task, no clean pixel in the support.
- :class:`ImageFitTasks`: one photo patch per task as ``(coordinates, values)`` for a coordinate network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..config import make_generator
from .task import Task, TaskDistribution

__all__ = ["BicubicSRTasks", "ImageFitTasks", "OperatorTasks", "SelfSupervisedDenoisingTasks", "ZeroShotSRTasks",
           "bicubic_resize"]


def bicubic_resize(images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bicubic resize of ``[N, C, H, W]`` to ``size`` (H', W'), clamped to [0, 1]."""
    return F.interpolate(images, size=tuple(size), mode="bicubic", align_corners=False).clamp(0, 1)


class OperatorTasks(TaskDistribution):
    """Wraps a :class:`~metalearn_kit.tasks.RestorationTasks` of one operator kind and appends each task's
    known operator to its support and query: ``(degraded, clean, operator)`` with ``operator`` the blur
    kernels ``[K, k, k]`` or the masks ``[K, 1, H, W]`` -- what
    :class:`~metalearn_kit.models.restoration.UnrolledRestorer` takes."""

    def __init__(self, tasks: Any) -> None:
        self.tasks = tasks

    def sample(self, generator: torch.Generator | int | None = None) -> Task:
        task = self.tasks.sample(generator)
        degradation = self.tasks.degradation(task.info["family"])
        size = tuple(task.support[0].shape[-2:])
        op = degradation.operator(task.info["params"], size)
        data = op["kernel"] if op["kind"] == "blur" else op["mask"][0] if op["kind"] == "mask" else None
        if data is None:
            raise ValueError(f"OperatorTasks supports blur and mask operators, got {op['kind']!r}")
        k, q = task.shots, task.queries
        return Task((*task.support, data.expand(k, *data.shape).clone()),
                    (*task.query, data.expand(q, *data.shape).clone()), task.info)


class ZeroShotSRTasks(TaskDistribution):
    """MZSR tasks from one HR patch each: a kernel from ``degradation`` (a SuperResolution family) gives the
    LR image and, applied again, its "son". ``support = (bicubic(son) at LR size, LR)`` -- only what a test
    image offers -- and ``query = (bicubic(LR) at HR size, HR)``. Patches with ``std < min_std`` are redrawn."""

    def __init__(self, source: Any, degradation: Any, min_std: float = 0.0) -> None:
        self.source = source
        self.degradation = degradation
        self.min_std = min_std

    def make(self, hr: torch.Tensor, params: dict) -> Task:
        low = self.degradation.downsample(hr, params)
        son = self.degradation.downsample(low, params)
        return Task((bicubic_resize(son, low.shape[-2:]), low), (bicubic_resize(low, hr.shape[-2:]), hr),
                    {"kind": "zero_shot_sr", "params": params})

    def sample(self, generator: torch.Generator | int | None = None) -> Task:
        g = make_generator(generator)
        params = self.degradation.sample_params(g)
        hr = self.source.sample_patches(1, g)
        for _ in range(50):  # flat patches make every SR method look perfect: redraw until there is detail
            if float(hr.std()) >= self.min_std:
                break
            hr = self.source.sample_patches(1, g)
        return self.make(hr, params)


class BicubicSRTasks(TaskDistribution):
    """External-data pretraining for SR (MZSR's first stage): ``(bicubic up of the bicubic-downscaled HR, HR)``
    pairs of ``batch`` patches, the same in support and query (joint pretraining pools them)."""

    def __init__(self, source: Any, scale: int, batch: int) -> None:
        self.source, self.scale, self.batch = source, scale, batch

    def sample(self, generator: torch.Generator | int | None = None) -> Task:
        g = make_generator(generator)
        hr = self.source.sample_patches(self.batch, g)
        low = F.interpolate(hr, scale_factor=1 / self.scale, mode="bicubic", antialias=True,
                            align_corners=False).clamp(0, 1)
        pair = (bicubic_resize(low, hr.shape[-2:]), hr)
        return Task(pair, pair, {"kind": "bicubic_sr"})


class SelfSupervisedDenoisingTasks(TaskDistribution):
    """One noisy image per task: ``support = (noisy, noisy, supervised=0)`` (Noise2Self only),
    ``query = (noisy, clean, supervised=1)`` (how well the adapted model denoises that very image)."""

    def __init__(self, source: Any, degradation: Any) -> None:
        self.source, self.degradation = source, degradation

    def make(self, clean: torch.Tensor, noisy: torch.Tensor) -> Task:
        zeros = torch.zeros(clean.shape[0])
        return Task((noisy, noisy, zeros), (noisy, clean, torch.ones(clean.shape[0])), {"kind": "noise2self"})

    def sample(self, generator: torch.Generator | int | None = None) -> Task:
        g = make_generator(generator)
        params = self.degradation.sample_params(g)
        clean = self.source.sample_patches(1, g)
        return self.make(clean, self.degradation.apply(clean, params, g))


class ImageFitTasks(TaskDistribution):
    """Fitting tasks: one photo patch each, ``support = query = (coords [P, 2], values [P, 1])``."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def make(self, image: torch.Tensor) -> Task:
        # the coordinate layout of the SIREN model (models sit above tasks: imported on use, no cycle)
        from ..models.siren import image_to_pixels

        pixels = image_to_pixels(image)
        return Task(pixels, pixels, {"kind": "image_fitting"})

    def sample(self, generator: torch.Generator | int | None = None) -> Task:
        return self.make(self.source.sample_patches(1, make_generator(generator))[0])
