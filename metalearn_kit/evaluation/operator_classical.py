"""Classical references and oracles for the families of :mod:`metalearn_kit.tasks.operators`.

Two kinds, labelled apart in the benchmark:

- *classical, fitted on the support pairs* (the same data the learned methods adapt on, never the query): a
  monotone look-up table for the tone curve, a least-squares affine colour matrix for the colour cast, a Fourier
  notch at the stripe frequency read off the support residuals, Wiener deconvolution with a kernel estimated
  from the support pairs, colour-plane shifts estimated on the support pairs;
- *oracles* that are handed the task's true operator (an upper reference no method of the kit gets): the true
  inverse tone curve, the true inverse colour matrix, the true stripe frequency with a least-squares fit of
  each image's stripes, non-blind Wiener with the true kernel, the true plane shifts undone.

All take and return ``[N, C, H, W]`` tensors in [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .._checks import check_images, check_int
from .metrics import psnr

# ----------------------------------------------------------------------------------------------------------
# Tone curve
# ----------------------------------------------------------------------------------------------------------


def fit_tone_lut(degraded: torch.Tensor, clean: torch.Tensor, bins: int = 64) -> torch.Tensor:
    """A monotone look-up table ``[bins]`` from support pairs: the mean clean value of the pixels in each bin of
    degraded values, empty bins interpolated, then made non-decreasing (a running maximum) -- a tone curve
    keeps the order of grey levels. Node ``i`` sits at degraded value ``i / (bins - 1)``."""
    degraded, clean = check_images("degraded", degraded), check_images("clean", clean)
    check_int("bins", bins, minimum=2)
    index = (degraded.flatten() * (bins - 1)).round().long().clamp(0, bins - 1)
    sums = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, clean.flatten().double())
    counts = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, torch.ones_like(sums[index]))
    filled = counts > 0
    nodes = torch.linspace(0, 1, bins, dtype=torch.float64)
    known_x, known_y = nodes[filled], sums[filled] / counts[filled]
    table = torch.from_numpy(__import__("numpy").interp(nodes.numpy(), known_x.numpy(), known_y.numpy()))
    return torch.cummax(table, 0).values.float()


def apply_tone_lut(images: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Map every pixel through ``table`` (linear interpolation between its nodes)."""
    images = check_images("images", images)
    position = images * (table.numel() - 1)
    low = position.floor().long().clamp(0, table.numel() - 2)
    frac = position - low
    table = table.to(images.device, images.dtype)
    return ((1 - frac) * table[low] + frac * table[low + 1]).clamp(0, 1)


# ----------------------------------------------------------------------------------------------------------
# Colour cast
# ----------------------------------------------------------------------------------------------------------


def fit_colour_matrix(degraded: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Least-squares affine colour map ``[3, 4]`` (a 3x3 matrix and an offset) from support pairs: the
    classical colour correction from a colour chart, here the support photographs."""
    degraded, clean = check_images("degraded", degraded), check_images("clean", clean)
    inputs = degraded.permute(1, 0, 2, 3).reshape(degraded.shape[1], -1).double()
    design = torch.cat([inputs, torch.ones(1, inputs.shape[1], dtype=torch.float64)]).T  # [P, 4]
    targets = clean.permute(1, 0, 2, 3).reshape(clean.shape[1], -1).double().T  # [P, 3]
    solution = torch.linalg.lstsq(design, targets).solution  # [4, 3]
    return solution.T.float()


def apply_affine_colour(images: torch.Tensor, affine: torch.Tensor) -> torch.Tensor:
    """``[N, 3, H, W]`` through a ``[3, 4]`` affine colour map (or a ``[3, 3]`` matrix), clipped to [0, 1]."""
    images = check_images("images", images)
    matrix = affine[:, :3].to(images.device, images.dtype)
    out = torch.einsum("ij,njhw->nihw", matrix, images)
    if affine.shape[1] == 4:
        out = out + affine[:, 3].to(images.device, images.dtype).view(1, -1, 1, 1)
    return out.clamp(0, 1)


def grey_world(images: torch.Tensor) -> torch.Tensor:
    """Blind white balance from one image: scale each channel so its mean equals the image's grey mean."""
    images = check_images("images", images)
    means = images.mean(dim=(2, 3), keepdim=True).clamp_min(1e-4)
    return (images * means.mean(dim=1, keepdim=True) / means).clamp(0, 1)


# ----------------------------------------------------------------------------------------------------------
# Stripe noise
# ----------------------------------------------------------------------------------------------------------


def stripe_frequency(degraded: torch.Tensor, clean: torch.Tensor) -> tuple[int, int]:
    """The strongest frequency ``(row, col)`` of the support residuals ``degraded - clean`` (their mean power
    spectrum, DC left out): where the stripes are. Indices into ``torch.fft.fft2`` of an ``H x W`` image."""
    residual = (check_images("degraded", degraded) - check_images("clean", clean)).double()
    power = torch.fft.fft2(residual - residual.mean(dim=(-2, -1), keepdim=True)).abs().pow(2).mean(dim=(0, 1))
    power[0, 0] = 0
    index = int(power.argmax())
    return index // power.shape[1], index % power.shape[1]


def _frequency_grid(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows = torch.fft.fftfreq(h, dtype=torch.float64)[:, None].expand(h, w)
    cols = torch.fft.fftfreq(w, dtype=torch.float64)[None, :].expand(h, w)
    return rows, cols


def notch_filter(images: torch.Tensor, frequency: tuple[float, float], radius: float) -> torch.Tensor:
    """Zero the spectrum of each image within ``radius`` (cycles per pixel) of ``frequency`` ``(fy, fx)`` and its
    mirror ``(-fy, -fx)``, in cycles per pixel -- the textbook removal of periodic interference."""
    images = check_images("images", images)
    h, w = images.shape[-2:]
    rows, cols = _frequency_grid(h, w)
    fy, fx = frequency
    near = ((rows - fy) ** 2 + (cols - fx) ** 2 <= radius**2) | ((rows + fy) ** 2 + (cols + fx) ** 2 <= radius**2)
    spectrum = torch.fft.fft2(images.double())
    spectrum[..., near] = 0
    return torch.fft.ifft2(spectrum).real.clamp(0, 1).to(images.dtype)


def index_to_frequency(index: tuple[int, int], size: tuple[int, int]) -> tuple[float, float]:
    """An ``fft2`` index ``(row, col)`` of an ``H x W`` image as a frequency in cycles per pixel."""
    h, w = size
    fy = index[0] / h if index[0] <= h // 2 else index[0] / h - 1
    fx = index[1] / w if index[1] <= w // 2 else index[1] / w - 1
    return fy, fx


def tuned_notch(support: Sequence[torch.Tensor], query_input: torch.Tensor,
                radii: Sequence[float] = (0.01, 0.02, 0.035, 0.05)) -> torch.Tensor:
    """Notch filter at the frequency read off the support residuals, its radius picked by support PSNR."""
    degraded, clean = support[0], support[1]
    frequency = index_to_frequency(stripe_frequency(degraded, clean), tuple(degraded.shape[-2:]))
    best = max(radii, key=lambda r: psnr(notch_filter(degraded, frequency, r), clean))
    return notch_filter(query_input, frequency, best)


def remove_known_stripes(images: torch.Tensor, angle: float, period: float) -> torch.Tensor:
    """Oracle: the true stripe direction and period are known; each image's stripe amplitude and phase are
    fitted by least squares (a sine and a cosine at that frequency, plus a constant) and the fit is subtracted."""
    images = check_images("images", images)
    h, w = images.shape[-2:]
    rows = torch.arange(h, dtype=torch.float64)[:, None]
    cols = torch.arange(w, dtype=torch.float64)[None, :]
    theta = math.radians(angle)
    phase = 2 * math.pi * (cols * math.cos(theta) - rows * math.sin(theta)) / period
    basis = torch.stack([torch.sin(phase), torch.cos(phase), torch.ones_like(phase)]).reshape(3, -1).T  # [P, 3]
    values = images.double().reshape(-1, h * w).T  # [P, N*C]
    coefficients = torch.linalg.lstsq(basis, values).solution  # [3, N*C]
    stripes = (basis[:, :2] @ coefficients[:2]).T.reshape(images.shape)
    return (images.double() - stripes).clamp(0, 1).to(images.dtype)


# ----------------------------------------------------------------------------------------------------------
# Directional blur
# ----------------------------------------------------------------------------------------------------------


def estimate_kernel(degraded: torch.Tensor, clean: torch.Tensor, size: int = 13, ridge: float = 1e-3
                    ) -> torch.Tensor:
    """The blur kernel ``[size, size]`` that best maps the clean support images onto the degraded ones (ridge
    least squares over every ``size x size`` window, reflect padding), made non-negative and summing to one."""
    degraded, clean = check_images("degraded", degraded), check_images("clean", clean)
    pad = size // 2
    padded = torch.nn.functional.pad(clean.double(), (pad, pad, pad, pad), mode="reflect")
    windows = torch.nn.functional.unfold(padded, size)  # [N, C*size*size, H*W] for C == 1
    design = windows.permute(0, 2, 1).reshape(-1, size * size)
    targets = degraded.double().reshape(-1, 1)
    gram = design.T @ design
    gram = gram + ridge * gram.diagonal().mean() * torch.eye(size * size, dtype=torch.float64)
    kernel = torch.linalg.solve(gram, design.T @ targets).reshape(size, size).clamp_min(0)
    return (kernel / kernel.sum().clamp_min(1e-8)).float()


# ----------------------------------------------------------------------------------------------------------
# Colour-plane misregistration
# ----------------------------------------------------------------------------------------------------------


def _shift(images: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    from ..tasks.operators import shift_images

    return shift_images(images, dx, dy)


def estimate_plane_shift(degraded: torch.Tensor, clean: torch.Tensor, reach: float = 3.0, step: float = 0.25
                         ) -> tuple[float, float]:
    """The translation ``(dx, dy)`` that best maps the clean plane ``[N, 1, H, W]`` onto the degraded one (grid
    search over ``[-reach, reach]^2``, whole pixels first, then ``step`` around the best; border excluded)."""
    degraded, clean = check_images("degraded", degraded), check_images("clean", clean)
    margin = int(math.ceil(reach)) + 1
    inner = (..., slice(margin, -margin), slice(margin, -margin))

    def error(dx: float, dy: float) -> float:
        return float((_shift(clean, dx, dy)[inner] - degraded[inner]).pow(2).mean())

    whole = [float(v) for v in range(-int(reach), int(reach) + 1)]
    best = min(((dx, dy) for dx in whole for dy in whole), key=lambda s: error(*s))
    fine = [i * step for i in range(-int(1 / step), int(1 / step) + 1)]
    return min(((best[0] + a, best[1] + b) for a in fine for b in fine), key=lambda s: error(*s))


def realign_planes(images: torch.Tensor, shifts: dict[str, tuple[float, float]]) -> torch.Tensor:
    """Move the red and blue planes of ``[N, 3, H, W]`` back by ``shifts`` (``{"red": (dx, dy), "blue": ...}``)."""
    images = check_images("images", images)
    red = _shift(images[:, :1], -shifts["red"][0], -shifts["red"][1])
    blue = _shift(images[:, 2:], -shifts["blue"][0], -shifts["blue"][1])
    return torch.cat([red, images[:, 1:2], blue], dim=1).clamp(0, 1)
