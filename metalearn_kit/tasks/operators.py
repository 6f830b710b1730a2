"""Degradation families whose support set identifies the task: one degraded image does not tell the operator,
the support pairs do.

A restoration task of the white-noise family is *homogeneous*: a blind denoiser can read the noise level off a
single noisy image, so one jointly trained model already serves every task and a meta-learned initialisation
has nothing to add. The families here are the opposite. Each task draws a hidden operator that a single
degraded image leaves ambiguous:

- :class:`ToneCurve` (intensity): ``y = T(x)`` with a per-task gamma in *both* directions and an S- or
  inverse-S contrast bend. A dark picture may be a dark scene or a darkening curve; only pairs tell.
- :class:`ColourCast` (colour, 3 channels): a per-task hue rotation about the grey axis and white-balance
  gains. A green sky may be a green scene or a cast.
- :class:`DirectionalBlur` (spatial): blind linear motion blur whose direction and length are per task.
- :class:`StripeNoise` (spatial, structured noise): periodic interference of a per-task orientation, period and
  amplitude (each image its own phase), as from a scanner or electrical pickup. Stripes look like texture.
- :class:`ChannelMisregistration` (spatial, 3 channels): the red and blue planes shifted by a per-task
  displacement (lateral chromatic aberration). Measured and not shipped: the colour fringes show the shift in one
  picture, so joint pretraining learns to undo it blind (``docs/benchmarks/operator_family_probes.md``).

Held-out task parameters: the parameter that names the task (gamma, hue, blur angle, stripe angle) is drawn
from interleaved *bands*; the test split's bands lie in the gaps between the training bands, so no test task
repeats a training operator while both stay inside the same overall range. A band range is written as a list
of ``(low, high)`` tuples (``angle=[(0, 15), (30, 45)]``); a value is drawn uniformly over their union.

The families register like the built-in ones, so ``RestorationTasks(photos, "tone_curve", ...)`` works, and a
new family follows the same pattern (subclass :class:`BandedDegradation`, set ``name`` and ``default_ranges``,
implement ``degrade``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .degradations import Degradation, blur, motion_kernel

# ----------------------------------------------------------------------------------------------------------
# Bands: a parameter drawn from a union of intervals
# ----------------------------------------------------------------------------------------------------------


def interleaved_bands(low: float, high: float, count: int, split: str) -> list[tuple[float, float]]:
    """Cut ``[low, high]`` into ``2 * count`` equal bands; the training split gets the even ones, the test split
    the odd ones (``"val"`` = training bands). Returns a list of ``(low, high)`` tuples."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    width = (high - low) / (2 * count)
    first = 1 if split == "test" else 0
    return [(low + i * width, low + (i + 1) * width) for i in range(first, 2 * count, 2)]


def _is_band_list(spec: Any) -> bool:
    return isinstance(spec, list) and bool(spec) and all(isinstance(s, tuple) for s in spec)


class BandedDegradation(Degradation, register=False):
    """A :class:`Degradation` whose ranges may also be a list of ``(low, high)`` bands (see the module docs):
    the value is drawn uniformly over the union of the bands (each band weighted by its width)."""

    def _check_range(self, param: str, spec: Any) -> Any:
        if not _is_band_list(spec):
            return super()._check_range(param, spec)
        bands = [super(BandedDegradation, self)._check_range(param, band) for band in spec]
        if sum(high - low for low, high in bands) <= 0:
            raise ValueError(f"{type(self).__name__} {param} bands {spec!r} have zero total width")
        return bands

    def sample_params(self, generator: torch.Generator | int | None = None) -> dict[str, Any]:
        from ..config import make_generator

        g = make_generator(generator)
        params = super().sample_params(g)  # bands are lists, drawn as a "choice" here and redrawn below
        for param, spec in self.ranges.items():
            if _is_band_list(spec):
                widths = torch.tensor([high - low for low, high in spec], dtype=torch.float64)
                u = float(torch.rand((), generator=g, dtype=torch.float64)) * float(widths.sum())
                cumulative = torch.cumsum(widths, 0)
                index = min(int((cumulative < u).sum()), len(spec) - 1)
                low, high = spec[index]
                start = float(cumulative[index] - widths[index])
                params[param] = float(min(high, low + (u - start)))
        return params

    def possible_values(self, param: str) -> list[Any]:
        spec = self.ranges[param]
        if _is_band_list(spec):
            return [spec[0][0], max(high for _, high in spec)]
        return super().possible_values(param)


# ----------------------------------------------------------------------------------------------------------
# Intensity: a per-task tone curve
# ----------------------------------------------------------------------------------------------------------


def tone_curve(x: torch.Tensor, log2_gamma: float, contrast: float) -> torch.Tensor:
    """The monotone tone curve ``T(x)``: ``u = x ** 2**log2_gamma`` then ``(1 - c) u + c smoothstep(u)``
    (``c > 0`` an S-curve, ``c < 0`` an inverse S). Monotone for ``-2 < c < 1``; any shape."""
    u = x.clamp(0, 1) ** (2.0 ** log2_gamma)
    return (1 - contrast) * u + contrast * (3 * u**2 - 2 * u**3)


def inverse_tone_curve(y: torch.Tensor, log2_gamma: float, contrast: float, iterations: int = 40) -> torch.Tensor:
    """``T^{-1}(y)`` by bisection (the curve is monotone): the oracle that knows the task's curve."""
    low, high = torch.zeros_like(y), torch.ones_like(y)
    for _ in range(iterations):
        mid = (low + high) / 2
        below = tone_curve(mid, log2_gamma, contrast) < y
        low, high = torch.where(below, mid, low), torch.where(below, high, mid)
    return (low + high) / 2


class ToneCurve(BandedDegradation):
    """Per-task tone curve (:func:`tone_curve`): gamma ``2**log2_gamma`` in both directions (darkening and
    brightening) with a contrast bend, plus faint noise ``noise_sigma``. ``log2_gamma`` comes in interleaved
    bands over ``[-1.5, 1.5]`` (gamma 0.35 to 2.8): the test split's bands are the training split's gaps."""

    name = "tone_curve"
    default_ranges = {split: {"log2_gamma": interleaved_bands(-1.5, 1.5, 4, split), "contrast": (-0.6, 0.6),
                              "noise_sigma": 0.005} for split in ("train", "val", "test")}
    param_limits = {"log2_gamma": (-4.0, 4.0), "contrast": (-1.5, 0.95), "noise_sigma": (0.0, None)}

    def degrade(self, clean, params, generator):
        out = tone_curve(clean, params["log2_gamma"], params["contrast"])
        if params["noise_sigma"] > 0:
            out = out + params["noise_sigma"] * self.randn(clean.shape, generator, clean)
        return out

    def operator(self, params, image_size=None):
        return {"kind": "tone_curve", "log2_gamma": params["log2_gamma"], "contrast": params["contrast"]}


# ----------------------------------------------------------------------------------------------------------
# Colour: a per-task colour cast
# ----------------------------------------------------------------------------------------------------------


def colour_matrix(hue: float, log2_gain_red: float, log2_gain_blue: float) -> torch.Tensor:
    """The ``[3, 3]`` RGB matrix of a colour cast: rotate by ``hue`` degrees about the grey axis (grey stays
    grey), then scale red and blue by ``2**log2_gain_*`` (a white-balance error; green is the reference)."""
    theta = math.radians(hue)
    axis = torch.full((3,), 1 / math.sqrt(3), dtype=torch.float64)
    cross = torch.tensor([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]],
                         dtype=torch.float64)
    rotation = (math.cos(theta) * torch.eye(3, dtype=torch.float64) + math.sin(theta) * cross
                + (1 - math.cos(theta)) * torch.outer(axis, axis))
    gains = torch.tensor([2.0 ** log2_gain_red, 1.0, 2.0 ** log2_gain_blue], dtype=torch.float64)
    return (gains[:, None] * rotation).float()


def apply_colour_matrix(images: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``[N, 3, H, W]`` images times a ``[3, 3]`` matrix, pixel by pixel."""
    return torch.einsum("ij,njhw->nihw", matrix.to(images.device, images.dtype), images)


class ColourCast(BandedDegradation):
    """Per-task colour cast on colour images ``[N, 3, H, W]``: :func:`colour_matrix` (a hue rotation of ``hue``
    degrees and red/blue white-balance gains), clipped to [0, 1]. ``hue`` comes in interleaved bands over
    ``[-120, 120]`` degrees; the test split's bands are the training split's gaps."""

    name = "colour_cast"
    required_channels = 3
    default_ranges = {split: {"hue": interleaved_bands(-120.0, 120.0, 6, split), "log2_gain_red": (-0.5, 0.5),
                              "log2_gain_blue": (-0.5, 0.5)} for split in ("train", "val", "test")}
    param_limits = {"hue": (-180.0, 180.0), "log2_gain_red": (-2.0, 2.0), "log2_gain_blue": (-2.0, 2.0)}

    def degrade(self, clean, params, generator):
        if clean.shape[1] != 3:
            raise ValueError(f"colour_cast needs colour images [N, 3, H, W], got {clean.shape[1]} channel(s); "
                             f"use photos(..., channels=3)")
        return apply_colour_matrix(clean, self.matrix(params))

    def matrix(self, params: dict[str, Any]) -> torch.Tensor:
        return colour_matrix(params["hue"], params["log2_gain_red"], params["log2_gain_blue"])

    def operator(self, params, image_size=None):
        return {"kind": "colour_matrix", "matrix": self.matrix(params)}


# ----------------------------------------------------------------------------------------------------------
# Spatial: blind directional motion blur, periodic stripe noise
# ----------------------------------------------------------------------------------------------------------


class DirectionalBlur(BandedDegradation):
    """Blind linear motion blur: a streak of ``length`` pixels at ``angle`` degrees (:func:`motion_kernel`,
    ``kernel_size`` 13, reflect padding) plus faint noise. The restorer is *not* given the kernel: it must read
    the direction off the support pairs. ``angle`` comes in interleaved 15-degree bands over ``[0, 180)``; the
    test split's bands are the training split's gaps."""

    name = "directional_blur"
    kernel_size = 13
    default_ranges = {split: {"angle": interleaved_bands(0.0, 180.0, 6, split), "length": (5.0, 11.0),
                              "noise_sigma": 0.005} for split in ("train", "val", "test")}
    param_limits = {"angle": (-360.0, 360.0), "length": (1.0, 13.0), "noise_sigma": (0.0, None)}

    def kernel(self, params: dict[str, Any]) -> torch.Tensor:
        return motion_kernel(self.kernel_size, params["length"], params["angle"])

    def check_image_size(self, height, width, params=None):
        if self.kernel_size // 2 >= min(height, width):
            raise ValueError(f"images of size {height}x{width} are too small for the {self.kernel_size}-pixel "
                             f"blur kernel; use patches of at least {self.kernel_size} pixels")

    def degrade(self, clean, params, generator):
        out = blur(clean, self.kernel(params))
        if params["noise_sigma"] > 0:
            out = out + params["noise_sigma"] * self.randn(clean.shape, generator, clean)
        return out

    def operator(self, params, image_size=None):
        return {"kind": "blur", "kernel": self.kernel(params), "padding": "reflect",
                "noise_sigma": params["noise_sigma"]}


def stripe_pattern(size: tuple[int, int], angle: float, period: float, phase: torch.Tensor) -> torch.Tensor:
    """Unit-amplitude stripes ``[N, 1, H, W]``: ``sin(2 pi (r . d) / period + phase_n)`` with ``d`` the unit
    vector at ``angle`` degrees and ``phase`` ``[N]`` one phase per image."""
    h, w = size
    rows = torch.arange(h, dtype=torch.float32)[:, None]
    cols = torch.arange(w, dtype=torch.float32)[None, :]
    theta = math.radians(angle)
    along = cols * math.cos(theta) - rows * math.sin(theta)
    return torch.sin(2 * math.pi * along / period + phase.float().view(-1, 1, 1))[:, None]


class StripeNoise(BandedDegradation):
    """Structured noise: periodic stripes of a per-task ``angle``, ``period`` (pixels) and ``amplitude``, each
    image with its own random phase (the interference is not a fixed pattern), plus faint white noise. The
    same stripes on every channel. ``angle`` comes in interleaved bands over ``[0, 180)``; the test split's
    bands are the training split's gaps."""

    name = "stripe_noise"
    default_ranges = {split: {"angle": interleaved_bands(0.0, 180.0, 6, split), "period": (3.0, 10.0),
                              "amplitude": (0.06, 0.15), "noise_sigma": 0.005} for split in ("train", "val", "test")}
    param_limits = {"angle": (-360.0, 360.0), "period": (2.0, None), "amplitude": (0.0, 1.0),
                    "noise_sigma": (0.0, None)}

    def degrade(self, clean, params, generator):
        n = clean.shape[0]
        phase = 2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
        stripes = stripe_pattern(tuple(clean.shape[-2:]), params["angle"], params["period"], phase)
        out = clean + params["amplitude"] * stripes.to(clean.device, clean.dtype)
        if params["noise_sigma"] > 0:
            out = out + params["noise_sigma"] * self.randn(clean.shape, generator, clean)
        return out

    def operator(self, params, image_size=None):
        return {"kind": "stripes", "angle": params["angle"], "period": params["period"],
                "amplitude": params["amplitude"]}


def shift_images(images: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    """Translate ``[N, C, H, W]`` images by ``(dx, dy)`` pixels (sub-pixel, bilinear; reflected at the border):
    ``out[y, x] = in[y - dy, x - dx]``."""
    n, _, h, w = images.shape
    theta = torch.tensor([[1.0, 0.0, -2.0 * dx / w], [0.0, 1.0, -2.0 * dy / h]], dtype=images.dtype,
                         device=images.device).expand(n, 2, 3)
    grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    return torch.nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="reflection",
                                           align_corners=False)


class ChannelMisregistration(BandedDegradation):
    """Lateral chromatic aberration / colour-plane misregistration on colour images: the red plane moves by
    ``shift`` pixels in direction ``red_angle`` (degrees), the blue plane by ``shift`` in the opposite-ish
    direction ``red_angle + 180 + blue_offset``; green stays. One picture shows colour fringes but not which way
    each plane moved; the support pairs do. ``red_angle`` comes in interleaved bands over ``[0, 360)``."""

    name = "channel_shift"
    required_channels = 3
    default_ranges = {split: {"red_angle": interleaved_bands(0.0, 360.0, 6, split), "shift": (1.0, 2.5),
                              "blue_offset": (-60.0, 60.0)} for split in ("train", "val", "test")}
    param_limits = {"red_angle": (-360.0, 360.0), "shift": (0.0, 8.0), "blue_offset": (-180.0, 180.0)}

    def shifts(self, params: dict[str, Any]) -> dict[str, tuple[float, float]]:
        """``{"red": (dx, dy), "blue": (dx, dy)}`` in pixels."""
        red = math.radians(params["red_angle"])
        blue = red + math.pi + math.radians(params["blue_offset"])
        s = params["shift"]
        return {"red": (s * math.cos(red), -s * math.sin(red)), "blue": (s * math.cos(blue), -s * math.sin(blue))}

    def degrade(self, clean, params, generator):
        if clean.shape[1] != 3:
            raise ValueError(f"channel_shift needs colour images [N, 3, H, W], got {clean.shape[1]} channel(s); "
                             f"use photos(..., channels=3)")
        shifts = self.shifts(params)
        red = shift_images(clean[:, :1], *shifts["red"])
        blue = shift_images(clean[:, 2:], *shifts["blue"])
        return torch.cat([red, clean[:, 1:2], blue], dim=1)

    def operator(self, params, image_size=None):
        return {"kind": "channel_shift", **self.shifts(params)}


OPERATOR_FAMILIES = (ToneCurve, ColourCast, DirectionalBlur, StripeNoise, ChannelMisregistration)
