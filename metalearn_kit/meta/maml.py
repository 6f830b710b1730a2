"""MAML, first-order MAML, Meta-SGD and ANIL-style partial adaptation behind one interface.

```python
learner = MAML(model, inner_lr=0.05, inner_steps=5, first_order=False, backend="auto",
               inner_optimizer="sgd", adapt_params=None)
loss = learner.meta_loss(tasks, loss_fn)   # mean query loss after adapting on each task's support
loss.backward()                            # meta-gradients land on model.parameters()
adapted = learner.adapt(support, loss_fn, steps=5, query=query, metric=psnr_fn)
adapted(x); adapted.support_losses; adapted.query_metrics   # model itself unchanged
```

``loss_fn(model, batch) -> scalar tensor``: ``batch`` is a task's ``support`` or ``query`` tuple
(``[shots, ...]`` tensors), ``model`` a callable with the weights being adapted. ``model(x)`` may return
anything (a tuple for a VAE); ``loss_fn`` decides what to do with it. Under the ``func`` backend
``loss_fn`` runs inside ``torch.func.vmap``: no ``.item()``, no Python branching on tensor values, and
random noise from torch's global RNG (see :mod:`metalearn_kit.meta.functional` for ``vmap_randomness``).

Memory of second-order MAML grows *linearly* with ``inner_steps``: every unrolled step keeps the forward
activations on the support set, the graph of its backward pass (kept for the second derivative) and a new
copy of the adapted parameters. :func:`second_order_memory_estimate` measures the per-step cost for a
concrete model and support size; first-order MAML and Reptile keep none of it (constant in ``inner_steps``).
Measured with it for the standard ConvRestorer (4 conv layers x 32 channels, float32) on 5 support images of
32x32 (autograd-saved tensors only, weights and optimizer state excluded):

=============  ==========  ===============  ======================
inner_steps    per task    meta-batch 32    growth
=============  ==========  ===============  ======================
1              5.9 MiB     188 MiB          base 2.0 MiB
5              21.4 MiB    685 MiB          + 3.9 MiB per step
10             40.8 MiB    1.3 GiB          (per task)
20             79.6 MiB    2.5 GiB
=============  ==========  ===============  ======================

Backend choice (``backend="auto"``), from ``metalearn-kit bench meta-step`` (docs/benchmarks/): see
:func:`choose_backend`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .._checks import check_choice, check_float, check_int
from ..tasks.task import Task, TaskBatch, stack_tasks
from . import functional as F
from .checks import check_examples, check_scalar_loss, explain_dtype_error, model_dtype
from .higher_backend import higher_task
from .inner import (
    DivergenceError,
    FunctionalAdam,
    FunctionalSGD,
    InnerOptimizer,
    LearningRate,
    Params,
    check_finite_losses,
    inner_loop,
    make_inner_optimizer,
)

BACKENDS = ("auto", "func", "higher")
RANDOMNESS = ("different", "same", "error")
LossFn = Callable[..., torch.Tensor]
MetricFn = Callable[..., float | torch.Tensor]


def batchnorm_modules(model: nn.Module) -> list[str]:
    return [name or type(model).__name__ for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def choose_backend(model: nn.Module, device: torch.device | str | None = None) -> str:
    """The backend ``backend="auto"`` picks: ``"func"``, except ``"higher"`` for a model with BatchNorm (vmap
    cannot mutate per-task running statistics; see the BatchNorm error for the alternatives).

    Why ``func`` on every device, from ``metalearn-kit bench meta-step`` (ConvRestorer 4x32, 32x32 grey images,
    5 support + 5 query, 5 inner SGD steps, Adam meta-step; tasks/s, higher is better):

    - CUDA: ``func`` vmaps over the tasks (``vmap_tasks=None`` -> vmap on accelerators). H200 anchor for
      second-order MAML at meta-batch 32: higher loop 40 tasks/s, func + vmap 313 (the lead's run, to be
      refreshed in docs/benchmarks/meta_step_cuda.json).
    - CPU: ``func`` loops over the tasks with an eager autograd inner loop (``vmap_tasks=None`` -> loop on
      CPU), because vmap turns each conv into a grouped conv over tasks, which is slower there. Measured on a
      2-core CPU shared with other jobs, 1 thread, backends timed round-robin so shared load hits them alike
      (``metalearn-kit bench meta-step --device cpu --threads 1 --interleave --repeats 3``,
      docs/benchmarks/meta_step_cpu_interleaved.json):

      ==========  ====  ======  ===========  =========
      algorithm   mb    higher  func (vmap)  func-loop
      ==========  ====  ======  ===========  =========
      MAML        8     1.2     0.9          1.3
      MAML        32    1.9     1.2          2.1
      FOMAML      8     3.1     2.6          3.2
      FOMAML      32    6.1     4.8          6.4
      Reptile     8     4.5     4.0          5.3
      Reptile     32    6.1     5.4          6.8
      ==========  ====  ======  ===========  =========

      so the looped func backend is at least as fast as higher on CPU (the non-interleaved run in
      docs/benchmarks/meta_step_cpu.json agrees within its large noise and adds peak-memory figures).
    """
    if batchnorm_modules(model):
        return "higher"
    return "func"


def _batchnorm_error(model: nn.Module) -> ValueError:
    names = batchnorm_modules(model)
    return ValueError(
        f"backend='func' cannot run a model with BatchNorm (modules {names[:5]}): BatchNorm's running "
        f"statistics are state mutated by every forward pass, once per task, and torch.func.vmap over the "
        f"tasks of a meta-batch cannot mutate shared state per task (it would also leak statistics between "
        f"tasks). Fix: replace BatchNorm with GroupNorm/LayerNorm (e.g. ConvRestorer(norm='group')), or use "
        f"backend='higher' with BatchNorm(track_running_stats=False)")


@dataclass
class MetaOutput:
    """What one meta-batch produced. ``loss`` is what to call ``backward()`` on; ``query_after`` /
    ``query_before`` are per-task query losses (detached) after / before adaptation; ``support_losses``
    ``[tasks, steps]`` the inner-loop losses."""

    loss: torch.Tensor
    query_after: torch.Tensor
    support_losses: torch.Tensor
    query_before: torch.Tensor | None = None
    adapted: Params | None = None


class AdaptedModel(F.FunctionalModel):
    """The model with adapted weights, callable like the model (``adapted(x)``, ``adapted.encode(x)``).
    The original model is untouched. ``support_losses[i]`` is the support loss before step ``i``;
    ``query_metrics[i]`` the metric on the query set after ``i`` steps (``i = 0..steps``; empty when no
    query/metric was given)."""

    def __init__(self, module: nn.Module, tensors: Mapping[str, torch.Tensor], support_losses: list[float],
                 query_metrics: list[float], steps: int) -> None:
        super().__init__(module, tensors)
        self.__dict__["support_losses"] = support_losses
        self.__dict__["query_metrics"] = query_metrics
        self.__dict__["steps"] = steps

    @property
    def params(self) -> Params:
        names = {n for n, _ in self.module.named_parameters()}
        return {k: v for k, v in self.tensors.items() if k in names}

    def to_module(self) -> nn.Module:
        """A standalone copy of the model holding the adapted weights (e.g. to save or keep training it)."""
        clone = copy.deepcopy(self.module)
        with torch.no_grad():
            for name, tensor in clone.state_dict(keep_vars=True).items():
                if name in self.tensors:
                    tensor.copy_(self.tensors[name].detach())
        return clone

    def history(self) -> dict[str, list[float]]:
        return {"support_loss": list(self.support_losses), "query_metric": list(self.query_metrics)}


def as_task_batch(tasks, device: torch.device | None = None) -> TaskBatch | list[Task]:
    """``tasks`` (TaskBatch, Task, or sequence of Task) -> a TaskBatch on ``device``, or a list of Tasks when
    their shapes differ (the func backend then adapts them one by one)."""
    if isinstance(tasks, TaskBatch):
        if len(tasks) == 0:
            raise ValueError("tasks must hold at least one task, got an empty TaskBatch")
        return tasks.to(device) if device is not None else tasks
    if isinstance(tasks, Task):
        tasks = [tasks]
    if not isinstance(tasks, Sequence) or isinstance(tasks, (str, bytes)):
        raise TypeError(f"tasks must be a TaskBatch, a Task or a sequence of Task, got {type(tasks).__name__}")
    tasks = list(tasks)
    if not tasks:
        raise ValueError("tasks must hold at least one Task, got an empty sequence; sample a meta-batch first")
    if not all(isinstance(t, Task) for t in tasks):
        raise TypeError(f"tasks must be Task objects, got {sorted({type(t).__name__ for t in tasks})}")
    shapes = {(tuple(tuple(x.shape) for x in t.support), tuple(tuple(x.shape) for x in t.query)) for t in tasks}
    if len(shapes) == 1:
        return stack_tasks(tasks, device)
    return [t.to(device) if device is not None else t for t in tasks]


def _as_batch_tuple(name: str, batch) -> tuple[torch.Tensor, ...]:
    if isinstance(batch, Task):
        raise TypeError(f"{name} must be a tuple of tensors (e.g. task.support), got a Task; pass task.{name}")
    if isinstance(batch, torch.Tensor):
        return (batch,)
    if not isinstance(batch, (tuple, list)) or not batch or not all(isinstance(t, torch.Tensor) for t in batch):
        raise TypeError(f"{name} must be a non-empty tuple of tensors like task.support, got {type(batch).__name__}")
    return tuple(batch)


class MAML(nn.Module):
    """Model-agnostic meta-learning (Finn et al. 2017) for any model and any ``loss_fn``.

    Args:
        model: the network whose initial weights are meta-learned (a submodule of the learner, so
            ``learner.parameters()`` are what the meta-optimizer updates).
        inner_lr: inner-loop learning rate (> 0).
        inner_steps: inner-loop steps during meta-training (>= 0; 0 = no adaptation).
        first_order: drop second-order terms (FOMAML): the meta-gradient is the query gradient at the adapted
            weights.
        backend: ``"func"`` (torch.func + vmap over tasks), ``"higher"`` (loop over tasks with higher) or
            ``"auto"`` (:func:`choose_backend`).
        inner_optimizer: ``"sgd"``, ``"adam"`` or a :class:`FunctionalSGD` / :class:`FunctionalAdam`.
        adapt_params: names (or module prefixes, e.g. ``"head"``) of the parameters the inner loop adapts
            (ANIL adapts only the head); ``None`` adapts all. The meta-update still trains all parameters.
        vmap_randomness: ``"different"`` (independent noise per task, default), ``"same"`` or ``"error"``
            for random ops inside the forward under the func backend.
        chunk_size: vmap over at most this many tasks at once (less memory, func backend).
        vmap_tasks: func backend: ``vmap`` over the tasks of a meta-batch (``True``) or loop over them with the
            same pure function (``False``); ``None`` (default) vmaps on accelerators and loops on CPU, where the
            benchmark measured the loop faster (vmap turns every conv into a grouped conv over tasks).
        inner_grad_clip: clip each inner step's gradient to this global norm (None: off).
    """

    algorithm = "maml"

    def __init__(self, model: nn.Module, inner_lr: float = 0.05, inner_steps: int = 5, first_order: bool = False,
                 backend: str = "auto", inner_optimizer: str | InnerOptimizer = "sgd",
                 adapt_params: Sequence[str] | None = None, vmap_randomness: str = "different",
                 chunk_size: int | None = None, inner_grad_clip: float | None = None,
                 vmap_tasks: bool | None = None) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        self.model = model
        self.inner_lr = check_float("inner_lr", inner_lr, minimum=0.0, strict_min=True)
        self.inner_steps = check_int("inner_steps", inner_steps, minimum=0)
        if not isinstance(first_order, bool):
            raise TypeError(f"first_order must be True or False, got {first_order!r}")
        self.first_order = first_order
        check_choice("backend", backend, BACKENDS)
        self.requested_backend = backend
        self.backend = choose_backend(model) if backend == "auto" else backend
        if self.backend == "func" and batchnorm_modules(model):
            raise _batchnorm_error(model)
        self.inner_optimizer = make_inner_optimizer(inner_optimizer)
        check_choice("vmap_randomness", vmap_randomness, RANDOMNESS)
        self.vmap_randomness = vmap_randomness
        self.chunk_size = None if chunk_size is None else check_int("chunk_size", chunk_size, minimum=1)
        self.inner_grad_clip = (None if inner_grad_clip is None
                                else check_float("inner_grad_clip", inner_grad_clip, minimum=0.0, strict_min=True))
        if vmap_tasks is not None and not isinstance(vmap_tasks, bool):
            raise TypeError(f"vmap_tasks must be True, False or None (auto), got {vmap_tasks!r}")
        self.vmap_tasks = vmap_tasks
        self.adapt_names = self._resolve_adapt_params(adapt_params)
        self.adapt_params = None if adapt_params is None else list(adapt_params)

    # ------------------------------------------------------------------ setup
    def _resolve_adapt_params(self, adapt_params) -> list[str]:
        names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        if adapt_params is None:
            return names
        if isinstance(adapt_params, str):
            adapt_params = [adapt_params]
        chosen: list[str] = []
        for key in adapt_params:
            if not isinstance(key, str):
                raise TypeError(f"adapt_params must be parameter names (str), got {key!r}")
            hits = [n for n in names if n == key or n.startswith(key + ".")]
            if not hits:
                raise ValueError(f"adapt_params names {key!r}, which is neither a parameter nor a module prefix of "
                                 f"{type(self.model).__name__}; its parameters are {names}")
            chosen += [h for h in hits if h not in chosen]
        return [n for n in names if n in chosen]  # model order

    def config(self) -> dict:
        """JSON-able description (goes into checkpoints and the meta-database)."""
        opt = self.inner_optimizer
        return {"algorithm": self.algorithm, "inner_lr": self.inner_lr, "inner_steps": self.inner_steps,
                "first_order": self.first_order, "backend": self.backend, "inner_optimizer": opt.name,
                "inner_optimizer_settings": ({"momentum": opt.momentum} if isinstance(opt, FunctionalSGD)
                                             else {"betas": list(opt.betas), "eps": opt.eps}),
                "adapt_params": self.adapt_params, "model": type(self.model).__name__}

    def inner_learning_rates(self) -> LearningRate:
        """The learning rate(s) of the inner loop: ``inner_lr`` here, learned tensors in :class:`MetaSGD`."""
        return self.inner_lr

    def _lr_text(self) -> str:
        return f"inner_lr={self.inner_lr}, inner_optimizer={self.inner_optimizer.name!r}"

    def _device(self) -> torch.device:
        for p in self.model.parameters():
            return p.device
        return torch.device("cpu")

    def _split(self) -> tuple[Params, dict[str, torch.Tensor]]:
        """(parameters the inner loop adapts, everything else: frozen parameters and buffers)."""
        adapt = {n: p for n, p in self.model.named_parameters() if n in self.adapt_names}
        fixed = {n: p for n, p in self.model.named_parameters() if n not in adapt}
        fixed.update(dict(self.model.named_buffers()))
        return adapt, fixed

    def forward(self, *args, **kwargs):
        """The meta-learned (unadapted) model."""
        return self.model(*args, **kwargs)

    # ------------------------------------------------------------------ meta-objective
    def run_tasks(self, tasks, loss_fn: LossFn, *, first_order: bool | None = None, create_graph: bool = True,
                  query_before: bool = False, return_params: bool = False, steps: int | None = None) -> MetaOutput:
        """Adapt on every task's support and evaluate its query loss. ``loss`` is the mean query loss, with
        the graph back to the model's parameters when ``create_graph`` (detached otherwise)."""
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be a callable loss_fn(model, batch) -> scalar, got {type(loss_fn).__name__}")
        steps = self.inner_steps if steps is None else check_int("steps", steps, minimum=0)
        first_order = self.first_order if first_order is None else first_order
        batch = as_task_batch(tasks, self._device())
        self._check_batch(batch)
        lrs = self.inner_learning_rates()
        create_graph = create_graph and torch.is_grad_enabled()
        try:
            if self.backend == "func":
                # torch.func.grad computes the inner gradients even under no_grad; no_grad only stops the outer
                # (meta-gradient) graph from being recorded
                with torch.set_grad_enabled(create_graph):
                    out = self._run_func(batch, loss_fn, steps, lrs, first_order, query_before, return_params)
            else:
                # higher needs autograd for its inner gradients; without create_graph it detaches every step
                with torch.enable_grad():
                    out = self._run_higher(batch, loss_fn, steps, lrs, first_order, query_before, return_params,
                                           create_graph)
        except (RuntimeError, TypeError, ValueError) as err:
            if isinstance(err, DivergenceError):
                raise
            # a dtype mismatch or a non-scalar loss fails deep inside torch.func/higher: name it, on this path only
            self._explain_batch_dtypes(batch)
            try:
                with torch.no_grad():
                    loss = loss_fn(self.model, batch[0].support)
            except Exception:  # noqa: BLE001 - the probe failing says nothing: report the original error
                raise err from None
            check_scalar_loss(loss, loss_fn)
            raise
            if not create_graph:
                out = MetaOutput(out.loss.detach(), out.query_after, out.support_losses, out.query_before,
                                 None if out.adapted is None else {k: v.detach() for k, v in out.adapted.items()})
        check_finite_losses(out.support_losses, "support loss", self._lr_text())
        if not bool(torch.isfinite(out.query_after).all()):
            raise DivergenceError(f"query loss after {steps} inner steps is NaN/Inf although every support loss was "
                                  f"finite ({self._lr_text()}); the last inner step diverged: lower inner_lr")
        return out

    def _check_batch(self, batch) -> None:
        if isinstance(batch, TaskBatch):
            check_examples("tasks.support", batch.support, leading=2)
            check_examples("tasks.query", batch.query, leading=2)
        else:
            for task in batch:
                check_examples("task.support", task.support)
                check_examples("task.query", task.query)

    def _explain_batch_dtypes(self, batch) -> None:
        dtype = model_dtype(self.model)
        for task in ([batch[0]] if isinstance(batch, TaskBatch) else batch):
            explain_dtype_error("tasks.support", task.support, dtype)
            explain_dtype_error("tasks.query", task.query, dtype)

    def _run_func(self, batch, loss_fn, steps, lrs, first_order, query_before, return_params) -> MetaOutput:
        adapt, fixed = self._split()
        vectorize = self.vmap_tasks if self.vmap_tasks is not None else self._device().type != "cpu"
        batches = [batch] if isinstance(batch, TaskBatch) else [stack_tasks([t]) for t in batch]
        results = [F.batched_adapt(self.model, fixed, adapt, b.support, b.query, loss_fn, self.inner_optimizer, steps,
                                   lrs, first_order, return_params=return_params, query_before=query_before,
                                   randomness=self.vmap_randomness, chunk_size=self.chunk_size,
                                   grad_clip=self.inner_grad_clip, vectorize=vectorize) for b in batches]
        q = torch.cat([r[0].reshape(-1) for r in results])
        support_losses = torch.cat([r[1].reshape(r[1].shape[0], -1) for r in results])
        adapted = None
        if return_params:
            adapted = {k: torch.cat([r[2][k] for r in results]) for k in results[0][2]}
        before = torch.cat([r[3].reshape(-1) for r in results]) if query_before else None
        return MetaOutput(q.mean(), q.detach(), support_losses, before, adapted)

    def _run_higher(self, batch, loss_fn, steps, lrs, first_order, query_before, return_params,
                    create_graph) -> MetaOutput:
        tasks = list(batch) if isinstance(batch, TaskBatch) else batch
        qs, supports, befores, adapted = [], [], [], []
        lr_map = lrs if isinstance(lrs, Mapping) else None
        for task in tasks:
            q, s, a, b = higher_task(self.model, self.adapt_names, task.support, task.query, loss_fn,
                                     self.inner_optimizer, steps, self.inner_lr, lr_map, first_order,
                                     query_before=query_before, return_params=return_params,
                                     grad_clip=self.inner_grad_clip, track_graph=create_graph)
            qs.append(q.reshape(()))
            supports.append(s)
            befores.append(b)
            adapted.append(a)
        q = torch.stack(qs)
        stacked = None
        if return_params:
            stacked = {k: torch.stack([a[k] for a in adapted]) for k in adapted[0]}
        before = torch.stack([b.reshape(()) for b in befores]) if query_before else None
        return MetaOutput(q.mean(), q.detach(), torch.stack(supports), before, stacked)

    def meta_loss(self, tasks, loss_fn: LossFn) -> torch.Tensor:
        """Mean query loss after adapting on each task's support (``inner_steps`` steps). Call
        ``.backward()`` on it to put the meta-gradient on ``model.parameters()``."""
        return self.run_tasks(tasks, loss_fn).loss

    def meta_objective(self, tasks, loss_fn: LossFn, query_before: bool = False) -> MetaOutput:
        """What :func:`meta_train` calls: ``MetaOutput.loss`` is the tensor to differentiate."""
        return self.run_tasks(tasks, loss_fn, query_before=query_before)

    @torch.no_grad()
    def evaluate(self, tasks, loss_fn: LossFn, steps: int | None = None) -> dict[str, float]:
        """Mean query loss before and after ``steps`` (default ``inner_steps``) adaptation steps, without
        keeping any graph (validation)."""
        out = self.run_tasks(tasks, loss_fn, first_order=True, create_graph=False, query_before=True, steps=steps)
        return {"query_loss_before": float(out.query_before.mean()), "query_loss_after": float(out.query_after.mean())}

    # ------------------------------------------------------------------ adaptation for use
    def adapt(self, support, loss_fn: LossFn, steps: int | None = None, *, query=None,
              metric: MetricFn | None = None, lr: float | None = None) -> AdaptedModel:
        """Adapt a copy of the weights on ``support`` (a tuple like ``task.support``) for ``steps`` inner steps
        (default ``inner_steps``) and return the adapted model; the learner's model is unchanged.

        With ``query`` and ``metric`` (``metric(model, query) -> float``), ``adapted.query_metrics`` holds the
        metric after 0, 1, ..., ``steps`` steps (``steps + 1`` values) for plotting adaptation curves."""
        steps = self.inner_steps if steps is None else check_int("steps", steps, minimum=0)
        lrs = self.inner_learning_rates() if lr is None else check_float("lr", lr, minimum=0.0, strict_min=True)
        if isinstance(lrs, Mapping):
            lrs = {k: v.detach() for k, v in lrs.items()}
        return adapt_module(self.model, support, loss_fn, steps, lrs, self.inner_optimizer,
                            adapt_names=self.adapt_names, query=query, metric=metric,
                            grad_clip=self.inner_grad_clip)


def adapt_module(model: nn.Module, support, loss_fn: LossFn, steps: int, lr: LearningRate,
                 optimizer: InnerOptimizer, *, adapt_names: Sequence[str] | None = None, query=None,
                 metric: MetricFn | None = None, grad_clip: float | None = None) -> AdaptedModel:
    """The shared eager inner loop behind ``adapt``, ``finetune`` and ``scratch_baseline``: returns an
    :class:`AdaptedModel` (``model`` itself is not modified)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be a callable loss_fn(model, batch) -> scalar, got {type(loss_fn).__name__}")
    support = _as_batch_tuple("support", support)
    check_examples("support", support)
    for i, t in enumerate(support):
        # checked here, where data enters adaptation: with steps=0 a NaN would pass silently, otherwise it
        # would surface as a divergence blamed on the learning rate
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"support[{i}] contains NaN or Inf values (shape {tuple(t.shape)}); check the images "
                             f"before adapting")
    if (query is None) != (metric is None):
        raise ValueError("query and metric go together: pass both to record adapted.query_metrics, or neither")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    support = tuple(t.to(device) for t in support)
    if query is not None:
        query = tuple(t.to(device) for t in _as_batch_tuple("query", query))
        check_examples("query", query)
    names = adapt_names if adapt_names is not None else [n for n, p in model.named_parameters() if p.requires_grad]
    params = {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters() if n in names}
    fixed = {n: p.detach() for n, p in model.named_parameters() if n not in params}
    fixed.update({n: b.detach().clone() for n, b in model.named_buffers()})
    metrics: list[float] = []

    def observe(step: int, p: Params) -> None:
        with torch.no_grad():
            value = metric(F.FunctionalModel(model, {**fixed, **p}), query)
        metrics.append(float(value))

    def support_loss(p: Params) -> torch.Tensor:
        return check_scalar_loss(loss_fn(F.FunctionalModel(model, {**fixed, **p}), support), loss_fn)

    lr_text = f"lr={lr if not isinstance(lr, Mapping) else 'learned per-parameter'}, optimizer={optimizer.name!r}"
    try:
        with torch.enable_grad():
            params, losses = inner_loop(params, support_loss, optimizer, steps, lr, create_graph=False,
                                        observe=observe if metric is not None else None, lr_text=lr_text,
                                        grad_clip=grad_clip)
    except (RuntimeError, TypeError):  # a dtype mismatch fails inside torch or the model: name the argument
        explain_dtype_error("support", support, model_dtype(model))
        if query is not None:
            explain_dtype_error("query", query, model_dtype(model))
        raise
    final = {n: p.detach() for n, p in params.items()}
    return AdaptedModel(model, {**fixed, **final}, losses, metrics, steps)


class MetaSGD(MAML):
    """Meta-SGD (Li et al. 2017): MAML whose inner learning rates are learned, one per parameter element
    (``lr_shape="element"``) or one per parameter tensor (``"tensor"``), all starting at ``inner_lr``. The
    rates are parameters of the learner (``learner.inner_lrs``), so the meta-optimizer trains them with the
    model. Under ``higher`` they enter through ``override``; under ``func`` they are passed to the
    functional optimizer as a dict of tensors."""

    algorithm = "metasgd"

    def __init__(self, model: nn.Module, inner_lr: float = 0.05, inner_steps: int = 5, *,
                 lr_shape: str = "element", **kwargs) -> None:
        super().__init__(model, inner_lr=inner_lr, inner_steps=inner_steps, **kwargs)
        check_choice("lr_shape", lr_shape, ("element", "tensor"))
        self.lr_shape = lr_shape
        named = dict(self.model.named_parameters())
        self.inner_lrs = nn.ParameterDict({
            self._key(n): nn.Parameter(torch.full_like(named[n], self.inner_lr) if lr_shape == "element"
                                       else torch.full((), self.inner_lr, dtype=named[n].dtype,
                                                       device=named[n].device))
            for n in self.adapt_names})

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "__")

    def inner_learning_rates(self) -> dict[str, torch.Tensor]:
        return {n: self.inner_lrs[self._key(n)] for n in self.adapt_names}

    def _lr_text(self) -> str:
        values = torch.cat([v.detach().reshape(-1) for v in self.inner_lrs.values()])
        return (f"learned inner lrs in [{float(values.min()):.3g}, {float(values.max()):.3g}] "
                f"(initial inner_lr={self.inner_lr}), inner_optimizer={self.inner_optimizer.name!r}")

    def config(self) -> dict:
        return {**super().config(), "lr_shape": self.lr_shape}


def FOMAML(model: nn.Module, **kwargs) -> MAML:  # noqa: N802 - reads as a class at call sites
    """First-order MAML: ``MAML(model, first_order=True, ...)``."""
    if kwargs.pop("first_order", True) is not True:
        raise ValueError("FOMAML is first-order by definition; use MAML(first_order=False) for second order")
    return MAML(model, first_order=True, **kwargs)


def second_order_memory_estimate(model: nn.Module, support, loss_fn: LossFn, inner_steps: int = 5,
                                 meta_batch: int = 1, inner_optimizer: str | InnerOptimizer = "sgd",
                                 query=None) -> dict[str, float]:
    """Measure how second-order MAML's memory grows with ``inner_steps``, for this model and support size.

    Runs the unrolled inner loop with 1 and 2 steps, keeping the graph as second-order MAML does, and adds up
    the bytes of every tensor autograd saves for the backward pass (distinct storages). The growth is linear:
    ``bytes(k) = base + k * per_step``; ``per_step`` is the activations of one forward/backward on the support
    set, the graph of that backward (needed for the second derivative) and one adapted copy of the parameters.
    Returns ``{"per_step_bytes", "base_bytes", "bytes_per_task", "total_bytes"}`` for ``inner_steps`` and
    ``meta_batch`` tasks (the func backend holds all tasks of a meta-batch at once; ``chunk_size`` bounds it).
    First-order MAML / Reptile need about ``base_bytes`` regardless of ``inner_steps``."""
    check_int("inner_steps", inner_steps, minimum=0)
    check_int("meta_batch", meta_batch, minimum=1)
    optimizer = make_inner_optimizer(inner_optimizer)
    support = _as_batch_tuple("support", support)
    query = support if query is None else _as_batch_tuple("query", query)

    def measure(steps: int) -> int:
        seen: dict[int, int] = {}

        def pack(t: torch.Tensor):
            try:
                storage = t.untyped_storage()
                seen[storage.data_ptr()] = storage.nbytes()
            except (RuntimeError, NotImplementedError):  # tensors without storage (e.g. functorch wrappers)
                seen[id(t)] = t.numel() * t.element_size()
            return t

        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        fixed = dict(model.named_buffers())
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.enable_grad():
            adapted, _ = inner_loop(params, lambda p: loss_fn(F.FunctionalModel(model, {**fixed, **p}), support),
                                    optimizer, steps, 0.01, create_graph=True)
            loss = loss_fn(F.FunctionalModel(model, {**fixed, **adapted}), query)
        del loss, adapted
        return sum(seen.values())

    one, two = measure(1), measure(2)
    per_step = max(two - one, 0)
    base = max(one - per_step, 0)
    per_task = base + inner_steps * per_step
    return {"per_step_bytes": float(per_step), "base_bytes": float(base), "bytes_per_task": float(per_task),
            "total_bytes": float(per_task * meta_batch)}


__all__ = ["MAML", "FOMAML", "MetaSGD", "AdaptedModel", "MetaOutput", "DivergenceError", "adapt_module",
           "choose_backend", "second_order_memory_estimate", "as_task_batch", "FunctionalAdam", "FunctionalSGD"]
