"""How much memory second-order MAML needs: :func:`second_order_memory_estimate`.

Memory of second-order MAML grows *linearly* with ``inner_steps``: every unrolled step keeps the forward
activations on the support set, the graph of its backward pass (kept for the second derivative) and a new copy
of the adapted parameters. First-order MAML and Reptile keep none of it (constant in ``inner_steps``).
Notebook 02 measures it for the kit's restorer.
"""

from __future__ import annotations

import torch
from torch import nn

from .._checks import check_int
from .adapted import as_batch_tuple
from .inner import InnerOptimizer, make_inner_optimizer
from .step import InnerLoop, LossFn, adapt_then_query


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
    support = as_batch_tuple("support", support)
    query = support if query is None else as_batch_tuple("query", query)

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
            result = adapt_then_query(model, fixed, params, support, query, loss_fn, InnerLoop(optimizer, steps),
                                      0.01)
        del result
        return sum(seen.values())

    one, two = measure(1), measure(2)
    per_step = max(two - one, 0)
    base = max(one - per_step, 0)
    per_task = base + inner_steps * per_step
    return {"per_step_bytes": float(per_step), "base_bytes": float(base), "bytes_per_task": float(per_task),
            "total_bytes": float(per_task * meta_batch)}


__all__ = ["second_order_memory_estimate"]
