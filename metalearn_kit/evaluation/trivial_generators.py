"""Trivial "generators" that learn nothing: the baselines every generation table must carry beside the
learned methods (``kind="trivial"``).

Each maps a support set ``[K, C, H, W]`` to ``count`` images ``[count, C, H, W]`` in [0, 1]:

- :func:`support_copies`: the support images, repeated in turn (a perfect memoriser).
- :func:`blurred_copies`: the copies, Gaussian-blurred (``sigma`` pixels; 0.7 by default) -- what a mean
  image of a memorising model looks like.
- :func:`support_mean`: the pixel mean of the support, repeated.
- :func:`affine_jitter`: each copy under a random affine map (:class:`JitterConfig`: rotation, shift, scale,
  shear), the augmentation a practitioner would try first.

A learned generator is only worth its training if it beats these on a metric copies cannot pass
(:mod:`metalearn_kit.evaluation.generation_metrics`, :mod:`metalearn_kit.evaluation.downstream`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .._checks import check_float, check_float_fields, check_images, check_int

__all__ = ["JitterConfig", "TRIVIAL_GENERATORS", "affine_jitter", "blurred_copies", "gaussian_blur",
           "support_copies", "support_mean"]


@dataclass(frozen=True)
class JitterConfig:
    """The ranges of :func:`affine_jitter`, each drawn uniformly in ``[-max, max]`` per image.

    ``rotation_deg``: rotation (degrees); ``shift``: translation as a fraction of the image side (0.08 of 28
    pixels is about 2 pixels); ``scale``: log-uniform zoom in ``[1 / (1 + scale), 1 + scale]``; ``shear_deg``:
    horizontal shear (degrees). The defaults are the mild ranges of common Omniglot augmentation: the character
    stays legible and in frame.
    """

    rotation_deg: float = 10.0
    shift: float = 0.08
    scale: float = 0.1
    shear_deg: float = 10.0

    def __post_init__(self) -> None:
        check_float_fields(self, ("rotation_deg", "shift", "scale", "shear_deg"), minimum=0.0)
        if self.shift > 0.5 or self.rotation_deg > 180 or self.shear_deg >= 60:
            raise ValueError(f"JitterConfig ranges too wide (shift <= 0.5, rotation_deg <= 180, shear_deg < 60), "
                             f"got {self}")


def _check(support: torch.Tensor, count: int) -> None:
    check_images("support", support)
    if support.shape[0] == 0:
        raise ValueError("support must hold at least one image, got shape "
                         f"{tuple(support.shape)}")
    check_int("count", count, minimum=1)


def support_copies(support: torch.Tensor, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``count`` images: ``support[i % K]`` (``generator`` unused; the signature is shared)."""
    _check(support, count)
    return support[torch.arange(count) % support.shape[0]].clone()


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """``images [N, C, H, W]`` convolved with a Gaussian of ``sigma`` pixels (separable, zero padding)."""
    check_float("sigma", sigma, minimum=0.0, strict_min=True)
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-x ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    out = F.conv2d(images, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), padding=(0, radius),
                   groups=channels)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), padding=(radius, 0),
                    groups=channels)


def blurred_copies(support: torch.Tensor, count: int, generator: torch.Generator | None = None,
                   sigma: float = 0.7) -> torch.Tensor:
    """:func:`support_copies` blurred by a Gaussian of ``sigma`` pixels."""
    return gaussian_blur(support_copies(support, count), sigma).clamp(0, 1)


def support_mean(support: torch.Tensor, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The support's pixel mean ``[1, C, H, W]``, repeated ``count`` times."""
    _check(support, count)
    return support.mean(0, keepdim=True).expand(count, -1, -1, -1).clone()


def _affine_matrices(count: int, config: JitterConfig, generator: torch.Generator | None) -> torch.Tensor:
    """``[count, 2, 3]`` maps (output -> input coordinates in [-1, 1]) of random rotation, shear, zoom, shift."""
    u = torch.rand(count, 5, generator=generator, dtype=torch.float64) * 2 - 1
    angle = torch.deg2rad(u[:, 0] * config.rotation_deg)
    shear = torch.tan(torch.deg2rad(u[:, 1] * config.shear_deg))
    zoom = torch.exp(u[:, 2] * math.log1p(config.scale))
    shift = u[:, 3:] * 2 * config.shift  # [-1, 1] spans the side: a fraction f of the side is 2 f
    cos, sin = torch.cos(angle), torch.sin(angle)
    # rotation @ shear, divided by the zoom (the grid maps output to input, so zooming in shrinks it)
    a = torch.stack([torch.stack([cos, cos * shear - sin], -1), torch.stack([sin, sin * shear + cos], -1)], -2)
    a = a / zoom[:, None, None]
    return torch.cat([a, shift[:, :, None]], -1)


def affine_jitter(support: torch.Tensor, count: int, generator: torch.Generator | None = None,
                  config: JitterConfig = JitterConfig()) -> torch.Tensor:
    """``count`` copies of the support, each under a random affine map drawn from ``config`` (bilinear,
    zero = no ink outside the frame)."""
    copies = support_copies(support, count)
    theta = _affine_matrices(count, config, generator).to(copies)
    grid = F.affine_grid(theta, list(copies.shape), align_corners=False)
    return F.grid_sample(copies, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp(0, 1)


# method name -> generator(support, count, generator) (in table order)
TRIVIAL_GENERATORS = {"copies": support_copies, "blurred_copies": blurred_copies, "support_mean": support_mean,
                      "affine_jitter": affine_jitter}
