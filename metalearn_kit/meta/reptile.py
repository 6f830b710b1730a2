"""Reptile (Nichol, Achiam & Schulman 2018): adapt on each task with plain (first-order) inner steps and move
the initial weights toward the mean of the adapted weights.

The adaptation is the meta-step's per-task function (:func:`~metalearn_kit.meta.step.adapt_then_query`, first
order, no graph); only the outer update differs. To share MAML's interface and :func:`meta_train`'s
optimizers, ``meta_objective`` returns a *surrogate* loss:
its value is the mean query loss after adaptation (for logging) and its gradient with respect to the
model's parameters is ``theta - mean_tasks(phi_task)``. An outer SGD step with learning rate ``epsilon``
(``meta_optimizer="sgd", meta_lr=epsilon``) is then exactly Reptile's update
``theta <- theta + epsilon * (mean(phi) - theta)``; Adam as the outer optimizer gives the common
"Reptile with Adam" variant.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .._checks import check_choice
from ..tasks.task import Task, TaskBatch
from .backends import Backend
from .inner import InnerOptimizer
from .maml import MAML, MetaOutput, as_task_batch
from .step import LossFn

TRAIN_ON = ("support", "support+query")


class Reptile(MAML):
    """Reptile with the same constructor as :class:`MAML` (always first-order; there is no second-order
    Reptile). ``train_on="support+query"`` adapts on both sets of each task during meta-training (Reptile has no
    use for a held-out query set while training; the query loss is still reported)."""

    algorithm = "reptile"

    def __init__(self, model: nn.Module, inner_lr: float = 0.05, inner_steps: int = 5, backend: str | Backend = "auto",
                 inner_optimizer: str | InnerOptimizer = "sgd", adapt_params: Sequence[str] | None = None,
                 train_on: str = "support", **kwargs) -> None:
        if kwargs.get("first_order", True) is not True:
            raise ValueError("first_order must be True for Reptile (it never differentiates through the inner loop)")
        kwargs.pop("first_order", None)
        super().__init__(model, inner_lr=inner_lr, inner_steps=inner_steps, first_order=True, backend=backend,
                         inner_optimizer=inner_optimizer, adapt_params=adapt_params, **kwargs)
        check_choice("train_on", train_on, TRAIN_ON)
        self.train_on = train_on

    def config(self) -> dict:
        return {**super().config(), "train_on": self.train_on}

    def _training_tasks(self, tasks):
        if self.train_on == "support":
            return tasks
        batch = as_task_batch(tasks, self._device())

        def merged(task: Task) -> Task:
            both = tuple(torch.cat([s, q]) for s, q in zip(task.support, task.query))
            return Task(both, task.query, task.info)

        if isinstance(batch, TaskBatch):
            support = tuple(torch.cat([s, q], dim=1) for s, q in zip(batch.support, batch.query))
            return TaskBatch(support, batch.query, batch.infos)
        return [merged(t) for t in batch]

    def meta_objective(self, tasks, loss_fn: LossFn, query_before: bool = False) -> MetaOutput:
        """Surrogate whose ``backward()`` sets ``model.parameters()``'s gradient to ``theta - mean(adapted)``
        (see the module docstring); its value is the mean query loss after adaptation."""
        with torch.no_grad():
            out = self._adapt_tasks(self._training_tasks(tasks), loss_fn, steps=self.inner_steps, first_order=True,
                                    query_before=query_before, keep_adapted=True)
        named = dict(self.model.named_parameters())
        surrogate = 0.0
        for name, adapted in out.adapted.items():
            theta = named[name]
            direction = (theta.detach() - adapted.mean(dim=0)).detach()
            surrogate = surrogate + (theta * direction).sum()
        # value: the mean query loss after adaptation; gradient: theta - mean(phi)
        loss = out.query_after.mean() + surrogate - surrogate.detach()
        return MetaOutput(loss, out.query_after, out.support_losses, out.query_before, out.adapted)


__all__ = ["Reptile"]
