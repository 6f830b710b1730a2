"""Parametric classical references (evaluation/parametric_fits.py): on tasks made with each family's own
degradation at known parameters, the fit recovers the parameters and the restoration is close to the clean
image. The fits are handed the support pairs and the *degraded* query only (the signature has no clean query)."""

import math

import pytest
import torch
import torch.nn.functional as F

from metalearn_kit.evaluation import operator_references as references
from metalearn_kit.evaluation import parametric_fits
from metalearn_kit.evaluation.metrics import psnr
from metalearn_kit.tasks import make_degradation


def smooth_images(n, c, size=48, seed=0, low=0.05, high=0.95):
    """Band-limited random images in [low, high] (content far from the stripe frequencies)."""
    g = torch.Generator().manual_seed(seed)
    coarse = F.interpolate(torch.rand(n, c, size // 8, size // 8, generator=g), size=(size, size), mode="bicubic",
                           align_corners=False)
    return low + (high - low) * coarse.clamp(0, 1)


def task(family, params, channels, shots=3, queries=2, seed=0):
    degradation = make_degradation(family)
    # a colour cast of saturated colours leaves [0, 1] and is clipped; mid-range colours keep the test exact
    clean = smooth_images(shots + queries, channels, seed=seed, **({"low": 0.3, "high": 0.7} if channels == 3 else {}))
    degraded = degradation.apply(clean, params, torch.Generator().manual_seed(seed + 1))
    return (degraded[:shots], clean[:shots]), degraded[shots:], clean[shots:]


@pytest.mark.parametrize("log2_gamma, contrast", [(-1.2, 0.4), (0.3, -0.5), (1.4, 0.0)])
def test_tone_curve_fit_recovers_the_curve(log2_gamma, contrast):
    params = {"log2_gamma": log2_gamma, "contrast": contrast, "noise_sigma": 0.002}
    support, query_input, query_clean = task("tone_curve", params, 1)
    fitted = parametric_fits.fit_tone_curve(*support)
    assert fitted["log2_gamma"] == pytest.approx(log2_gamma, abs=0.03)
    assert fitted["contrast"] == pytest.approx(contrast, abs=0.03)
    restored = parametric_fits.undo_tone_curve(query_input, fitted)
    # a steep curve amplifies the faint noise where it is inverted, so compare with the true curve's inverse
    truth = parametric_fits.undo_tone_curve(query_input, params)
    assert float(psnr(restored, query_clean)) > min(40.0, float(psnr(truth, query_clean)) - 0.2)
    assert float(psnr(restored, truth)) > 45


def test_colour_cast_fit_recovers_the_matrix():
    params = {"hue": -75.0, "log2_gain_red": 0.3, "log2_gain_blue": -0.2}
    support, query_input, query_clean = task("colour_cast", params, 3)
    fitted = parametric_fits.fit_colour_cast(*support)
    assert fitted["hue"] == pytest.approx(-75.0, abs=0.1)
    assert fitted["log2_gain_red"] == pytest.approx(0.3, abs=0.01)
    assert fitted["log2_gain_blue"] == pytest.approx(-0.2, abs=0.01)
    restored = parametric_fits.undo_colour_cast(query_input, fitted)
    assert float(psnr(restored, query_clean)) > 50
    assert float(psnr(restored, parametric_fits.undo_colour_cast(query_input, params))) > 55


@pytest.mark.parametrize("angle, period", [(10.0, 6.8), (128.9, 4.55), (70.0, 3.4)])
def test_stripe_estimate_recovers_direction_period_and_amplitude(angle, period):
    params = {"angle": angle, "period": period, "amplitude": 0.1, "noise_sigma": 0.005}
    support, query_input, query_clean = task("stripe_noise", params, 1)
    stripes = parametric_fits.estimate_stripes(*support)
    assert min(abs(stripes["angle"] - angle), 180 - abs(stripes["angle"] - angle)) < 0.2
    assert stripes["period"] == pytest.approx(period, rel=0.005)
    assert stripes["amplitude"] == pytest.approx(0.1, abs=0.01)
    for fixed in (False, True):
        restored = parametric_fits.remove_stripes(query_input, stripes, fixed_amplitude=fixed)
        assert float(psnr(restored, query_clean)) > 40  # the faint white noise (sigma 0.005) alone is 46 dB
        assert float(psnr(query_input, query_clean)) < 25


def test_stripes_are_fitted_on_each_query_image_alone():
    # each query image has its own phase: fitting image by image must match fitting it alone
    params = {"angle": 40.0, "period": 5.0, "amplitude": 0.12, "noise_sigma": 0.005}
    support, query_input, _ = task("stripe_noise", params, 1, queries=3)
    stripes = parametric_fits.estimate_stripes(*support)
    together = parametric_fits.remove_stripes(query_input, stripes)
    alone = torch.cat([parametric_fits.remove_stripes(query_input[i:i + 1], stripes) for i in range(3)])
    torch.testing.assert_close(together, alone)


@pytest.mark.parametrize("family, channels, params", [
    ("tone_curve", 1, {"log2_gamma": 0.8, "contrast": 0.2, "noise_sigma": 0.005}),
    ("colour_cast", 3, {"hue": 30.0, "log2_gain_red": -0.2, "log2_gain_blue": 0.1}),
    ("stripe_noise", 1, {"angle": 100.0, "period": 7.0, "amplitude": 0.08, "noise_sigma": 0.005}),
])
def test_parametric_table_beats_the_degraded_input(family, channels, params):
    support, query_input, query_clean = task(family, params, channels)
    restored = references.parametric_methods(family, support, query_input)
    assert restored and all(out.shape == query_input.shape for out in restored.values())
    for label, out in restored.items():
        assert 0 <= float(out.min()) and float(out.max()) <= 1, label
        assert float(psnr(out, query_clean)) > float(psnr(query_input, query_clean)) + 10, label


def test_parametric_table_leaves_the_existing_tables_alone_and_names_families():
    assert set(references.PARAMETRIC) <= set(references.CLASSICAL)
    assert references.parametric_methods("directional_blur", (torch.rand(1, 1, 16, 16),) * 2,
                                         torch.rand(1, 1, 16, 16)) == {}
    with pytest.raises(ValueError, match="family must be one of"):
        references.parametric_methods("tone-curve", (torch.rand(1, 1, 8, 8),) * 2, torch.rand(1, 1, 8, 8))


def test_colour_fit_refuses_grey_images():
    with pytest.raises(ValueError, match="colour images"):
        parametric_fits.fit_colour_cast(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8))


def test_stripe_period_near_nyquist():
    params = {"angle": 0.0, "period": 2.5, "amplitude": 0.1, "noise_sigma": 0.0}
    support, _, _ = task("stripe_noise", params, 1)
    stripes = parametric_fits.estimate_stripes(*support)
    assert stripes["period"] == pytest.approx(2.5, rel=0.005)
    assert min(stripes["angle"], 180 - stripes["angle"]) < 0.2 or math.isclose(stripes["angle"], 0.0, abs_tol=0.2)
