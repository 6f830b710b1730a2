"""Blur kernels and the blur every degradation and restorer shares: Gaussian and motion kernels ``[k, k]``
(summing to 1), their checks, and :func:`blur` (reflect padding, output the input's size)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from .._checks import check_float, check_images, check_int

__all__ = ["blur", "check_kernel", "gaussian_kernel", "motion_kernel"]

# ----------------------------------------------------------------------------------------------------------
# Kernels and the blur operator (public: model-based restorers use the same functions)
# ----------------------------------------------------------------------------------------------------------

def gaussian_kernel(size: int, sigma: float) -> torch.Tensor:
    """Isotropic Gaussian blur kernel ``[size, size]`` (``size`` odd), normalised to sum to one."""
    check_int("size", size, minimum=1)
    if size % 2 == 0:
        raise ValueError(f"size must be odd so the kernel has a centre pixel, got {size}; use {size + 1}")
    sigma = check_float("sigma", sigma, minimum=0.0, strict_min=True)
    coords = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = g[:, None] * g[None, :]
    return (kernel / kernel.sum()).float()


def motion_kernel(size: int, length: float, angle: float) -> torch.Tensor:
    """Linear motion blur kernel ``[size, size]``: a segment of ``length`` pixels through the centre at
    ``angle`` degrees (0 = horizontal, counter-clockwise), anti-aliased by bilinear splatting, sum one."""
    check_int("size", size, minimum=1)
    if size % 2 == 0:
        raise ValueError(f"size must be odd so the kernel has a centre pixel, got {size}; use {size + 1}")
    length = check_float("length", length, minimum=1.0)
    if length > size:
        raise ValueError(f"length {length} does not fit a kernel of size {size}; use a kernel_size >= "
                         f"{math.ceil(length) | 1}")
    angle = check_float("angle", angle)
    theta = math.radians(angle)
    # Dense samples along the segment, each splatted onto its four neighbouring pixels.
    t = torch.linspace(-(length - 1) / 2, (length - 1) / 2, steps=max(2, int(length * 8)), dtype=torch.float64)
    x = size // 2 + t * math.cos(theta)
    y = size // 2 - t * math.sin(theta)  # image rows grow downwards
    kernel = torch.zeros(size, size, dtype=torch.float64)
    x0, y0 = x.floor(), y.floor()
    for dx in (0, 1):
        for dy in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            w = (1 - (x - xi).abs()) * (1 - (y - yi).abs())
            inside = (xi >= 0) & (xi < size) & (yi >= 0) & (yi < size)
            kernel.index_put_((yi[inside].long(), xi[inside].long()), w[inside], accumulate=True)
    return (kernel / kernel.sum()).float()


def check_kernel(name: str, kernel: Any, tolerance: float = 1e-4) -> torch.Tensor:
    """Check a user-given blur kernel: a finite 2-D float tensor, odd square size, summing to one."""
    if not isinstance(kernel, torch.Tensor):
        raise TypeError(f"{name} must be a 2-D torch.Tensor, got {type(kernel).__name__}")
    if kernel.dim() != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
        raise ValueError(f"{name} must be a square 2-D tensor with an odd size, got shape {tuple(kernel.shape)}")
    if not kernel.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {kernel.dtype}")
    if not torch.isfinite(kernel).all():
        raise ValueError(f"{name} contains NaN or Inf values")
    total = float(kernel.sum())
    if abs(total - 1.0) > tolerance:
        raise ValueError(f"{name} must sum to one so blurring keeps the image brightness, got sum {total:.6g}; "
                         f"divide it by kernel.sum()")
    return kernel.float()


def blur(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve every channel of ``images`` ``[N, C, H, W]`` with ``kernel`` ``[k, k]`` (odd ``k``), with
    **reflect** padding of ``k // 2`` so the output keeps the input size and has no dark border.

    This is a correlation (``F.conv2d``), the convention of the whole kit; flip the kernel for a true
    convolution (the built-in Gaussian kernels are symmetric, so it makes no difference for them)."""
    images = check_images("images", images, unit_range=False)
    if not isinstance(kernel, torch.Tensor) or kernel.dim() != 2 or kernel.shape[0] != kernel.shape[1] \
            or kernel.shape[0] % 2 == 0:
        raise ValueError(f"kernel must be a square 2-D tensor with an odd size, got "
                         f"{tuple(kernel.shape) if isinstance(kernel, torch.Tensor) else type(kernel).__name__}")
    k = kernel.shape[-1]
    pad = k // 2
    n, c, h, w = images.shape
    if pad >= h or pad >= w:
        raise ValueError(f"images of size {h}x{w} are too small for a {k}x{k} kernel with reflect padding; "
                         f"use patches larger than {pad} pixels or a smaller kernel_size")
    weight = kernel.to(images.device, images.dtype).expand(c, 1, k, k)
    padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
    return F.conv2d(padded, weight, groups=c)


