"""PSNR/SSIM against scikit-image (data_range=1), and their input checks."""

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from metalearn_kit.evaluation.metrics import WallTimer, psnr, ssim


def _pair(seed=0, shape=(3, 2, 20, 24), noise=0.1):
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(shape, generator=g, dtype=torch.float64)
    noisy = (clean + noise * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return noisy, clean


def test_psnr_matches_skimage_per_image():
    noisy, clean = _pair()
    ours = psnr(noisy, clean, reduction="none")
    ref = [peak_signal_noise_ratio(clean[i].numpy(), noisy[i].numpy(), data_range=1) for i in range(3)]
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-5)
    assert psnr(noisy, clean) == pytest.approx(float(np.mean(ref)), rel=1e-6)


@pytest.mark.parametrize("gaussian", [False, True])
def test_ssim_matches_skimage(gaussian):
    noisy, clean = _pair(seed=1)
    ours = ssim(noisy, clean, gaussian_weights=gaussian, reduction="none")
    ref = [structural_similarity(noisy[i].numpy(), clean[i].numpy(), data_range=1, channel_axis=0,
                                 gaussian_weights=gaussian, use_sample_covariance=not gaussian)
           for i in range(3)]
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-5)


def test_ssim_single_image_and_identity():
    _, clean = _pair(shape=(1, 1, 16, 16))
    assert ssim(clean[0], clean[0]) == pytest.approx(1.0)
    assert math.isinf(psnr(clean, clean))


def test_metrics_reject_bad_inputs():
    noisy, clean = _pair()
    with pytest.raises(ValueError, match="same shape"):
        psnr(noisy, clean[:, :1])
    with pytest.raises(ValueError, match="win_size"):
        ssim(noisy[..., :5, :5], clean[..., :5, :5])
    with pytest.raises(ValueError, match="reduction"):
        psnr(noisy, clean, reduction="sum")
    with pytest.raises(TypeError, match="prediction"):
        psnr(noisy.numpy(), clean)
    with pytest.raises(ValueError, match="data_range"):
        ssim(noisy, clean, data_range=0)


def test_wall_timer_measures_a_block():
    with WallTimer() as timer:
        sum(range(10000))
    assert 0 < timer.seconds < 5
