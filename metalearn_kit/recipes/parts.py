"""What one meta-training run is made of, shared by every recipe: :class:`MetaTrainingParts` (model, task
distributions, loss, inner loop, outer loop) and :func:`make_learner`, the learner those parts ask for.

A recipe's ``meta_training_parts(...)`` returns one :class:`MetaTrainingParts`; the shipped checkpoints
(:mod:`metalearn_kit.pretrained`) and the ``metalearn-kit train`` experiments
(:mod:`metalearn_kit.recipes.experiments`) both build from it, so a name means the same run everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._checks import check_choice
from ..meta.train import MetaTrainConfig

ALGORITHMS = ("maml", "fomaml", "reptile", "metasgd")

__all__ = ["ALGORITHMS", "MetaTrainingParts", "make_learner"]


@dataclass
class MetaTrainingParts:
    """Everything that meta-trains one model.

    Attributes:
        model: the initial weights (an ``nn.Module``).
        task_sampler, val_sampler: task distributions (``sample_batch(n, generator)``): training and held-out.
        loss_fn: ``loss_fn(model, batch) -> scalar``, the inner and outer loss.
        algorithm: ``"maml"``, ``"fomaml"``, ``"reptile"`` or ``"metasgd"``.
        inner_lr, inner_steps, inner_grad_clip: the inner loop (``inner_lr`` is Meta-SGD's starting rate).
        train: the outer loop (:class:`~metalearn_kit.meta.train.MetaTrainConfig`: iterations, meta-batch,
            meta_lr and its schedule, gradient clip, ``query_before``), what ``meta_train`` takes.
        train_on: what Reptile adapts on (``"support"`` or ``"support+query"``).
    """

    model: nn.Module
    task_sampler: Any
    val_sampler: Any
    loss_fn: Callable[..., torch.Tensor]
    algorithm: str
    inner_lr: float
    inner_steps: int
    inner_grad_clip: float | None
    train: MetaTrainConfig
    train_on: str = "support"

    def learner(self, backend: str = "auto", model: nn.Module | None = None):
        """The learner of :attr:`algorithm` around ``model`` (default: :attr:`model`)."""
        return make_learner(self.model if model is None else model, self.algorithm, backend,
                            inner_lr=self.inner_lr, inner_steps=self.inner_steps,
                            inner_grad_clip=self.inner_grad_clip, reptile_train_on=self.train_on)


def make_learner(model: nn.Module, algorithm: str, backend: str = "auto", *, inner_lr: float, inner_steps: int,
                 inner_grad_clip: float | None = None, reptile_train_on: str = "support"):
    """The learner for ``algorithm``: MAML (second order), FOMAML, Reptile (adapting on ``reptile_train_on``) or
    Meta-SGD (per-element rates); ``inner_grad_clip`` clips each inner gradient's norm (None: no clipping)."""
    from ..meta import MAML, MetaSGD, Reptile

    check_choice("algorithm", algorithm, ALGORITHMS)
    common = {"inner_lr": inner_lr, "inner_steps": inner_steps, "backend": backend, "inner_grad_clip": inner_grad_clip}
    if algorithm == "maml":
        return MAML(model, **common)
    if algorithm == "fomaml":
        return MAML(model, first_order=True, **common)
    if algorithm == "reptile":
        return Reptile(model, train_on=reptile_train_on, **common)
    return MetaSGD(model, **common)
