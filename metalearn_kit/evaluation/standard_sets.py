"""A reference method reproduced on a standard test set before any new number is believed: colour BM3D (CBM3D)
on the 24 Kodak photographs, beside the figures the FFDNet paper publishes for it.

Protocol, as in the FFDNet paper's colour denoising table: clean 8-bit photographs scaled to [0, 1], additive
white Gaussian noise of standard deviation ``sigma / 255``, the noisy image handed on *unclipped* (values may
leave [0, 1]), the estimate clipped to [0, 1] and rounded to 8 bits before PSNR (MATLAB's ``im2uint8``), PSNR per
photograph over all three channels, then averaged over the 24 photographs.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
import torch

from .._checks import check_int
from .metrics import psnr

__all__ = ["CBM3D_SIGMAS", "NOISE_SEED", "PUBLISHED_CBM3D_KODAK24", "cbm3d_denoise", "kodak24_cbm3d"]

# Average PSNR (dB) of CBM3D on Kodak24 at each sigma (0-255 scale): Zhang, Zuo and Zhang, "FFDNet", IEEE TIP 2018.
PUBLISHED_CBM3D_KODAK24 = {15: 34.28, 25: 31.68, 35: 29.90, 50: 28.46, 75: 26.82}
CBM3D_SIGMAS = (15, 25, 50)
# The noise of this check only (it reproduces a published figure; no learned method is compared on this noise).
NOISE_SEED = 0


def cbm3d_denoise(noisy: torch.Tensor, sigma: float) -> torch.Tensor:
    """Colour BM3D (``bm3d.bm3d_rgb``: opponent colour space, the package's default profile) of ``noisy``
    ``[3, H, W]`` or ``[N, 3, H, W]`` (values may leave [0, 1]) for noise std ``sigma`` on the [0, 1] scale.
    Returns float64 of the same shape, unclipped."""
    import bm3d

    if not isinstance(noisy, torch.Tensor) or noisy.dim() not in (3, 4) or noisy.shape[-3] != 3:
        raise ValueError(f"noisy must be an RGB tensor [3, H, W] or [N, 3, H, W], got "
                         f"{tuple(getattr(noisy, 'shape', ())) or type(noisy).__name__}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0 (noise std on the [0, 1] scale, e.g. 25 / 255), got {sigma}")
    batch = noisy[None] if noisy.dim() == 3 else noisy
    out = [torch.from_numpy(np.asarray(bm3d.bm3d_rgb(img.permute(1, 2, 0).double().cpu().numpy(), sigma)))
           .permute(2, 0, 1) for img in batch]
    result = torch.stack(out)
    return result[0] if noisy.dim() == 3 else result


def _to_8bit(image: torch.Tensor) -> torch.Tensor:
    return image.clamp(0, 1).mul(255).round().div(255)


def _row(method: str, role: str, sigma: int, values: list[float], names: tuple[str, ...], seed: int,
         published: float | None, seconds: float) -> dict:
    return {"experiment": "kodak24_cbm3d", "method": method, "role": role, "steps": None, "metric": "psnr",
            "value": statistics.fmean(values), "tasks": len(values),
            "stderr": statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else None,
            "per_task": values, "images": list(names), "sigma": sigma, "published": published,
            "test_source": "kodak24", "noise_seed": seed, "clipped_input": False, "wall_time_s": seconds}


def kodak24_cbm3d(sigmas: tuple[int, ...] = CBM3D_SIGMAS, images: int | None = None, *,
                  root: str | os.PathLike | None = None, download: bool = True, seed: int = NOISE_SEED) -> list[dict]:
    """CBM3D on Kodak24 at each ``sigma`` (0-255 scale), by the protocol in the module docstring.

    Args:
        sigmas: noise levels, e.g. ``(15, 25, 50)``.
        images: use the first ``images`` photographs (kodim01, ...), default all 24. Each sigma has its own
            generator seeded ``seed + sigma`` and draws the photographs' noise in order, so a shorter run sees
            exactly the noise of the first photographs of the full run.
        root, download: where :func:`metalearn_kit.data.kodak24` reads the photographs.
        seed: the noise seed.

    Returns:
        two rows per sigma in the restoration benchmark's format (``experiment="kodak24_cbm3d"``): the noisy
        input (``role="input"``) and CBM3D (``role="classical"``, with ``published``, the paper's average, or
        ``None`` for a sigma it does not report); ``per_task`` is one PSNR per photograph, in ``images`` order.
    """
    from ..data.photo_sets import kodak24

    photos = kodak24(root, download)
    count = check_int("images", len(photos) if images is None else images, 1, len(photos))
    sigmas = tuple(check_int("sigma", s, 1, 255) for s in sigmas)
    clean = photos.stack()[:count].double()
    names = photos.names[:count]
    rows = []
    for sigma in sigmas:
        generator = torch.Generator().manual_seed(seed + sigma)
        noise = torch.stack([torch.randn(img.shape, generator=generator, dtype=torch.float64) for img in clean])
        noisy = clean + noise * (sigma / 255)
        start = time.perf_counter()
        denoised = _to_8bit(cbm3d_denoise(noisy, sigma / 255))
        seconds = time.perf_counter() - start
        # the input row scores what CBM3D is given, unclipped; the PSNR helper only takes values in [0, 1]
        input_psnr = (10 * torch.log10(1 / (noisy - clean).pow(2).flatten(1).mean(1))).tolist()
        rows.append(_row("noisy input", "input", sigma, input_psnr, names, seed, None, 0.0))
        rows.append(_row("CBM3D", "classical", sigma, psnr(denoised, clean, reduction="none").double().tolist(),
                         names, seed, PUBLISHED_CBM3D_KODAK24.get(sigma), seconds))
    return rows
