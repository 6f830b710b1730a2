"""Classical (non-learned) restoration references on ``[N, C, H, W]`` tensors in [0, 1]: TV, non-local
means, wavelet shrinkage and BM3D denoising; Wiener and Richardson-Lucy deconvolution; biharmonic
inpainting; bicubic upsampling. Each wraps scikit-image (or the ``bm3d`` package) image by image and
channel by channel and returns a tensor of the input's shape, dtype and device.

Their one hyper-parameter (TV weight, Wiener balance, ...) is chosen by :func:`tune_on_support` on the same
support pairs the learned methods adapt on, so the comparison gives both sides the same data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from .._checks import check_float, check_images, check_int
from .metrics import psnr

__all__ = ["biharmonic_inpaint", "bm3d_denoise", "nlm_denoise", "richardson_lucy_deconvolve", "tune_on_support",
           "tv_denoise", "wavelet_denoise", "wiener_deconvolve"]


def _per_channel(name: str, images: torch.Tensor,
                 fn: Callable[[np.ndarray, int], np.ndarray]) -> torch.Tensor:
    """Apply ``fn(channel [H, W] float64, image_index)`` to every channel of every image."""
    images = check_images(name, images)
    arr = images.detach().cpu().double().numpy()
    out = np.empty_like(arr)
    for i in range(arr.shape[0]):
        for c in range(arr.shape[1]):
            out[i, c] = fn(arr[i, c], i)
    return torch.from_numpy(np.clip(out, 0.0, 1.0)).to(dtype=images.dtype, device=images.device)


def tv_denoise(noisy: torch.Tensor, weight: float = 0.1) -> torch.Tensor:
    """Total-variation denoising (Chambolle's algorithm); larger ``weight`` = smoother."""
    from skimage.restoration import denoise_tv_chambolle

    weight = check_float("weight", weight, minimum=0.0, strict_min=True)
    return _per_channel("noisy", noisy, lambda x, i: denoise_tv_chambolle(x, weight=weight))


def nlm_denoise(noisy: torch.Tensor, sigma: float, h_factor: float = 0.8) -> torch.Tensor:
    """Non-local means with 5x5 patches in a 13x13 search window; filter strength ``h = h_factor * sigma``."""
    from skimage.restoration import denoise_nl_means

    sigma = check_float("sigma", sigma, minimum=0.0, strict_min=True)
    h_factor = check_float("h_factor", h_factor, minimum=0.0, strict_min=True)
    return _per_channel("noisy", noisy, lambda x, i: denoise_nl_means(
        x, h=h_factor * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True))


def wavelet_denoise(noisy: torch.Tensor, sigma: float) -> torch.Tensor:
    """Wavelet shrinkage (BayesShrink, soft thresholds) given the noise level ``sigma``."""
    from skimage.restoration import denoise_wavelet

    sigma = check_float("sigma", sigma, minimum=0.0, strict_min=True)
    return _per_channel("noisy", noisy, lambda x, i: denoise_wavelet(
        x, sigma=sigma, method="BayesShrink", mode="soft", rescale_sigma=True))


def bm3d_denoise(noisy: torch.Tensor, sigma: float) -> torch.Tensor:
    """BM3D (the ``bm3d`` package) given the noise standard deviation ``sigma``."""
    import bm3d

    sigma = check_float("sigma", sigma, minimum=0.0, strict_min=True)
    return _per_channel("noisy", noisy, lambda x, i: np.asarray(bm3d.bm3d(x, sigma_psd=sigma)))


def _kernels_np(kernels: torch.Tensor, n: int) -> np.ndarray:
    if not isinstance(kernels, torch.Tensor) or kernels.dim() != 3 or kernels.shape[0] != n:
        shape = tuple(kernels.shape) if isinstance(kernels, torch.Tensor) else type(kernels).__name__
        raise ValueError(f"kernels must have shape [N={n}, kh, kw] (one blur kernel per image), got {shape}")
    # the kit blurs by correlation; scikit-image deconvolves a convolution, so hand it the flipped kernel
    return kernels.detach().cpu().double().flip(-1, -2).numpy()


def _padded(deconvolve: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[[np.ndarray, np.ndarray],
                                                                                      np.ndarray]:
    """Run ``deconvolve(image, psf)`` on the image reflect-padded by the kernel size, then crop: the kit's
    blur uses reflect padding, and without this the FFT's wrap-around rings over the whole of a small patch."""
    def run(image: np.ndarray, psf: np.ndarray) -> np.ndarray:
        pad = max(psf.shape)
        out = deconvolve(np.pad(image, pad, mode="reflect"), psf)
        return out[pad:-pad, pad:-pad]
    return run


def wiener_deconvolve(blurred: torch.Tensor, kernels: torch.Tensor, balance: float = 0.01) -> torch.Tensor:
    """Wiener deconvolution of image ``i`` with its known kernel ``kernels[i]``; ``balance`` trades
    sharpness against noise amplification."""
    from skimage.restoration import wiener

    balance = check_float("balance", balance, minimum=0.0, strict_min=True)
    psfs = _kernels_np(kernels, blurred.shape[0] if isinstance(blurred, torch.Tensor) else 0)
    run = _padded(lambda x, psf: wiener(x, psf, balance, clip=True))
    return _per_channel("blurred", blurred, lambda x, i: run(x, psfs[i]))


def richardson_lucy_deconvolve(blurred: torch.Tensor, kernels: torch.Tensor,
                               iterations: int = 30) -> torch.Tensor:
    """Richardson-Lucy deconvolution with the known kernels for ``iterations`` iterations."""
    from skimage.restoration import richardson_lucy

    iterations = check_int("iterations", iterations, minimum=1)
    psfs = _kernels_np(kernels, blurred.shape[0] if isinstance(blurred, torch.Tensor) else 0)
    run = _padded(lambda x, psf: richardson_lucy(x, psf, num_iter=iterations))
    return _per_channel("blurred", blurred, lambda x, i: run(x, psfs[i]))


def biharmonic_inpaint(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Fill the unobserved pixels (``masks == 0``; masks ``[N, C, H, W]`` or ``[N, 1, H, W]``, 1 = observed)
    by biharmonic interpolation."""
    from skimage.restoration import inpaint_biharmonic

    images = check_images("images", images)
    if not isinstance(masks, torch.Tensor) or masks.dim() != 4 or masks.shape[0] != images.shape[0] \
            or masks.shape[-2:] != images.shape[-2:] or masks.shape[1] not in (1, images.shape[1]):
        shape = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise ValueError(f"masks must have shape [N, 1 or C, H, W] matching images {tuple(images.shape)}, "
                         f"got {shape}")
    missing = (masks.expand_as(images) < 0.5).cpu().numpy()
    out = np.empty(images.shape, dtype=np.float64)
    arr = images.detach().cpu().double().numpy()
    for i in range(arr.shape[0]):
        for c in range(arr.shape[1]):
            out[i, c] = inpaint_biharmonic(arr[i, c], missing[i, c]) if missing[i, c].any() else arr[i, c]
    return torch.from_numpy(np.clip(out, 0, 1)).to(dtype=images.dtype, device=images.device)


def tune_on_support(method: Callable[..., torch.Tensor], degraded: torch.Tensor, clean: torch.Tensor,
                    parameter: str, grid: Sequence[float], **fixed) -> tuple[float, float]:
    """Pick ``parameter`` from ``grid`` by mean PSNR of ``method(degraded, parameter=value, **fixed)`` against
    ``clean`` (the support pairs). Returns ``(best_value, best_support_psnr)``."""
    if not grid:
        raise ValueError(f"grid must list at least one value for {parameter!r}, got {list(grid)!r}")
    scored = []
    for value in grid:
        restored = method(degraded, **{parameter: value}, **fixed)
        scored.append((psnr(restored, clean), value))
    best_psnr, best_value = max(scored)
    return best_value, best_psnr
