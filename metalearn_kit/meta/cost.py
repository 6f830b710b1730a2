"""What a meta-step costs, measured: :func:`seconds_per_meta_step` (wall time) and
:func:`autograd_saved_bytes` (the bytes autograd keeps for the backward pass). Notebooks 02 and 06 use them;
speed targets belong in benchmarks (``metalearn-kit bench meta-step``), not in tests."""

from __future__ import annotations

import time

import torch

from .._checks import check_int
from .step import LossFn

__all__ = ["seconds_per_meta_step", "autograd_saved_bytes"]


def _synchronize(learner) -> None:
    # GPU work is asynchronous: wait for it before reading the clock
    parameter = next(iter(learner.model.parameters()), None)
    if parameter is not None and parameter.device.type == "cuda":
        torch.cuda.synchronize(parameter.device)


def seconds_per_meta_step(learner, tasks, loss_fn: LossFn, repeats: int = 5, warmup: bool = True) -> float:
    """The median wall time of ``repeats`` meta-steps (meta-loss forward and backward) of ``learner`` (a
    ``MAML``-family learner with ``meta_loss(tasks, loss_fn)``) on the meta-batch ``tasks``.

    ``warmup`` runs one untimed step first (the first call pays one-off setup costs). Gradients are zeroed
    before each step and left in the model after the last one.
    """
    check_int("repeats", repeats, minimum=1)
    if not hasattr(learner, "meta_loss"):
        raise TypeError(f"learner must have meta_loss(tasks, loss_fn) (a MAML, FOMAML, MetaSGD or ANIL), got "
                        f"{type(learner).__name__}")
    if warmup:
        learner.meta_loss(tasks, loss_fn).backward()
    times = []
    for _ in range(repeats):
        learner.model.zero_grad(set_to_none=True)
        _synchronize(learner)
        start = time.perf_counter()
        learner.meta_loss(tasks, loss_fn).backward()
        _synchronize(learner)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def autograd_saved_bytes(learner, tasks, loss_fn: LossFn) -> int:
    """The total size of the distinct storages autograd saves for the backward pass of one meta-loss.

    Uses ``torch.autograd.graph.saved_tensors_hooks``, which ``torch.func.grad`` does not allow: give a learner
    built with ``backend="higher"``.
    """
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        learner.meta_loss(tasks, loss_fn)
    return sum(storages.values())
