"""The two ways a learner runs the meta-step over a meta-batch, as small objects with one method each:
``adapt_tasks(model, adapt_names, tasks, loss_fn, inner, inner_lr, ...)`` runs the per-task adapt-then-query
on every task and returns the results stacked over tasks (a :class:`~metalearn_kit.meta.step.TaskResult`).

- :class:`FuncBackend`: :func:`~metalearn_kit.meta.step.adapt_tasks`, the ``torch.func`` meta-step,
  ``vmap``-ed over the tasks or in a loop over them; its settings (``vmap``, ``chunk_size``, ``randomness``)
  are how the tasks are batched, never what is computed.
- :class:`HigherBackend`: the same per-task contract with ``higher``
  (:mod:`~metalearn_kit.meta.higher_backend`), the tasks in a Python loop; it runs BatchNorm models
  (``track_running_stats=False``), which ``vmap`` cannot.

```python
MAML(model, backend="auto")                                   # resolve_backend: func, or higher for BatchNorm
MAML(model, backend=FuncBackend(vmap=True, chunk_size=4))     # vmap over at most 4 tasks at once
```
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .._checks import check_choice, check_int
from ..tasks.task import Task, TaskBatch
from .higher_backend import higher_adapt_then_query
from .inner import InnerLR
from .step import InnerLoop, LossFn, TaskResult, adapt_tasks, join_results

BACKENDS = ("auto", "func", "higher")
RANDOMNESS = ("different", "same", "error")


@dataclass(frozen=True)
class FuncBackend:
    """The ``torch.func`` backend.

    Args:
        vmap: ``vmap`` over the tasks of a meta-batch (``True``) or loop over them with the same per-task
            function (``False``); ``None`` vmaps on accelerators and loops on CPU, where the benchmark
            (``metalearn-kit bench meta-step``) measured the loop faster: vmap turns every conv into a grouped
            conv over tasks.
        chunk_size: vmap over at most this many tasks at once (less memory; ``None``: all at once).
        randomness: random ops inside the forward under vmap: ``"different"`` (independent noise per task, as
            a loop would draw), ``"same"`` (one draw shared by the tasks) or ``"error"``.
    """

    name: ClassVar[str] = "func"
    vmap: bool | None = None
    chunk_size: int | None = None
    randomness: str = "different"

    def __post_init__(self) -> None:
        if self.vmap is not None and not isinstance(self.vmap, bool):
            raise TypeError(f"vmap must be True, False or None (vmap on accelerators only), got {self.vmap!r}")
        if self.chunk_size is not None:
            check_int("chunk_size", self.chunk_size, minimum=1)
        check_choice("randomness", self.randomness, RANDOMNESS)

    def adapt_tasks(self, model: nn.Module, adapt_names: Sequence[str], tasks: TaskBatch | Sequence[Task],
                    loss_fn: LossFn, inner: InnerLoop, inner_lr: InnerLR, *, query_before: bool = False,
                    keep_adapted: bool = False) -> TaskResult:
        """Adapt the ``adapt_names`` parameters of ``model`` on every task of ``tasks`` and score the query sets
        (:func:`~metalearn_kit.meta.step.adapt_tasks`); the other parameters and the buffers stay fixed."""
        params = {n: p for n, p in model.named_parameters() if n in adapt_names}
        fixed = {n: p for n, p in model.named_parameters() if n not in params}
        fixed.update(dict(model.named_buffers()))
        vectorized = self.vmap if self.vmap is not None else _device_of(model).type != "cpu"
        return adapt_tasks(model, fixed, params, tasks, loss_fn, inner, inner_lr, vectorized=vectorized,
                           query_before=query_before, keep_adapted=keep_adapted, randomness=self.randomness,
                           chunk_size=self.chunk_size)


@dataclass(frozen=True)
class HigherBackend:
    """The ``higher`` backend: one ``higher.innerloop_ctx`` per task, in a Python loop."""

    name: ClassVar[str] = "higher"

    def adapt_tasks(self, model: nn.Module, adapt_names: Sequence[str], tasks: TaskBatch | Sequence[Task],
                    loss_fn: LossFn, inner: InnerLoop, inner_lr: InnerLR, *, query_before: bool = False,
                    keep_adapted: bool = False) -> TaskResult:
        """Same contract as :meth:`FuncBackend.adapt_tasks`."""
        return join_results([higher_adapt_then_query(model, adapt_names, task.support, task.query, loss_fn, inner,
                                                     inner_lr, query_before=query_before) for task in tasks],
                            keep_adapted=keep_adapted)


Backend = FuncBackend | HigherBackend


def batchnorm_modules(model: nn.Module) -> list[str]:
    """Names of the BatchNorm modules of ``model`` (the ``func`` backend refuses them)."""
    return [name or type(model).__name__ for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def choose_backend(model: nn.Module, device: torch.device | str | None = None) -> str:
    """The backend ``backend="auto"`` picks: ``"func"``, except ``"higher"`` for a model with BatchNorm (vmap
    cannot mutate per-task running statistics; see the BatchNorm error for the alternatives).

    ``func`` on every device, from ``metalearn-kit bench meta-step`` (figures in docs/benchmarks/meta_step_*.json):
    on accelerators it vmaps over the tasks, on CPU it loops over them with the eager inner loop, which
    measured at least as fast as ``higher`` on CPU."""
    if batchnorm_modules(model):
        return "higher"
    return "func"


def resolve_backend(backend: str | Backend, model: nn.Module) -> Backend:
    """``"auto"`` (:func:`choose_backend`), ``"func"``, ``"higher"`` (default settings) or a backend object, as
    a backend object; refuses the ``func`` backend for a model with BatchNorm."""
    if isinstance(backend, str):
        check_choice("backend", backend, BACKENDS)
        name = choose_backend(model) if backend == "auto" else backend
        backend = FuncBackend() if name == "func" else HigherBackend()
    elif not isinstance(backend, (FuncBackend, HigherBackend)):
        raise TypeError(f"backend must be 'auto', 'func', 'higher', a FuncBackend or a HigherBackend, got "
                        f"{type(backend).__name__}")
    if isinstance(backend, FuncBackend) and batchnorm_modules(model):
        raise _batchnorm_error(model)
    return backend


def _batchnorm_error(model: nn.Module) -> ValueError:
    names = batchnorm_modules(model)
    return ValueError(
        f"backend='func' cannot run a model with BatchNorm (modules {names[:5]}): BatchNorm's running "
        f"statistics are state mutated by every forward pass, once per task, and torch.func.vmap over the "
        f"tasks of a meta-batch cannot mutate shared state per task (it would also leak statistics between "
        f"tasks). Fix: replace BatchNorm with GroupNorm/LayerNorm (e.g. ConvRestorer(norm='group')), or use "
        f"backend='higher' with BatchNorm(track_running_stats=False)")


def _device_of(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


__all__ = ["BACKENDS", "RANDOMNESS", "Backend", "FuncBackend", "HigherBackend", "batchnorm_modules",
           "choose_backend", "resolve_backend"]
