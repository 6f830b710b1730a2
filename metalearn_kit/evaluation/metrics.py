"""Image-quality metrics in torch: PSNR and SSIM (matching ``skimage.metrics`` with ``data_range=1``),
plus a wall-clock timer.

Both metrics take ``[N, C, H, W]`` tensors (or ``[C, H, W]``, treated as one image) and return one
value per image (``reduction="none"``) or their mean (``reduction="mean"``, a Python float).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from .._checks import check_choice, check_float, check_int

__all__ = ["REDUCTIONS", "WallTimer", "psnr", "ssim"]

REDUCTIONS = ("mean", "none")


def _pair(name_a: str, a, name_b: str, b, data_range: float) -> tuple[torch.Tensor, torch.Tensor]:
    for name, t in ((name_a, a), (name_b, b)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}; "
                            f"use .float() / 255")
        if t.dim() not in (3, 4):
            raise ValueError(f"{name} must have shape [N, C, H, W] or [C, H, W], got {tuple(t.shape)}")
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    # a NaN would give a NaN score silently, and values outside the range make the score meaningless
    for name, t in ((name_a, a), (name_b, b)):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or Inf values; a diverged model or a broken image cannot be scored")
        if t.numel() and (bool(t.min() < 0) or bool(t.max() > data_range)):
            raise ValueError(f"{name} must have values in [0, data_range={data_range}], got range "
                             f"[{t.min().item():.3g}, {t.max().item():.3g}]; clamp it with .clamp(0, {data_range}) "
                             f"or pass the images' data_range")
    if a.dim() == 3:
        a, b = a.unsqueeze(0), b.unsqueeze(0)
    # metrics in float64: PSNR of near-identical images needs the precision
    return a.detach().double(), b.detach().double()


def _reduce(values: torch.Tensor, reduction: str):
    check_choice("reduction", reduction, REDUCTIONS)
    return values.mean().item() if reduction == "mean" else values.float()


def psnr(prediction: torch.Tensor, target: torch.Tensor, data_range: float = 1.0,
         reduction: str = "mean"):
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range^2 / MSE)`` per image.

    prediction, target: ``[N, C, H, W]`` (or ``[C, H, W]``). Identical images give ``inf``.
    """
    data_range = check_float("data_range", data_range, minimum=0.0, strict_min=True)
    x, y = _pair("prediction", prediction, "target", target, data_range)
    mse = (x - y).pow(2).flatten(1).mean(1)
    return _reduce(10.0 * torch.log10(data_range**2 / mse), reduction)


def _gaussian_window(sigma: float, truncate: float = 3.5) -> torch.Tensor:
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return g / g.sum()


def ssim(prediction: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, win_size: int = 7,
         gaussian_weights: bool = False, reduction: str = "mean"):
    """Structural similarity (Wang et al. 2004), computed as ``skimage.metrics.structural_similarity``
    does by default: a ``win_size`` uniform window (or an 11-tap Gaussian with sigma 1.5 when
    ``gaussian_weights``), sample covariances, K1 = 0.01, K2 = 0.03, the mean taken over the region
    the window fits in, and channels averaged.

    prediction, target: ``[N, C, H, W]`` (or ``[C, H, W]``) with ``H, W >= win_size``.
    """
    data_range = check_float("data_range", data_range, minimum=0.0, strict_min=True)
    x, y = _pair("prediction", prediction, "target", target, data_range)
    n, c, h, w = x.shape
    if gaussian_weights:
        g = _gaussian_window(1.5)
        kernel = torch.outer(g, g)
        win_size = kernel.shape[0]
    else:
        win_size = check_int("win_size", win_size, minimum=3)
        if win_size % 2 == 0:
            raise ValueError(f"win_size must be odd, got {win_size}")
        kernel = torch.full((win_size, win_size), 1.0 / win_size**2, dtype=torch.float64)
    if h < win_size or w < win_size:
        raise ValueError(f"images must be at least win_size={win_size} pixels on each side, got {h}x{w}; "
                         f"pass a smaller odd win_size")
    weight = kernel.to(x.device).expand(c, 1, *kernel.shape)

    def filt(t: torch.Tensor) -> torch.Tensor:
        # 'valid' filtering = skimage's filtering followed by its crop of (win_size - 1) // 2 at each border
        return F.conv2d(t, weight, groups=c)

    # skimage uses the unbiased (sample) covariance for the uniform window, the biased one for Gaussian
    points = win_size**2
    cov_norm = 1.0 if gaussian_weights else points / (points - 1)
    ux, uy = filt(x), filt(y)
    vx = cov_norm * (filt(x * x) - ux * ux)
    vy = cov_norm * (filt(y * y) - uy * uy)
    vxy = cov_norm * (filt(x * y) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return _reduce(s.flatten(1).mean(1), reduction)


class WallTimer:
    """Wall-clock seconds of a block: ``with WallTimer() as t: ...; t.seconds``. Synchronises CUDA on
    exit so GPU work is counted."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> WallTimer:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self._start
