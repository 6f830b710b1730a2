"""Cheap descriptors of a restoration task from its support set alone, a distance between them, and
support-loss ranking of stored models.

A few-shot restoration task only shows pairs ``(degraded, clean)``; the descriptor reads the degradation
off those pairs (the *residual* ``degraded - clean`` and how the spectrum changed), never off labels
or task parameters, so it works for a task nobody has named:

========================  ===========================================================================
``noise_sigma``           noise level: MAD of the finest Haar diagonal detail of the degraded image
                          after removing the part that the clean image's detail explains
                          (Donoho's ``median(|d|) / 0.6745``); blocks with clipped or masked pixels
                          are left out, so clipping at 0/1 and masks do not bias it
``residual_std``          standard deviation of ``degraded - clean`` (all error, noise or not)
``mask_fraction``         fraction of pixels set exactly to zero in ``degraded`` but not in ``clean``
``log_gradient_ratio``    ``log(mean |grad degraded| / mean |grad clean|)``: < 0 blur, > 0 noise
``mean_shift``            ``mean(degraded - clean)``: brightness change
``log_contrast_ratio``    ``log(std degraded / std clean)``
``transfer_band{b}``      ``|sum D C*| / sum |C|^2`` in radial frequency band ``b`` (low to high): the
                          magnitude of the linear transfer function, i.e. the blur kernel's frequency
                          response (independent noise averages out of the cross-spectrum)
``residual_share_band{b}``  share of the residual's power density in band ``b`` (white noise: flat)
========================  ===========================================================================

:func:`descriptor_distance` is a Euclidean distance after dividing each entry by a fixed typical scale
(:data:`DESCRIPTOR_SCALES`), so no entry dominates by its units alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .._checks import check_images

__all__ = ["BAND_EDGES", "DESCRIPTOR_NAMES", "DESCRIPTOR_SCALES", "DESCRIPTOR_VERSION", "N_BANDS",
           "descriptor_distance", "estimate_noise_sigma", "is_restoration_support", "rank_by_descriptor",
           "rank_by_support_loss", "support_loss", "task_descriptor"]

DESCRIPTOR_VERSION = 1
BAND_EDGES = (0.0, 0.125, 0.25, 0.5, 1.0)  # radial frequency / Nyquist; the last band also takes the corners
N_BANDS = len(BAND_EDGES) - 1
DESCRIPTOR_NAMES: tuple[str, ...] = (
    "noise_sigma", "residual_std", "mask_fraction", "log_gradient_ratio", "mean_shift", "log_contrast_ratio",
    *(f"transfer_band{b}" for b in range(N_BANDS)),
    *(f"residual_share_band{b}" for b in range(N_BANDS)),
)
# a change of one scale unit in any entry counts as much as a change of one unit in any other
DESCRIPTOR_SCALES = torch.tensor(
    [0.02, 0.03, 0.05, 0.2, 0.02, 0.1, *([0.1] * N_BANDS), *([0.1] * N_BANDS)], dtype=torch.float64)
_MAD_TO_SIGMA = 0.6745  # median |N(0, 1)|
_EPS = 1e-12


def is_restoration_support(support: Any) -> bool:
    """True for a support tuple ``(degraded, clean)`` of two floating image tensors of equal shape."""
    return (isinstance(support, (tuple, list)) and len(support) == 2
            and all(isinstance(t, torch.Tensor) and t.is_floating_point() and t.dim() == 4 for t in support)
            and support[0].shape == support[1].shape)


def _support_pair(task_or_support: Any) -> tuple[torch.Tensor, torch.Tensor]:
    support = getattr(task_or_support, "support", task_or_support)
    if not is_restoration_support(support):
        raise TypeError("task_or_support must be a restoration Task or its support tuple (degraded [K, C, H, W], "
                        f"clean [K, C, H, W]) of equal shapes, got {_describe(support)}")
    degraded = check_images("degraded support images", support[0]).detach().to("cpu", torch.float64)
    clean = check_images("clean support images", support[1]).detach().to("cpu", torch.float64)
    if degraded.shape[-1] < 4 or degraded.shape[-2] < 4:
        raise ValueError(f"support images must be at least 4x4 pixels to describe, got {tuple(degraded.shape)}")
    return degraded, clean


def _describe(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__} of " + ", ".join(
            f"{tuple(v.shape)} {v.dtype}" if isinstance(v, torch.Tensor) else type(v).__name__ for v in value)
    return type(value).__name__


def _haar_diagonal(x: torch.Tensor) -> torch.Tensor:
    """Finest Haar diagonal detail ``(a - b - c + d) / 2`` of each 2x2 block (unit gain for white noise)."""
    x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]
    return (x[..., 0::2, 0::2] - x[..., 0::2, 1::2] - x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) / 2


def _block_any(mask: torch.Tensor) -> torch.Tensor:
    mask = mask[..., : mask.shape[-2] // 2 * 2, : mask.shape[-1] // 2 * 2]
    return mask[..., 0::2, 0::2] | mask[..., 0::2, 1::2] | mask[..., 1::2, 0::2] | mask[..., 1::2, 1::2]


def estimate_noise_sigma(degraded: torch.Tensor, clean: torch.Tensor | None = None) -> float:
    """Noise standard deviation of ``degraded`` ``[N, C, H, W]``.

    With ``clean`` given, the part of the degraded image's finest diagonal detail explained linearly by the
    clean image's detail (what a blur keeps of it) is removed first, so image texture and blur do not count
    as noise. Without it this is the blind wavelet estimate (biased upwards by texture). Blocks that touch a
    pixel at exactly 0 or 1 (clipped or masked) are left out when enough others remain.
    """
    degraded = check_images("degraded", degraded).detach().to("cpu", torch.float64)
    detail = _haar_diagonal(degraded)
    if clean is not None:
        clean = check_images("clean", clean).detach().to("cpu", torch.float64)
        if clean.shape != degraded.shape:
            raise ValueError(f"clean must have the shape of degraded {tuple(degraded.shape)}, got {tuple(clean.shape)}")
        clean_detail = _haar_diagonal(clean)
        # per image: least-squares gain of degraded detail on clean detail (~1 for noise, < 1 for blur)
        dims = tuple(range(1, detail.dim()))
        gain = (detail * clean_detail).sum(dims, keepdim=True) / (clean_detail.square().sum(dims, keepdim=True) + _EPS)
        detail = detail - gain * clean_detail
    saturated = _block_any((degraded <= 0) | (degraded >= 1))
    values = detail[~saturated] if (~saturated).sum() >= max(16, detail.numel() // 10) else detail.reshape(-1)
    return float(values.abs().median() / _MAD_TO_SIGMA)


def _radial_bands(height: int, width: int) -> torch.Tensor:
    """Band index (0..N_BANDS-1) of each FFT bin, ``-1`` for the DC bin."""
    fy = torch.fft.fftfreq(height, dtype=torch.float64).abs()[:, None]
    fx = torch.fft.fftfreq(width, dtype=torch.float64).abs()[None, :]
    radius = torch.sqrt(fy**2 + fx**2) / 0.5
    band = torch.full((height, width), -1, dtype=torch.long)
    for b in range(N_BANDS):
        upper = BAND_EDGES[b + 1] if b < N_BANDS - 1 else math.inf
        band[(radius > BAND_EDGES[b]) & (radius <= upper)] = b
    band[0, 0] = -1
    return band


def task_descriptor(task_or_support: Any) -> torch.Tensor:
    """The descriptor vector ``[len(DESCRIPTOR_NAMES)]`` (float64) of a restoration task, from its support
    pairs only (see the module docstring for each entry)."""
    degraded, clean = _support_pair(task_or_support)
    residual = degraded - clean
    _, _, height, width = degraded.shape

    noise_sigma = estimate_noise_sigma(degraded.float(), clean.float())
    residual_std = float(residual.std()) if residual.numel() > 1 else 0.0
    mask_fraction = float(((degraded == 0) & (clean != 0)).double().mean())

    def grad_mean(x: torch.Tensor) -> torch.Tensor:
        return (x.diff(dim=-1).abs().mean() + x.diff(dim=-2).abs().mean()) / 2

    log_gradient_ratio = math.log((float(grad_mean(degraded)) + 1e-6) / (float(grad_mean(clean)) + 1e-6))
    mean_shift = float(residual.mean())
    log_contrast_ratio = math.log((float(degraded.std()) + 1e-6) / (float(clean.std()) + 1e-6))

    # Hann window: the image edges are not periodic, and the leakage would smear every band together
    window = torch.outer(torch.hann_window(height, periodic=False, dtype=torch.float64),
                         torch.hann_window(width, periodic=False, dtype=torch.float64))
    if height < 3 or width < 3:
        window = torch.ones(height, width, dtype=torch.float64)

    def spectrum(x: torch.Tensor) -> torch.Tensor:
        return torch.fft.fft2((x - x.mean(dim=(-2, -1), keepdim=True)) * window)

    spec_d, spec_c, spec_r = spectrum(degraded), spectrum(clean), spectrum(residual)
    bands = _radial_bands(height, width)
    cross = (spec_d * spec_c.conj()).sum(dim=(0, 1))  # summed over images and channels: [H, W]
    power_c = spec_c.abs().square().sum(dim=(0, 1))
    power_r = spec_r.abs().square().sum(dim=(0, 1))
    transfer, density = [], []
    for b in range(N_BANDS):
        in_band = bands == b
        if not in_band.any():
            transfer.append(1.0)
            density.append(0.0)
            continue
        transfer.append(float(cross[in_band].sum().abs() / (power_c[in_band].sum() + _EPS)))
        density.append(float(power_r[in_band].mean()))
    total = sum(density)
    shares = [d / total for d in density] if total > _EPS else [1.0 / N_BANDS] * N_BANDS
    vector = [noise_sigma, residual_std, mask_fraction, log_gradient_ratio, mean_shift, log_contrast_ratio,
              *transfer, *shares]
    return torch.tensor(vector, dtype=torch.float64)


def _as_vector(name: str, value: Any) -> torch.Tensor:
    vector = torch.as_tensor(value, dtype=torch.float64).reshape(-1) if not isinstance(value, torch.Tensor) \
        else value.detach().to("cpu", torch.float64).reshape(-1)
    if vector.numel() != len(DESCRIPTOR_NAMES):
        raise ValueError(f"{name} must have {len(DESCRIPTOR_NAMES)} entries ({DESCRIPTOR_NAMES[0]}, ...), got "
                         f"{vector.numel()}; compute it with task_descriptor()")
    if not torch.isfinite(vector).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return vector


def descriptor_distance(a: Any, b: Any, scales: Any = None) -> float:
    """Euclidean distance between two descriptors after dividing each entry by ``scales``
    (default :data:`DESCRIPTOR_SCALES`)."""
    a, b = _as_vector("a", a), _as_vector("b", b)
    scales = DESCRIPTOR_SCALES if scales is None else _as_vector("scales", scales)
    if (scales <= 0).any():
        raise ValueError("scales must all be > 0")
    return float(((a - b) / scales).norm())


def rank_by_descriptor(query: Any, stored: Sequence[Any]) -> list[tuple[int, float]]:
    """``[(index into stored, distance), ...]`` nearest first."""
    query = _as_vector("query", query)
    distances = [(i, descriptor_distance(query, s)) for i, s in enumerate(stored)]
    return sorted(distances, key=lambda pair: (pair[1], pair[0]))


@torch.no_grad()
def support_loss(model: Callable, support: tuple[torch.Tensor, ...],
                 loss_fn: Callable[[Callable, tuple[torch.Tensor, ...]], torch.Tensor]) -> float:
    """``loss_fn(model, support)`` as a float, without gradients (the model is not changed)."""
    was_training = getattr(model, "training", None)
    if was_training:
        model.eval()
    try:
        loss = loss_fn(model, support)
    finally:
        if was_training:
            model.train()
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise TypeError(f"loss_fn must return a scalar tensor, got {type(loss).__name__} "
                        f"{tuple(loss.shape) if isinstance(loss, torch.Tensor) else ''}")
    return float(loss)


def rank_by_support_loss(models: Sequence[Callable], support: tuple[torch.Tensor, ...],
                         loss_fn: Callable) -> list[tuple[int, float]]:
    """``[(index into models, support loss), ...]`` lowest loss first: which stored model already fits the
    new task's support set best before any fine-tuning."""
    losses = [(i, support_loss(m, support, loss_fn)) for i, m in enumerate(models)]
    return sorted(losses, key=lambda pair: (pair[1] if math.isfinite(pair[1]) else math.inf, pair[0]))
