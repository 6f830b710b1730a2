"""The ``higher`` backend: a Python loop over tasks, each adapted inside ``higher.innerloop_ctx`` with its
differentiable SGD/Adam. Slower than the vmapped ``torch.func`` backend on a GPU, but it runs any model
``higher`` can patch (including BatchNorm with ``track_running_stats=False``) and serves as the reference
the functional backend is tested against.

Meta-SGD's per-parameter learning rates go in through ``higher``'s ``override`` (one parameter group per
adapted parameter, each with its own ``lr`` tensor). First-order MAML keeps no graph through the inner steps
and evaluates the query loss at ``p0 + (pT - p0).detach()`` (the query gradient at the adapted weights lands
on ``p0``); first-order Meta-SGD instead detaches the inner gradients with ``grad_callback`` so the learned
rates still get their gradient (each step's Jacobian is then the identity, as in the functional backend).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping

import torch
from torch import nn

from .inner import InnerOptimizer, clip_grads


def _import_higher():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import higher
    return higher


def higher_task(module: nn.Module, adapt_names: list[str], support, query, loss_fn: Callable,
                optimizer: InnerOptimizer, steps: int, inner_lr: float,
                lrs: Mapping[str, torch.Tensor] | None, first_order: bool, *, query_before: bool,
                return_params: bool, grad_clip: float | None = None, track_graph: bool = True):
    """One task: returns ``(query_loss, support_losses [steps], adapted {name: tensor} or None,
    query_loss_before or None)``. ``module``'s own parameters receive the meta-gradient on backward.
    ``track_graph=False`` (validation, Reptile) keeps no graph across steps (higher's
    ``track_higher_grads=False``)."""
    higher = _import_higher()
    named = dict(module.named_parameters())
    adapted_params = [named[n] for n in adapt_names]
    if lrs is None:
        torch_opt = optimizer.torch_optimizer(adapted_params, lr=inner_lr)
        override = None
    else:
        # one group per parameter so each can get its own learned lr tensor through `override`
        torch_opt = optimizer.torch_optimizer([{"params": [p]} for p in adapted_params], lr=inner_lr)
        override = {"lr": [lrs[n] for n in adapt_names]}

    all_names = [n for n, _ in module.named_parameters()]
    adapt_index = [all_names.index(n) for n in adapt_names]

    def callback(grads):
        grads = list(grads)
        if grad_clip is not None:
            sub = clip_grads({str(i): grads[i] for i in adapt_index if grads[i] is not None}, grad_clip)
            for key, g in sub.items():
                grads[int(key)] = g
        if first_order:
            grads = [None if g is None else g.detach() for g in grads]
        return grads

    # First-order without learned lrs: no graph through the steps at all (higher detaches every step), then the
    # query loss is taken at p0 + (pT - p0).detach(): value pT, gradient to p0 = the query gradient at pT.
    straight_through = first_order and lrs is None and track_graph
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with higher.innerloop_ctx(module, torch_opt, copy_initial_weights=False, override=override,
                                  track_higher_grads=track_graph and not straight_through) as (fmodel, diffopt):
            before = None
            if query_before:
                with torch.no_grad():
                    before = loss_fn(fmodel, query).detach()
            losses = []
            for _ in range(steps):
                loss = loss_fn(fmodel, support)
                losses.append(loss.detach())
                diffopt.step(loss, grad_callback=callback)
            if straight_through and steps:
                initial = list(module.parameters())
                fmodel.update_params([p0 + (p - p0).detach() for p0, p in zip(initial, fmodel.parameters())])
            q = loss_fn(fmodel, query)
            adapted = None
            if return_params:
                fast = list(fmodel.parameters())
                adapted = {n: fast[all_names.index(n)] for n in adapt_names}
    support_losses = torch.stack(losses) if losses else torch.zeros(0, device=q.device)
    return q, support_losses, adapted, before
