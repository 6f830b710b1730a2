"""The restoration benchmark: meta-learned initialisations against scratch training, joint pretraining and
classical methods, each with the same support data and the same step budget.

1. :func:`few_shot_denoising`: unseen noise levels on unseen photographs.
2. :func:`zero_shot_super_resolution`: MZSR -- adapt on pairs made from the low-resolution image itself.
3. :func:`few_shot_deblurring_inpainting`: unseen blur kernels and unseen mask types, unrolled restorer.
4. :func:`image_fitting`: SIREN from a meta-learned vs the standard initialisation.
5. :func:`self_supervised_denoising`: zero-shot Noise2Self adaptation on the noisy image alone.

Each function takes ``profile`` (the config of :func:`~metalearn_kit.recipes.restoration_config`), ``seed`` (the
models' seed: scratch inits and any training), optional ``sizes`` overrides and ``grid`` (the fine-tuning grid,
default :func:`~metalearn_kit.evaluation.operator_experiments.profile_grid`), and returns *rows*: dicts with
``experiment``, ``method``, ``role``, ``steps`` (``None`` for non-iterative methods), ``metric`` (``psnr``,
``ssim`` or ``wall_time_s``), ``value`` (mean over the test tasks), ``stderr``, ``per_task`` (the same task order
for every method), ``tasks``, ``support_size``, ``test_source`` and ``sources``. Meta-learned and pretrained
models come from :func:`metalearn_kit.pretrained.load_or_train` (the shipped file when its recorded config
matches: ``sources`` says ``"loaded"``).

The protocol (as the operator families'): the test tasks are drawn on the pre-registered test photographs
(Kodak24, grey; the embedded photographs with a warning when Kodak24 cannot be had, ``test_source`` says which)
with the pre-registered ``TEST_SEED``, the same tasks for every method. Every fine-tuned baseline (joint or
bicubic pretrained, scratch, the standard SIREN init) runs at full strength
(:func:`~metalearn_kit.evaluation.finetune_protocol.full_strength_curve`: Adam, SGD and L-BFGS over the grid,
chosen per step count by the *support* loss only; its PSNR rows record ``optimizer``, ``lr`` and ``grid_edge``).
The meta-init keeps the inner loop it was meta-trained with (role ``meta``); where that is cheap (denoising,
SIREN) it is also fine-tuned at full strength (role ``meta_tuned``). The long baselines keep their own horizons:
ZSSR trains for ``zssr_steps`` with ZSSR's optimizer (Adam, over ``zssr_lrs``: L-BFGS and SGD at 300 steps would
cost most of the benchmark), Noise2Self from scratch for ``scratch_steps``. Classical methods tune their one
parameter on the same support pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..config import get_profile, make_generator
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
from .curves import ResultTable, adaptation_curve, learner_curve, render_images, run_timed, timed

__all__ = ["EXPERIMENT_FUNCTIONS", "few_shot_deblurring_inpainting", "few_shot_denoising",
           "image_fitting", "run_experiments", "self_supervised_denoising", "zero_shot_super_resolution"]

META_TUNED = "meta-init + full-strength fine-tuning"
JOINT = "joint pretrained + full-strength fine-tuning"
SCRATCH = "scratch + full-strength fine-tuning"


def _model(name: str, config, seed: int = 0) -> tuple[torch.nn.Module, str]:
    """:func:`~metalearn_kit.pretrained.load_or_train`, and whether the row's model was ``"loaded"`` or
    ``"trained"``."""
    model, info = load_or_train(name, config, seed)
    return model, "trained" if info["source"] == "trained" else "loaded"


def _meta_curve(model: torch.nn.Module, support, query, loss_fn: Callable, config,
                render: Callable = render_images, steps: Sequence[int] | None = None) -> dict[str, Any]:
    """The meta-init's :func:`~metalearn_kit.evaluation.curves.adaptation_curve` with the inner loop it was
    meta-trained with: SGD at ``config.inner_lr``, gradients clipped at ``config.inner_grad_clip``."""
    return adaptation_curve(model, support, query, loss_fn, steps or config.steps, config.inner_lr, "sgd", render,
                            grad_clip=config.inner_grad_clip)


def _grid(profile: str | None, grid):
    """``grid``, else the fine-tuning grid of the profile (:func:`~.operator_experiments.profile_grid`)."""
    from .operator_experiments import profile_grid

    return grid if grid is not None else profile_grid(get_profile(profile))


def _full(model: torch.nn.Module, support, query, loss_fn: Callable, steps: Sequence[int], grid,
          render: Callable = render_images) -> dict[str, Any]:
    """:func:`~metalearn_kit.evaluation.finetune_protocol.full_strength_curve` of ``model`` on ``grid``."""
    from .finetune_protocol import full_strength_curve

    return full_strength_curve(model, support, query, loss_fn, steps, grid=grid, render=render)


def _test_tasks(sampler, n: int) -> list:
    """``n`` test tasks of ``sampler`` drawn with the pre-registered ``TEST_SEED`` (never the model ``seed``): the
    same tasks for every method, every model and every run."""
    from ..data.photo_sets import TEST_SEED

    generator = make_generator(TEST_SEED)
    return [sampler.sample(generator) for _ in range(n)]


def _test_source(sampler) -> str:
    """Where the sampler's photographs come from: ``"kodak24"``, or ``"test"`` (the embedded fallback)."""
    inner = getattr(sampler, "tasks", sampler)  # OperatorTasks wraps a RestorationTasks
    return str(getattr(inner.source, "split", None))


def _scratch(name: str, config, seed: int) -> torch.nn.Module:
    """A freshly initialised model of checkpoint ``name``'s architecture, drawn after ``torch.manual_seed(seed)``
    so each test task's scratch baseline starts from its own reproducible init."""
    torch.manual_seed(seed)
    return build_model(name, config)


# ----------------------------------------------------------------------------------------------------------
# 1. Few-shot denoising
# ----------------------------------------------------------------------------------------------------------

def _denoising_classical(table: ResultTable, support, query, dictionary) -> None:
    """TV (weight tuned on the support), NLM, wavelet, BM3D and the sparse dictionary with the noise level measured
    on the support pairs."""
    sigma = float((support[0] - support[1]).std())
    weight, _ = reference.tune_on_support(reference.tv_denoise, support[0], support[1], "weight",
                                          [0.02, 0.05, 0.1, 0.2, 0.4])
    for name, fn, arg in (("TV (weight tuned on support)", reference.tv_denoise, weight),
                          ("non-local means", reference.nlm_denoise, sigma),
                          ("wavelet (BayesShrink)", reference.wavelet_denoise, sigma),
                          ("BM3D", reference.bm3d_denoise, sigma),
                          ("sparse dictionary (OMP)", dictionary.denoise, sigma)):
        out, seconds = timed(fn, query[0], arg)
        table.add_images(name, None, out, query[1], seconds, role="classical")


def few_shot_denoising(profile: str | None = None, seed: int = 0, sizes: dict | None = None,
                       progress: bool = False, classical: bool = True, grid=None) -> list[dict[str, Any]]:
    """Gaussian noise of *unseen* levels (the test split's sigma range) on the test photographs: the MAML init
    (its own inner loop, and fine-tuned at full strength), the joint-pretrained model and scratch training (at full
    strength) adapt on ``shots`` support pairs; TV, NLM, wavelet, BM3D and the sparse dictionary use the noise level
    measured on the support pairs."""
    from ..data import photos
    from ..models.sparse import PatchDictionary

    config = restoration_config("denoising", profile, sizes)
    grid = _grid(profile, grid)
    meta_model, meta_source = _model("restoration_denoise_maml", config, seed)
    joint_model, joint_source = _model("restoration_denoise_joint", config, seed)
    test = restoration_sampler(config, "denoise", "test")
    dictionary = PatchDictionary(n_atoms=64, patch_size=6).fit(  # learnt on training photographs only
        photos("train", patch_size=config.patch, channels=1).sample_patches(64, seed), generator=seed,
        iterations=100)
    table = ResultTable("denoising")
    steps = config.steps
    for i, task in enumerate(_test_tasks(test, config.test_tasks)):
        support, query = task.support, task.query
        table.add_images("noisy input", None, query[0], query[1], 0.0, role="input")
        table.add_curve("meta-init (MAML)", _meta_curve(meta_model, support, query, mse_loss, config), role="meta")
        table.add_curve(META_TUNED, _full(meta_model, support, query, mse_loss, steps, grid), "meta_tuned", grid)
        table.add_curve(JOINT, _full(joint_model, support, query, mse_loss, steps, grid), "joint", grid)
        scratch = _scratch("restoration_denoise_maml", config, seed + i)
        table.add_curve(SCRATCH, _full(scratch, support, query, mse_loss, steps, grid), "scratch", grid)
        if classical:
            _denoising_classical(table, support, query, dictionary)
    return table.rows(sources={"meta": meta_source, "joint": joint_source}, support_size=config.shots,
                      test_source=_test_source(test))


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
                               progress: bool = False, grid=None) -> list[dict[str, Any]]:
    """MZSR-style x``scale`` SR of test photographs with the task's known blur kernel. All learned methods adapt
    on the same self-pairs (the LR image and its own downscaled "son", with the 8 flips/rotations): bicubic; the
    meta-transfer-learned init (started from the pretrained network, its own inner loop); the bicubic-pretrained
    network fine-tuned at full strength; a ZSSR-style network trained from scratch on the self-pairs for
    ``zssr_steps`` with ZSSR's optimizer, Adam, its rate chosen among ``zssr_lrs`` by the support loss."""
    from .finetune_protocol import FinetuneGrid

    config = restoration_config("super_resolution", profile, sizes)
    grid = _grid(profile, grid)
    zssr_grid = FinetuneGrid(adam=tuple(sorted(set(config.zssr_lrs))))
    pretrained, pre_source = _model("restoration_sr_pretrained", config, seed)
    meta_model, meta_source = _model("restoration_sr_mzsr", config, seed)
    sampler = restoration_sampler(config, "sr", "test")
    table = ResultTable("super_resolution")
    for i, task in enumerate(_test_tasks(sampler, config.test_images)):
        support, query = _dihedral(task.support), task.query
        table.add_images("bicubic", None, query[0], query[1], 0.0, role="input")
        table.add_curve("meta-init (MZSR)", _meta_curve(meta_model, support, query, mse_loss, config), role="meta")
        table.add_curve("bicubic-pretrained + full-strength fine-tuning",
                        _full(pretrained, support, query, mse_loss, config.steps, grid), "joint", grid)
        scratch = _scratch("restoration_sr_pretrained", config, seed + i)
        table.add_curve("ZSSR-style scratch (Adam)", _full(scratch, support, query, mse_loss, config.zssr_steps,
                                                           zssr_grid), "scratch", zssr_grid)
    return table.rows(sources={"pretrained": pre_source, "meta": meta_source}, support_size=1,
                      test_source=_test_source(sampler))


# ----------------------------------------------------------------------------------------------------------
# 3. Few-shot deblurring and inpainting
# ----------------------------------------------------------------------------------------------------------

def _operator_classical(table: ResultTable, kind: str, support, query) -> None:
    """Wiener and Richardson-Lucy (kernel known, parameter tuned on the support) or biharmonic inpainting."""
    if kind == "mask":
        out, seconds = timed(reference.biharmonic_inpaint, query[0], query[2])
        table.add_images("biharmonic", None, out, query[1], seconds, role="classical")
        return
    kernels_s, kernels_q = support[2], query[2]
    balance, _ = reference.tune_on_support(reference.wiener_deconvolve, support[0], support[1], "balance",
                                           [0.003, 0.01, 0.03, 0.1, 0.3], kernels=kernels_s)
    iters, _ = reference.tune_on_support(reference.richardson_lucy_deconvolve, support[0], support[1],
                                         "iterations", [5, 10, 30, 60], kernels=kernels_s)
    for name, fn, arg in (("Wiener (balance tuned on support)", reference.wiener_deconvolve, balance),
                          ("Richardson-Lucy (iterations tuned on support)", reference.richardson_lucy_deconvolve,
                           int(iters))):
        out, seconds = timed(fn, query[0], kernels_q, arg)
        table.add_images(name, None, out, query[1], seconds, role="classical")


def few_shot_deblurring_inpainting(profile: str | None = None, seed: int = 0, sizes: dict | None = None,
                                   progress: bool = False, classical: bool = True, grid=None) -> list[dict[str, Any]]:
    """Unrolled restorers (known operator) for deblurring with *unseen* kernels (the test split's wider
    Gaussian and longer motion blurs) and inpainting with an *unseen* mask type (strokes, trained on random
    pixels and boxes). MAML init (its own inner loop) vs joint pretraining and scratch at full strength, next to
    Wiener / Richardson-Lucy (kernel known, parameter tuned on the support) and biharmonic inpainting."""
    config = restoration_config("deblurring_inpainting", profile, sizes)
    grid = _grid(profile, grid)
    rows: list[dict[str, Any]] = []
    steps = config.steps
    for kind, label in (("blur", "deblurring"), ("mask", "inpainting")):
        prefix = "restoration_deblur" if kind == "blur" else "restoration_inpaint"
        meta_model, meta_source = _model(prefix + "_maml", config, seed)
        joint_model, joint_source = _model(prefix + "_joint", config, seed)
        test = restoration_sampler(config, kind, "test")
        table = ResultTable(label)
        for i, task in enumerate(_test_tasks(test, config.test_tasks)):
            support, query = task.support, task.query
            table.add_images("degraded input", None, query[0], query[1], 0.0, role="input")
            table.add_curve("meta-init (MAML, unrolled)", _meta_curve(meta_model, support, query, operator_loss,
                                                                     config), role="meta")
            table.add_curve(JOINT, _full(joint_model, support, query, operator_loss, steps, grid), "joint", grid)
            scratch = _scratch(prefix + "_maml", config, seed + i)
            table.add_curve(SCRATCH, _full(scratch, support, query, operator_loss, steps, grid), "scratch", grid)
            if classical:
                _operator_classical(table, kind, support, query)
        rows += table.rows(sources={"meta": meta_source, "joint": joint_source}, support_size=config.shots,
                           test_source=_test_source(test))
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
                  progress: bool = False, grid=None) -> list[dict[str, Any]]:
    """Fit test photo patches with a SIREN from the MAML-learned initialisation (its meta-trained SGD inner loop,
    and fine-tuned at full strength), from the Meta-SGD-learned one (SGD with its learned per-weight learning
    rates) and from SIREN's standard initialisation (fine-tuned at full strength, chosen by the fit loss)."""
    config = restoration_config("image_fitting", profile, sizes)
    grid = _grid(profile, grid)
    meta_model, meta_source = _model("restoration_siren_maml", config, seed)
    metasgd, metasgd_source = _model("restoration_siren_metasgd", config, seed)
    sampler = restoration_sampler(config, "fit", "test")
    render = _render_siren(config.patch)
    table = ResultTable("image_fitting")
    steps = config.steps
    for i, task in enumerate(_test_tasks(sampler, config.test_images)):
        support, query = task.support, task.query
        table.add_curve("meta-init (MAML)", _meta_curve(meta_model, support, query, fit_loss, config, render),
                        role="meta")
        table.add_curve("meta-init + learned step sizes (Meta-SGD)",
                        learner_curve(metasgd, support, query, fit_loss, steps, render), role="meta")
        table.add_curve(META_TUNED, _full(meta_model, support, query, fit_loss, steps, grid, render),
                        "meta_tuned", grid)
        standard = _scratch("restoration_siren_maml", config, seed + i)
        table.add_curve("standard init + full-strength fine-tuning",
                        _full(standard, support, query, fit_loss, steps, grid, render), "scratch", grid)
    return table.rows(sources={"meta": meta_source, "metasgd": metasgd_source}, support_size=1,
                      test_source=_test_source(sampler))


# ----------------------------------------------------------------------------------------------------------
# 5. Self-supervised zero-shot denoising
# ----------------------------------------------------------------------------------------------------------

def self_supervised_denoising(profile: str | None = None, seed: int = 0, sizes: dict | None = None,
                              progress: bool = False, classical: bool = True, grid=None) -> list[dict[str, Any]]:
    """Denoise one noisy test photograph (unseen noise level) with nothing but itself: Noise2Self adaptation from
    the meta-learned init (meta-trained with the Noise2Self inner loss, its own inner loop) vs from scratch (at full
    strength, chosen by the Noise2Self loss on the noisy image: still zero-shot, for ``scratch_steps``); BM3D, NLM
    and wavelet with the noise level estimated from the noisy image (``skimage.restoration.estimate_sigma``)."""
    from skimage.restoration import estimate_sigma

    config = restoration_config("self_supervised", profile, sizes)
    grid = _grid(profile, grid)
    meta_model, meta_source = _model("restoration_n2s_maml", config, seed)
    sampler = restoration_sampler(config, "n2s", "test")
    table = ResultTable("self_supervised")
    for i, task in enumerate(_test_tasks(sampler, config.test_images)):
        support, query = task.support, task.query
        noisy, clean = query[0], query[1]
        table.add_images("noisy input", None, noisy, clean, 0.0, role="input")
        table.add_curve("meta-init + Noise2Self", _meta_curve(meta_model, support, query, self_supervised_loss,
                                                              config), role="meta")
        scratch = _scratch("restoration_n2s_maml", config, seed + i)
        table.add_curve("scratch + Noise2Self (full strength)",
                        _full(scratch, support, query, self_supervised_loss, config.scratch_steps, grid),
                        "scratch", grid)
        if not classical:
            continue
        sigma = max(float(estimate_sigma(noisy[0, 0].numpy())), 1e-3)
        for name, fn in (("BM3D (estimated sigma)", reference.bm3d_denoise),
                         ("non-local means (estimated sigma)", reference.nlm_denoise),
                         ("wavelet (estimated sigma)", reference.wavelet_denoise)):
            out, seconds = timed(fn, noisy, sigma)
            table.add_images(name, None, out, clean, seconds, role="classical")
    return table.rows(sources={"meta": meta_source}, support_size=1, test_source=_test_source(sampler))


EXPERIMENT_FUNCTIONS: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "denoising": few_shot_denoising,
    "super_resolution": zero_shot_super_resolution,
    "deblurring_inpainting": few_shot_deblurring_inpainting,
    "image_fitting": image_fitting,
    "self_supervised": self_supervised_denoising,
}
_WITH_CLASSICAL = ("denoising", "deblurring_inpainting", "self_supervised")
# relative cost per test task on the 2-core CPU (fast profile), so the costliest experiments start first
_COST = {"deblurring_inpainting": 3.0, "super_resolution": 2.0, "self_supervised": 2.0, "denoising": 1.3,
         "image_fitting": 1.0}


def _run_one(name: str, profile: str, seed: int, classical: bool) -> list[dict[str, Any]]:
    kwargs = {"classical": classical} if name in _WITH_CLASSICAL else {}
    return EXPERIMENT_FUNCTIONS[name](profile=profile, seed=seed, **kwargs)


def _timed_experiment(name: str, profile: str, seed: int, classical: bool) -> list[dict[str, Any]]:
    """One experiment's rows stamped as :func:`~metalearn_kit.evaluation.curves.run_timed` does (a worker's job)."""
    import time

    start = time.perf_counter()
    rows = _run_one(name, profile, seed, classical)
    elapsed = time.perf_counter() - start
    for row in rows:
        row.update(profile=profile, experiment_wall_time_s=elapsed)
    return rows


def run_experiments(names: Sequence[str] | None = None, profile: str | None = None, seed: int = 0,
                    progress: bool = False, classical: bool = True, jobs: int = 1) -> list[dict[str, Any]]:
    """Run the named experiments (default: all) and return all their rows, each with ``profile`` and its
    experiment's wall time; ``classical=False`` skips the classical references (BM3D alone takes seconds per
    image); ``jobs > 1`` runs that many experiments at once, each in its own process on one thread (rows come back
    in the order of ``names``)."""
    from .._checks import check_int

    names = list(RESTORATION_EXPERIMENTS if names is None else names)
    profile = get_profile(profile)
    jobs = check_int("jobs", jobs, minimum=1)
    if jobs == 1 or len(names) < 2:
        return run_timed(names, list(EXPERIMENT_FUNCTIONS), profile,
                         lambda name: _run_one(name, profile, seed, classical))
    from .parallel import map_in_processes

    for name in names:  # checked before any process starts
        if name not in EXPERIMENT_FUNCTIONS:
            raise ValueError(f"names must be among {list(EXPERIMENT_FUNCTIONS)}, got {name!r}")
    parts = map_in_processes(_timed_experiment, [(name, profile, seed, classical) for name in names], jobs,
                             cost=lambda args: _COST[args[0]])
    return [row for part in parts for row in part]
