"""Restoration backbones, operators, the sparse baseline and SIREN."""

import pytest
import torch
from skimage import data, transform

from metalearn_kit.evaluation import classical
from metalearn_kit.evaluation.metrics import psnr
from metalearn_kit.models.conv import ConvRestorer
from metalearn_kit.models.restoration import (
    EncoderRestorer,
    LinearOperator,
    UnrolledRestorer,
    blur,
    blur_adjoint,
    blur_downsample,
    blur_downsample_adjoint,
)
from metalearn_kit.models.siren import Siren, coordinate_grid, fit_image, image_to_pixels, pixels_to_image
from metalearn_kit.models.sparse import PatchDictionary
from metalearn_kit.tasks.degradations import blur as kit_blur
from metalearn_kit.tasks.degradations import gaussian_kernel, motion_kernel


def _photo(size=32, which="camera"):
    image = getattr(data, which)()
    if image.ndim == 3:
        image = image[..., 0]
    return torch.tensor(transform.resize(image, (size, size), anti_aliasing=True), dtype=torch.float32)[None, None]


def _has_batchnorm(model):
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


@pytest.mark.parametrize("model", [ConvRestorer(1, 8, 3), EncoderRestorer(3, 8, 2, 2)])
def test_cnn_backbones_keep_shape(model):
    x = torch.rand(2, model.channels, 12, 16)
    out = model(x)
    assert out.shape == x.shape
    assert not _has_batchnorm(model)
    # near the identity at initialisation: scratch starts at the degraded image
    assert (out - x).abs().mean() < 0.1


def test_encoder_restorer_names_only_restorer_params():
    model = EncoderRestorer(1, 8)
    names = model.restorer_names()
    assert names and all(n.startswith("restorer.") for n in names)
    assert len(names) < len(list(model.parameters()))


def test_blur_matches_kit_degradation_and_adjoints_are_exact():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 16, 16, generator=g)
    kernel = motion_kernel(9, 6.0, 30.0)
    assert torch.allclose(blur(x, kernel.expand(2, 9, 9)), kit_blur(x, kernel), atol=1e-6)
    kernels = torch.rand(2, 5, 5, generator=g)
    r = torch.rand(2, 3, 16, 16, generator=g)
    assert torch.allclose((blur(x, kernels) * r).sum(), (x * blur_adjoint(r, kernels)).sum(), rtol=1e-5)
    r_low = torch.rand(2, 3, 8, 8, generator=g)
    lhs = (blur_downsample(x, kernels, 2) * r_low).sum()
    rhs = (x * blur_downsample_adjoint(r_low, kernels, 2, (16, 16))).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-5)


@pytest.mark.parametrize("kind", ["blur", "mask", "sr"])
def test_unrolled_gradient_steps_reduce_data_fidelity(kind):
    g = torch.Generator().manual_seed(1)
    clean = _photo(24)
    scale = 2 if kind == "sr" else 1
    if kind == "mask":
        op_data = (torch.rand(1, 1, 24, 24, generator=g) > 0.4).float()
    else:
        op_data = gaussian_kernel(7, 1.2)[None]
    op = LinearOperator(kind, op_data, scale, size=(24, 24))
    y = op.forward(clean)
    model = UnrolledRestorer(kind, channels=1, width=8, depth=2, iterations=3, scale=scale, initial_step=0.9)
    x0 = model.initial_estimate(y, op)
    out = model(y, op_data, regularize=False)
    assert out.shape == clean.shape
    fid0 = (op.forward(x0) - y).pow(2).sum()
    fid = (op.forward(out) - y).pow(2).sum()
    if kind == "mask":  # x_0 = y already fits the observed pixels exactly; the steps must keep that
        assert fid0 < 1e-10 and fid < 1e-10
    else:
        assert fid < 0.9 * fid0
    # from a random start, one gradient step A^T(Ax - y) of the model's first step size lowers the fidelity
    x = torch.rand(clean.shape, generator=g)
    stepped = x - model.steps[0] * op.data_gradient(x, y)
    assert (op.forward(stepped) - y).pow(2).sum() < 0.9 * (op.forward(x) - y).pow(2).sum()
    assert len(model.steps) == 3 and bool((model.steps > 0).all())
    assert model(y, op_data).shape == clean.shape  # with the learned regulariser too


def test_unrolled_rejects_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        UnrolledRestorer("warp")
    with pytest.raises(ValueError, match="scale"):
        UnrolledRestorer("sr", scale=1)
    model = UnrolledRestorer("blur", width=4, depth=2)
    with pytest.raises(ValueError, match="operator"):
        model(torch.rand(2, 1, 8, 8), torch.rand(3, 3, 3))
    with pytest.raises(ValueError, match="channel"):
        model(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 3))


def test_sparse_dictionary_denoises():
    g = torch.Generator().manual_seed(2)
    clean = _photo(48)
    noisy = (clean + 0.1 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    dictionary = PatchDictionary(n_atoms=32, patch_size=6).fit(_photo(48, "astronaut"), generator=0, iterations=30)
    assert dictionary.atoms.shape == (32, 36)
    restored = dictionary.denoise(noisy, sigma=0.1)
    assert restored.shape == noisy.shape
    assert psnr(restored, clean) > psnr(noisy, clean) + 3
    with pytest.raises(ValueError, match="fit"):
        PatchDictionary().denoise(noisy, 0.1)
    with pytest.raises(ValueError, match="sigma"):
        dictionary.denoise(noisy, -1.0)


def test_siren_fits_a_tiny_image():
    torch.manual_seed(0)
    image = _photo(16)[0]
    coords, values = image_to_pixels(image)
    assert coords.shape == (256, 2) and values.shape == (256, 1)
    assert torch.equal(pixels_to_image(values, 16, 16), image)
    model = Siren(out_channels=1, width=32, hidden_layers=2)
    history = fit_image(model, image, steps=150, lr=1e-3)
    assert len(history) == 150 and history[-1] < 0.05 * history[0]
    assert psnr(model.render(16, 16)[None], image[None]) > 30
    assert coordinate_grid(2, 3).shape == (6, 2)
    with pytest.raises(ValueError, match="coords"):
        model(torch.rand(5, 3))


def test_classical_references_improve_their_inputs():
    g = torch.Generator().manual_seed(3)
    clean = _photo(32)
    noisy = (clean + 0.1 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    base = psnr(noisy, clean)
    for restored in (classical.tv_denoise(noisy, 0.08), classical.nlm_denoise(noisy, 0.1),
                     classical.wavelet_denoise(noisy, 0.1), classical.bm3d_denoise(noisy, 0.1)):
        assert restored.shape == noisy.shape and psnr(restored, clean) > base
    kernel = gaussian_kernel(7, 1.5)[None]
    blurred = blur(clean, kernel)
    assert psnr(classical.wiener_deconvolve(blurred, kernel, 0.01), clean) > psnr(blurred, clean)
    assert psnr(classical.richardson_lucy_deconvolve(blurred, kernel, 20), clean) > psnr(blurred, clean)
    mask = (torch.rand(1, 1, 32, 32, generator=g) > 0.3).float()
    assert psnr(classical.biharmonic_inpaint(clean * mask, mask), clean) > psnr(clean * mask, clean) + 5
    best, score = classical.tune_on_support(classical.tv_denoise, noisy, clean, "weight", [0.01, 0.1, 1.0])
    assert best in (0.01, 0.1, 1.0) and score > base
    with pytest.raises(ValueError, match="kernels"):
        classical.wiener_deconvolve(blurred, kernel[0])
    with pytest.raises(ValueError, match="weight"):
        classical.tv_denoise(noisy, -1)
