"""The meta-step, written once.

:func:`adapt_then_query` is the whole computation for one task: adapt a copy of the weights on the support
set, return the query loss at the adapted weights (and the adapted weights). Every learner is a configuration
of it: MAML (second order), first-order MAML, Meta-SGD (learned ``inner_lr``), ANIL (only some parameters
adapted); Reptile moves the weights toward its adapted weights. :func:`adapt_tasks` runs it over a meta-batch,
``vmap``-ed or in a Python loop over the tasks. :mod:`~metalearn_kit.meta.higher_backend` is the second way
to run the same per-task contract, with ``higher`` (the float64 gradient tests check that both agree).

The model's own parameters enter unbatched and are not detached, so ordinary autograd records the whole
unrolled inner loop and ``loss.backward()`` puts the (second-order) meta-gradient on ``model.parameters()``.

Randomness inside the forward (VAE reparameterisation, dropout) under ``vmap`` needs ``randomness=...``:
``"different"`` (the learners' default) draws independent noise for every task, as a loop over tasks would;
``"same"`` shares one draw across the tasks of a meta-batch. Randomness must come from torch's global RNG
(``torch.randn_like`` etc.), not from a ``torch.Generator`` passed explicitly, which vmap refuses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.func import grad, vmap

from ..tasks.task import Task, TaskBatch, stack_tasks
from .functional import FunctionalModel
from .inner import InnerLR, InnerOptimizer, Params, clip_grads, is_learned, rate_at

# loss_fn(model, batch) -> scalar tensor: ``model`` a callable with the weights being adapted, ``batch`` a task's
# support or query tuple ([shots, ...] tensors); the one definition every module of the kit imports
LossFn = Callable[[Callable, tuple[torch.Tensor, ...]], torch.Tensor]
StepHook = Callable[[int, torch.Tensor, Params], None]


@dataclass(frozen=True)
class InnerLoop:
    """How a task adapts: ``steps`` updates of ``optimizer`` (functional SGD/Adam); ``first_order`` treats the
    support gradients as constants (no second-order terms); ``grad_clip`` clips each step's gradient to this
    global L2 norm (None: off)."""

    optimizer: InnerOptimizer
    steps: int
    first_order: bool = False
    grad_clip: float | None = None


class TaskResult(NamedTuple):
    """What :func:`adapt_then_query` returns for one task (stacked over tasks, with a leading ``[tasks]``
    dimension, by :func:`adapt_tasks`): ``query_loss`` (scalar; None without a query set), ``adapted``
    parameters ``{name: tensor}``, ``support_losses`` ``[steps]`` (before each step, detached) and
    ``query_before`` (detached query loss before adaptation, or None)."""

    query_loss: torch.Tensor | None
    adapted: Params
    support_losses: torch.Tensor
    query_before: torch.Tensor | None = None


def adapt_then_query(module: nn.Module, fixed: Mapping[str, torch.Tensor], params: Params, support, query,
                     loss_fn: LossFn, inner: InnerLoop, inner_lr: InnerLR, *, vectorized: bool = False,
                     query_before: bool = False, after_step: StepHook | None = None) -> TaskResult:
    """One task of the meta-step. With ``θ = params`` (the adapted parameters; ``fixed``: the other parameters
    and the buffers), support set ``S``, query set ``Q``, ``K = inner.steps``, ``α = inner_lr``::

        φ_0 = θ,   φ_{k+1} = φ_k − α_k · u_k(∇_φ L_S(φ_k))   for k < K   (u_k: SGD/Adam's update direction)
        returns L_Q(φ_K), φ_K and L_S(φ_0..φ_{K-1})

    ``α_k = α`` for a float or a dict of rates; for a per-step sequence ``α_k`` is its entry ``min(k, len − 1)``
    (:func:`~metalearn_kit.meta.inner.rate_at`).

    The meta-loss is the mean of ``L_Q(φ_K)`` over a meta-batch; autograd records its gradient with respect to
    ``θ`` (and a learned ``α``) whenever grad mode is on. Second order: through every step. ``first_order``:
    ``∇_φ L_S`` is a constant, so ``∂φ_K/∂θ = I`` and the meta-gradient is ``∇L_Q(φ_K)``; with a fixed ``α``
    it is taken straight-through (steps on detached weights, ``φ_K := θ + stop_grad(φ_K − θ)``), with a learned
    ``α`` the steps stay on the graph so ``α`` gets its gradient. Grad mode off: nothing is recorded.

    ``vectorized``: gradients with ``torch.func.grad`` (runs under ``vmap``), else ``torch.autograd.grad`` (same
    numbers, less overhead in a loop). ``after_step(k, L_S(φ_k), φ_{k+1})``: loop only (curves, NaN checks)."""
    differentiate = torch.is_grad_enabled()
    shortcut = differentiate and straight_through_applies(inner, inner_lr)
    before = None
    if query_before:
        with torch.no_grad():
            before = loss_fn(FunctionalModel(module, {**fixed, **params}), query).detach()
    phi, inner_fixed = params, fixed
    if shortcut or not differentiate:  # no graph through the inner steps
        phi, inner_fixed = _detached(params), _detached(fixed)
    gradient = _func_gradient if vectorized else _autograd_gradient
    create_graph = differentiate and not inner.first_order
    state, losses = inner.optimizer.init(phi), []
    for k in range(inner.steps):
        grads, loss = gradient(lambda p: loss_fn(FunctionalModel(module, {**inner_fixed, **p}), support), phi,
                               create_graph)
        if inner.grad_clip is not None:
            grads = clip_grads(grads, inner.grad_clip)
        phi, state = inner.optimizer.step(phi, grads, state, rate_at(inner_lr, k))
        losses.append(loss)
        if after_step is not None:
            after_step(k, loss, phi)
    if shortcut:
        phi = straight_through(params, phi)
    query_loss = None if query is None else loss_fn(FunctionalModel(module, {**fixed, **phi}), query)
    support_losses = torch.stack(losses) if losses else torch.zeros(0, device=_device_of(params, fixed))
    return TaskResult(query_loss, phi, support_losses, before)


def straight_through_applies(inner: InnerLoop, inner_lr: InnerLR) -> bool:
    """First order with a fixed ``inner_lr``: the inner steps need no graph at all (see :func:`straight_through`).
    A learned ``inner_lr`` (a dict of tensors, or one per step; Meta-SGD) must stay on the graph to get its
    gradient."""
    return inner.first_order and inner.steps > 0 and not is_learned(inner_lr)


def straight_through(initial: Params, adapted: Params) -> Params:
    """``θ + stop_grad(φ − θ)`` for every name of ``initial``: the value of ``φ`` (``adapted``), the gradient
    to ``θ`` (``initial``) of whatever is computed from it, i.e. first-order MAML's meta-gradient."""
    return {name: theta + (adapted[name] - theta).detach() for name, theta in initial.items()}


def _func_gradient(support_loss: Callable[[Params], torch.Tensor], phi: Params,
                   create_graph: bool) -> tuple[Params, torch.Tensor]:
    def with_value(p: Params):
        loss = support_loss(p)
        return loss, loss.detach()

    grads, loss = grad(with_value, has_aux=True)(phi)
    return (grads if create_graph else _detached(grads)), loss


def _autograd_gradient(support_loss: Callable[[Params], torch.Tensor], phi: Params,
                       create_graph: bool) -> tuple[Params, torch.Tensor]:
    with torch.enable_grad():
        # detached weights (first order, grad mode off) become leaves here only, so no graph links the steps
        leaves = {k: p if p.requires_grad else p.detach().requires_grad_(True) for k, p in phi.items()}
        loss = support_loss(leaves)
        found = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True, create_graph=create_graph)
    grads = {k: torch.zeros_like(p) if g is None else g for (k, p), g in zip(leaves.items(), found)}
    return grads, loss.detach()


def _detached(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: t.detach() for k, t in tensors.items()}


def _device_of(*dicts: Mapping[str, torch.Tensor]) -> torch.device:
    for d in dicts:
        for t in d.values():
            return t.device
    return torch.device("cpu")


# ---------------------------------------------------------------- a meta-batch
def adapt_tasks(module: nn.Module, fixed: Mapping[str, torch.Tensor], params: Params,
                tasks: TaskBatch | Sequence[Task], loss_fn: LossFn, inner: InnerLoop, inner_lr: InnerLR, *,
                vectorized: bool, query_before: bool = False, keep_adapted: bool = False,
                randomness: str = "different", chunk_size: int | None = None) -> TaskResult:
    """:func:`adapt_then_query` on every task: ``vmap``-ed over a stacked :class:`TaskBatch` (``vectorized``;
    a list of tasks of different shapes is vmapped one task at a time) or in a loop over the tasks. Returns
    the results stacked over tasks (``adapted`` is ``{}`` unless ``keep_adapted``)."""
    if not vectorized:
        return join_results([adapt_then_query(module, fixed, params, task.support, task.query, loss_fn, inner,
                                              inner_lr, query_before=query_before) for task in tasks],
                            keep_adapted=keep_adapted)

    def one_task(params_: Params, support, query):
        result = adapt_then_query(module, fixed, params_, support, query, loss_fn, inner, inner_lr,
                                  vectorized=True, query_before=query_before)
        # vmap returns tensors only: a placeholder for the query loss before, no adapted weights unless kept
        return result._replace(adapted=result.adapted if keep_adapted else {},
                               query_before=result.query_before if query_before else support[0].new_zeros(()))

    batched = vmap(one_task, in_dims=(None, 0, 0), randomness=randomness, chunk_size=chunk_size)
    batches = [tasks] if isinstance(tasks, TaskBatch) else [stack_tasks([task]) for task in tasks]
    results = [batched(params, batch.support, batch.query) for batch in batches]
    joined = join_results(results, keep_adapted=keep_adapted, batched=True)
    return joined if query_before else joined._replace(query_before=None)


def join_results(results: Sequence[TaskResult], *, keep_adapted: bool = False, batched: bool = False) -> TaskResult:
    """Per-task results (``batched``: already ``[n, ...]`` each) -> one result with a ``[tasks]`` dimension."""
    join = torch.cat if batched else torch.stack
    first = results[0]
    adapted = {k: join([r.adapted[k] for r in results]) for k in first.adapted} if keep_adapted else {}
    before = None if first.query_before is None else join([r.query_before for r in results])
    return TaskResult(join([r.query_loss for r in results]), adapted, join([r.support_losses for r in results]),
                      before)


def functional_meta_grad(module: nn.Module, params: Params, fixed: Mapping[str, torch.Tensor], support, query,
                         loss_fn: LossFn, optimizer: InnerOptimizer, steps: int, inner_lr: float,
                         first_order: bool, randomness: str = "different") -> tuple[Params, torch.Tensor]:
    """The meta-gradient as one pure ``torch.func`` function (``grad`` of ``vmap`` of :func:`adapt_then_query`),
    with no outer ``autograd.backward``: the form ``torch.compile`` can capture whole (the benchmark compiles
    it). ``support``/``query``: tuples of ``[tasks, shots, ...]``. Returns ``(grads {name: tensor}, mean query
    loss)``; same numbers as ``MAML.meta_loss(...).backward()``."""
    inner = InnerLoop(optimizer, steps, first_order)

    def meta_loss(p: Params):
        def one_task(support_, query_):
            return adapt_then_query(module, fixed, p, support_, query_, loss_fn, inner, inner_lr,
                                    vectorized=True).query_loss

        loss = vmap(one_task, randomness=randomness)(support, query).mean()
        return loss, loss.detach()

    return grad(meta_loss, has_aux=True)(params)


__all__ = ["LossFn", "InnerLoop", "TaskResult", "adapt_then_query", "adapt_tasks", "join_results", "straight_through",
           "straight_through_applies", "functional_meta_grad"]
