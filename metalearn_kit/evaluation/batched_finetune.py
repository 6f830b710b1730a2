"""Every learning rate of one first-order optimizer fine-tuned in one vectorised pass.

:func:`batched_runs` stacks the model's trainable parameters ``G`` times (one copy per learning rate), takes each
copy's support gradient with ``torch.func.vmap`` of ``torch.func.grad`` and updates all copies with the kit's
functional SGD/Adam (:mod:`metalearn_kit.meta.inner`, elementwise, so a ``[G, 1, ...]`` rate broadcasts over the
copies). The numbers are those of :func:`metalearn_kit.meta.finetune` at each rate up to float round-off: the
same update rule, the same NaN/Inf handling (a copy that diverges is dropped and keeps the step counts it
reached). One pass costs about one run's Python overhead instead of ``G``; the arithmetic is still ``G`` runs'.

Not for models with BatchNorm (its running statistics are not carried per copy) or random ops in the forward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import grad, vmap

from ..meta.functional import FunctionalModel
from ..meta.inner import Params, clip_grads, make_inner_optimizer

__all__ = ["batched_runs"]


def _split_weights(model: nn.Module) -> tuple[Params, Params]:
    """``(trainable parameters, other parameters and buffers)``, detached, as the unbatched fine-tuning takes
    them."""
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    fixed = {n: p.detach() for n, p in model.named_parameters() if n not in params}
    fixed.update({n: b.detach().clone() for n, b in model.named_buffers()})
    return params, fixed


def _prepared_support(model: nn.Module, support) -> tuple[torch.Tensor, ...]:
    """``support`` as a tuple on the model's device, refused when it holds NaN/Inf (which would otherwise be
    blamed on the learning rates)."""
    from ..meta.adapted import as_batch_tuple

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    support = tuple(t.to(device) for t in as_batch_tuple("support", support))
    for i, t in enumerate(support):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"support[{i}] contains NaN or Inf values (shape {tuple(t.shape)}); check the images "
                             f"before fine-tuning")
    return support


def _finite_copies(stacked: Params) -> torch.Tensor:
    """``[G]`` bool: whether every weight of each copy is finite."""
    finite = [torch.isfinite(t).reshape(t.shape[0], -1).all(dim=1) for t in stacked.values()]
    return torch.stack(finite).all(dim=0) if finite else torch.ones(0, dtype=torch.bool)


def _keep(tree: Any, index: torch.Tensor) -> Any:
    """``tree`` (dicts of ``[G, ...]`` tensors, other leaves as they are) with only the copies at ``index``."""
    if isinstance(tree, dict):
        return {k: _keep(v, index) for k, v in tree.items()}
    return tree.index_select(0, index) if isinstance(tree, torch.Tensor) else tree


def _rates(lrs: torch.Tensor, stacked: Params) -> dict[str, torch.Tensor]:
    """Each copy's rate shaped ``[G, 1, ...]`` to broadcast over each parameter ``[G, ...]``."""
    return {n: lrs.view(-1, *([1] * (t.dim() - 1))) for n, t in stacked.items()}


def _copy_loss_and_grad(model: nn.Module, fixed: Params, support: tuple, loss_fn: Callable,
                        grad_clip: float | None) -> tuple[Callable, Callable]:
    """``(losses, grads_and_losses)``: ``vmap``-ed over stacked copies ``{name: [G, ...]}``, returning ``[G]``
    support losses (and each copy's gradient, clipped to ``grad_clip`` as the unbatched loop clips it)."""
    def loss(p: Params) -> torch.Tensor:
        return loss_fn(FunctionalModel(model, {**fixed, **p}), support)

    def with_value(p: Params):
        value = loss(p)
        return value, value.detach()

    def grad_and_loss(p: Params):
        grads, value = grad(with_value, has_aux=True)(p)
        return (grads if grad_clip is None else clip_grads(grads, grad_clip)), value

    return vmap(loss), vmap(grad_and_loss)


def batched_runs(model: nn.Module, support, loss_fn: Callable, steps: Sequence[int], optimizer: str,
                 lrs: Sequence[float], grad_clip: float | None = None) -> list[dict[int, dict[str, Any]]]:
    """Fine-tune one copy of ``model`` per rate of ``lrs`` with ``optimizer`` (``"sgd"`` or ``"adam"``, default
    settings) on ``support`` (``(degraded [K, C, H, W], clean [K, C, H, W])``) for ``max(steps)`` steps, all copies
    in one ``vmap``-ed pass. ``model`` is unchanged.

    Returns, per rate in order, ``{k: {"loss", "tensors", "evaluations"}}`` for each ``k`` in ``steps`` the copy
    reached: its support loss after ``k`` steps, its weights (parameters and buffers by name) and ``k`` (one
    support gradient per step). A copy whose support loss or weights become NaN/Inf is dropped from there on: it
    keeps the step counts before, as :func:`metalearn_kit.meta.finetune` stopped by a divergence does."""
    opt = make_inner_optimizer(optimizer)
    params, fixed = _split_weights(model)
    if not params:
        raise ValueError(f"model must have trainable parameters to fine-tune, got none in {type(model).__name__}")
    support = _prepared_support(model, support)
    losses_of, grads_of = _copy_loss_and_grad(model, fixed, support, loss_fn, grad_clip)
    count, last, wanted = len(lrs), max(steps), set(steps)
    ref = next(iter(params.values()))
    rates = torch.tensor(list(lrs), dtype=ref.dtype, device=ref.device)
    stacked = {n: p.unsqueeze(0).expand(count, *p.shape).clone() for n, p in params.items()}
    state, alive = opt.init(stacked), torch.arange(count)
    records: list[dict[int, dict[str, Any]]] = [{} for _ in range(count)]
    with torch.no_grad():  # grad() differentiates inside; nothing is recorded across steps
        for k in range(last + 1):
            grads, loss = grads_of(stacked) if k < last else (None, losses_of(stacked))
            values = loss.tolist()
            if k in wanted:
                for j, copy in enumerate(alive.tolist()):
                    tensors = {**fixed, **{n: t[j] for n, t in stacked.items()}}
                    records[copy][k] = {"loss": values[j], "tensors": tensors, "evaluations": k}
            if k == last:
                break
            stacked, state = opt.step(stacked, grads, state, _rates(rates, stacked))
            ok = torch.isfinite(loss) & _finite_copies(stacked)
            if not bool(ok.all()):  # diverged copies stop here; their earlier step counts stay candidates
                index = ok.nonzero().flatten()
                stacked, state, rates, alive = _keep(stacked, index), _keep(state, index), rates[index], alive[index]
                if not alive.numel():
                    break
    return records
