"""The ``torch.func`` backend: the inner loop as a pure function of the parameters, ``vmap``-ed over the
tasks of a meta-batch.

For each task the function adapts the parameters on the support set with ``torch.func.grad`` and
:mod:`metalearn_kit.meta.inner`'s functional optimizers, then evaluates the query loss. The model's own
parameters enter unbatched (``in_dims=None``) and are *not* detached, so ordinary autograd records the
whole unrolled loop and ``loss.backward()`` puts the (second-order) meta-gradient on
``model.parameters()``. First-order MAML detaches the inner gradients, which makes each inner step's
Jacobian the identity.

Randomness inside the forward (VAE reparameterisation, dropout) needs ``vmap(randomness=...)``:
``"different"`` (the default here) draws independent noise for every task, as a Python loop over tasks
would; ``"same"`` shares one draw across the tasks of a meta-batch. Randomness must come from torch's
global RNG (``torch.randn_like`` etc.), not from a ``torch.Generator`` passed explicitly, which vmap refuses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from .inner import InnerOptimizer, LearningRate, Params, clip_grads

LossFn = Callable[..., torch.Tensor]


class _MethodCall(nn.Module):
    """Calls ``getattr(inner, method)`` so ``functional_call`` can run any method, not only ``forward``."""

    def __init__(self, inner: nn.Module, method: str) -> None:
        super().__init__()
        self.m = inner
        self.method = method

    def forward(self, *args, **kwargs):
        return getattr(self.m, self.method)(*args, **kwargs)


class FunctionalModel:
    """A callable view of ``module`` with other weights: ``fm(x)`` is ``module(x)`` computed with ``tensors``
    (parameters and buffers by name) in place of the module's own; the module itself is not touched.
    Other methods work too (``fm.encode(x)``, ``fm.decode(z)``) through the same substitution.

    This is what ``loss_fn(model, batch)`` receives as ``model`` during adaptation and meta-training."""

    def __init__(self, module: nn.Module, tensors: Mapping[str, torch.Tensor]) -> None:
        self.module = module
        self.tensors = dict(tensors)

    def __call__(self, *args, **kwargs):
        return functional_call(self.module, self.tensors, args, kwargs, strict=False)

    def __getattr__(self, name: str):
        if name.startswith("_") or name in ("module", "tensors"):
            raise AttributeError(name)
        attr = getattr(self.module, name)
        if not callable(attr) or isinstance(attr, nn.Module):
            return attr
        caller = _MethodCall(self.module, name)
        prefixed = {f"m.{k}": v for k, v in self.tensors.items()}
        return lambda *args, **kwargs: functional_call(caller, prefixed, args, kwargs, strict=False)

    @property
    def training(self) -> bool:
        return self.module.training


def task_inner_loop(module: nn.Module, fixed: Mapping[str, torch.Tensor], params: Params, support, loss_fn: LossFn,
                    optimizer: InnerOptimizer, steps: int, lr: LearningRate, first_order: bool,
                    grad_clip: float | None = None) -> tuple[Params, torch.Tensor]:
    """Adapt ``params`` on one task's ``support`` (pure function: vmap-able). ``fixed`` are the tensors
    not adapted (other parameters, buffers). Returns the adapted parameters and the support losses before
    each step (``[steps]``)."""

    def support_loss(p: Params):
        loss = loss_fn(FunctionalModel(module, {**fixed, **p}), support)
        return loss, loss.detach()

    # First-order with fixed lrs: run the steps on detached weights (no outer graph through the support
    # forwards) and return p0 + (pT - p0).detach(): value pT, gradient to p0 = the query gradient at pT. With
    # learned lrs (Meta-SGD) the steps stay on the graph with detached gradients, so the lrs get their gradient.
    straight_through = first_order and not isinstance(lr, Mapping) and steps > 0
    initial = params
    if straight_through:
        params = {k: p.detach() for k, p in params.items()}
        fixed = {k: t.detach() for k, t in fixed.items()}
    state = optimizer.init(params)
    losses = []
    for _ in range(steps):
        grads, loss = grad(support_loss, has_aux=True)(params)
        if first_order:
            grads = {k: g.detach() for k, g in grads.items()}
        if grad_clip is not None:
            grads = clip_grads(grads, grad_clip)
        params, state = optimizer.step(params, grads, state, lr)
        losses.append(loss)
    if straight_through:
        params = {k: p0 + (params[k] - p0).detach() for k, p0 in initial.items()}
    support_losses = torch.stack(losses) if losses else torch.zeros(0, device=_device_of(params, fixed))
    return params, support_losses


def task_inner_loop_eager(module: nn.Module, fixed: Mapping[str, torch.Tensor], params: Params, support,
                          loss_fn: LossFn, optimizer: InnerOptimizer, steps: int, lr: LearningRate, first_order: bool,
                          grad_clip: float | None = None) -> tuple[Params, torch.Tensor]:
    """:func:`task_inner_loop` with ``torch.autograd.grad`` (``create_graph`` for second order) instead of
    ``torch.func.grad``: same numbers, less per-op overhead, but not vmap-able. Used when tasks are looped
    over (``vmap_tasks=False``, the CPU default)."""
    outer_graph = torch.is_grad_enabled()
    straight_through = first_order and not isinstance(lr, Mapping) and steps > 0
    detach_steps = straight_through or not outer_graph
    work = {k: p.detach().requires_grad_(True) for k, p in params.items()} if detach_steps else params
    work_fixed = {k: t.detach() for k, t in fixed.items()} if detach_steps else fixed
    state = optimizer.init(work)
    losses = []
    names = list(work)
    with torch.enable_grad():
        for _ in range(steps):
            loss = loss_fn(FunctionalModel(module, {**work_fixed, **work}), support)
            losses.append(loss.detach())
            found = torch.autograd.grad(loss, [work[n] for n in names], allow_unused=True,
                                        create_graph=outer_graph and not first_order)
            grads = {n: torch.zeros_like(work[n]) if g is None else g for n, g in zip(names, found)}
            if grad_clip is not None:
                grads = clip_grads(grads, grad_clip)
            work, state = optimizer.step(work, grads, state, lr)
            if detach_steps:
                work = {k: v.detach().requires_grad_(True) for k, v in work.items()}
    if not outer_graph:
        adapted = {k: v.detach() for k, v in work.items()}
    elif straight_through:
        adapted = {k: p0 + (work[k] - p0).detach() for k, p0 in params.items()}
    else:
        adapted = work
    support_losses = torch.stack(losses) if losses else torch.zeros(0, device=_device_of(params, fixed))
    return adapted, support_losses


def _stack(values):
    if isinstance(values[0], dict):
        return {k: torch.stack([v[k] for v in values]) for k in values[0]}
    return torch.stack(values)


def _device_of(*dicts) -> torch.device:
    for d in dicts:
        for t in d.values():
            return t.device
    return torch.device("cpu")


def batched_adapt(module: nn.Module, fixed: Mapping[str, torch.Tensor], params: Params, support, query,
                  loss_fn: LossFn, optimizer: InnerOptimizer, steps: int, lr: LearningRate, first_order: bool,
                  *, return_params: bool, query_before: bool, randomness: str, chunk_size: int | None,
                  grad_clip: float | None = None, vectorize: bool = True):
    """Adapt on every task of a stacked meta-batch at once (``support``/``query``: tuples of
    ``[tasks, shots, ...]``). Returns ``(query_loss [tasks], support_losses [tasks, steps],
    adapted params {name: [tasks, ...]} or None, query_loss_before [tasks] or None)``.

    ``vectorize=False`` loops over the tasks instead, each adapted with :func:`task_inner_loop_eager` (same
    numbers; faster on CPU, where vmap turns each conv into a grouped conv over tasks and functorch's per-op
    overhead shows)."""

    inner = task_inner_loop if vectorize else task_inner_loop_eager

    def one_task(params_, support_, query_):
        before = None
        if query_before:
            with torch.no_grad():
                before = loss_fn(FunctionalModel(module, {**fixed, **params_}), query_).detach()
        adapted, support_losses = inner(module, fixed, params_, support_, loss_fn, optimizer, steps, lr,
                                        first_order, grad_clip)
        q = loss_fn(FunctionalModel(module, {**fixed, **adapted}), query_)
        outs = [q, support_losses]
        if return_params:
            outs.append(adapted)
        if before is not None:
            outs.append(before)
        return tuple(outs)

    if vectorize:
        outs = vmap(one_task, in_dims=(None, 0, 0), randomness=randomness, chunk_size=chunk_size)(params, support,
                                                                                                  query)
    else:
        per_task = [one_task(params, tuple(t[i] for t in support), tuple(t[i] for t in query))
                    for i in range(support[0].shape[0])]
        outs = tuple(_stack([o[j] for o in per_task]) for j in range(len(per_task[0])))
    q, support_losses = outs[0], outs[1]
    rest = list(outs[2:])
    adapted = rest.pop(0) if return_params else None
    before = rest.pop(0) if query_before else None
    return q, support_losses, adapted, before


def functional_meta_grad(module: nn.Module, params: Params, fixed: Mapping[str, torch.Tensor], support, query,
                         loss_fn: LossFn, optimizer: InnerOptimizer, steps: int, lr: float, first_order: bool,
                         randomness: str = "different") -> tuple[Params, torch.Tensor]:
    """The MAML meta-gradient as one pure ``torch.func`` function (``grad`` of ``vmap`` of the inner loop), with
    no outer ``autograd.backward``: the form ``torch.compile`` can capture whole (the benchmark compiles it).
    Returns ``(grads {name: tensor}, mean query loss)``; same numbers as ``MAML.meta_loss(...).backward()``."""

    def meta_loss(p: Params):
        def one_task(support_, query_):
            adapted, _ = task_inner_loop(module, fixed, p, support_, loss_fn, optimizer, steps, lr, first_order)
            return loss_fn(FunctionalModel(module, {**fixed, **adapted}), query_)

        loss = vmap(one_task, randomness=randomness)(support, query).mean()
        return loss, loss.detach()

    return grad(meta_loss, has_aux=True)(params)
