"""The ``higher`` backend: :func:`~metalearn_kit.meta.step.adapt_then_query`'s per-task contract run inside
``higher.innerloop_ctx`` with its differentiable SGD/Adam, the tasks in a Python loop. Slower than the vmapped
``torch.func`` backend on a GPU, but it runs any model ``higher`` can patch (including BatchNorm with
``track_running_stats=False``), and it is the independent reference the ``func`` backend is tested against.

Meta-SGD's per-parameter ``inner_lr`` goes in through ``higher``'s ``override`` (one parameter group per
adapted parameter, each with its own rate tensor), per-step rates by overriding again at every step. Adapted
weights that do not require grad (a frozen initialisation, ``MetaSGD(learn_init=False)``) enter as fresh leaves,
since ``higher`` would otherwise leave them unadapted. First order detaches the inner gradients in
``grad_callback``; with a fixed ``inner_lr`` no graph is kept through the steps at all and the query loss is
taken at :func:`~metalearn_kit.meta.step.straight_through` weights, as in the ``func`` backend.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from .inner import InnerLR, clip_grads, is_learned, rate_at
from .step import InnerLoop, TaskResult, straight_through, straight_through_applies


def _import_higher():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import higher
    return higher


def higher_adapt_then_query(module: nn.Module, adapt_names: Sequence[str], support, query, loss_fn: Callable,
                            inner: InnerLoop, inner_lr: InnerLR, *, query_before: bool = False) -> TaskResult:
    """One task, same contract as :func:`~metalearn_kit.meta.step.adapt_then_query` (``adapt_names``: the
    parameters adapted). ``module``'s own parameters receive the meta-gradient on backward; with grad mode off
    nothing is recorded (higher's ``track_higher_grads=False``) and the outputs are detached."""
    higher = _import_higher()
    differentiate = torch.is_grad_enabled()
    named = dict(module.named_parameters())
    all_names = list(named)
    adapt_index = [all_names.index(n) for n in adapt_names]
    torch_opt, override = _torch_optimizer(inner, named, adapt_names, inner_lr)

    def callback(grads):
        grads = list(grads)
        if inner.grad_clip is not None:
            sub = clip_grads({str(i): grads[i] for i in adapt_index if grads[i] is not None}, inner.grad_clip)
            for key, g in sub.items():
                grads[int(key)] = g
        if inner.first_order:
            grads = [None if g is None else g.detach() for g in grads]
        return grads

    shortcut = differentiate and straight_through_applies(inner, inner_lr)
    with warnings.catch_warnings(), torch.enable_grad():
        warnings.simplefilter("ignore")
        with higher.innerloop_ctx(module, torch_opt, copy_initial_weights=False, override=override(0),
                                  track_higher_grads=differentiate and not shortcut) as (fmodel, diffopt):
            if not all(named[n].requires_grad for n in adapt_names):
                fmodel.update_params([p if p.requires_grad or i not in adapt_index else p.detach().requires_grad_()
                                      for i, p in enumerate(fmodel.parameters())])
            before = None
            if query_before:
                with torch.no_grad():
                    before = loss_fn(fmodel, query).detach()
            losses = []
            for k in range(inner.steps):
                loss = loss_fn(fmodel, support)
                losses.append(loss.detach())
                diffopt.step(loss, grad_callback=callback, override=override(k))
            if shortcut:
                fmodel.update_params(list(straight_through(named, dict(zip(all_names, fmodel.parameters())))
                                          .values()))
            query_loss = loss_fn(fmodel, query)
            fast = list(fmodel.parameters())
            adapted = {n: fast[i] for n, i in zip(adapt_names, adapt_index)}
    if not differentiate:
        query_loss, adapted = query_loss.detach(), {k: v.detach() for k, v in adapted.items()}
    support_losses = torch.stack(losses) if losses else torch.zeros(0, device=query_loss.device)
    return TaskResult(query_loss, adapted, support_losses, before)


def _torch_optimizer(inner: InnerLoop, named: Mapping[str, nn.Parameter], adapt_names: Sequence[str],
                     inner_lr: InnerLR) -> tuple[torch.optim.Optimizer, Callable[[int], dict | None]]:
    """The ``torch.optim`` twin of ``inner.optimizer`` that ``higher`` differentiates, and ``override(k)``: step
    ``k``'s learned rates as ``higher``'s override (None for a fixed float rate)."""
    if not is_learned(inner_lr):
        return inner.optimizer.torch_optimizer([named[n] for n in adapt_names], inner_lr), lambda k: None
    # one group per parameter so each gets its own learned rate through `override` (the 0.0 is overridden)
    torch_opt = inner.optimizer.torch_optimizer([{"params": [named[n]]} for n in adapt_names], 0.0)
    return torch_opt, lambda k: {"lr": [rate_at(inner_lr, k)[n] for n in adapt_names]}


__all__ = ["higher_adapt_then_query"]
