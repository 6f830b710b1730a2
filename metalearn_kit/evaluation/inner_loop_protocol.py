"""A fair inner loop for the VAE methods: one protocol for MAML, first-order MAML, Reptile and joint
pretraining + fine-tuning, chosen on dev classes.

The meta-training inner loop (SGD at ``config.inner_lr`` with gradient clipping) barely moves the weights in 10
steps, which leaves the meta-learned VAEs near their start and makes "fine-tuning" of the joint model a no-op.
Here each method's optimizer and learning rate are chosen from :func:`candidates` (that SGD loop, and Adam at
three rates) by the mean query NLL after ``steps`` adaptation steps on *dev* classes: unseen classes of the test
source that are never test classes (:func:`dev_tasks`). The test tasks are not read; every method gets the same
candidates, dev classes and budget, and the test table then reports every ``k`` of its grid with that choice.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .._checks import check_choice, check_float, check_int
from ..models.generation import vae_loss_fn
from ..recipes.generation import GenerationConfig
from .curves import StepMetric

__all__ = ["DEV_TASKS", "InnerLoop", "candidates", "choose_inner_loops", "dev_tasks"]

DEV_TASKS = 8  # dev classes the choice is made on (fewer when the source has fewer left)


@dataclass(frozen=True)
class InnerLoop:
    """One inner-loop choice: ``optimizer`` (``"sgd"`` or ``"adam"``), learning rate ``lr`` and gradient-norm
    clip ``grad_clip`` (None: none)."""

    optimizer: str
    lr: float
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        check_choice("optimizer", self.optimizer, ("sgd", "adam"))
        check_float("lr", self.lr, minimum=0.0, strict_min=True)
        if self.grad_clip is not None:
            check_float("grad_clip", self.grad_clip, minimum=0.0, strict_min=True)

    @property
    def label(self) -> str:
        return f"{self.optimizer} {self.lr:g}" + ("" if self.grad_clip is None else f" clip {self.grad_clip:g}")


def candidates(config: GenerationConfig) -> tuple[InnerLoop, ...]:
    """The meta-training inner loop, and Adam at 3e-4, 1e-3 and 3e-3."""
    return (InnerLoop("sgd", config.inner_lr, config.inner_grad_clip), InnerLoop("adam", 3e-4),
            InnerLoop("adam", 1e-3), InnerLoop("adam", 3e-3))


def dev_tasks(evaluation, exclude: Sequence[str], count: int, shots: int, queries: int, seed: int,
              device: torch.device | str | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Up to ``count`` ``(support [shots, C, H, W], query [queries, C, H, W])`` tasks of classes of
    ``evaluation`` not named in ``exclude`` (the test classes), a seeded draw."""
    check_int("count", count, minimum=1)
    rng = torch.Generator().manual_seed(seed)
    names = set(exclude)
    classes = [c for c in torch.randperm(evaluation.num_classes, generator=rng).tolist()
               if evaluation.classes[c] not in names][:count]
    tasks = []
    for c in classes:
        images = evaluation.images_of(c)
        order = torch.randperm(images.shape[0], generator=rng)
        tasks.append((images[order[:shots]].to(device), images[order[shots:shots + queries]].to(device)))
    return tasks


def _dev_nll(model: nn.Module, tasks, choice: InnerLoop, steps: int, config: GenerationConfig) -> float:
    """Mean query NLL (nats) over ``tasks`` after ``steps`` steps of ``choice`` on each support."""
    from ..meta import finetune
    from ..models.generation import importance_weighted_nll

    def measure(adapted, query) -> dict[str, float]:
        return {"nll": float(importance_weighted_nll(adapted, query[0], config.iw_samples,
                                                     config.likelihood).mean())}

    values = []
    for support, query in tasks:
        recorder = StepMetric([steps], measure)
        labels = torch.zeros(support.shape[0], dtype=torch.int64, device=support.device)
        finetune(model, (support, labels), vae_loss_fn, steps, choice.lr, choice.optimizer,
                 query=(query, torch.zeros(query.shape[0], dtype=torch.int64, device=query.device)),
                 metric=recorder, grad_clip=choice.grad_clip)
        values.append(recorder.records[steps]["nll"])
    return sum(values) / len(values)


def choose_inner_loops(models: dict[str, nn.Module], methods: Sequence[str], tasks, config: GenerationConfig,
                       steps: int) -> dict[str, dict[str, Any]]:
    """For each of ``methods`` (VAEs in ``models``): ``{"choice": InnerLoop, "dev_nll": {label: nats}}``, the
    candidate with the lowest mean dev query NLL after ``steps`` steps (seeded per method, so a method's choice
    does not depend on the others)."""
    check_int("steps", steps, minimum=1)
    out = {}
    for method in methods:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed + zlib.crc32(method.encode()) % 100_000)
            scores = {c: _dev_nll(models[method], tasks, c, steps, config) for c in candidates(config)}
        best = min(scores, key=scores.get)
        out[method] = {"choice": best, "dev_nll": {c.label: value for c, value in scores.items()}}
    return out
