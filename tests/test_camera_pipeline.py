"""The camera-pipeline family: its stages, held-out bands, the restorer shaped after it, and the staged classical
pipeline fitted on the support."""

import math

import pytest
import torch

from metalearn_kit.tasks import CameraPipeline, RestorationTasks, make_degradation
from metalearn_kit.tasks.camera_pipeline import (
    KNOTS,
    anisotropic_gaussian_kernel,
    inverse_spline_tone_curve,
    spline_knots,
    spline_tone_curve,
)


def test_the_tone_spline_is_monotone_keeps_black_and_white_and_inverts():
    knots = spline_knots(0.7, [0.4, -0.3, 0.2, 0.0, -0.5, 0.3, 0.1, -0.2])
    assert knots.shape == (KNOTS + 1,) and knots[0] == 0 and abs(float(knots[-1]) - 1) < 1e-12
    assert bool((knots.diff() > 0).all())
    x = torch.linspace(0, 1, 1001)
    y = spline_tone_curve(x, knots)
    assert bool((y.diff() >= 0).all())
    assert float((inverse_spline_tone_curve(y, knots) - x).abs().max()) < 1e-5
    # no slopes: the plain gamma curve at the knots
    plain = spline_knots(1.0, [0.0] * KNOTS)
    assert torch.allclose(plain, torch.linspace(0, 1, KNOTS + 1, dtype=torch.float64) ** 2)
    with pytest.raises(ValueError, match="slopes must hold 8"):
        spline_knots(0.0, [0.0] * 3)


def test_the_blur_is_wider_along_its_angle():
    kernel = anisotropic_gaussian_kernel(9, 1.5, 0.3, 0.0)  # horizontal
    assert abs(float(kernel.sum()) - 1) < 1e-6
    rows, cols = torch.meshgrid(torch.arange(9.0) - 4, torch.arange(9.0) - 4, indexing="ij")
    var_x, var_y = float((kernel * cols**2).sum()), float((kernel * rows**2).sum())
    assert var_x > 5 * var_y
    vertical = anisotropic_gaussian_kernel(9, 1.5, 0.3, 90.0)
    assert torch.allclose(vertical, kernel.T, atol=1e-6)
    with pytest.raises(ValueError, match="odd"):
        anisotropic_gaussian_kernel(8, 1.0, 1.0, 0.0)


def test_held_out_cameras_and_the_degradation_itself():
    train, test = make_degradation("camera_pipeline", "train"), make_degradation("camera_pipeline", "test")
    for param in ("log2_gamma", "blur_angle"):
        train_bands, test_bands = train.ranges[param], test.ranges[param]
        for low, high in test_bands:  # every test band lies in a gap between training bands
            assert all(high <= a or low >= b for a, b in train_bands)
    params = train.sample_params(0)
    assert len(params["slopes"]) == KNOTS and params == train.sample_params(0)
    clean = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    degraded = train.apply(clean, params, 3)
    assert degraded.shape == clean.shape and torch.equal(degraded, train.apply(clean, params, 3))
    assert 0 <= float(degraded.min()) and float(degraded.max()) <= 1
    # the same camera without noise, blur or colour change is its tone curve alone
    quiet = CameraPipeline("train", log2_gamma=0.5, curve_wiggle=0.0, hue=0.0, log2_gain_red=0.0, log2_gain_blue=0.0,
                           blur_sigma=0.05, blur_ratio=1.0, blur_angle=0.0, log10_peak=6.0, read_noise=0.0)
    quiet_params = quiet.sample_params(0)
    expected = clean.clamp(0, 1) ** math.sqrt(2)
    assert float((quiet.apply(clean, quiet_params, 0) - expected).abs().max()) < 0.03
    with pytest.raises(ValueError, match="colour images"):
        train.apply(clean[:, :1], params, 0)


def test_the_camera_restorer_undoes_pixels_first_and_sees_a_neighbourhood():
    from metalearn_kit.models.operator_nets import CameraRestorer

    model = CameraRestorer(3, width=8, depth=3)
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(model(x), model.pointwise(x))  # the spatial part starts at zero
    torch.nn.init.normal_(model.cnn[-1].weight)
    probe = torch.zeros(1, 3, 16, 16, requires_grad=True)
    model(probe)[0, 0, 8, 8].backward()
    reach = (probe.grad[0].abs().sum(0) > 0).nonzero()
    assert int(reach[:, 0].max() - reach[:, 0].min()) + 1 == 2 * 3 + 1  # receptive field 2 depth + 1
    with pytest.raises(ValueError, match="images"):
        model(torch.rand(1, 1, 16, 16))


def _task(split: str, seed: int, **ranges):
    from metalearn_kit.data import photos

    tasks = RestorationTasks(photos("train", 48, 3), {"camera_pipeline": ranges} if ranges else "camera_pipeline",
                             2, 2, split=split)
    return tasks, tasks.sample(seed)


def test_the_staged_pipeline_fits_a_mild_camera_and_the_oracle_bounds_it():
    from metalearn_kit.evaluation.camera_classical import fit_camera, oracle_pipeline, staged_pipeline
    from metalearn_kit.evaluation.metrics import psnr

    mild = {"hue": 5.0, "blur_sigma": 0.05, "blur_ratio": 1.0, "log10_peak": 6.0, "read_noise": 0.0}
    _, task = _task("train", 0, **mild)
    fit = fit_camera(*task.support)
    assert psnr(fit.restore(task.query[0]), task.query[1]) > psnr(task.query[0], task.query[1]) + 5
    tasks, task = _task("val", 1)
    degradation = tasks.degradation("camera_pipeline")
    staged = staged_pipeline(task.support, task.query[0])
    best = oracle_pipeline(degradation.operator(task.info["params"]), task.support, task.query[0])
    assert staged.shape == best.shape == task.query[1].shape
    assert psnr(best, task.query[1]) > psnr(staged, task.query[1])
