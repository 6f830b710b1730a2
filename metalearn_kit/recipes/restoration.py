"""What trains each shipped restoration model: the losses, the model builder, the task distributions, the
meta-training parts and the training itself, for the eleven ``restoration_*`` checkpoints. The configs are
in :mod:`metalearn_kit.recipes.restoration_configs`; the benchmarks that evaluate these models are in
:mod:`metalearn_kit.evaluation.restoration`.

Checkpoint -> experiment config: :data:`CHECKPOINT_EXPERIMENT`; meta-trained checkpoint -> algorithm:
:data:`META_TRAINED` (first-order MAML for Noise2Self: its masked loss makes second-order terms mostly noise
at twice the memory; Meta-SGD for the SIREN init whose inner learning rates are learnt too).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import get_device
from ..meta.train import MetaTrainConfig
from .parts import MetaTrainingParts
from .restoration_configs import CONFIGS, RestorationConfig, recorded_training_part, restoration_config

__all__ = ["CHECKPOINT_EXPERIMENT", "META_GRAD_CLIP", "META_TRAINED", "build_checkpoint", "build_model",
           "checkpoint_entry", "fit_loss", "meta_training_parts", "mse_loss", "noise2self_loss", "operator_loss",
           "restoration_sampler", "self_supervised_loss", "train_checkpoint"]

CHECKPOINT_EXPERIMENT = {
    "restoration_denoise_maml": "denoising", "restoration_denoise_joint": "denoising",
    "restoration_sr_pretrained": "super_resolution", "restoration_sr_mzsr": "super_resolution",
    "restoration_deblur_maml": "deblurring_inpainting", "restoration_deblur_joint": "deblurring_inpainting",
    "restoration_inpaint_maml": "deblurring_inpainting", "restoration_inpaint_joint": "deblurring_inpainting",
    "restoration_siren_maml": "image_fitting", "restoration_siren_metasgd": "image_fitting",
    "restoration_n2s_maml": "self_supervised",
}
META_TRAINED = {"restoration_denoise_maml": "maml", "restoration_deblur_maml": "maml",
                "restoration_inpaint_maml": "maml", "restoration_sr_mzsr": "maml", "restoration_siren_maml": "maml",
                "restoration_siren_metasgd": "metasgd", "restoration_n2s_maml": "fomaml"}
META_GRAD_CLIP = 1.0


# ----------------------------------------------------------------------------------------------------------
# Losses (the engine's loss_fn(model, batch) convention)
# ----------------------------------------------------------------------------------------------------------

def mse_loss(model: Callable, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``batch = (degraded, clean)``: MSE of ``model(degraded)`` against ``clean``."""
    return F.mse_loss(model(batch[0]), batch[1])


def operator_loss(model: Callable, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``batch = (degraded, clean, operator)`` for the unrolled restorer."""
    return F.mse_loss(model(batch[0], batch[2]), batch[1])


def fit_loss(model: Callable, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``batch = (coords, values)``: MSE of the coordinate network's output."""
    return F.mse_loss(model(batch[0]), batch[1])


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
# Task distributions
# ----------------------------------------------------------------------------------------------------------

def _photos(split: str, patch: int):
    """Grey photographs of ``split`` as patches of ``patch`` pixels: ``"train"`` the kit's embedded training
    photographs, ``"val"`` its other embedded photographs (dev: read while the kit was built), ``"test"`` the
    pre-registered test photographs (Kodak24 by BT.601 luma, flat crops refused; with a warning, the embedded
    ``"test"`` photographs when Kodak24 cannot be had: the source's ``split`` then says ``"test"``, not
    ``"kodak24"``)."""
    from ..data import photos

    if split == "test":
        from .operator_recipe import photo_source

        return photo_source("test", patch, channels=1)
    return photos("train" if split == "train" else "test", patch_size=patch, channels=1)


def restoration_sampler(config: RestorationConfig, kind: str, split: str, source: Any = None):
    """The task distribution of an experiment: ``kind`` ``"denoise"``, ``"blur"``, ``"mask"`` (with the operator),
    ``"sr"`` (zero-shot SR), ``"fit"`` (SIREN) or ``"n2s"`` (Noise2Self); ``split`` ``"train"`` (training
    photographs, training parameter ranges), ``"val"`` (dev photographs, training ranges) or ``"test"`` (the test
    photographs of :func:`_photos`, the unseen parameter ranges). ``source`` replaces the split's photographs."""
    from ..tasks import RestorationTasks
    from ..tasks.degradations import make_degradation
    from ..tasks.restoration_variants import ImageFitTasks, OperatorTasks, SelfSupervisedDenoisingTasks, ZeroShotSRTasks

    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be one of ['train', 'val', 'test'], got {split!r}")
    if kind == "denoise":
        return RestorationTasks(source or _photos(split, config.patch), "gaussian_noise", config.shots,
                                config.queries, split=split)
    if kind in ("blur", "mask"):
        source = source or _photos(split, config.patch)
        if kind == "blur":
            families: Any = ["gaussian_blur", "motion_blur"]
        else:
            masks = config.train_masks if split != "test" else config.test_masks
            families = {"inpainting": {"mode": list(masks)}}
        return OperatorTasks(RestorationTasks(source, families, config.shots, config.queries, split=split))
    if kind == "sr":
        low, high = config.kernel_sigma
        degradation = make_degradation("super_resolution", split="train", scale=[config.scale],
                                       kernel_sigma=(float(low), float(high)))
        patch = config.train_patch if split == "train" else config.test_patch
        # evaluation images: patches with detail (std >= 0.1); training keeps every patch
        return ZeroShotSRTasks(source or _photos(split, patch), degradation,
                               min_std=0.0 if split == "train" else 0.1)
    if kind == "fit":
        return ImageFitTasks(source or _photos(split, config.patch))
    if kind == "n2s":
        patch = config.test_patch if split == "test" else config.train_patch
        return SelfSupervisedDenoisingTasks(source or _photos(split, patch),
                                            make_degradation("gaussian_noise", split=split))
    raise ValueError(f"kind must be one of ['denoise', 'blur', 'mask', 'sr', 'fit', 'n2s'], got {kind!r}")


# ----------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------

def build_model(name: str, config: RestorationConfig) -> nn.Module:
    """The untrained architecture behind checkpoint ``name`` for an experiment ``config``."""
    from ..models.conv import ConvRestorer
    from ..models.restoration import UnrolledRestorer
    from ..models.siren import Siren

    if name.startswith("restoration_deblur") or name.startswith("restoration_inpaint"):
        kind = "blur" if "deblur" in name else "mask"
        return UnrolledRestorer(kind, 1, config.width, config.depth, config.iterations)
    if name.startswith("restoration_siren"):
        return Siren(1, config.width, config.hidden_layers, config.omega)
    return ConvRestorer(1, config.width, config.depth)


def build_checkpoint(name: str, config: RestorationConfig) -> nn.Module:
    """What checkpoint ``name`` holds: the model of :func:`build_model`, or for a Meta-SGD checkpoint the
    :class:`~metalearn_kit.meta.MetaSGD` learner around it (its weights and its learned inner learning rates;
    ``learner.adapt(support, loss_fn, steps)`` adapts with those rates)."""
    from ..meta import MetaSGD

    model = build_model(name, config)
    if META_TRAINED.get(name) != "metasgd":
        return model
    return MetaSGD(model, inner_lr=config.inner_lr, inner_steps=config.inner_steps,
                   inner_grad_clip=config.inner_grad_clip)


def _start_from_sr_pretrained(model: nn.Module, config: RestorationConfig, seed: int) -> None:
    """Meta-transfer learning, as MZSR: the meta-learned SR init starts from the bicubic-pretrained weights."""
    from ..checkpoint_entry import CHECKPOINTS, load_or_train_entry, with_variants

    name = "restoration_sr_pretrained"
    pretrained, _ = load_or_train_entry(name, with_variants(checkpoint_entry, name, CHECKPOINTS[name][1]), config,
                                        seed)
    device = next(model.parameters()).device
    model.load_state_dict({k: v.to(device) for k, v in pretrained.state_dict().items()})


# ----------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------

def meta_training_parts(name: str, config: RestorationConfig, model: nn.Module | None = None,
                        seed: int = 0) -> MetaTrainingParts:
    """Everything that meta-trains checkpoint ``name`` (a key of :data:`META_TRAINED`) with ``config``: the
    model (built from the config unless given; SR starts from the bicubic-pretrained weights, MZSR's
    meta-transfer), the training and held-out task distributions, the loss, the inner and the outer loop.
    The caller seeds torch before calling when ``model`` is None (the initial weights use the global RNG)."""
    if name not in META_TRAINED:
        raise ValueError(f"name must be a meta-trained checkpoint, one of {sorted(META_TRAINED)}; got {name!r}")
    if model is None:
        model = build_model(name, config)
        if name == "restoration_sr_mzsr":
            _start_from_sr_pretrained(model, config, seed)
    if name == "restoration_denoise_maml":
        kind, loss_fn = "denoise", mse_loss
    elif name in ("restoration_deblur_maml", "restoration_inpaint_maml"):
        kind, loss_fn = ("blur" if "deblur" in name else "mask"), operator_loss
    elif name == "restoration_sr_mzsr":
        kind, loss_fn = "sr", mse_loss
    elif name in ("restoration_siren_maml", "restoration_siren_metasgd"):
        kind, loss_fn = "fit", fit_loss
    else:  # restoration_n2s_maml
        kind, loss_fn = "n2s", self_supervised_loss
    # validation on the dev photographs ("val"), never on the test split
    return MetaTrainingParts(
        model=model, task_sampler=restoration_sampler(config, kind, "train"),
        val_sampler=restoration_sampler(config, kind, "val"), loss_fn=loss_fn, algorithm=META_TRAINED[name],
        inner_lr=config.inner_lr, inner_steps=config.inner_steps, inner_grad_clip=config.inner_grad_clip,
        train=MetaTrainConfig(iterations=config.meta_iterations, meta_batch=config.meta_batch, meta_lr=config.meta_lr,
                              meta_lr_schedule=config.meta_lr_schedule, grad_clip=META_GRAD_CLIP))


def _summary(history: dict, key: str) -> dict:
    values = history[key]
    tail = values[-max(1, len(values) // 10):]
    out = {f"first_{key}": float(values[0]), f"final_{key}": float(sum(tail) / len(tail)),
           "iterations": len(values), "train_wall_time_s": float(history["wall_time_s"][-1])}
    for k in ("val_query_loss_before", "val_query_loss_after"):
        if history.get(k):
            out[k] = float(history[k][-1])
    return out


def _meta_train(name: str, module: nn.Module, config: RestorationConfig, seed: int, progress: bool) -> dict:
    """Meta-train ``module`` (:func:`build_checkpoint`: the model, or the Meta-SGD learner around it) in place."""
    from ..meta import MetaSGD, meta_train

    is_learner = isinstance(module, MetaSGD)
    parts = meta_training_parts(name, config, module.model if is_learner else module)
    learner = module if is_learner else parts.learner()
    history = meta_train(learner, parts.task_sampler, parts.loss_fn, replace(parts.train, progress=progress),
                         generator=seed)
    return _summary(history, "meta_loss")


def train_checkpoint(name: str, config: RestorationConfig | None = None, seed: int = 0, progress: bool = False
                     ) -> tuple[nn.Module, dict]:
    """Train the model behind checkpoint ``name`` with ``config`` (default: the fast profile's). Returns
    ``(model, metrics)``."""
    from ..meta import joint_pretrain
    from ..tasks.restoration_variants import BicubicSRTasks

    experiment = CHECKPOINT_EXPERIMENT.get(name)
    if experiment is None:
        raise ValueError(f"name must be one of {sorted(CHECKPOINT_EXPERIMENT)}, got {name!r}")
    config = config or restoration_config(experiment, "fast")
    torch.manual_seed(seed)
    model = build_checkpoint(name, config).to(get_device())
    if name == "restoration_sr_mzsr":
        _start_from_sr_pretrained(model, config, seed)
    if name in META_TRAINED:
        metrics = _meta_train(name, model, config, seed, progress)
    elif name in ("restoration_denoise_joint", "restoration_deblur_joint", "restoration_inpaint_joint"):
        kind = "denoise" if "denoise" in name else "blur" if "deblur" in name else "mask"
        loss_fn = mse_loss if kind == "denoise" else operator_loss
        history = joint_pretrain(model, restoration_sampler(config, kind, "train"), loss_fn, config.joint_iterations,
                                 meta_batch=config.meta_batch, lr=config.meta_lr, generator=seed, progress=progress)
        metrics = _summary(history, "loss")
    else:  # restoration_sr_pretrained
        sampler = BicubicSRTasks(_photos("train", config.train_patch), config.scale, config.pretrain_batch)
        history = joint_pretrain(model, sampler, mse_loss, config.pretrain_iterations, meta_batch=1, lr=1e-3,
                                 generator=seed, progress=progress)
        metrics = _summary(history, "loss")
    metrics["device"] = str(get_device())
    return model.cpu(), metrics


def _from_record(experiment: str, record: dict) -> RestorationConfig:
    """A checkpoint's recorded config back as the experiment's dataclass: the recorded fields over the fast
    profile's (a file may lack an evaluation field, or hold one the config does not have, e.g. ``zssr_lr``)."""
    known = {f.name for f in fields(CONFIGS[experiment])}
    return replace(restoration_config(experiment, "fast"), **{k: v for k, v in record.items() if k in known})


def checkpoint_entry(name: str, profile: str, description: str):
    """The :class:`~metalearn_kit.checkpoint_entry.PretrainedEntry` of checkpoint ``name`` at ``profile``: file
    ``NAME.safetensors`` (fast, shipped) or ``NAME_PROFILE.safetensors``; the full config is recorded."""
    from ..checkpoint_entry import SHIPPED_PROFILE, PretrainedEntry

    experiment = CHECKPOINT_EXPERIMENT[name]
    suffix = "" if profile == SHIPPED_PROFILE else f"_{profile}"
    return PretrainedEntry(
        file=f"{name}{suffix}.safetensors",
        build=lambda config, state: build_checkpoint(name, config),
        train=lambda config, seed, **options: train_checkpoint(name, config, seed, **options),
        config=restoration_config(experiment, profile), seed=0, description=description,
        to_record=lambda config: config.as_dict(), from_record=lambda record: _from_record(experiment, record),
        weights_key=lambda record: recorded_training_part(experiment, record),
        # minutes at most: a model for another config is trained again rather than cached
        cache=False)
