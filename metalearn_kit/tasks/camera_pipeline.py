"""An unknown camera as a restoration task: the operator has no compact closed form, inverting it is ill-posed, and
the support (two or three pairs) is small against the operator's complexity -- the setting where a learned prior
(meta-learning) has something to give that a classical fit on the support pairs cannot.

Per task, :class:`CameraPipeline` draws a camera and applies its stages in the order a sensor and its processing
do:

1. optics: an anisotropic Gaussian blur (``blur_sigma`` along ``blur_angle``, ``blur_ratio`` across it);
2. sensor: Poisson-Gaussian noise, ``peak`` photons at white (shot noise) plus read noise ``read_noise``;
3. colour: a 3x3 matrix near identity (a hue rotation about the grey axis and red/blue white-balance gains);
4. tone: a random monotone spline (:func:`spline_tone_curve`: ``KNOTS`` pieces, a gamma bent by per-piece
   random slopes -- no small parametric form);
5. the result clipped to [0, 1].

Held-out cameras: ``log2_gamma`` (the tone curve's overall gamma) and ``blur_angle`` come in interleaved bands
(:func:`~metalearn_kit.tasks.operators.interleaved_bands`); the test split's bands are the training split's gaps.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from .operators import BandedDegradation, apply_colour_matrix, colour_matrix, interleaved_bands

__all__ = ["KNOTS", "CameraPipeline", "anisotropic_gaussian_kernel", "inverse_spline_tone_curve",
           "spline_knots", "spline_tone_curve"]

KNOTS = 8
KERNEL_SIZE = 9  # covers 3 sigma of the widest blur (blur_sigma <= 1.5)


def anisotropic_gaussian_kernel(size: int, sigma: float, ratio: float, angle: float) -> torch.Tensor:
    """A Gaussian kernel ``[size, size]`` (odd ``size``, sum one): standard deviation ``sigma`` along the direction
    ``angle`` degrees (0 = horizontal, counter-clockwise) and ``sigma * ratio`` across it."""
    if size % 2 == 0:
        raise ValueError(f"size must be odd so the kernel has a centre, got {size}; use {size + 1}")
    coords = torch.arange(size, dtype=torch.float64) - size // 2
    y, x = torch.meshgrid(-coords, coords, indexing="ij")  # image rows grow downwards
    theta = math.radians(angle)
    along = x * math.cos(theta) + y * math.sin(theta)
    across = -x * math.sin(theta) + y * math.cos(theta)
    kernel = torch.exp(-0.5 * ((along / sigma) ** 2 + (across / (sigma * ratio)) ** 2))
    return (kernel / kernel.sum()).float()


def spline_knots(log2_gamma: float, slopes: list[float]) -> torch.Tensor:
    """The ``KNOTS + 1`` values ``[0 = y_0 < ... < y_K = 1]`` of the tone curve at ``x = i / KNOTS``: the gamma curve
    ``x ** 2**log2_gamma`` whose piece ``i`` is made steeper or flatter by the factor ``exp(slopes[i])``, then
    rescaled to end at one."""
    if len(slopes) != KNOTS:
        raise ValueError(f"slopes must hold {KNOTS} values (one per spline piece), got {len(slopes)}")
    x = torch.linspace(0, 1, KNOTS + 1, dtype=torch.float64)
    rises = torch.diff(x ** (2.0 ** log2_gamma)) * torch.exp(torch.tensor(slopes, dtype=torch.float64))
    knots = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(rises, 0)])
    return knots / knots[-1]


def spline_tone_curve(x: torch.Tensor, knots: torch.Tensor) -> torch.Tensor:
    """The monotone piecewise-linear curve through ``(i / KNOTS, knots[i])``, applied to every pixel of ``x``."""
    pieces = knots.numel() - 1
    position = x.clamp(0, 1) * pieces
    low = position.floor().long().clamp(0, pieces - 1)
    knots = knots.to(x.device, x.dtype)
    return knots[low] + (position - low) * (knots[low + 1] - knots[low])


def inverse_spline_tone_curve(y: torch.Tensor, knots: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`spline_tone_curve` (the knots rise strictly, so each level has one preimage)."""
    pieces = knots.numel() - 1
    knots = knots.to(y.device, y.dtype)
    low = (torch.searchsorted(knots.contiguous(), y.clamp(0, 1).contiguous(), right=True) - 1).clamp(0, pieces - 1)
    fraction = (y.clamp(0, 1) - knots[low]) / (knots[low + 1] - knots[low]).clamp_min(1e-12)
    return (low + fraction.clamp(0, 1)) / pieces


class CameraPipeline(BandedDegradation):
    """An unknown camera per task (see the module docs) on colour images ``[N, 3, H, W]``. Its parameters are the
    ranges below plus ``slopes`` (``KNOTS`` log-slope perturbations of the tone curve, standard deviation
    ``curve_wiggle``), drawn by :meth:`sample_params`."""

    name = "camera_pipeline"
    required_channels = 3
    extra_params = frozenset({"slopes"})
    default_ranges = {split: {"log2_gamma": interleaved_bands(-1.0, 1.0, 4, split), "curve_wiggle": (0.1, 0.5),
                              "hue": (-20.0, 20.0), "log2_gain_red": (-0.3, 0.3), "log2_gain_blue": (-0.3, 0.3),
                              "blur_sigma": (0.5, 1.5), "blur_ratio": (0.3, 1.0),
                              "blur_angle": interleaved_bands(0.0, 180.0, 6, split),
                              "log10_peak": (1.7, 3.0), "read_noise": (0.002, 0.015)}
                      for split in ("train", "val", "test")}
    param_limits = {"log2_gamma": (-3.0, 3.0), "curve_wiggle": (0.0, 2.0), "hue": (-180.0, 180.0),
                    "log2_gain_red": (-2.0, 2.0), "log2_gain_blue": (-2.0, 2.0), "blur_sigma": (0.05, 1.5),
                    "blur_ratio": (0.05, 1.0), "blur_angle": (-360.0, 360.0), "log10_peak": (0.0, 6.0),
                    "read_noise": (0.0, 0.2)}

    def sample_params(self, generator: torch.Generator | int | None = None) -> dict[str, Any]:
        from ..config import make_generator

        g = make_generator(generator)
        params = super().sample_params(g)
        params["slopes"] = (params["curve_wiggle"] * torch.randn(KNOTS, generator=g, dtype=torch.float64)).tolist()
        return params

    def knots(self, params: dict[str, Any]) -> torch.Tensor:
        """The task's tone-curve knots (:func:`spline_knots`); ``slopes`` missing means an unbent gamma curve."""
        return spline_knots(params["log2_gamma"], list(params.get("slopes", [0.0] * KNOTS)))

    def kernel(self, params: dict[str, Any]) -> torch.Tensor:
        return anisotropic_gaussian_kernel(KERNEL_SIZE, params["blur_sigma"], params["blur_ratio"],
                                           params["blur_angle"])

    def matrix(self, params: dict[str, Any]) -> torch.Tensor:
        return colour_matrix(params["hue"], params["log2_gain_red"], params["log2_gain_blue"])

    def check_image_size(self, height, width, params=None):
        if min(height, width) <= KERNEL_SIZE // 2:
            raise ValueError(f"camera_pipeline needs images larger than {KERNEL_SIZE // 2} pixels for its "
                             f"{KERNEL_SIZE}x{KERNEL_SIZE} blur, got {height}x{width}; use larger patches")

    def degrade(self, clean, params, generator):
        if clean.shape[1] != 3:
            raise ValueError(f"camera_pipeline needs colour images [N, 3, H, W], got {clean.shape[1]} channel(s); "
                             f"use photos(..., channels=3)")
        pad = KERNEL_SIZE // 2
        weight = self.kernel(params).to(clean.device, clean.dtype).expand(3, 1, KERNEL_SIZE, KERNEL_SIZE)
        optics = F.conv2d(F.pad(clean, (pad,) * 4, mode="reflect"), weight, groups=3)
        peak = 10.0 ** params["log10_peak"]
        photons = torch.poisson((optics.clamp_min(0) * peak).detach().cpu(), generator=generator)
        sensor = (photons / peak).to(clean.device, clean.dtype)
        sensor = sensor + params["read_noise"] * self.randn(clean.shape, generator, clean)
        coloured = apply_colour_matrix(sensor, self.matrix(params))
        return spline_tone_curve(coloured, self.knots(params))

    def operator(self, params, image_size=None):
        return {"kind": "camera", "kernel": self.kernel(params), "matrix": self.matrix(params),
                "knots": self.knots(params), "peak": 10.0 ** params["log10_peak"],
                "read_noise": params["read_noise"]}
