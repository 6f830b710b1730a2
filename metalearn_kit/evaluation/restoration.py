"""The restoration benchmark: meta-learned initialisations against scratch training, joint pretraining and
classical methods, each with the same support data and the same step budget.

1. :func:`few_shot_denoising`: unseen noise levels on unseen photographs.
2. :func:`zero_shot_super_resolution`: MZSR -- adapt on pairs made from the low-resolution image itself.
3. :func:`few_shot_deblurring_inpainting`: unseen blur kernels and unseen mask types, unrolled restorer.
4. :func:`image_fitting`: SIREN from a meta-learned vs the standard initialisation.
5. :func:`self_supervised_denoising`: zero-shot Noise2Self adaptation on the noisy image alone.

Each function takes ``profile`` (the config of :func:`~metalearn_kit.recipes.restoration_config`), ``seed``
and optional ``sizes`` overrides, and returns *rows*: dicts with ``experiment``, ``method``, ``steps``
(``None`` for non-iterative classical methods), ``metric`` (``psnr``, ``ssim`` or ``wall_time_s``),
``value`` (mean over the test tasks) and ``tasks``. Meta-learned and pretrained models come from
:func:`metalearn_kit.pretrained.load_or_train` (the shipped file when its recorded config matches).

Fairness rules: every learned method adapts on the same support tensors; baselines that are fine-tuned
(scratch, joint-pretrained, bicubic-pretrained) pick their Adam learning rate from ``BASELINE_LRS`` by the
*support* loss reached at each step count (never the query); the meta-learned models use the inner loop
they were meta-trained with. Classical methods tune their one parameter on the same support pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..config import get_profile
from ..pretrained import load_or_train
from ..recipes.restoration import (
    build_model,
    fit_loss,
    mse_loss,
    operator_loss,
    restoration_sampler,
    self_supervised_loss,
)
from ..recipes.restoration_configs import RESTORATION_EXPERIMENTS, restoration_config
from . import classical as reference
from .curves import (
    ResultTable,
    adaptation_curve,
    learner_curve,
    render_images,
    run_timed,
    sample_test_tasks,
    timed,
    tuned_curve,
)

__all__ = ["EXPERIMENT_FUNCTIONS", "few_shot_deblurring_inpainting", "few_shot_denoising",
           "image_fitting", "run_experiments", "self_supervised_denoising", "zero_shot_super_resolution"]


def _model(name: str, config, seed: int = 0) -> tuple[torch.nn.Module, str]:
    """:func:`~metalearn_kit.pretrained.load_or_train`, and whether the row's model was ``"loaded"`` or
    ``"trained"``."""
    model, info = load_or_train(name, config, seed)
    return model, "trained" if info["source"] == "trained" else "loaded"


def _meta_curve(model: torch.nn.Module, support, query, loss_fn: Callable, config,
                render: Callable = render_images) -> dict[str, Any]:
    """The meta-init's :func:`~metalearn_kit.evaluation.curves.adaptation_curve` with the inner loop it was
    meta-trained with: SGD at ``config.inner_lr``, gradients clipped at ``config.inner_grad_clip``."""
    return adaptation_curve(model, support, query, loss_fn, config.steps, config.inner_lr, "sgd", render,
                            grad_clip=config.inner_grad_clip)


def _same_as_meta(config) -> list[tuple[str, float]]:
    """The ``extra`` of a fine-tuned baseline's :func:`~metalearn_kit.evaluation.curves.tuned_curve`: it may
    also pick the meta-init's own inner optimizer, so it is never denied a setting the meta-init had."""
    return [("sgd", config.inner_lr)]


def _scratch(name: str, config, seed: int) -> torch.nn.Module:
    """A freshly initialised model of checkpoint ``name``'s architecture, drawn after ``torch.manual_seed(seed)``
    so each test task's scratch baseline starts from its own reproducible init."""
    torch.manual_seed(seed)
    return build_model(name, config)


# ----------------------------------------------------------------------------------------------------------
# 1. Few-shot denoising
# ----------------------------------------------------------------------------------------------------------

def few_shot_denoising(profile: str | None = None, seed: int = 0, sizes: dict | None = None,
                       progress: bool = False, classical: bool = True) -> list[dict[str, Any]]:
    """Gaussian noise of *unseen* levels (the test split's sigma range) on *unseen* photographs: the MAML
    init, the joint-pretrained model and scratch training adapt on ``shots`` support pairs for each step
    count; TV, NLM, wavelet, BM3D and the sparse dictionary use the noise level measured on the support pairs."""
    from ..models.sparse import PatchDictionary

    config = restoration_config("denoising", profile, sizes)
    same_as_meta = _same_as_meta(config)
    meta_model, meta_source = _model("restoration_denoise_maml", config, seed)
    joint_model, joint_source = _model("restoration_denoise_joint", config, seed)
    from ..data import photos

    test = restoration_sampler(config, "denoise", "test")
    dictionary = PatchDictionary(n_atoms=64, patch_size=6).fit(
        photos("train", patch_size=config.patch, channels=1).sample_patches(64, seed), generator=seed,
        iterations=100)
    table = ResultTable("denoising")
    steps = config.steps
    for i, task in enumerate(sample_test_tasks(test, config.test_tasks, seed)):
        support, query = task.support, task.query
        table.add_images("noisy input", None, query[0], query[1], 0.0)
        table.add_curve("meta-init (MAML)", _meta_curve(meta_model, support, query, mse_loss, config))
        table.add_curve("joint pretrained + finetune", tuned_curve(joint_model, support, query, mse_loss, steps,
                                                                   extra=same_as_meta))
        scratch = _scratch("restoration_denoise_maml", config, seed + i)
        table.add_curve("scratch", tuned_curve(scratch, support, query, mse_loss, steps, extra=same_as_meta))
        if not classical:
            continue
        sigma = float((support[0] - support[1]).std())  # measured on the support pairs
        weight, _ = reference.tune_on_support(reference.tv_denoise, support[0], support[1], "weight",
                                              [0.02, 0.05, 0.1, 0.2, 0.4])
        for name, fn, arg in (("TV (weight tuned on support)", reference.tv_denoise, weight),
                              ("non-local means", reference.nlm_denoise, sigma),
                              ("wavelet (BayesShrink)", reference.wavelet_denoise, sigma),
                              ("BM3D", reference.bm3d_denoise, sigma),
                              ("sparse dictionary (OMP)", dictionary.denoise, sigma)):
            out, seconds = timed(fn, query[0], arg)
            table.add_images(name, None, out, query[1], seconds)
    return table.rows(sources={"meta": meta_source, "joint": joint_source})


# ----------------------------------------------------------------------------------------------------------
# 2. Zero-shot super-resolution (MZSR)
# ----------------------------------------------------------------------------------------------------------

def _dihedral(support: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The 8 flips/rotations of every support pair (ZSSR's augmentation), used for every SR method alike."""
    views = []
    for t in support:
        out = [torch.rot90(t, r, dims=(-2, -1)) for r in range(4)]
        out += [o.flip(-1) for o in out]
        views.append(torch.cat(out))
    return tuple(views)


def zero_shot_super_resolution(profile: str | None = None, seed: int = 0, sizes: dict | None = None,
                               progress: bool = False) -> list[dict[str, Any]]:
    """MZSR-style x``scale`` SR of unseen photographs with the task's known blur kernel. All learned methods
    adapt on the same self-pairs (the LR image and its own downscaled "son", with the 8 flips/rotations):
    bicubic; the bicubic-pretrained network as is and fine-tuned; a ZSSR-style network trained from scratch
    on the self-pairs for hundreds of steps; the meta-transfer-learned init (started from the pretrained
    network) after 1 and 10 steps."""
    config = restoration_config("super_resolution", profile, sizes)
    pretrained, pre_source = _model("restoration_sr_pretrained", config, seed)
    meta_model, meta_source = _model("restoration_sr_mzsr", config, seed)
    sampler = restoration_sampler(config, "sr", "test")
    table = ResultTable("super_resolution")
    steps = config.steps
    for i, task in enumerate(sample_test_tasks(sampler, config.test_images, seed)):
        support, query = _dihedral(task.support), task.query
        table.add_images("bicubic", None, query[0], query[1], 0.0)
        table.add_curve("meta-init (MZSR)", _meta_curve(meta_model, support, query, mse_loss, config))
        table.add_curve("bicubic-pretrained + finetune", tuned_curve(pretrained, support, query, mse_loss, steps,
                                                                     extra=_same_as_meta(config)))
        scratch = _scratch("restoration_sr_pretrained", config, seed + i)
        table.add_curve("ZSSR-style scratch", tuned_curve(scratch, support, query, mse_loss, config.zssr_steps,
                                                          lrs=config.zssr_lrs))
    return table.rows(sources={"pretrained": pre_source, "meta": meta_source})


# ----------------------------------------------------------------------------------------------------------
# 3. Few-shot deblurring and inpainting
# ----------------------------------------------------------------------------------------------------------

def few_shot_deblurring_inpainting(profile: str | None = None, seed: int = 0, sizes: dict | None = None,
                                   progress: bool = False, classical: bool = True) -> list[dict[str, Any]]:
    """Unrolled restorers (known operator) for deblurring with *unseen* kernels (the test split's wider
    Gaussian and longer motion blurs) and inpainting with an *unseen* mask type (strokes, trained on random
    pixels and boxes). MAML init vs joint pretraining vs scratch, next to Wiener / Richardson-Lucy (kernel
    known, parameter tuned on the support) and biharmonic inpainting."""
    config = restoration_config("deblurring_inpainting", profile, sizes)
    same_as_meta = _same_as_meta(config)
    rows: list[dict[str, Any]] = []
    steps = config.steps
    for kind, label in (("blur", "deblurring"), ("mask", "inpainting")):
        prefix = "restoration_deblur" if kind == "blur" else "restoration_inpaint"
        meta_model, meta_source = _model(prefix + "_maml", config, seed)
        joint_model, joint_source = _model(prefix + "_joint", config, seed)
        test = restoration_sampler(config, kind, "test")
        table = ResultTable(label)
        for i, task in enumerate(sample_test_tasks(test, config.test_tasks, seed)):
            support, query = task.support, task.query
            table.add_images("degraded input", None, query[0], query[1], 0.0)
            table.add_curve("meta-init (MAML, unrolled)", _meta_curve(meta_model, support, query, operator_loss,
                                                                     config))
            table.add_curve("joint pretrained + finetune", tuned_curve(joint_model, support, query, operator_loss,
                                                                       steps, extra=same_as_meta))
            scratch = _scratch(prefix + "_maml", config, seed + i)
            table.add_curve("scratch", tuned_curve(scratch, support, query, operator_loss, steps,
                                                   extra=same_as_meta))
            if not classical:
                continue
            if kind == "blur":
                kernels_s, kernels_q = support[2], query[2]
                balance, _ = reference.tune_on_support(reference.wiener_deconvolve, support[0], support[1],
                                                       "balance", [0.003, 0.01, 0.03, 0.1, 0.3],
                                                       kernels=kernels_s)
                iters, _ = reference.tune_on_support(reference.richardson_lucy_deconvolve, support[0], support[1],
                                                     "iterations", [5, 10, 30, 60], kernels=kernels_s)
                for name, fn, arg in (("Wiener (balance tuned on support)", reference.wiener_deconvolve, balance),
                                      ("Richardson-Lucy (iterations tuned on support)",
                                       reference.richardson_lucy_deconvolve, int(iters))):
                    out, seconds = timed(fn, query[0], kernels_q, arg)
                    table.add_images(name, None, out, query[1], seconds)
            else:
                out, seconds = timed(reference.biharmonic_inpaint, query[0], query[2])
                table.add_images("biharmonic", None, out, query[1], seconds)
        rows += table.rows(sources={"meta": meta_source, "joint": joint_source})
    return rows


# ----------------------------------------------------------------------------------------------------------
# 4. Learned initialisation for image fitting (SIREN)
# ----------------------------------------------------------------------------------------------------------

def _render_siren(size: int):
    from ..models.siren import pixels_to_image

    def render(model, query):
        prediction = pixels_to_image(model(query[0]), size, size).clamp(0, 1)[None]
        return prediction, pixels_to_image(query[1], size, size)[None]
    return render


def image_fitting(profile: str | None = None, seed: int = 0, sizes: dict | None = None,
                  progress: bool = False) -> list[dict[str, Any]]:
    """Fit unseen photo patches with a SIREN from the MAML-learned initialisation (its meta-trained SGD inner
    loop), from the Meta-SGD-learned one (SGD with its learned per-weight learning rates) and from SIREN's
    standard initialisation (Adam, learning rate picked per step count by the fit loss)."""
    config = restoration_config("image_fitting", profile, sizes)
    meta_model, meta_source = _model("restoration_siren_maml", config, seed)
    metasgd, metasgd_source = _model("restoration_siren_metasgd", config, seed)
    sampler = restoration_sampler(config, "fit", "test")
    render = _render_siren(config.patch)
    table = ResultTable("image_fitting")
    steps = config.steps
    for i, task in enumerate(sample_test_tasks(sampler, config.test_images, seed)):
        support, query = task.support, task.query
        table.add_curve("meta-init (MAML)", _meta_curve(meta_model, support, query, fit_loss, config, render))
        table.add_curve("meta-init + learned step sizes (Meta-SGD)",
                        learner_curve(metasgd, support, query, fit_loss, steps, render))
        standard = _scratch("restoration_siren_maml", config, seed + i)
        table.add_curve("standard init", tuned_curve(standard, support, query, fit_loss, steps,
                                                     lrs=(1e-4, 3e-4, 1e-3, 3e-3), render=render,
                                                     extra=[("sgd", 0.003), ("sgd", 0.01), ("sgd", 0.03)]))
    return table.rows(sources={"meta": meta_source, "metasgd": metasgd_source})


# ----------------------------------------------------------------------------------------------------------
# 5. Self-supervised zero-shot denoising
# ----------------------------------------------------------------------------------------------------------

def self_supervised_denoising(profile: str | None = None, seed: int = 0, sizes: dict | None = None,
                              progress: bool = False, classical: bool = True) -> list[dict[str, Any]]:
    """Denoise one noisy photograph (unseen noise level) with nothing but itself: Noise2Self adaptation from
    the meta-learned init (meta-trained with the Noise2Self inner loss) vs from scratch; BM3D, NLM and
    wavelet with the noise level estimated from the noisy image (``skimage.restoration.estimate_sigma``)."""
    from skimage.restoration import estimate_sigma

    config = restoration_config("self_supervised", profile, sizes)
    meta_model, meta_source = _model("restoration_n2s_maml", config, seed)
    sampler = restoration_sampler(config, "n2s", "test")
    table = ResultTable("self_supervised")
    for i, task in enumerate(sample_test_tasks(sampler, config.test_images, seed)):
        support, query = task.support, task.query
        noisy, clean = query[0], query[1]
        table.add_images("noisy input", None, noisy, clean, 0.0)
        table.add_curve("meta-init + Noise2Self", _meta_curve(meta_model, support, query, self_supervised_loss, config))
        scratch = _scratch("restoration_n2s_maml", config, seed + i)
        # the learning rate is picked by the Noise2Self loss on the noisy image: still zero-shot
        table.add_curve("scratch + Noise2Self", tuned_curve(scratch, support, query, self_supervised_loss,
                                                            config.scratch_steps, extra=_same_as_meta(config)))
        if not classical:
            continue
        sigma = float(estimate_sigma(noisy[0, 0].numpy()))
        sigma = max(sigma, 1e-3)
        for name, fn in (("BM3D (estimated sigma)", reference.bm3d_denoise),
                         ("non-local means (estimated sigma)", reference.nlm_denoise),
                         ("wavelet (estimated sigma)", reference.wavelet_denoise)):
            out, seconds = timed(fn, noisy, sigma)
            table.add_images(name, None, out, clean, seconds)
    return table.rows(sources={"meta": meta_source})


EXPERIMENT_FUNCTIONS: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "denoising": few_shot_denoising,
    "super_resolution": zero_shot_super_resolution,
    "deblurring_inpainting": few_shot_deblurring_inpainting,
    "image_fitting": image_fitting,
    "self_supervised": self_supervised_denoising,
}


def run_experiments(names: Sequence[str] | None = None, profile: str | None = None, seed: int = 0,
                    progress: bool = False, classical: bool = True) -> list[dict[str, Any]]:
    """Run the named experiments (default: all) and return all their rows, each with ``profile``;
    ``classical=False`` skips the classical references (BM3D alone takes seconds per image)."""
    names = list(RESTORATION_EXPERIMENTS if names is None else names)
    with_classical = ("denoising", "deblurring_inpainting", "self_supervised")
    profile = get_profile(profile)

    def run(name: str) -> list[dict[str, Any]]:
        kwargs = {"classical": classical} if name in with_classical else {}
        return EXPERIMENT_FUNCTIONS[name](profile=profile, seed=seed, progress=progress, **kwargs)

    return run_timed(names, list(EXPERIMENT_FUNCTIONS), profile, run)
