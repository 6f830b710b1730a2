"""Checks on what enters adaptation, so a mistake is reported at the public function the user called
(``adapt``, ``finetune``, ``scratch_baseline``, ``meta_loss``, ``meta_train``) naming the argument, instead of
as a dtype error deep inside ``conv2d``, a shape broadcast error in the loss, or a "divergence" blamed on the
learning rate. They read shapes only (no values, no GPU sync); :func:`check_scalar_loss` looks at a loss that is
already computed, and :func:`explain_dtype_error` runs only once torch has failed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """The floating dtype of the model's parameters (``None`` for a model without floating parameters)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), None)


def check_examples(name: str, batch: Sequence[torch.Tensor], leading: int = 1) -> None:
    """``batch`` (a support or query tuple; ``leading=2`` for a meta-batch ``[tasks, shots, ...]``): its tensors
    share the example dimension and hold at least one example."""
    counts = [tuple(t.shape[:leading]) for t in batch]
    if any(len(c) < leading for c in counts):
        where = " after the task one" if leading == 2 else ""
        raise ValueError(f"{name} tensors must have the example dimension{where}, got shapes "
                         f"{[tuple(t.shape) for t in batch]}")
    if len(set(counts)) != 1:
        parts = ", ".join(f"{name}[{i}] has {c[-1]}" for i, c in enumerate(counts))
        raise ValueError(f"{name} tensors must hold the same number of examples (inputs and targets pair up), but "
                         f"{parts}; give as many targets as inputs")
    if counts[0][-1] == 0:
        raise ValueError(f"{name} is empty (0 examples, shapes {[tuple(t.shape) for t in batch]}): adaptation needs "
                         f"at least one example; sample tasks with shots >= 1")


def explain_dtype_error(name: str, batch: Sequence[torch.Tensor], dtype: torch.dtype | None) -> None:
    """Called when adaptation failed inside torch: if ``batch`` holds uint8 images or floating data of another
    dtype than the model's, raise the ``TypeError`` that says so. Only on that error path, because a ``loss_fn``
    may convert the data itself (``model(batch[0].double())``); integer tensors other than uint8 are labels."""
    for i, t in enumerate(batch):
        if t.dtype == torch.uint8:
            raise TypeError(f"{name}[{i}] is a uint8 tensor (0-255 pixels?), but the model computes in {dtype}; "
                            f"convert it with {name}[{i}].float() / 255")
        if dtype is not None and t.is_floating_point() and t.dtype != dtype:
            raise TypeError(f"{name}[{i}] has dtype {t.dtype} but the model's parameters are {dtype}; convert the "
                            f"data with {name}[{i}].to({dtype}) (or the model with model.to({t.dtype}))")


def check_scalar_loss(loss: Any, loss_fn: Callable) -> torch.Tensor:
    """``loss_fn`` must return a one-element tensor (what gradients are taken of)."""
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"loss_fn must return a scalar tensor, got {type(loss).__name__} from "
                        f"{getattr(loss_fn, '__name__', type(loss_fn).__name__)}")
    if loss.numel() != 1:
        raise ValueError(f"loss_fn must return a scalar tensor (one number per batch), got shape {tuple(loss.shape)} "
                         f"from {getattr(loss_fn, '__name__', type(loss_fn).__name__)}; reduce it, e.g. with "
                         f".mean()")
    return loss


def check_model_factory(model_factory: Any) -> None:
    """``scratch_baseline`` trains a *fresh* model: an ``nn.Module`` instance is callable, but calling it runs its
    forward pass, so it is refused by name."""
    if isinstance(model_factory, nn.Module):
        raise TypeError(f"model_factory must be a callable returning a fresh nn.Module (e.g. lambda: "
                        f"{type(model_factory).__name__}(...)), got an instance of {type(model_factory).__name__}; "
                        f"pass a factory, or use finetune(model, ...) to start from this model's weights")


def check_task_batch(batch: Any) -> None:
    """:func:`check_examples` on every support and query set of a meta-batch (a ``TaskBatch`` or a list of
    ``Task``, as ``as_task_batch`` returns)."""
    if hasattr(batch, "infos"):  # TaskBatch: [tasks, examples, ...]
        check_examples("tasks.support", batch.support, leading=2)
        check_examples("tasks.query", batch.query, leading=2)
    else:
        for task in batch:
            check_examples("task.support", task.support)
            check_examples("task.query", task.query)


def explain_failure(err: BaseException, model: nn.Module, loss_fn: Callable,
                    named: Sequence[tuple[str, Sequence[torch.Tensor]]]) -> None:
    """Called with the error adaptation raised from deep inside torch (``named``: the ``(argument name, batch)``
    pairs the user passed, the support first). Raises the ``TypeError``/``ValueError`` that names the argument
    when the data has the wrong dtype or ``loss_fn`` returns a non-scalar; returns (the caller re-raises the
    original) otherwise, and always for a divergence, which already names itself."""
    from .inner import DivergenceError

    if isinstance(err, DivergenceError) or not named:
        return
    dtype = model_dtype(model)
    for name, batch in named:
        explain_dtype_error(name, batch, dtype)
    try:
        with torch.no_grad():
            loss = loss_fn(model, named[0][1])
    except Exception:  # noqa: BLE001 - the probe failing says nothing new: the original error stands
        return
    check_scalar_loss(loss, loss_fn)
