"""Each degradation family does what its docstring says, with measured numbers, and rejects bad input."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from metalearn_kit.tasks import (
    JPEG,
    SPLITS,
    Degradation,
    GaussianBlur,
    GaussianNoise,
    Inpainting,
    KernelBlur,
    MotionBlur,
    PoissonNoise,
    SuperResolution,
    blur,
    gaussian_kernel,
    list_degradations,
    make_degradation,
    motion_kernel,
    restoration_split,
)

BUILTIN = ["gaussian_noise", "poisson_noise", "gaussian_blur", "motion_blur", "inpainting", "super_resolution",
           "jpeg"]


def textured(n=4, c=1, size=32, seed=0):
    """Smooth random images with edges: low-frequency noise plus a bright square, values in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    low = F.interpolate(torch.rand(n, c, size // 4, size // 4, generator=g), size=(size, size), mode="bilinear",
                        align_corners=False)
    low[..., size // 4: size // 2, size // 4: size // 2] = 1.0
    return low.clamp(0, 1)


def test_registry_lists_builtins_and_rejects_unknown_names():
    names = list_degradations()
    for name in BUILTIN:
        assert name in names
    with pytest.raises(ValueError, match="known families") as err:
        make_degradation("gaussian_nois")
    assert "gaussian_noise" in str(err.value)
    d = make_degradation("gaussian_noise", sigma=(0.05, 0.2))
    assert isinstance(d, GaussianNoise) and d.ranges["sigma"] == (0.05, 0.2)


def test_gaussian_noise_std_matches_sigma_on_mid_grey():
    clean = torch.full((64, 1, 32, 32), 0.5)
    for sigma in (0.05, 0.1, 0.15):
        noisy = GaussianNoise(sigma=sigma).apply(clean, {"sigma": sigma}, generator=1)
        measured = (noisy - clean).std().item()
        assert abs(measured - sigma) / sigma < 0.05, (sigma, measured)
        assert abs((noisy - clean).mean().item()) < 0.01 * sigma + 1e-3


def test_outputs_are_clipped_to_unit_range():
    clean = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    noisy = GaussianNoise(sigma=0.5).apply(clean, {"sigma": 0.5}, generator=0)
    assert noisy.min() >= 0 and noisy.max() <= 1
    assert (noisy == 0).any() and (noisy == 1).any()  # clipping did happen at this noise level


def test_poisson_variance_is_value_over_peak():
    for value, peak in ((0.25, 20.0), (0.1, 60.0)):
        clean = torch.full((64, 1, 32, 32), value)
        noisy = PoissonNoise(peak=peak).apply(clean, {"peak": peak}, generator=2)
        expected = value / peak
        assert abs(noisy.var().item() - expected) / expected < 0.05
        assert abs(noisy.mean().item() - value) < 0.01
        # Values are photon counts over peak.
        counts = noisy * peak
        assert torch.allclose(counts, counts.round(), atol=1e-4)


@pytest.mark.parametrize("family", ["gaussian_blur", "motion_blur", "super_resolution"])
def test_kernels_sum_to_one(family):
    d = make_degradation(family)
    for seed in range(5):
        kernel = d.operator(d.sample_params(seed))["kernel"]
        assert kernel.shape[0] % 2 == 1 and kernel.shape[0] == kernel.shape[1]
        assert abs(kernel.sum().item() - 1) < 1e-5
        assert (kernel >= 0).all()


def test_gaussian_kernel_has_the_stated_width():
    kernel = gaussian_kernel(31, 2.0).double()
    coords = torch.arange(31, dtype=torch.float64) - 15
    variance_x = (kernel.sum(0) * coords**2).sum().item()
    assert abs(math.sqrt(variance_x) - 2.0) < 1e-3


def test_motion_kernel_is_a_streak_along_the_angle():
    horizontal = motion_kernel(15, 9, 0.0)
    assert horizontal[7].sum() > 0.99  # all mass on the centre row
    assert (horizontal[7] > 0).sum().item() in (9, 10, 11)  # ~length pixels wide (anti-aliased ends)
    vertical = motion_kernel(15, 9, 90.0)
    assert vertical[:, 7].sum() > 0.99
    diagonal = motion_kernel(15, 9, 45.0)
    # A streak up and to the right: symmetric about the main diagonal, mass top-right and bottom-left.
    assert torch.allclose(diagonal, diagonal.t(), atol=1e-6)
    assert abs(diagonal[:7, 8:].sum().item() - diagonal[8:, :7].sum().item()) < 1e-5
    assert diagonal[:7, 8:].sum() > 0.3 and diagonal[:7, :7].sum() < 0.01


@pytest.mark.parametrize("family", ["gaussian_blur", "motion_blur"])
def test_blur_equals_conv2d_with_the_stated_kernel_and_reflect_padding(family):
    d = make_degradation(family)
    clean = textured(3, 3)
    params = d.sample_params(3)
    op = d.operator(params)
    assert op["padding"] == "reflect"
    kernel = op["kernel"]
    k = kernel.shape[0]
    expected = torch.cat([F.conv2d(F.pad(clean[:, c:c + 1], [k // 2] * 4, mode="reflect"), kernel[None, None])
                          for c in range(3)], dim=1)
    assert torch.allclose(d.apply(clean, params), expected.clamp(0, 1), atol=1e-6)
    assert torch.allclose(blur(clean, kernel), expected, atol=1e-6)


def test_blur_keeps_a_constant_image_and_noise_option_adds_noise():
    grey = torch.full((16, 1, 32, 32), 0.5)
    d = GaussianBlur(sigma=1.0, noise_sigma=0.05)
    out = d.apply(grey, {"sigma": 1.0, "noise_sigma": 0.05}, generator=0)
    assert abs((out - grey).std().item() - 0.05) / 0.05 < 0.05
    assert torch.allclose(GaussianBlur(sigma=1.0).apply(grey, {"sigma": 1.0, "noise_sigma": 0.0}), grey, atol=1e-6)


def test_user_kernel_blur_and_kernel_checks():
    box = torch.full((3, 3), 1 / 9)
    d = KernelBlur([box, gaussian_kernel(3, 0.8)])
    clean = textured(2)
    params = d.sample_params(0)
    assert params["kernel_index"] in (0, 1)
    expected = F.conv2d(F.pad(clean, [1] * 4, mode="reflect"), d.kernels[params["kernel_index"]][None, None])
    assert torch.allclose(d.apply(clean, params), expected, atol=1e-6)
    with pytest.raises(ValueError, match="sum to one"):
        KernelBlur([torch.ones(3, 3)])
    with pytest.raises(ValueError, match="odd size"):
        KernelBlur([torch.full((2, 2), 0.25)])
    with pytest.raises(TypeError, match="2-D torch.Tensor"):
        KernelBlur([[0.0, 1.0, 0.0]])
    with pytest.raises(ValueError, match="kernels is required"):
        make_degradation("kernel_blur")


@pytest.mark.parametrize("mode", ["random", "boxes", "strokes"])
def test_inpainting_mask_fraction_matches_and_degraded_is_image_times_mask(mode):
    d = Inpainting(mode=mode)
    clean = textured(3, 3, size=32)
    for seed in range(3):
        params = d.sample_params(seed)
        mask = d.operator(params, image_size=(32, 32))["mask"]
        missing = 1 - mask.mean().item()
        assert abs(missing - params["fraction"]) <= 1 / (32 * 32)  # exact up to rounding
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(d.apply(clean, params), clean * mask)
        assert torch.equal(d.mask(params, (32, 32)), mask)  # the mask is rebuilt from params alone
    if mode != "random":
        # Holes are contiguous: most missing pixels have a missing 4-neighbour.
        hole = 1 - d.mask(d.sample_params(0), (32, 32))[0, 0]
        neighbours = (hole.roll(1, 0) + hole.roll(-1, 0) + hole.roll(1, 1) + hole.roll(-1, 1)) * hole
        assert (neighbours > 0).sum() / hole.sum() > 0.9


def test_super_resolution_sizes_and_lr_is_blur_then_stride():
    d = SuperResolution(scale=[2, 4])
    clean = textured(2, 3, size=32)
    for scale in (2, 4):
        params = {"scale": scale, "kernel_sigma": 1.2, "noise_sigma": 0.0}
        low = d.downsample(clean, params)
        assert low.shape == (2, 3, 32 // scale, 32 // scale)
        kernel = d.operator(params)["kernel"]
        assert torch.allclose(low, blur(clean, kernel)[..., ::scale, ::scale].clamp(0, 1), atol=1e-6)
        up = d.apply(clean, params)
        assert up.shape == clean.shape
        assert torch.allclose(up, F.interpolate(low, size=(32, 32), mode="bicubic", align_corners=False).clamp(0, 1),
                              atol=1e-6)
        # Bicubic upsampling of the LR is close to, but not equal to, the clean image.
        assert 0 < (up - clean).abs().mean() < 0.2
    with pytest.raises(ValueError, match="divisible by scale 3"):
        SuperResolution(scale=3).apply(clean, {"scale": 3, "kernel_sigma": 1.0, "noise_sigma": 0.0})


def test_jpeg_changes_the_image_and_lower_quality_hurts_more():
    clean = textured(6, 3, size=32)
    errors = []
    for quality in (10, 40, 90):
        out = JPEG(quality=quality).apply(clean, {"quality": quality})
        assert out.shape == clean.shape
        errors.append(F.mse_loss(out, clean).item())
    assert errors[0] > errors[1] > errors[2] > 0
    grey = JPEG(quality=10).apply(textured(4, 1), {"quality": 10})
    assert not torch.equal(grey, textured(4, 1))
    assert ((grey * 255).round() - grey * 255).abs().max() < 1e-3  # 8-bit values after the round trip


def _sample_values(d, param, n=300):
    return [d.sample_params(seed)[param] for seed in range(n)]


@pytest.mark.parametrize("family,param", [("gaussian_noise", "sigma"), ("poisson_noise", "peak"),
                                          ("gaussian_blur", "sigma"), ("motion_blur", "length"),
                                          ("inpainting", "fraction"), ("super_resolution", "scale"),
                                          ("super_resolution", "kernel_sigma"), ("jpeg", "quality")])
def test_test_split_ranges_are_disjoint_from_train(family, param):
    train = _sample_values(restoration_split(family, "train"), param)
    test = _sample_values(restoration_split(family, "test"), param)
    val = _sample_values(restoration_split(family, "val"), param)
    assert min(test) > max(train) or max(test) < min(train)
    assert min(val) >= min(train) and max(val) <= max(train)  # validation repeats the training levels
    assert len(set(train)) > 1 or family == "super_resolution"


@pytest.mark.parametrize("family", BUILTIN)
def test_determinism_and_json_params(family):
    d = make_degradation(family)
    clean = textured(2, 1, size=32)
    a_params, b_params = d.sample_params(7), d.sample_params(7)
    assert a_params == b_params
    json.dumps(a_params)
    a = d.apply(clean, a_params, generator=11)
    b = d.apply(clean, b_params, generator=torch.Generator().manual_seed(11))
    assert torch.equal(a, b)
    out, params = d(clean, generator=5)
    assert out.shape == clean.shape and out.min() >= 0 and out.max() <= 1
    assert params == d.sample_params(torch.Generator().manual_seed(5))


def test_bad_input_to_apply_names_the_argument():
    d = GaussianNoise()
    params = d.sample_params(0)
    with pytest.raises(ValueError, match="clean must have shape"):
        d.apply(torch.rand(1, 8, 8), params)
    with pytest.raises(TypeError, match="clean must be a floating-point"):
        d.apply(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), params)
    with pytest.raises(ValueError, match="clean must have values in"):
        d.apply(torch.full((1, 1, 8, 8), 2.0), params)
    with pytest.raises(ValueError, match="clean contains NaN"):
        d.apply(torch.full((1, 1, 8, 8), float("nan")), params)
    with pytest.raises(TypeError, match="clean must be a torch.Tensor"):
        d.apply([[0.5]], params)
    with pytest.raises(ValueError, match="missing"):
        d.apply(torch.rand(1, 1, 8, 8), {})
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        d.apply(torch.rand(1, 1, 8, 8), {"sigma": -0.1})


def test_bad_ranges_are_rejected():
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        GaussianNoise(sigma=-0.1)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        make_degradation("gaussian_noise", sigma=(-0.1, 0.2))
    with pytest.raises(ValueError, match="low <= high"):
        GaussianNoise(sigma=(0.3, 0.1))
    with pytest.raises(ValueError, match="no parameter"):
        GaussianNoise(sgima=0.1)
    with pytest.raises(ValueError, match="scale must be one of"):
        SuperResolution(scale=5)
    with pytest.raises(ValueError, match="mode must be one of"):
        Inpainting(mode="holes")
    with pytest.raises(ValueError, match="split must be one of"):
        restoration_split("jpeg", "dev")
    with pytest.raises(ValueError, match="kernel_size"):
        MotionBlur(length=(3.0, 21.0), kernel_size=15)
    with pytest.raises(ValueError, match="too small"):
        GaussianBlur(kernel_size=15).apply(torch.rand(1, 1, 6, 6), {"sigma": 1.0, "noise_sigma": 0.0})
    assert set(SPLITS) == {"train", "val", "test"}


def test_a_user_family_registers_and_is_built_by_name():
    class Dimming(Degradation):
        name = "test_dimming"
        default_ranges = {"train": {"factor": (0.5, 0.8)}, "test": {"factor": (0.2, 0.4)}}
        param_limits = {"factor": (0.0, 1.0)}

        def degrade(self, clean, params, generator):
            return clean * params["factor"]

    assert "test_dimming" in list_degradations()
    d = make_degradation("test_dimming", split="test")
    params = d.sample_params(0)
    assert 0.2 <= params["factor"] <= 0.4
    clean = textured(2)
    assert torch.allclose(d.apply(clean, params), clean * params["factor"])
    with pytest.raises(ValueError, match="already taken"):
        class Other(Degradation):  # noqa: F841 - defining it is the test
            name = "test_dimming"
