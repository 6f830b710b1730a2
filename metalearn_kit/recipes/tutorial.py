"""The tutorial experiments of notebook 06, small enough to meta-train in seconds there (``metalearn-kit train
denoise|sr|glyph-vae``):

- ``denoise``: :class:`~metalearn_kit.models.conv.ConvRestorer` on Gaussian-noise tasks (one noise level per
  task) cut from the kit's training photographs; validation on held-out photographs.
- ``sr``: the same restorer on x2 super-resolution tasks (one blur width per task; the input is the bicubic
  upsampling of the low-resolution patch).
- ``glyph-vae``: :class:`~metalearn_kit.models.generation.ConvVAE` on one-class few-shot generation tasks from
  the glyph alphabets; validation on the unseen evaluation alphabets.

Each builder returns ``(MetaTrainingParts, details)``, the outer loop in ``parts.train``; the learner's algorithm is
chosen at build time (:meth:`~metalearn_kit.recipes.experiments.Experiment.build`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..config import profile_sizes
from ..meta.train import MetaTrainConfig
from .parts import MetaTrainingParts

__all__ = ["TUTORIAL_EXPERIMENTS", "restoration_mse"]


def _parts(model, train, val, loss_fn, sizes: dict, profile: str | None) -> MetaTrainingParts:
    # the algorithm and the inner-gradient clip are the learner's defaults here (chosen at build time)
    return MetaTrainingParts(model=model, task_sampler=train, val_sampler=val, loss_fn=loss_fn, algorithm="maml",
                             inner_lr=sizes["inner_lr"], inner_steps=sizes["inner_steps"], inner_grad_clip=None,
                             train=profile_sizes(_TRAIN, profile))


def restoration_mse(model: Callable, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``loss_fn`` of the restoration experiments: mean squared error of ``model(degraded)`` against
    ``clean`` (``batch = (degraded [K, C, H, W], clean [K, C, H, W])``)."""
    degraded, clean = batch[0], batch[1]
    return (model(degraded) - clean).pow(2).mean()


# Both tutorial experiments share the outer loop of each profile: fast is a minutes-long demonstration, full a run
# long enough for the validation curve to flatten.
_TRAIN = {"fast": MetaTrainConfig(iterations=60, meta_batch=4, meta_lr=1e-3, val_every=20, val_tasks=8,
                                  checkpoint_every=20),
          "full": MetaTrainConfig(iterations=3000, meta_batch=16, meta_lr=1e-3, val_every=100, val_tasks=32,
                                  checkpoint_every=100)}


def _restoration(profile: str, family: str):
    from ..data import photos
    from ..models.conv import ConvRestorer
    from ..tasks import RestorationTasks

    sizes = profile_sizes({
        "fast": {"patch": 16, "shots": 4, "queries": 4, "width": 16, "depth": 3, "inner_steps": 2, "inner_lr": 0.1},
        "full": {"patch": 32, "shots": 10, "queries": 10, "width": 32, "depth": 4, "inner_steps": 5, "inner_lr": 0.1},
    }, profile)
    train = RestorationTasks(photos("train", patch_size=sizes["patch"]), family, sizes["shots"], sizes["queries"],
                             split="train")
    val = RestorationTasks(photos("test", patch_size=sizes["patch"]), family, sizes["shots"], sizes["queries"],
                           split="val")
    model = ConvRestorer(channels=1, width=sizes["width"], depth=sizes["depth"])
    details = {"family": family, "patch_size": sizes["patch"], "shots": sizes["shots"], "queries": sizes["queries"],
               "width": sizes["width"], "depth": sizes["depth"], "inner_lr": sizes["inner_lr"],
               "inner_steps": sizes["inner_steps"]}
    return _parts(model, train, val, restoration_mse, sizes, profile), details


def _denoise(profile: str):
    return _restoration(profile, "gaussian_noise")


def _super_resolution(profile: str):
    return _restoration(profile, "super_resolution")


def _glyph_vae(profile: str):
    from ..data import glyphs
    from ..models.generation import ConvVAE, vae_loss_fn
    from ..tasks import FewShotGenerationTasks

    sizes = profile_sizes({
        "fast": {"latent": 8, "width": 16, "hidden": 64, "shots": 5, "queries": 5, "inner_steps": 2, "inner_lr": 0.01},
        "full": {"latent": 16, "width": 32, "hidden": 128, "shots": 5, "queries": 10, "inner_steps": 5,
                 "inner_lr": 0.01},
    }, profile)
    train = FewShotGenerationTasks(glyphs("background", image_size=28), sizes["shots"], sizes["queries"])
    val = FewShotGenerationTasks(glyphs("evaluation", image_size=28), sizes["shots"], sizes["queries"])
    model = ConvVAE(channels=1, image_size=28, latent=sizes["latent"], width=sizes["width"], hidden=sizes["hidden"])
    details = {k: sizes[k] for k in ("latent", "width", "hidden", "shots", "queries", "inner_lr", "inner_steps")}
    return _parts(model, train, val, vae_loss_fn, sizes, profile), details


# name -> (summary, kind, builder)
TUTORIAL_EXPERIMENTS: dict[str, tuple[str, str, Callable]] = {
    "denoise": ("ConvRestorer, Gaussian-noise tasks on photo patches (one sigma per task)", "restoration", _denoise),
    "sr": ("ConvRestorer, x2 super-resolution tasks on photo patches (one blur width per task)", "restoration",
           _super_resolution),
    "glyph-vae": ("ConvVAE, one-class few-shot generation tasks on glyph alphabets", "generation", _glyph_vae),
}
