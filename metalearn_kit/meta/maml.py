"""The learners: MAML (Finn et al. 2017) and its configurations first-order MAML, Meta-SGD (learned
``inner_lr``) and ANIL (only the head adapts), all computing one meta-step,
:func:`~metalearn_kit.meta.step.adapt_then_query` per task. Reptile (meta/reptile.py) reuses it.

```python
learner = MAML(model, inner_lr=0.05, inner_steps=5, first_order=False, backend="auto",
               inner_optimizer="sgd", adapt_params=None)
loss = learner.meta_loss(tasks, loss_fn)   # mean query loss after adapting on each task's support
loss.backward()                            # meta-gradients land on model.parameters()
out = learner.meta_objective(tasks, loss_fn, query_before=True)  # the same, with per-task losses (MetaOutput)
adapted = learner.adapt(support, loss_fn, steps=5, query=query, metric=psnr_fn)
adapted(x); adapted.support_losses; adapted.query_metrics   # model itself unchanged
```

``loss_fn(model, batch) -> scalar tensor``: ``batch`` is a task's ``support`` or ``query`` tuple
(``[shots, ...]`` tensors), ``model`` a callable with the weights being adapted. ``model(x)`` may return
anything (a tuple for a VAE); ``loss_fn`` decides what to do with it. Under the ``func`` backend with ``vmap``
``loss_fn`` runs inside ``torch.func.vmap``: no ``.item()``, no Python branching on tensor values, and
random noise from torch's global RNG (see :mod:`metalearn_kit.meta.step` and ``FuncBackend(randomness=...)``).

Second-order MAML's memory grows linearly with ``inner_steps`` (:func:`second_order_memory_estimate`
measures it); first-order MAML and Reptile keep no graph through the inner steps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .._checks import check_choice, check_float, check_int
from ..tasks.task import Task, TaskBatch, stack_tasks
from .adapted import AdaptedModel, MetricFn, adapt_module, match_param_names
from .backends import Backend, resolve_backend
from .checks import check_task_batch, explain_failure
from .inner import (
    DivergenceError,
    FunctionalSGD,
    InnerLR,
    InnerOptimizer,
    Params,
    check_finite_losses,
    make_inner_optimizer,
)
from .step import InnerLoop, LossFn


@dataclass
class MetaOutput:
    """What one meta-batch produced. ``loss`` is what to call ``backward()`` on; ``query_after`` /
    ``query_before`` are per-task query losses (detached) after / before adaptation; ``support_losses``
    ``[tasks, steps]`` the inner-loop losses; ``adapted`` the adapted parameters ``{name: [tasks, ...]}`` when
    kept (Reptile)."""

    loss: torch.Tensor
    query_after: torch.Tensor
    support_losses: torch.Tensor
    query_before: torch.Tensor | None = None
    adapted: Params | None = None


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


class MAML(nn.Module):
    """Model-agnostic meta-learning (Finn et al. 2017) for any model and any ``loss_fn``.

    Args:
        model: the network whose initial weights are meta-learned (a submodule of the learner, so
            ``learner.parameters()`` are what the meta-optimizer updates).
        inner_lr: inner-loop learning rate (> 0).
        inner_steps: inner-loop steps during meta-training (>= 0; 0 = no adaptation).
        first_order: drop second-order terms (FOMAML): the meta-gradient is the query gradient at the adapted
            weights.
        backend: how the tasks of a meta-batch run: ``"func"`` (torch.func, :class:`FuncBackend` with its
            defaults), ``"higher"`` (a loop over tasks with higher, :class:`HigherBackend`), ``"auto"``
            (:func:`~metalearn_kit.meta.backends.choose_backend`) or a backend object, e.g.
            ``FuncBackend(vmap=True, chunk_size=4)``; kept as the object in ``learner.backend``, its ``name``
            (``"func"``/``"higher"``) in ``learner.config()``.
        inner_optimizer: ``"sgd"``, ``"adam"`` or a :class:`FunctionalSGD` / :class:`FunctionalAdam`.
        adapt_params: names (or module prefixes, e.g. ``"head"``) of the parameters the inner loop adapts
            (ANIL adapts only the head); ``None`` adapts all. The meta-update still trains all parameters.
        inner_grad_clip: clip each inner step's gradient to this global norm (None: off).
    """

    algorithm = "maml"

    def __init__(self, model: nn.Module, inner_lr: float = 0.05, inner_steps: int = 5, first_order: bool = False,
                 backend: str | Backend = "auto", inner_optimizer: str | InnerOptimizer = "sgd",
                 adapt_params: Sequence[str] | None = None, inner_grad_clip: float | None = None) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        self.model = model
        self.inner_lr = check_float("inner_lr", inner_lr, minimum=0.0, strict_min=True)
        self.inner_steps = check_int("inner_steps", inner_steps, minimum=0)
        if not isinstance(first_order, bool):
            raise TypeError(f"first_order must be True or False, got {first_order!r}")
        self.first_order = first_order
        self.backend = resolve_backend(backend, model)
        self.inner_optimizer = make_inner_optimizer(inner_optimizer)
        self.inner_grad_clip = (None if inner_grad_clip is None
                                else check_float("inner_grad_clip", inner_grad_clip, minimum=0.0, strict_min=True))
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        self.adapt_names = trainable if adapt_params is None else match_param_names(trainable, adapt_params, model)
        self.adapt_params = None if adapt_params is None else list(adapt_params)

    def config(self) -> dict:
        """JSON-able description (goes into checkpoints and the meta-database)."""
        opt = self.inner_optimizer
        return {"algorithm": self.algorithm, "inner_lr": self.inner_lr, "inner_steps": self.inner_steps,
                "first_order": self.first_order, "backend": self.backend.name, "inner_optimizer": opt.name,
                "inner_optimizer_settings": ({"momentum": opt.momentum} if isinstance(opt, FunctionalSGD)
                                             else {"betas": list(opt.betas), "eps": opt.eps}),
                "adapt_params": self.adapt_params, "model": type(self.model).__name__}

    def inner_learning_rates(self) -> InnerLR:
        """The ``inner_lr`` the inner loop uses: the float ``inner_lr`` here, learned tensors in :class:`MetaSGD`."""
        return self.inner_lr

    def inner_lr_text(self) -> str:
        """The inner learning rate in force, for error messages."""
        return f"inner_lr={self.inner_lr}, inner_optimizer={self.inner_optimizer.name!r}"

    def _device(self) -> torch.device:
        for p in self.model.parameters():
            return p.device
        return torch.device("cpu")

    def forward(self, *args, **kwargs):
        """The meta-learned (unadapted) model."""
        return self.model(*args, **kwargs)

    # ------------------------------------------------------------------ the meta-objective
    def meta_objective(self, tasks, loss_fn: LossFn, query_before: bool = False) -> MetaOutput:
        """The meta-step's objective on a meta-batch ``tasks``: each task adapted on its support set for
        ``inner_steps`` steps and scored on its query set (:func:`~metalearn_kit.meta.step.adapt_then_query`).
        ``MetaOutput.loss`` is the mean query loss; ``loss.backward()`` puts the meta-gradient on
        ``model.parameters()`` (under ``torch.no_grad()`` nothing is recorded). ``query_before``: also the
        per-task query losses before adaptation."""
        return self._adapt_tasks(tasks, loss_fn, steps=self.inner_steps, first_order=self.first_order,
                                 query_before=query_before)

    def meta_loss(self, tasks, loss_fn: LossFn) -> torch.Tensor:
        """``meta_objective(tasks, loss_fn).loss``: the tensor to call ``.backward()`` on."""
        return self.meta_objective(tasks, loss_fn).loss

    @torch.no_grad()
    def evaluate(self, tasks, loss_fn: LossFn, steps: int | None = None) -> dict[str, float]:
        """Mean query loss before and after ``steps`` (default ``inner_steps``) adaptation steps, without
        keeping any graph (validation)."""
        steps = self.inner_steps if steps is None else check_int("steps", steps, minimum=0)
        out = self._adapt_tasks(tasks, loss_fn, steps=steps, first_order=True, query_before=True)
        return {"query_loss_before": float(out.query_before.mean()), "query_loss_after": float(out.query_after.mean())}

    def _adapt_tasks(self, tasks, loss_fn: LossFn, *, steps: int, first_order: bool, query_before: bool = False,
                     keep_adapted: bool = False) -> MetaOutput:
        """Run the per-task meta-step on every task with this learner's backend, check for divergence."""
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be a callable loss_fn(model, batch) -> scalar, got {type(loss_fn).__name__}")
        batch = as_task_batch(tasks, self._device())
        check_task_batch(batch)
        inner = InnerLoop(self.inner_optimizer, steps, first_order, self.inner_grad_clip)
        inner_lr = self.inner_learning_rates()
        try:
            result = self.backend.adapt_tasks(self.model, self.adapt_names, batch, loss_fn, inner, inner_lr,
                                              query_before=query_before, keep_adapted=keep_adapted)
        except (RuntimeError, TypeError, ValueError) as err:  # a dtype or loss mistake fails deep in torch: name it
            explain_failure(err, self.model, loss_fn, [("tasks.support", batch[0].support),
                                                       ("tasks.query", batch[0].query)])
            raise
        check_finite_losses(result.support_losses, "support loss", self.inner_lr_text())
        if not bool(torch.isfinite(result.query_loss).all()):
            raise DivergenceError(f"query loss after {steps} inner steps is NaN/Inf although every support loss was "
                                  f"finite ({self.inner_lr_text()}); the last inner step diverged: lower inner_lr")
        return MetaOutput(result.query_loss.mean(), result.query_loss.detach(), result.support_losses,
                          result.query_before, result.adapted if keep_adapted else None)

    # ------------------------------------------------------------------ adaptation for use
    def adapt(self, support, loss_fn: LossFn, steps: int | None = None, *, query=None,
              metric: MetricFn | None = None, lr: float | None = None) -> AdaptedModel:
        """Adapt a copy of the weights on ``support`` (a tuple like ``task.support``) for ``steps`` inner steps
        (default ``inner_steps``) at the learner's ``inner_lr`` (or ``lr``) and return the adapted model; the
        learner's model is unchanged.

        With ``query`` and ``metric`` (``metric(model, query) -> float``), ``adapted.query_metrics`` holds the
        metric after 0, 1, ..., ``steps`` steps (``steps + 1`` values) for plotting adaptation curves."""
        steps = self.inner_steps if steps is None else check_int("steps", steps, minimum=0)
        inner_lr = self.inner_learning_rates() if lr is None else check_float("lr", lr, minimum=0.0, strict_min=True)
        if isinstance(inner_lr, Mapping):
            inner_lr = {k: v.detach() for k, v in inner_lr.items()}
        elif isinstance(inner_lr, list):  # per-step rates
            inner_lr = [{k: v.detach() for k, v in rates.items()} for rates in inner_lr]
        return adapt_module(self.model, support, loss_fn, steps, inner_lr, self.inner_optimizer,
                            adapt_names=self.adapt_names, query=query, metric=metric,
                            grad_clip=self.inner_grad_clip)


class MetaSGD(MAML):
    """Meta-SGD (Li et al. 2017): MAML whose ``inner_lr`` is learned, one rate per parameter element
    (``lr_shape="element"``) or one per parameter tensor (``"tensor"``), all starting at ``inner_lr``. The
    rates are parameters of the learner, so the meta-optimizer trains them with the model; the inner loop
    receives them as a dict ``{name: tensor}`` (a list of dicts with ``per_step``).

    Args (besides :class:`MAML`'s):
        lr_shape: ``"element"`` or ``"tensor"``.
        per_step: one set of rates per inner step (MAML++, Antoniou et al. 2019), each rate tensor with a leading
            ``[inner_steps]`` dimension. Adapting for more than ``inner_steps`` steps uses the last step's rates
            for every further step: the rates trained to finish adaptation are the ones to continue it with.
        positive: the rates are ``inner_lr * exp(s)`` with ``s`` learned (``learner.inner_lr_log_scales``,
            starting at 0, so every rate starts at ``inner_lr`` exactly); they can never turn negative, so no
            inner step ascends the support loss. Otherwise the rates themselves are learned
            (``learner.inner_lrs``) and may turn negative.
        learn_init: ``False`` freezes the model's weights (``requires_grad_(False)`` on all of them): the inner
            loop still adapts them, but the meta-update trains only the rates. On a pretrained model this
            separates what a learned preconditioner buys from what a meta-learned initialisation buys.
    """

    algorithm = "metasgd"

    def __init__(self, model: nn.Module, inner_lr: float = 0.05, inner_steps: int = 5, *,
                 lr_shape: str = "element", per_step: bool = False, positive: bool = False,
                 learn_init: bool = True, **kwargs) -> None:
        super().__init__(model, inner_lr=inner_lr, inner_steps=inner_steps, **kwargs)
        check_choice("lr_shape", lr_shape, ("element", "tensor"))
        for name, value in (("per_step", per_step), ("positive", positive), ("learn_init", learn_init)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be True or False, got {value!r}")
        if per_step and self.inner_steps == 0:
            raise ValueError("per_step=True needs inner_steps >= 1 (one set of rates per step), got inner_steps=0")
        if not self.adapt_names:
            raise ValueError(f"MetaSGD found no trainable parameter of {type(model).__name__} to adapt; a model "
                             f"frozen by an earlier learn_init=False learner must be unfrozen (requires_grad_(True))")
        self.lr_shape, self.per_step, self.positive, self.learn_init = lr_shape, per_step, positive, learn_init
        named = dict(self.model.named_parameters())
        rates = nn.ParameterDict({self._key(n): nn.Parameter(self._initial_rates(named[n])) for n in self.adapt_names})
        if positive:
            self.inner_lr_log_scales = rates
        else:
            self.inner_lrs = rates
        if not learn_init:
            self.model.requires_grad_(False)

    def _initial_rates(self, param: torch.Tensor) -> torch.Tensor:
        """``inner_lr`` (or 0, the log-scale of ``inner_lr``, when ``positive``) in the rates' shape: the
        parameter's shape (``element``) or a scalar (``tensor``), with a leading ``[inner_steps]`` when
        ``per_step``."""
        shape = (tuple(param.shape) if self.lr_shape == "element" else ())
        shape = (self.inner_steps, *shape) if self.per_step else shape
        return torch.full(shape, 0.0 if self.positive else self.inner_lr, dtype=param.dtype, device=param.device)

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "__")

    def learned_rates(self) -> dict[str, torch.Tensor]:
        """``{name: rates}``, the rates in force (``[inner_steps, ...]`` with ``per_step``), on the graph."""
        if self.positive:
            return {n: self.inner_lr * torch.exp(self.inner_lr_log_scales[self._key(n)]) for n in self.adapt_names}
        return {n: self.inner_lrs[self._key(n)] for n in self.adapt_names}

    def inner_learning_rates(self) -> InnerLR:
        """``{name: tensor}``, or with ``per_step`` a list of ``inner_steps`` such dicts (step ``k`` uses entry
        ``min(k, inner_steps - 1)``, :func:`~metalearn_kit.meta.inner.rate_at`)."""
        rates = self.learned_rates()
        if not self.per_step:
            return rates
        return [{n: r[k] for n, r in rates.items()} for k in range(self.inner_steps)]

    def inner_lr_text(self) -> str:
        values = torch.cat([v.detach().reshape(-1) for v in self.learned_rates().values()])
        return (f"learned inner lrs in [{float(values.min()):.3g}, {float(values.max()):.3g}] "
                f"(initial inner_lr={self.inner_lr}), inner_optimizer={self.inner_optimizer.name!r}")

    def config(self) -> dict:
        return {**super().config(), "lr_shape": self.lr_shape, "per_step": self.per_step, "positive": self.positive,
                "learn_init": self.learn_init}


def FOMAML(model: nn.Module, **kwargs) -> MAML:  # noqa: N802 - reads as a class at call sites
    """First-order MAML: ``MAML(model, first_order=True, ...)``."""
    if kwargs.pop("first_order", True) is not True:
        raise ValueError("FOMAML is first-order by definition; use MAML(first_order=False) for second order")
    return MAML(model, first_order=True, **kwargs)


def ANIL(model: nn.Module, head: str | Sequence[str] = "head", **kwargs) -> MAML:  # noqa: N802 - reads as a class
    """ANIL (Raghu et al. 2020, "almost no inner loop"): ``MAML(model, adapt_params=head, ...)``, only the
    ``head`` parameters (names or module prefixes) adapt in the inner loop; the meta-update trains all."""
    if "adapt_params" in kwargs:
        raise TypeError("ANIL takes head=..., the parameters it adapts, not adapt_params; or use "
                        "MAML(adapt_params=...)")
    return MAML(model, adapt_params=[head] if isinstance(head, str) else list(head), **kwargs)


__all__ = ["MAML", "FOMAML", "MetaSGD", "ANIL", "MetaOutput", "as_task_batch"]
