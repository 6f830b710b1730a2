"""Adaptation for use (not meta-training): :func:`adapt_module` runs the meta-step's inner loop
(:func:`~metalearn_kit.meta.step.adapt_then_query`, no graph kept) on one support set and returns an
:class:`AdaptedModel`, with the support loss and an optional query metric after every step. Behind
``learner.adapt``, ``finetune`` and ``scratch_baseline``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from ..tasks.task import Task
from .checks import check_examples, explain_failure
from .functional import FunctionalModel
from .inner import DivergenceError, InnerLR, InnerOptimizer, Params, is_learned
from .step import InnerLoop, LossFn, adapt_then_query

MetricFn = Callable[..., float | torch.Tensor]


class AdaptedModel(FunctionalModel):
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


def as_batch_tuple(name: str, batch) -> tuple[torch.Tensor, ...]:
    """``batch`` (a tensor or a tuple of tensors like ``task.support``) as a tuple; ``name`` for the error."""
    if isinstance(batch, Task):
        raise TypeError(f"{name} must be a tuple of tensors (e.g. task.support), got a Task; pass task.{name}")
    if isinstance(batch, torch.Tensor):
        return (batch,)
    if not isinstance(batch, (tuple, list)) or not batch or not all(isinstance(t, torch.Tensor) for t in batch):
        raise TypeError(f"{name} must be a non-empty tuple of tensors like task.support, got {type(batch).__name__}")
    return tuple(batch)


def match_param_names(names: Sequence[str], keys: str | Sequence[str], owner: nn.Module) -> list[str]:
    """The ``names`` (parameter names of ``owner``, in model order) that ``keys`` select: each key is a parameter
    name or a module prefix (``"head"`` selects ``head.weight`` and ``head.bias``). A key that selects nothing
    raises a ``ValueError`` naming it (``adapt_params``)."""
    keys = [keys] if isinstance(keys, str) else keys
    chosen: set[str] = set()
    for key in keys:
        if not isinstance(key, str):
            raise TypeError(f"adapt_params must be parameter names (str), got {key!r}")
        hits = [n for n in names if n == key or n.startswith(key + ".")]
        if not hits:
            raise ValueError(f"adapt_params names {key!r}, which is neither a parameter nor a module prefix of "
                             f"{type(owner).__name__}; its parameters are {list(names)}")
        chosen.update(hits)
    return [n for n in names if n in chosen]


def adapt_module(model: nn.Module, support, loss_fn: LossFn, steps: int, inner_lr: InnerLR,
                 optimizer: InnerOptimizer, *, adapt_names: Sequence[str] | None = None, query=None,
                 metric: MetricFn | None = None, grad_clip: float | None = None) -> AdaptedModel:
    """Adapt a copy of ``model``'s weights on ``support`` for ``steps`` steps of ``optimizer`` at ``inner_lr``
    (a float, rates ``{name: tensor}`` or one such dict per step, the last reused past the end) for the
    parameters in ``adapt_names`` (default all trainable ones). ``model`` itself is not modified.
    Raises :class:`DivergenceError` at the first NaN/Inf support loss or weight."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be a callable loss_fn(model, batch) -> scalar, got {type(loss_fn).__name__}")
    support = as_batch_tuple("support", support)
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
        query = tuple(t.to(device) for t in as_batch_tuple("query", query))
        check_examples("query", query)
    names = adapt_names if adapt_names is not None else [n for n, p in model.named_parameters() if p.requires_grad]
    params = {n: p.detach().clone() for n, p in model.named_parameters() if n in names}
    fixed = {n: p.detach() for n, p in model.named_parameters() if n not in params}
    fixed.update({n: b.detach().clone() for n, b in model.named_buffers()})
    losses: list[float] = []
    metrics: list[float] = []
    lr_text = (f"lr={'learned per-parameter' if is_learned(inner_lr) else inner_lr}, "
               f"optimizer={optimizer.name!r}")

    def observe(p: Params) -> None:
        if metric is not None:
            metrics.append(float(metric(FunctionalModel(model, {**fixed, **p}), query)))

    def after_step(step: int, loss: torch.Tensor, p: Params) -> None:
        value = float(loss)
        if not math.isfinite(value):
            raise DivergenceError(f"support loss became {value} at inner step {step} (0-based, of {steps}) with "
                                  f"{lr_text}; lower the learning rate or clip gradients")
        losses.append(value)
        # checked per step: observe() would score diverged weights, and the last step has no loss after it
        if not all(bool(torch.isfinite(t).all()) for t in p.values()):
            raise DivergenceError(f"weights became NaN/Inf at inner step {step} (0-based, of {steps}) with "
                                  f"{lr_text}; lower the learning rate or clip gradients")
        observe(p)

    try:
        with torch.no_grad():  # nothing to differentiate: each step's graph is dropped after its gradient
            observe(params)
            result = adapt_then_query(model, fixed, params, support, None, loss_fn, InnerLoop(optimizer, steps,
                                      grad_clip=grad_clip), inner_lr, after_step=after_step)
    except (RuntimeError, TypeError, ValueError) as err:  # a dtype or loss mistake fails deep in torch: name it
        explain_failure(err, model, loss_fn, [("support", support)] + ([("query", query)] if query else []))
        raise
    return AdaptedModel(model, {**fixed, **result.adapted}, losses, metrics, steps)


__all__ = ["AdaptedModel", "MetricFn", "adapt_module", "as_batch_tuple", "match_param_names"]
