"""The restoration experiments: meta-learned initialisations against scratch training, joint pretraining and
classical methods, each with the same support data and the same step budget.

1. :func:`few_shot_denoising`: unseen noise levels on unseen photographs.
2. :func:`zero_shot_super_resolution`: MZSR -- adapt on pairs made from the low-resolution image itself.
3. :func:`few_shot_deblurring_inpainting`: unseen blur kernels and unseen mask types, unrolled restorer.
4. :func:`image_fitting`: SIREN from a meta-learned vs the standard initialisation.
5. :func:`self_supervised_denoising`: zero-shot Noise2Self adaptation on the noisy image alone.

Each function takes ``profile`` (sizes from :func:`~metalearn_kit.config.profile_sizes`), ``seed`` and
optional ``sizes`` overrides, and returns *rows*: dicts with ``experiment``, ``method``, ``steps`` (``None``
for non-iterative classical methods), ``metric`` (``psnr``, ``ssim`` or ``wall_time_s``), ``value`` (mean
over the test tasks) and ``tasks``. Meta-learned and pretrained models come from the shipped checkpoints
(:mod:`metalearn_kit.pretrained`) when their recorded config matches, and are trained here otherwise.

Fairness rules: every learned method adapts on the same support tensors; baselines that are fine-tuned
(scratch, joint-pretrained, bicubic-pretrained) pick their Adam learning rate from ``BASELINE_LRS`` by the
*support* loss reached at each step count (never the query); the meta-learned models use the inner loop
they were meta-trained with. Classical methods tune their one parameter on the same support pairs.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_int
from ..config import get_device, get_profile, make_generator, profile_sizes
from ..tasks.task import Task, stack_tasks
from . import classical as reference
from .metrics import psnr, ssim

BASELINE_LRS = (3e-4, 1e-3, 3e-3)
DEFAULT_INNER_GRAD_CLIP = 1.0
# sizes that only shape the evaluation: a checkpoint trained with other values of these still matches
EVAL_KEYS = frozenset({"steps", "test_tasks", "test_images", "test_patch", "test_masks", "zssr_steps", "zssr_lrs",
                       "zssr_lr", "scratch_steps"})
EXPERIMENTS = ("denoising", "super_resolution", "deblurring_inpainting", "image_fitting", "self_supervised")

# Sizes per experiment and profile. "fast" is sized for a laptop CPU / CI (minutes); "full" for a GPU.
SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "denoising": {
        "fast": {"patch": 32, "shots": 4, "queries": 4, "width": 32, "depth": 5, "inner_steps": 2,
                 "inner_lr": 0.02, "meta_iterations": 400, "meta_batch": 4, "meta_lr": 1e-3,
                 "joint_iterations": 400, "test_tasks": 8, "steps": [0, 1, 2, 5, 10]},
        "full": {"patch": 48, "shots": 8, "queries": 8, "width": 64, "depth": 8, "inner_steps": 3,
                 "inner_lr": 0.02, "meta_iterations": 4000, "meta_batch": 8, "meta_lr": 5e-4,
                 "joint_iterations": 4000, "test_tasks": 32, "steps": [0, 1, 2, 5, 10, 50]},
    },
    "super_resolution": {
        "fast": {"train_patch": 32, "test_patch": 64, "scale": 2, "kernel_sigma": [0.4, 1.6], "width": 32,
                 "depth": 5, "pretrain_iterations": 400, "pretrain_batch": 16, "inner_steps": 1,
                 "inner_lr": 0.01, "meta_iterations": 300, "meta_batch": 8, "meta_lr": 1e-4, "test_images": 4,
                 "steps": [0, 1, 10], "zssr_steps": [10, 100, 300], "zssr_lrs": [3e-4, 1e-3]},
        "full": {"train_patch": 64, "test_patch": 128, "scale": 2, "kernel_sigma": [0.4, 1.6], "width": 64,
                 "depth": 8, "pretrain_iterations": 5000, "pretrain_batch": 32, "inner_steps": 5,
                 "inner_lr": 0.01, "meta_iterations": 3000, "meta_batch": 8, "meta_lr": 1e-4, "test_images": 16,
                 "steps": [0, 1, 10], "zssr_steps": [10, 100, 300, 1000], "zssr_lrs": [1e-4, 3e-4, 1e-3]},
    },
    "deblurring_inpainting": {
        "fast": {"patch": 32, "shots": 4, "queries": 4, "width": 24, "depth": 3, "iterations": 3,
                 "inner_steps": 2, "inner_lr": 0.02, "meta_iterations": 300, "meta_batch": 4, "meta_lr": 1e-3,
                 "joint_iterations": 300, "test_tasks": 6, "steps": [0, 1, 2, 5, 10],
                 "train_masks": ["random", "boxes"], "test_masks": ["strokes"]},
        "full": {"patch": 48, "shots": 8, "queries": 8, "width": 48, "depth": 5, "iterations": 5,
                 "inner_steps": 3, "inner_lr": 0.02, "meta_iterations": 3000, "meta_batch": 8, "meta_lr": 5e-4,
                 "joint_iterations": 3000, "test_tasks": 24, "steps": [0, 1, 2, 5, 10, 50],
                 "train_masks": ["random", "boxes"], "test_masks": ["strokes"]},
    },
    "image_fitting": {
        # `metalearn-kit bench restoration` on the 4 test images after 2 steps (2-core CPU): inner SGD lr 0.01 /
        # meta lr 1e-5 / 500 its -> 18.0 dB; inner lr 0.1 unclipped / meta lr 1e-3 constant / 5000 its -> 25.7 dB
        # (a constant meta lr keeps the init jittering); the same with a cosine-decayed meta lr / 3000 its -> 29.4.
        "fast": {"patch": 64, "width": 64, "hidden_layers": 3, "omega": 30.0, "inner_steps": 2, "inner_lr": 0.1,
                 "inner_grad_clip": None, "meta_iterations": 3000, "meta_batch": 4, "meta_lr": 1e-3,
                 "meta_lr_schedule": "cosine", "test_images": 4, "steps": [0, 2, 5, 20, 100]},
        # full: patch 96, not 128 -- the smallest training photograph is 102 pixels high; the fast profile's
        # inner loop and meta lr schedule (not yet measured at full size)
        "full": {"patch": 96, "width": 128, "hidden_layers": 4, "omega": 30.0, "inner_steps": 3,
                 "inner_lr": 0.1, "inner_grad_clip": None, "meta_iterations": 10000, "meta_batch": 8,
                 "meta_lr": 1e-3, "meta_lr_schedule": "cosine", "test_images": 16,
                 "steps": [0, 2, 5, 20, 100, 500]},
    },
    "self_supervised": {
        "fast": {"train_patch": 32, "test_patch": 48, "width": 32, "depth": 5, "inner_steps": 2, "inner_lr": 0.02,
                 "meta_iterations": 300, "meta_batch": 4, "meta_lr": 1e-3, "test_images": 3,
                 "steps": [0, 1, 5, 20], "scratch_steps": [0, 1, 5, 20, 100]},
        "full": {"train_patch": 48, "test_patch": 96, "width": 64, "depth": 8, "inner_steps": 3, "inner_lr": 0.02,
                 "meta_iterations": 3000, "meta_batch": 8, "meta_lr": 5e-4, "test_images": 12,
                 "steps": [0, 1, 5, 20, 100], "scratch_steps": [0, 1, 5, 20, 100, 300]},
    },
}


def experiment_config(experiment: str, profile: str | None = None, sizes: dict | None = None) -> dict[str, Any]:
    """The sizes of ``experiment`` for ``profile``, with ``sizes`` overriding entries (unknown keys refused)."""
    if experiment not in SIZES:
        raise ValueError(f"experiment must be one of {list(SIZES)}, got {experiment!r}")
    config = copy.deepcopy(profile_sizes(SIZES[experiment], profile))
    for key, value in (sizes or {}).items():
        if key not in config:
            raise ValueError(f"sizes has unknown key {key!r} for experiment {experiment!r}; known keys: "
                             f"{sorted(config)}")
        config[key] = value
    return config


# ----------------------------------------------------------------------------------------------------------
# Losses and predictions (the engine's loss_fn(model, batch) convention)
# ----------------------------------------------------------------------------------------------------------

def mse_loss(model: Callable, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``batch = (degraded, clean)``: MSE of ``model(degraded)`` against ``clean``."""
    return F.mse_loss(model(batch[0]), batch[1])


def operator_loss(model: Callable, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``batch = (degraded, clean, operator)`` for the unrolled restorer."""
    return F.mse_loss(model(batch[0], batch[2]), batch[1])


def _predict(model: Callable, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    out = model(batch[0], batch[2]) if len(batch) > 2 and batch[2].dim() != 1 else model(batch[0])
    return out.clamp(0, 1)


def noise2self_loss(model: Callable, noisy: torch.Tensor) -> torch.Tensor:
    """Noise2Self (Batson & Royer 2019) on ``noisy`` ``[N, C, H, W]`` alone: for each of the four phases of a
    2x2 grid, replace those pixels by the mean of their 4 neighbours, predict, and score the prediction only
    on the replaced pixels against their noisy values. With independent pixel noise, this loss is minimised
    by the clean image, not by the identity. Deterministic (all four phases each call)."""
    n, c, h, w = noisy.shape
    neighbours = torch.tensor([[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]], dtype=noisy.dtype,
                              device=noisy.device).expand(c, 1, 3, 3)
    interpolated = F.conv2d(F.pad(noisy, (1, 1, 1, 1), mode="reflect"), neighbours, groups=c)
    rows = torch.arange(h, device=noisy.device)[:, None] % 2
    cols = torch.arange(w, device=noisy.device)[None, :] % 2
    total = noisy.new_zeros(())
    for phase in range(4):
        mask = ((rows == phase // 2) & (cols == phase % 2)).to(noisy.dtype)
        prediction = model(noisy * (1 - mask) + interpolated * mask)
        total = total + ((prediction - noisy) ** 2 * mask).sum() / (mask.sum() * n * c)
    return total / 4


def self_supervised_loss(model: Callable, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``batch = (noisy, target, supervised [K])``: Noise2Self on the noisy images where ``supervised == 0``
    (the support: the target there is the noisy image itself, no clean pixel), plain MSE against the clean
    target where ``supervised == 1`` (the meta-training query). Branch-free, so it runs under ``vmap``."""
    noisy, target, supervised = batch
    weight = supervised.to(noisy.dtype)
    mse = ((model(noisy) - target) ** 2).flatten(1).mean(1)
    n2s = torch.stack([noise2self_loss(model, noisy[i:i + 1]) for i in range(noisy.shape[0])])
    return (weight * mse + (1 - weight) * n2s).mean()


# ----------------------------------------------------------------------------------------------------------
# Task samplers built on the task distributions
# ----------------------------------------------------------------------------------------------------------

class OperatorTasks:
    """Wraps a :class:`~metalearn_kit.tasks.RestorationTasks` of one operator kind and appends each task's
    known operator to its support and query: ``(degraded, clean, operator)`` with ``operator`` the blur
    kernels ``[K, k, k]`` or the masks ``[K, 1, H, W]`` -- what :class:`UnrolledRestorer` takes."""

    def __init__(self, tasks: Any) -> None:
        self.tasks = tasks

    def sample(self, generator: torch.Generator | int | None = None) -> Task:
        task = self.tasks.sample(generator)
        degradation = self.tasks.degradation(task.info["family"])
        size = tuple(task.support[0].shape[-2:])
        op = degradation.operator(task.info["params"], size)
        data = op["kernel"] if op["kind"] == "blur" else op["mask"][0] if op["kind"] == "mask" else None
        if data is None:
            raise ValueError(f"OperatorTasks supports blur and mask operators, got {op['kind']!r}")
        k, q = task.shots, task.queries
        return Task((*task.support, data.expand(k, *data.shape).clone()),
                    (*task.query, data.expand(q, *data.shape).clone()), task.info)

    def sample_batch(self, n: int, generator: torch.Generator | int | None = None):
        g = make_generator(generator)
        return stack_tasks([self.sample(g) for _ in range(check_int("n", n, minimum=1))])


def _bicubic(images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(images, size=tuple(size), mode="bicubic", align_corners=False).clamp(0, 1)


class ZeroShotSRTasks:
    """MZSR tasks from one HR patch each: a kernel from ``degradation`` (a SuperResolution family) gives the
    LR image and, applied again, its "son". ``support = (bicubic(son) at LR size, LR)`` -- only what a test
    image offers -- and ``query = (bicubic(LR) at HR size, HR)``."""

    def __init__(self, source: Any, degradation: Any, min_std: float = 0.0) -> None:
        self.source = source
        self.degradation = degradation
        self.min_std = min_std

    def make(self, hr: torch.Tensor, params: dict) -> Task:
        low = self.degradation.downsample(hr, params)
        son = self.degradation.downsample(low, params)
        return Task((_bicubic(son, low.shape[-2:]), low), (_bicubic(low, hr.shape[-2:]), hr),
                    {"kind": "zero_shot_sr", "params": params})

    def sample(self, generator: torch.Generator | int | None = None) -> Task:
        g = make_generator(generator)
        params = self.degradation.sample_params(g)
        hr = self.source.sample_patches(1, g)
        for _ in range(50):  # flat patches make every SR method look perfect: redraw until there is detail
            if float(hr.std()) >= self.min_std:
                break
            hr = self.source.sample_patches(1, g)
        return self.make(hr, params)

    def sample_batch(self, n: int, generator: torch.Generator | int | None = None):
        g = make_generator(generator)
        return stack_tasks([self.sample(g) for _ in range(check_int("n", n, minimum=1))])


class BicubicSRTasks:
    """External-data pretraining for SR (MZSR's first stage): ``(bicubic up of the bicubic-downscaled HR, HR)``
    pairs, the same in support and query (joint pretraining pools them)."""

    def __init__(self, source: Any, scale: int, batch: int) -> None:
        self.source, self.scale, self.batch = source, scale, batch

    def sample(self, generator: torch.Generator | int | None = None) -> Task:
        g = make_generator(generator)
        hr = self.source.sample_patches(self.batch, g)
        low = F.interpolate(hr, scale_factor=1 / self.scale, mode="bicubic", antialias=True,
                            align_corners=False).clamp(0, 1)
        pair = (_bicubic(low, hr.shape[-2:]), hr)
        return Task(pair, pair, {"kind": "bicubic_sr"})

    def sample_batch(self, n: int, generator: torch.Generator | int | None = None):
        g = make_generator(generator)
        return stack_tasks([self.sample(g) for _ in range(check_int("n", n, minimum=1))])


class SelfSupervisedDenoisingTasks:
    """One noisy image per task: ``support = (noisy, noisy, supervised=0)`` (Noise2Self only),
    ``query = (noisy, clean, supervised=1)`` (how well the adapted model denoises that very image)."""

    def __init__(self, source: Any, degradation: Any) -> None:
        self.source, self.degradation = source, degradation

    def make(self, clean: torch.Tensor, noisy: torch.Tensor) -> Task:
        zeros = torch.zeros(clean.shape[0])
        return Task((noisy, noisy, zeros), (noisy, clean, torch.ones(clean.shape[0])), {"kind": "noise2self"})

    def sample(self, generator: torch.Generator | int | None = None) -> Task:
        g = make_generator(generator)
        params = self.degradation.sample_params(g)
        clean = self.source.sample_patches(1, g)
        return self.make(clean, self.degradation.apply(clean, params, g))

    def sample_batch(self, n: int, generator: torch.Generator | int | None = None):
        g = make_generator(generator)
        return stack_tasks([self.sample(g) for _ in range(check_int("n", n, minimum=1))])


# ----------------------------------------------------------------------------------------------------------
# Training (what the pretrained registry calls) and loading
# ----------------------------------------------------------------------------------------------------------

def _photos(split: str, patch: int):
    from ..data import photos

    return photos(split, patch_size=patch, channels=1)


def _tasks(source, degradations, shots: int, queries: int, split: str):
    from ..tasks.restoration import RestorationTasks

    return RestorationTasks(source, degradations, shots, queries, split=split)


def build_model(name: str, config: dict) -> nn.Module:
    """The architecture behind checkpoint ``name`` for an experiment ``config``."""
    from ..models.restoration import ResidualRestorer, UnrolledRestorer
    from ..models.siren import Siren

    if name.startswith("restoration_deblur") or name.startswith("restoration_inpaint"):
        kind = "blur" if "deblur" in name else "mask"
        return UnrolledRestorer(kind, 1, config["width"], config["depth"], config["iterations"])
    if name.startswith("restoration_siren"):
        return Siren(1, config["width"], config["hidden_layers"], config["omega"])
    return ResidualRestorer(1, config["width"], config["depth"])


def checkpoint_module(name: str, config: dict) -> nn.Module:
    """What checkpoint ``name`` holds: the model of :func:`build_model`, or for a Meta-SGD checkpoint the
    :class:`~metalearn_kit.meta.MetaSGD` learner around it (its weights and its learned inner learning rates;
    ``learner.adapt(support, loss_fn, steps)`` adapts with those rates)."""
    from ..meta import MetaSGD

    model = build_model(name, config)
    if META_TRAINED.get(name) != "metasgd":
        return model
    return MetaSGD(model, inner_lr=config["inner_lr"], inner_steps=config["inner_steps"],
                   inner_grad_clip=inner_grad_clip(config))


def inner_grad_clip(config: dict) -> float | None:
    """The inner-loop gradient clip a meta-init is trained with -- and must be adapted with at test time."""
    return config.get("inner_grad_clip", DEFAULT_INNER_GRAD_CLIP)


def _meta_train(name: str, module: nn.Module, config: dict, seed: int, progress: bool) -> dict:
    """Meta-train ``module`` (:func:`checkpoint_module`: the model, or the Meta-SGD learner around it) in place."""
    from ..meta import MAML, MetaSGD
    from ..meta.train import meta_train

    is_learner = isinstance(module, MetaSGD)
    parts = meta_training_parts(name, config, module.model if is_learner else module)
    learner = module if is_learner else MAML(module, inner_lr=parts["inner_lr"], inner_steps=parts["inner_steps"],
                                             first_order=parts["algorithm"] == "fomaml",
                                             inner_grad_clip=parts["inner_grad_clip"])
    history = meta_train(learner, parts["task_sampler"], parts["loss_fn"], iterations=parts["iterations"],
                         meta_batch=parts["meta_batch"], meta_lr=parts["meta_lr"], generator=seed,
                         progress=progress, grad_clip=parts["grad_clip"], meta_lr_schedule=parts["meta_lr_schedule"])
    return _summary(history, "meta_loss")


# checkpoint -> the algorithm it is meta-trained with: first-order MAML for Noise2Self (its masked loss draws a
# new mask each inner step; second-order terms through the masks only add noise at a 2x memory cost); Meta-SGD
# for the SIREN init whose inner learning rates are learnt too
META_TRAINED = {"restoration_denoise_maml": "maml", "restoration_deblur_maml": "maml",
                "restoration_inpaint_maml": "maml", "restoration_sr_mzsr": "maml", "restoration_siren_maml": "maml",
                "restoration_siren_metasgd": "metasgd", "restoration_n2s_maml": "fomaml"}
META_GRAD_CLIP = 1.0


def meta_training_parts(name: str, config: dict, model: nn.Module | None = None, seed: int = 0) -> dict[str, Any]:
    """Everything that meta-trains checkpoint ``name`` (a key of :data:`META_TRAINED`) with experiment
    ``config``: the ``model`` (built from the config unless given; SR starts from the bicubic-pretrained
    weights, MZSR's meta-transfer), ``task_sampler``, ``val_sampler`` (held-out photographs), ``loss_fn``, the
    ``algorithm`` (``"maml"``, ``"fomaml"`` or ``"metasgd"``), the inner loop (``inner_lr`` -- Meta-SGD's
    starting rate --, ``inner_steps``, ``inner_grad_clip``) and the outer loop
    (``iterations``, ``meta_batch``, ``meta_lr``, ``meta_lr_schedule``, ``grad_clip``).

    The one source of these settings: the shipped checkpoints (:func:`train_checkpoint`) and the
    ``metalearn-kit train`` experiments (:mod:`metalearn_kit.experiments`) both build from it. The caller
    seeds torch before calling when ``model`` is None (the initial weights come from the global RNG)."""
    from ..tasks.degradations import make_degradation

    if name not in META_TRAINED:
        raise ValueError(f"name must be a meta-trained checkpoint, one of {sorted(META_TRAINED)}; got {name!r}")
    if model is None:
        model = build_model(name, config)
        if name == "restoration_sr_mzsr":
            _start_from_sr_pretrained(model, config, seed)
    if name == "restoration_denoise_maml":
        train, val = _denoise_samplers(config), _tasks(_photos("test", config["patch"]), "gaussian_noise",
                                                        config["shots"], config["queries"], "val")
        loss_fn = mse_loss
    elif name in ("restoration_deblur_maml", "restoration_inpaint_maml"):
        kind = "blur" if "deblur" in name else "mask"
        train = _deblur_sampler(config, kind, "train")
        val = _deblur_sampler(config, kind, "val", source=_photos("test", config["patch"]))
        loss_fn = operator_loss
    elif name == "restoration_sr_mzsr":
        train, val, loss_fn = _sr_sampler(config, "train"), _sr_sampler(config, "test"), mse_loss
    elif name in ("restoration_siren_maml", "restoration_siren_metasgd"):
        train, val = ImageFitTasks(_photos("train", config["patch"])), ImageFitTasks(_photos("test", config["patch"]))
        loss_fn = fit_loss
    else:  # restoration_n2s_maml
        train, val = (SelfSupervisedDenoisingTasks(_photos(photos, config["train_patch"]),
                                                   make_degradation("gaussian_noise", split=split))
                      for photos, split in (("train", "train"), ("test", "val")))
        loss_fn = self_supervised_loss
    return {"model": model, "task_sampler": train, "val_sampler": val, "loss_fn": loss_fn,
            "inner_lr": config["inner_lr"], "inner_steps": config["inner_steps"],
            "inner_grad_clip": inner_grad_clip(config), "algorithm": META_TRAINED[name],
            "iterations": config["meta_iterations"], "meta_batch": config["meta_batch"],
            "meta_lr": config["meta_lr"], "meta_lr_schedule": config.get("meta_lr_schedule", "constant"),
            "grad_clip": META_GRAD_CLIP}


def _start_from_sr_pretrained(model: nn.Module, config: dict, seed: int, progress: bool = False) -> None:
    """Meta-transfer learning, as MZSR: the meta-learned SR init starts from the bicubic-pretrained weights."""
    pretrained, _ = get_model("restoration_sr_pretrained", config, seed, progress)
    device = next(model.parameters()).device
    model.load_state_dict({k: v.to(device) for k, v in pretrained.state_dict().items()})


def _summary(history: dict, key: str) -> dict:
    values = history[key]
    tail = values[-max(1, len(values) // 10):]
    out = {f"first_{key}": float(values[0]), f"final_{key}": float(sum(tail) / len(tail)),
           "iterations": len(values), "train_wall_time_s": float(history["wall_time_s"][-1])}
    for k in ("val_query_loss_before", "val_query_loss_after"):
        if history.get(k):
            out[k] = float(history[k][-1])
    return out


def _denoise_samplers(config):
    train = _tasks(_photos("train", config["patch"]), "gaussian_noise", config["shots"], config["queries"], "train")
    return train


def _deblur_sampler(config, kind: str, split: str, source=None):
    source = source or _photos("train" if split != "test" else "test", config["patch"])
    if kind == "blur":
        tasks = _tasks(source, ["gaussian_blur", "motion_blur"], config["shots"], config["queries"], split)
    else:
        masks = config["train_masks"] if split != "test" else config["test_masks"]
        tasks = _tasks(source, {"inpainting": {"mode": list(masks)}}, config["shots"], config["queries"], split)
    return OperatorTasks(tasks)


def train_checkpoint(name: str, config: dict | None = None, seed: int = 0, progress: bool = False
                     ) -> tuple[nn.Module, dict]:
    """Train the model behind checkpoint ``name`` (see :data:`metalearn_kit.pretrained.REGISTRY`) with the
    experiment ``config`` (default: the fast profile's). Returns ``(model, metrics)``."""
    from ..meta import joint_pretrain

    experiment = CHECKPOINT_EXPERIMENT.get(name)
    if experiment is None:
        raise ValueError(f"name must be one of {sorted(CHECKPOINT_EXPERIMENT)}, got {name!r}")
    config = config or experiment_config(experiment, "fast")
    torch.manual_seed(seed)
    model = checkpoint_module(name, config).to(get_device())
    if name == "restoration_sr_mzsr":
        _start_from_sr_pretrained(model, config, seed, progress)
    if name in META_TRAINED:
        metrics = _meta_train(name, model, config, seed, progress)
    elif name == "restoration_denoise_joint":
        history = joint_pretrain(model, _denoise_samplers(config), mse_loss, config["joint_iterations"],
                                 meta_batch=config["meta_batch"], lr=config["meta_lr"], generator=seed,
                                 progress=progress)
        metrics = _summary(history, "loss")
    elif name in ("restoration_deblur_joint", "restoration_inpaint_joint"):
        kind = "blur" if "deblur" in name else "mask"
        history = joint_pretrain(model, _deblur_sampler(config, kind, "train"), operator_loss,
                                 config["joint_iterations"], meta_batch=config["meta_batch"], lr=config["meta_lr"],
                                 generator=seed, progress=progress)
        metrics = _summary(history, "loss")
    else:  # restoration_sr_pretrained
        sampler = BicubicSRTasks(_photos("train", config["train_patch"]), config["scale"], config["pretrain_batch"])
        history = joint_pretrain(model, sampler, mse_loss, config["pretrain_iterations"], meta_batch=1, lr=1e-3,
                                 generator=seed, progress=progress)
        metrics = _summary(history, "loss")
    metrics["device"] = str(get_device())
    return model.cpu(), metrics


def _sr_sampler(config: dict, split: str) -> ZeroShotSRTasks:
    from ..tasks.degradations import make_degradation

    low, high = config["kernel_sigma"]
    degradation = make_degradation("super_resolution", split="train", scale=[config["scale"]],
                                   kernel_sigma=(float(low), float(high)))
    patch = config["train_patch"] if split == "train" else config["test_patch"]
    # test images: patches with detail (std >= 0.1); training keeps every patch
    return ZeroShotSRTasks(_photos(split, patch), degradation, min_std=0.0 if split == "train" else 0.1)


CHECKPOINT_EXPERIMENT = {
    "restoration_denoise_maml": "denoising", "restoration_denoise_joint": "denoising",
    "restoration_sr_pretrained": "super_resolution", "restoration_sr_mzsr": "super_resolution",
    "restoration_deblur_maml": "deblurring_inpainting", "restoration_deblur_joint": "deblurring_inpainting",
    "restoration_inpaint_maml": "deblurring_inpainting", "restoration_inpaint_joint": "deblurring_inpainting",
    "restoration_siren_maml": "image_fitting", "restoration_siren_metasgd": "image_fitting",
    "restoration_n2s_maml": "self_supervised",
}


def _training_part(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in EVAL_KEYS}


def get_model(name: str, config: dict, seed: int = 0, progress: bool = False) -> tuple[nn.Module, str]:
    """Load checkpoint ``name`` -- its shipped ``fast`` file or its ``full`` variant (``metalearn-kit pretrain
    NAME --profile full``) -- if it was trained with this ``config`` and ``seed``, else train it now.
    Returns ``(model, "loaded" | "trained")``."""
    from ..pretrained import REGISTRY, SHIPPED_PROFILE, load_pretrained, train_pretrained

    profiles = [SHIPPED_PROFILE, *REGISTRY[name].variants] if name in REGISTRY else [SHIPPED_PROFILE]
    missing = []
    for profile in profiles:
        try:
            model, meta = load_pretrained(name, profile=profile)
        except FileNotFoundError:
            missing.append(profile)
            continue
        if _training_part(meta.get("config", {})) == _training_part(config) and meta.get("seed") == seed:
            return model, "loaded"
    for profile in missing:
        entry = REGISTRY[name] if profile == SHIPPED_PROFILE else REGISTRY[name].variants[profile]
        if _training_part(entry.config) == _training_part(config) and entry.seed == seed:
            # a registered configuration, file missing: train it through the registry, which saves it for next
            # time (an existing file is never overwritten here; `metalearn-kit pretrain NAME` does that)
            try:
                model, _ = train_pretrained(name, profile=profile)
            except OSError:  # read-only install: keep the model in memory only
                model, _ = train_pretrained(name, save=False, profile=profile)
            return model, "trained"
    model, _ = train_checkpoint(name, config, seed, progress)
    return model, "trained"


# ----------------------------------------------------------------------------------------------------------
# SIREN image fitting tasks
# ----------------------------------------------------------------------------------------------------------

class ImageFitTasks:
    """Fitting tasks: one photo patch each, ``support = query = (coords [P, 2], values [P, 1])``."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def make(self, image: torch.Tensor) -> Task:
        from ..models.siren import image_to_pixels

        pixels = image_to_pixels(image)
        return Task(pixels, pixels, {"kind": "image_fitting"})

    def sample(self, generator: torch.Generator | int | None = None) -> Task:
        return self.make(self.source.sample_patches(1, make_generator(generator))[0])

    def sample_batch(self, n: int, generator: torch.Generator | int | None = None):
        g = make_generator(generator)
        return stack_tasks([self.sample(g) for _ in range(check_int("n", n, minimum=1))])


def fit_loss(model: Callable, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``batch = (coords, values)``: MSE of the coordinate network's output."""
    return F.mse_loss(model(batch[0]), batch[1])


# ----------------------------------------------------------------------------------------------------------
# Evaluation helpers
# ----------------------------------------------------------------------------------------------------------

class _Curve:
    """Adaptation of one start point on one task: PSNR/SSIM of the query after each wanted step count."""

    def __init__(self, steps: Sequence[int], render: Callable[[Callable, tuple], tuple[torch.Tensor, torch.Tensor]]
                 ) -> None:
        self.wanted = set(steps)
        self.render = render
        self.calls = 0
        self.psnr: dict[int, float] = {}
        self.ssim: dict[int, float] = {}

    def __call__(self, model, query) -> float:
        step = self.calls
        self.calls += 1
        if step not in self.wanted:
            return float("nan")
        prediction, target = self.render(model, query)
        self.psnr[step] = psnr(prediction, target)
        self.ssim[step] = ssim(prediction, target)
        return self.psnr[step]


def _render_images(model, query):
    return _predict(model, query), query[1]


def adaptation_curve(model: nn.Module, support, query, loss_fn: Callable, steps: Sequence[int], lr: float,
                     optimizer: str = "sgd", render: Callable = _render_images,
                     grad_clip: float | None = None) -> dict[str, Any]:
    """Fine-tune a copy of ``model`` on ``support`` and record query PSNR/SSIM after each of ``steps``.
    Returns ``{"psnr": {step: dB}, "ssim": {step: value}, "support_loss": {step: loss}, "seconds": s}``
    (``support_loss[k]``: the support loss after ``k`` steps, used to pick baseline learning rates)."""
    from ..meta import finetune

    curve = _Curve(steps, render)
    start = time.perf_counter()
    # one extra step: support_losses[k] is the loss *before* step k+1, i.e. after k steps
    adapted = finetune(model, support, loss_fn, max(steps) + 1, lr, optimizer, query=query, metric=curve,
                       grad_clip=grad_clip)
    seconds = time.perf_counter() - start
    support = {k: float(adapted.support_losses[k]) for k in steps}
    return {"psnr": curve.psnr, "ssim": curve.ssim, "support_loss": support, "seconds": seconds}


def learner_curve(learner, support, query, loss_fn: Callable, steps: Sequence[int],
                  render: Callable = _render_images) -> dict[str, Any]:
    """:func:`adaptation_curve` for a learner that adapts with its own inner loop (Meta-SGD's learned rates):
    ``learner.adapt`` on ``support``, query PSNR/SSIM after each of ``steps``."""
    curve = _Curve(steps, render)
    start = time.perf_counter()
    adapted = learner.adapt(support, loss_fn, steps=max(steps) + 1, query=query, metric=curve)
    support_loss = {k: float(adapted.support_losses[k]) for k in steps}
    return {"psnr": curve.psnr, "ssim": curve.ssim, "support_loss": support_loss,
            "seconds": time.perf_counter() - start}


def tuned_curve(model: nn.Module, support, query, loss_fn: Callable, steps: Sequence[int],
                lrs: Sequence[float] = BASELINE_LRS, optimizer: str = "adam",
                render: Callable = _render_images, extra: Sequence[tuple[str, float]] = ()) -> dict[str, Any]:
    """:func:`adaptation_curve` for ``optimizer`` at each learning rate in ``lrs`` (and each ``(optimizer, lr)``
    in ``extra``, e.g. the meta-init's own SGD setting); at each step count keep the run with the lowest
    *support* loss (no query information). ``seconds`` is the time of one run (the mean)."""
    from ..meta import DivergenceError

    runs, kept = [], []
    for opt, lr in [(optimizer, lr) for lr in lrs] + list(extra):
        try:
            runs.append(adaptation_curve(model, support, query, loss_fn, steps, lr, opt, render))
            kept.append((opt, lr))
        except DivergenceError:  # a learning rate too large for this start: not a candidate
            continue
    if not runs:
        raise DivergenceError(f"every learning rate diverged: {list(lrs)} ({optimizer}) and {list(extra)}")
    settings = kept
    out: dict[str, Any] = {"psnr": {}, "ssim": {}, "lr": {}, "seconds": sum(r["seconds"] for r in runs) / len(runs)}
    for k in steps:
        best_i = min(range(len(runs)), key=lambda i: (not math.isfinite(runs[i]["support_loss"][k]),
                                                      runs[i]["support_loss"][k]))
        best = runs[best_i]
        out["psnr"][k], out["ssim"][k], out["lr"][k] = best["psnr"][k], best["ssim"][k], settings[best_i]
    return out


class _Table:
    """Accumulates per-task results into mean rows."""

    def __init__(self, experiment: str) -> None:
        self.experiment = experiment
        self.values: dict[tuple[str, int | None, str], list[float]] = {}

    def add(self, method: str, steps: int | None, metric: str, value: float) -> None:
        self.values.setdefault((method, steps, metric), []).append(float(value))

    def add_curve(self, method: str, curve: dict) -> None:
        for k in curve["psnr"]:
            self.add(method, k, "psnr", curve["psnr"][k])
            self.add(method, k, "ssim", curve["ssim"][k])
        self.add(method, max(curve["psnr"]), "wall_time_s", curve["seconds"])

    def add_images(self, method: str, steps: int | None, prediction: torch.Tensor, target: torch.Tensor,
                   seconds: float) -> None:
        self.add(method, steps, "psnr", psnr(prediction, target))
        self.add(method, steps, "ssim", ssim(prediction, target))
        self.add(method, steps, "wall_time_s", seconds)

    def rows(self, **extra) -> list[dict[str, Any]]:
        # per_task keeps the task order (the same for every method), so benchmarks can pair differences
        return [{"experiment": self.experiment, "method": m, "steps": s, "metric": metric,
                 "value": sum(v) / len(v), "tasks": len(v),
                 "stderr": statistics.stdev(v) / len(v) ** 0.5 if len(v) > 1 else None, "per_task": v, **extra}
                for (m, s, metric), v in self.values.items()]


def _timed(fn: Callable[..., torch.Tensor], *args) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def _test_tasks(sampler, n: int, seed: int) -> list[Task]:
    g = make_generator(seed + 10_000)  # test draws never share a seed with training draws
    return [sampler.sample(g) for _ in range(n)]


# ----------------------------------------------------------------------------------------------------------
# 1. Few-shot denoising
# ----------------------------------------------------------------------------------------------------------

def few_shot_denoising(profile: str | None = None, seed: int = 0, sizes: dict | None = None,
                       progress: bool = False, classical: bool = True) -> list[dict[str, Any]]:
    """Gaussian noise of *unseen* levels (the test split's sigma range) on *unseen* photographs: the MAML
    init, the joint-pretrained model and scratch training adapt on ``shots`` support pairs for each step
    count; TV, NLM, wavelet, BM3D and the sparse dictionary use the noise level measured on the support pairs."""
    from ..models.sparse import PatchDictionary

    config = experiment_config("denoising", profile, sizes)
    clip = inner_grad_clip(config)
    same_as_meta = [("sgd", config["inner_lr"])]  # baselines may also use the meta-init's own inner optimizer
    meta_model, meta_source = get_model("restoration_denoise_maml", config, seed, progress)
    joint_model, joint_source = get_model("restoration_denoise_joint", config, seed, progress)
    test = _tasks(_photos("test", config["patch"]), "gaussian_noise", config["shots"], config["queries"], "test")
    dictionary = PatchDictionary(n_atoms=64, patch_size=6).fit(
        _photos("train", config["patch"]).sample_patches(64, seed), generator=seed, iterations=100)
    table = _Table("denoising")
    steps = config["steps"]
    for i, task in enumerate(_test_tasks(test, config["test_tasks"], seed)):
        support, query = task.support, task.query
        table.add_images("noisy input", None, query[0], query[1], 0.0)
        table.add_curve("meta-init (MAML)", adaptation_curve(meta_model, support, query, mse_loss, steps,
                                                               config["inner_lr"], "sgd", grad_clip=clip))
        table.add_curve("joint pretrained + finetune", tuned_curve(joint_model, support, query, mse_loss, steps,
                                                                   extra=same_as_meta))
        torch.manual_seed(seed + i)
        scratch = build_model("restoration_denoise_maml", config)
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
            out, seconds = _timed(fn, query[0], arg)
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
    config = experiment_config("super_resolution", profile, sizes)
    clip = inner_grad_clip(config)
    same_as_meta = [("sgd", config["inner_lr"])]  # baselines may also use the meta-init's own inner optimizer
    pretrained, pre_source = get_model("restoration_sr_pretrained", config, seed, progress)
    meta_model, meta_source = get_model("restoration_sr_mzsr", config, seed, progress)
    sampler = _sr_sampler(config, "test")
    table = _Table("super_resolution")
    steps = config["steps"]
    for i, task in enumerate(_test_tasks(sampler, config["test_images"], seed)):
        support, query = _dihedral(task.support), task.query
        table.add_images("bicubic", None, query[0], query[1], 0.0)
        table.add_curve("meta-init (MZSR)", adaptation_curve(meta_model, support, query, mse_loss, steps,
                                                               config["inner_lr"], "sgd", grad_clip=clip))
        table.add_curve("bicubic-pretrained + finetune", tuned_curve(pretrained, support, query, mse_loss, steps,
                                                                     extra=same_as_meta))
        torch.manual_seed(seed + i)
        scratch = build_model("restoration_sr_pretrained", config)
        table.add_curve("ZSSR-style scratch", tuned_curve(scratch, support, query, mse_loss, config["zssr_steps"],
                                                          lrs=config["zssr_lrs"]))
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
    config = experiment_config("deblurring_inpainting", profile, sizes)
    clip = inner_grad_clip(config)
    same_as_meta = [("sgd", config["inner_lr"])]  # baselines may also use the meta-init's own inner optimizer
    rows: list[dict[str, Any]] = []
    steps = config["steps"]
    for kind, label in (("blur", "deblurring"), ("mask", "inpainting")):
        prefix = "restoration_deblur" if kind == "blur" else "restoration_inpaint"
        meta_model, meta_source = get_model(prefix + "_maml", config, seed, progress)
        joint_model, joint_source = get_model(prefix + "_joint", config, seed, progress)
        test = _deblur_sampler(config, kind, "test")
        table = _Table(label)
        for i, task in enumerate(_test_tasks(test, config["test_tasks"], seed)):
            support, query = task.support, task.query
            table.add_images("degraded input", None, query[0], query[1], 0.0)
            table.add_curve("meta-init (MAML, unrolled)", adaptation_curve(
                meta_model, support, query, operator_loss, steps, config["inner_lr"], "sgd", grad_clip=clip))
            table.add_curve("joint pretrained + finetune", tuned_curve(joint_model, support, query, operator_loss,
                                                                       steps, extra=same_as_meta))
            torch.manual_seed(seed + i)
            scratch = build_model(prefix + "_maml", config)
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
                    out, seconds = _timed(fn, query[0], kernels_q, arg)
                    table.add_images(name, None, out, query[1], seconds)
            else:
                out, seconds = _timed(reference.biharmonic_inpaint, query[0], query[2])
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
    config = experiment_config("image_fitting", profile, sizes)
    clip = inner_grad_clip(config)
    meta_model, meta_source = get_model("restoration_siren_maml", config, seed, progress)
    metasgd, metasgd_source = get_model("restoration_siren_metasgd", config, seed, progress)
    sampler = ImageFitTasks(_photos("test", config["patch"]))
    render = _render_siren(config["patch"])
    table = _Table("image_fitting")
    steps = config["steps"]
    for i, task in enumerate(_test_tasks(sampler, config["test_images"], seed)):
        support, query = task.support, task.query
        table.add_curve("meta-init (MAML)", adaptation_curve(meta_model, support, query, fit_loss, steps,
                                                               config["inner_lr"], "sgd", render, grad_clip=clip))
        table.add_curve("meta-init + learned step sizes (Meta-SGD)",
                        learner_curve(metasgd, support, query, fit_loss, steps, render))
        torch.manual_seed(seed + i)
        standard = build_model("restoration_siren_maml", config)
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

    from ..tasks.degradations import make_degradation

    config = experiment_config("self_supervised", profile, sizes)
    clip = inner_grad_clip(config)
    same_as_meta = [("sgd", config["inner_lr"])]  # baselines may also use the meta-init's own inner optimizer
    meta_model, meta_source = get_model("restoration_n2s_maml", config, seed, progress)
    sampler = SelfSupervisedDenoisingTasks(_photos("test", config["test_patch"]),
                                           make_degradation("gaussian_noise", split="test"))
    table = _Table("self_supervised")
    for i, task in enumerate(_test_tasks(sampler, config["test_images"], seed)):
        support, query = task.support, task.query
        noisy, clean = query[0], query[1]
        table.add_images("noisy input", None, noisy, clean, 0.0)
        table.add_curve("meta-init + Noise2Self", adaptation_curve(meta_model, support, query, self_supervised_loss,
                                                                  config["steps"], config["inner_lr"], "sgd",
                                                                  grad_clip=clip))
        torch.manual_seed(seed + i)
        scratch = build_model("restoration_n2s_maml", config)
        # the learning rate is picked by the Noise2Self loss on the noisy image: still zero-shot
        table.add_curve("scratch + Noise2Self", tuned_curve(scratch, support, query, self_supervised_loss,
                                                            config["scratch_steps"], extra=same_as_meta))
        if not classical:
            continue
        sigma = float(estimate_sigma(noisy[0, 0].numpy()))
        sigma = max(sigma, 1e-3)
        for name, fn in (("BM3D (estimated sigma)", reference.bm3d_denoise),
                         ("non-local means (estimated sigma)", reference.nlm_denoise),
                         ("wavelet (estimated sigma)", reference.wavelet_denoise)):
            out, seconds = _timed(fn, noisy, sigma)
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
    names = list(EXPERIMENTS if names is None else names)
    for name in names:
        if name not in EXPERIMENT_FUNCTIONS:
            raise ValueError(f"names must be among {list(EXPERIMENT_FUNCTIONS)}, got {name!r}")
    profile = get_profile(profile)
    rows: list[dict[str, Any]] = []
    for name in names:
        start = time.perf_counter()
        kwargs = {"classical": classical} if name in ("denoising", "deblurring_inpainting", "self_supervised") else {}
        part = EXPERIMENT_FUNCTIONS[name](profile=profile, seed=seed, progress=progress, **kwargs)
        elapsed = time.perf_counter() - start
        for row in part:
            row["profile"] = profile
            row["experiment_wall_time_s"] = elapsed
        rows += part
    return rows
