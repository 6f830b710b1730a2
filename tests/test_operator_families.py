"""The task families whose support set identifies the task (tasks/operators.py): determinism, split-disjoint
task parameters, shapes, [0, 1] range, the forward models they claim, and clear errors on bad input."""

import math

import pytest
import torch
import torch.nn.functional as F

from metalearn_kit.tasks import RestorationTasks, list_degradations, make_degradation
from metalearn_kit.tasks.operators import (
    BandedDegradation,
    ColourCast,
    DirectionalBlur,
    StripeNoise,
    ToneCurve,
    colour_matrix,
    interleaved_bands,
    inverse_tone_curve,
    tone_curve,
)

FAMILIES = {"tone_curve": 1, "colour_cast": 3, "directional_blur": 1, "stripe_noise": 1, "channel_shift": 3}
# the parameter whose bands make the test tasks unseen
BANDED = {"tone_curve": "log2_gamma", "colour_cast": "hue", "directional_blur": "angle", "stripe_noise": "angle",
          "channel_shift": "red_angle"}


def clean_images(n=4, c=1, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    low = F.interpolate(torch.rand(n, c, size // 4, size // 4, generator=g), size=(size, size), mode="bilinear",
                        align_corners=False)
    return low.clamp(0, 1)


def in_bands(value, bands):
    return any(low <= value <= high for low, high in bands)


def test_families_are_registered():
    for name in FAMILIES:
        assert name in list_degradations()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_same_seed_same_task_and_other_seed_other_task(family):
    channels = FAMILIES[family]
    images = clean_images(8, channels, 32)
    tasks = RestorationTasks(images, family, shots=3, queries=2, split="train")
    a, b, c = tasks.sample(5), tasks.sample(5), tasks.sample(6)
    assert a.info == b.info
    assert torch.equal(a.support[0], b.support[0]) and torch.equal(a.query[0], b.query[0])
    assert a.info["params"] != c.info["params"]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_shapes_and_unit_range(family):
    channels = FAMILIES[family]
    tasks = RestorationTasks(clean_images(8, channels, 32), family, shots=3, queries=2, split="test")
    task = tasks.sample(0)
    assert task.support[0].shape == (3, channels, 32, 32) and task.query[0].shape == (2, channels, 32, 32)
    for degraded in (task.support[0], task.query[0]):
        assert degraded.dtype == torch.float32
        assert float(degraded.min()) >= 0.0 and float(degraded.max()) <= 1.0
    assert not torch.allclose(task.support[0], task.support[1], atol=1e-3)  # it degrades


@pytest.mark.parametrize("family", list(FAMILIES))
def test_train_and_test_task_parameters_are_disjoint(family):
    param = BANDED[family]
    train, test = make_degradation(family, split="train"), make_degradation(family, split="test")
    val = make_degradation(family, split="val")
    assert val.ranges[param] == train.ranges[param]
    g = torch.Generator().manual_seed(0)
    train_values = [train.sample_params(g)[param] for _ in range(300)]
    test_values = [test.sample_params(g)[param] for _ in range(300)]
    assert all(in_bands(v, train.ranges[param]) for v in train_values)
    assert all(in_bands(v, test.ranges[param]) for v in test_values)
    # no value lies in the interior of a band of the other split (bands touch only at their ends)
    for v in test_values:
        assert not any(low < v < high for low, high in train.ranges[param]), v
    for v in train_values:
        assert not any(low < v < high for low, high in test.ranges[param]), v
    # every band gets draws, in proportion to its width
    for bands, values in ((train.ranges[param], train_values), (test.ranges[param], test_values)):
        for low, high in bands:
            assert sum(low <= v <= high for v in values) > 300 / len(bands) / 3


def test_interleaved_bands_cover_the_range_alternately():
    train, test = interleaved_bands(0.0, 8.0, 2, "train"), interleaved_bands(0.0, 8.0, 2, "test")
    assert train == [(0.0, 2.0), (4.0, 6.0)] and test == [(2.0, 4.0), (6.0, 8.0)]
    with pytest.raises(ValueError, match="split"):
        interleaved_bands(0.0, 1.0, 2, "tset")


def test_tone_curve_is_monotone_and_inverted_by_the_oracle():
    x = torch.linspace(0, 1, 201)
    for log2_gamma, contrast in ((-1.4, 0.5), (1.3, -0.5), (0.0, 0.0)):
        y = tone_curve(x, log2_gamma, contrast)
        assert bool((y[1:] >= y[:-1] - 1e-7).all())
        assert abs(float(y[0])) < 1e-6 and abs(float(y[-1]) - 1) < 1e-6
        assert torch.allclose(inverse_tone_curve(y, log2_gamma, contrast), x, atol=2e-3)
    assert torch.allclose(tone_curve(x, 0.0, 0.0), x)


def test_tone_curve_darkens_and_brightens():
    grey = torch.full((1, 1, 8, 8), 0.5)
    d = ToneCurve(noise_sigma=0.0)
    dark = d.apply(grey, {"log2_gamma": 1.0, "contrast": 0.0, "noise_sigma": 0.0})
    bright = d.apply(grey, {"log2_gamma": -1.0, "contrast": 0.0, "noise_sigma": 0.0})
    assert torch.allclose(dark, torch.full_like(grey, 0.25)) and torch.allclose(bright, torch.full_like(grey, 0.5**0.5))


def test_colour_cast_keeps_grey_without_gains_and_needs_three_channels():
    m = colour_matrix(73.0, 0.0, 0.0)
    grey = torch.full((3,), 0.4)
    assert torch.allclose(m @ grey, grey, atol=1e-6)
    assert torch.allclose(m @ m.T, torch.eye(3), atol=1e-5)  # a rotation
    params = ColourCast().sample_params(0)
    with pytest.raises(ValueError, match="channels=3"):
        ColourCast().apply(clean_images(2, 1, 16), params)


def test_directional_blur_streak_follows_the_angle():
    d = DirectionalBlur(noise_sigma=0.0)
    image = torch.zeros(1, 1, 31, 31)
    image[..., 15, 15] = 1.0
    horizontal = d.apply(image, {"angle": 0.0, "length": 9.0, "noise_sigma": 0.0})[0, 0]
    vertical = d.apply(image, {"angle": 90.0, "length": 9.0, "noise_sigma": 0.0})[0, 0]
    assert float(horizontal[15].sum()) > 0.95 and float(vertical[:, 15].sum()) > 0.95
    assert d.operator({"angle": 0.0, "length": 9.0, "noise_sigma": 0.0})["kernel"].shape == (13, 13)


def test_stripe_noise_has_the_task_period_and_a_phase_per_image():
    d = StripeNoise(noise_sigma=0.0)
    grey = torch.full((2, 1, 64, 64), 0.5)
    params = {"angle": 0.0, "period": 8.0, "amplitude": 0.1, "noise_sigma": 0.0}
    out = d.apply(grey, params, generator=0) - 0.5
    assert math.isclose(float(out.abs().max()), 0.1, rel_tol=0.05)
    spectrum = torch.fft.rfft(out[0, 0, 0]).abs()
    assert int(spectrum.argmax()) == 64 // 8  # 8 cycles across 64 pixels
    assert not torch.allclose(out[0], out[1])  # another image, another phase
    assert torch.allclose(out[0, 0, 0], out[0, 0, 40], atol=1e-5)  # angle 0: constant down the columns


def test_channel_shift_moves_red_and_blue_and_keeps_green():
    from metalearn_kit.evaluation.operator_classical import estimate_plane_shift, realign_planes
    from metalearn_kit.tasks.operators import ChannelMisregistration

    d = ChannelMisregistration()
    clean = clean_images(2, 3, 48, seed=3)
    params = {"red_angle": 0.0, "shift": 2.0, "blue_offset": 0.0}
    out = d.apply(clean, params)
    assert torch.equal(out[:, 1], clean[:, 1])
    shifts = d.shifts(params)
    assert shifts["red"] == pytest.approx((2.0, 0.0)) and shifts["blue"] == pytest.approx((-2.0, 0.0), abs=1e-9)
    assert torch.allclose(out[:, 0, :, 10:-10], clean[:, 0, :, 8:-12], atol=1e-5)  # red moved 2 px right
    estimated = estimate_plane_shift(out[:, :1], clean[:, :1])
    assert estimated == pytest.approx((2.0, 0.0), abs=0.26)
    back = realign_planes(out, shifts)
    assert float((back - clean)[..., 4:-4, 4:-4].abs().max()) < 1e-4
    with pytest.raises(ValueError, match="channels=3"):
        d.apply(clean[:, :1], params)


def test_classical_references_recover_known_operators():
    from metalearn_kit.evaluation import operator_classical as classical
    from metalearn_kit.tasks.operators import colour_matrix

    clean = 0.25 + 0.5 * clean_images(4, 3, 32, seed=5)  # mid-range colours: the cast stays inside [0, 1]
    matrix = colour_matrix(40.0, 0.2, -0.3)
    degraded = torch.einsum("ij,njhw->nihw", matrix, clean)
    affine = classical.fit_colour_matrix(degraded, clean)
    assert torch.allclose(classical.apply_affine_colour(degraded, affine), clean.clamp(0, 1), atol=1e-3)
    grey = clean_images(4, 1, 32, seed=6)
    table = classical.fit_tone_lut(tone_curve(grey, 1.0, 0.0), grey)
    assert bool((table[1:] >= table[:-1]).all())
    assert torch.allclose(classical.apply_tone_lut(tone_curve(grey, 1.0, 0.0), table), grey, atol=0.05)
    stripes = StripeNoise(noise_sigma=0.0)
    params = {"angle": 30.0, "period": 6.0, "amplitude": 0.1, "noise_sigma": 0.0}
    noisy = stripes.apply(torch.full((2, 1, 64, 64), 0.5), params, generator=0)
    assert float((classical.remove_known_stripes(noisy, 30.0, 6.0) - 0.5).abs().max()) < 1e-4
    kernel = DirectionalBlur(noise_sigma=0.0).kernel({"angle": 45.0, "length": 7.0, "noise_sigma": 0.0})
    from metalearn_kit.tasks.degradations import blur

    sharp = torch.rand(4, 1, 48, 48, generator=torch.Generator().manual_seed(7))  # white: every frequency seen
    estimated = classical.estimate_kernel(blur(sharp, kernel), sharp, size=13, ridge=1e-6)
    assert float((estimated - kernel).abs().sum()) < 1e-3


def test_banded_ranges_are_checked():
    with pytest.raises(ValueError, match="low <= high"):
        ToneCurve(log2_gamma=[(0.5, 0.1)])
    with pytest.raises(ValueError, match="must be <= 4.0"):
        ToneCurve(log2_gamma=[(0.0, 5.0)])
    with pytest.raises(ValueError, match="zero total width"):
        ToneCurve(log2_gamma=[(0.2, 0.2)])
    fixed = ToneCurve(log2_gamma=[(0.25, 0.5), (1.0, 1.25)])
    values = [fixed.sample_params(s)["log2_gamma"] for s in range(50)]
    assert all(0.25 <= v <= 0.5 or 1.0 <= v <= 1.25 for v in values)


def test_a_user_family_with_bands_registers():
    class Brightness(BandedDegradation):
        name = "test_brightness_offset"
        default_ranges = {"train": {"offset": [(-0.3, -0.1), (0.1, 0.3)]}, "test": {"offset": (-0.1, 0.1)}}

        def degrade(self, clean, params, generator):
            return clean + params["offset"]

    assert "test_brightness_offset" in list_degradations()
    tasks = RestorationTasks(clean_images(4), "test_brightness_offset", 2, 2, split="train")
    assert abs(tasks.sample(1).info["params"]["offset"]) >= 0.1


def test_photo_source_falls_back_to_the_embedded_photographs_and_says_so(monkeypatch, tmp_path):
    from metalearn_kit.recipes.operator_recipe import photo_source

    monkeypatch.setenv("METALEARN_KIT_KODAK24", str(tmp_path / "no_such_folder"))
    with pytest.warns(UserWarning, match="standard photographs of split 'test' are unavailable"):
        source = photo_source("test", 64, 1)
    assert source.split == "test"  # the embedded test photographs, and the rows will say so (test_source)
    assert photo_source("test", 64, 1, photographs="embedded").split == "test"
    with pytest.raises(ValueError, match="photographs"):
        photo_source("test", 64, 1, photographs="kodak")
