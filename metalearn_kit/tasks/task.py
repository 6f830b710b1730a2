"""A task and a stacked meta-batch of tasks.

A ``Task`` holds a *support* set (the few examples adaptation may use) and a *query* set (held-out
examples that measure the adapted model). Both are tuples of tensors whose first dimension is the
example index:

- restoration: ``support = (degraded [K, C, H, W], clean [K, C, H, W])``
- generation:  ``support = (images [K, C, H, W], labels [K])``

``loss_fn(model, batch)`` in the meta-learning engine receives one of these tuples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .._checks import check_int
from ..config import make_generator

__all__ = ["Task", "TaskBatch", "TaskDistribution", "stack_tasks"]

Batch = tuple[torch.Tensor, ...]


@dataclass
class Task:
    """One task: ``support`` and ``query`` tuples of tensors ``[K, ...]``/``[Q, ...]`` and an ``info`` dict
    (family, parameters, class name, ... whatever produced it)."""

    support: Batch
    query: Batch
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("support", "query"):
            part = getattr(self, name)
            if isinstance(part, torch.Tensor):
                part = (part,)
            if not isinstance(part, tuple) or not part or not all(isinstance(t, torch.Tensor) for t in part):
                raise TypeError(f"Task.{name} must be a non-empty tuple of tensors, got {type(part).__name__}")
            sizes = {t.shape[0] for t in part}
            if len(sizes) != 1:
                raise ValueError(f"Task.{name} tensors must share their first (example) dimension, "
                                 f"got shapes {[tuple(t.shape) for t in part]}")
            setattr(self, name, part)

    @property
    def shots(self) -> int:
        return self.support[0].shape[0]

    @property
    def queries(self) -> int:
        return self.query[0].shape[0]

    def to(self, device: torch.device | str) -> Task:
        return Task(tuple(t.to(device) for t in self.support), tuple(t.to(device) for t in self.query), self.info)


@dataclass
class TaskBatch:
    """A meta-batch: support/query tensors stacked to ``[tasks, shots, ...]`` so meta-loops can ``vmap``
    over the leading task dimension. ``infos[i]`` is task ``i``'s info."""

    support: Batch
    query: Batch
    infos: list[dict[str, Any]]

    def __len__(self) -> int:
        return self.support[0].shape[0]

    def __getitem__(self, index: int) -> Task:
        return Task(tuple(t[index] for t in self.support), tuple(t[index] for t in self.query), self.infos[index])

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def to(self, device: torch.device | str) -> TaskBatch:
        return TaskBatch(tuple(t.to(device) for t in self.support), tuple(t.to(device) for t in self.query),
                         self.infos)


class TaskDistribution:
    """What every task distribution shares: a subclass defines ``sample(generator) -> Task``; batching and
    streaming come from here, so any distribution plugs into the meta-loops the same way."""

    def sample(self, generator: torch.Generator | int | None = None) -> Task:
        raise NotImplementedError

    def sample_batch(self, n: int, generator: torch.Generator | int | None = None,
                     device: torch.device | str | None = None) -> TaskBatch:
        """``n`` tasks stacked to ``[n, shots, ...]`` (on ``device`` if given)."""
        check_int("n", n, minimum=1)
        g = make_generator(generator)
        return stack_tasks([self.sample(g) for _ in range(n)], device=device)

    def __iter__(self):
        """Endless stream of tasks from a generator seeded by torch's global RNG."""
        g = make_generator(None)
        while True:
            yield self.sample(g)


def stack_tasks(tasks: Sequence[Task], device: torch.device | str | None = None) -> TaskBatch:
    """Stack tasks with equal shapes into a :class:`TaskBatch` (on ``device`` if given)."""
    if isinstance(tasks, TaskBatch):
        return tasks.to(device) if device is not None else tasks
    tasks = list(tasks)
    if not tasks:
        raise ValueError("tasks must hold at least one Task, got an empty sequence")
    if not all(isinstance(t, Task) for t in tasks):
        raise TypeError(f"tasks must be Task objects, got {sorted({type(t).__name__ for t in tasks})}")
    for part in ("support", "query"):
        shapes = {tuple(tuple(x.shape) for x in getattr(t, part)) for t in tasks}
        if len(shapes) != 1:
            raise ValueError(f"tasks must have equal {part} shapes to be stacked, got {sorted(shapes)}; "
                             f"sample them from one task distribution with fixed shots/queries")
    support = tuple(torch.stack(parts) for parts in zip(*(t.support for t in tasks)))
    query = tuple(torch.stack(parts) for parts in zip(*(t.query for t in tasks)))
    batch = TaskBatch(support, query, [t.info for t in tasks])
    return batch.to(device) if device is not None else batch
