"""The baselines meta-learning is compared with, sharing the inner loop of ``learner.adapt``:

- :func:`finetune`: start from given weights (e.g. a joint-pretrained model) and take ``steps`` optimizer
  steps on the support set; the same loop as MAML's ``adapt``, so a comparison differs only in the start.
- :func:`scratch_baseline`: the same fine-tuning from a freshly initialised model.
- :func:`joint_pretrain`: ordinary (multi-task) training on the pooled support + query data of many sampled
  tasks, no inner loop; fine-tune the result with :func:`finetune` on a new task's support.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .._checks import check_float, check_int
from ..config import make_generator
from .adapted import AdaptedModel, MetricFn, adapt_module, match_param_names
from .checks import check_model_factory, check_scalar_loss
from .inner import DivergenceError, InnerOptimizer, make_inner_optimizer
from .step import LossFn
from .train import make_meta_optimizer, progress_disabled, sample_tasks


def finetune(model: nn.Module, support, loss_fn: LossFn, steps: int, lr: float,
             optimizer: str | InnerOptimizer = "sgd", *, query=None, metric: MetricFn | None = None,
             adapt_params: Sequence[str] | None = None, grad_clip: float | None = None) -> AdaptedModel:
    """Fine-tune a copy of ``model`` on ``support`` (tuple like ``task.support``) for ``steps`` steps of
    ``optimizer`` (``"sgd"``/``"adam"``) at learning rate ``lr``. ``model`` is unchanged; the returned
    :class:`AdaptedModel` is callable and carries ``support_losses`` and (with ``query`` + ``metric``)
    ``query_metrics`` after 0..steps steps."""
    check_int("steps", steps, minimum=0)
    check_float("lr", lr, minimum=0.0, strict_min=True)
    names = None
    if adapt_params is not None:
        names = match_param_names([n for n, _ in model.named_parameters()], adapt_params, model)
    return adapt_module(model, support, loss_fn, steps, lr, make_inner_optimizer(optimizer), adapt_names=names,
                        query=query, metric=metric, grad_clip=grad_clip)


def scratch_baseline(model_factory: Callable[[], nn.Module], support, loss_fn: LossFn, steps: int, lr: float,
                     optimizer: str | InnerOptimizer = "adam", *, query=None, metric: MetricFn | None = None,
                     seed: int | None = 0) -> AdaptedModel:
    """Train a fresh ``model_factory()`` on the support set only: :func:`finetune` from a random init.
    ``seed`` fixes the initialisation (torch's global RNG is restored afterwards); ``None`` uses it as is."""
    check_model_factory(model_factory)
    if not callable(model_factory):
        raise TypeError(f"model_factory must be a callable returning a fresh nn.Module, got "
                        f"{type(model_factory).__name__}")
    if seed is None:
        model = model_factory()
    else:
        check_int("seed", seed, minimum=0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = model_factory()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model_factory must return an nn.Module, got {type(model).__name__}")
    device = support[0].device if isinstance(support, (tuple, list)) and support else None
    if device is not None:
        model = model.to(device)
    return finetune(model, support, loss_fn, steps, lr, optimizer, query=query, metric=metric)


def joint_pretrain(model: nn.Module, sampler, loss_fn: LossFn, iterations: int, meta_batch: int = 8,
                   lr: float = 1e-3, optimizer: str | Callable = "adam", *,
                   generator: torch.Generator | int | None = 0, grad_clip: float | None = None,
                   callbacks: Sequence[Callable] = (), progress: bool = True) -> dict[str, list[float]]:
    """Multi-task pretraining, trains ``model`` in place: each iteration samples ``meta_batch`` tasks, pools
    their support and query examples into one batch and takes one ``optimizer`` step on ``loss_fn``.
    No inner loop. Returns ``{"iteration", "loss", "wall_time_s"}`` lists."""
    from tqdm.auto import tqdm

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    check_int("iterations", iterations, minimum=1)
    check_int("meta_batch", meta_batch, minimum=1)
    check_float("lr", lr, minimum=0.0, strict_min=True)
    if isinstance(callbacks, Callable):
        callbacks = (callbacks,)
    generator = make_generator(generator)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_meta_optimizer(optimizer, params, lr)
    device = next((p.device for p in params), torch.device("cpu"))
    history: dict[str, list[float]] = {"iteration": [], "loss": [], "wall_time_s": []}
    t0 = time.perf_counter()
    for it in tqdm(range(1, iterations + 1), disable=progress_disabled(progress), desc="joint pretrain"):
        tasks = sample_tasks(sampler, meta_batch, generator).to(device)
        # pool: [tasks, shots, ...] support and query -> one batch [tasks * (shots + queries), ...]
        pooled = tuple(torch.cat([s.flatten(0, 1), q.flatten(0, 1)]) for s, q in zip(tasks.support, tasks.query))
        opt.zero_grad(set_to_none=True)
        loss = check_scalar_loss(loss_fn(model, pooled), loss_fn)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise DivergenceError(f"joint pretraining loss became {value} at iteration {it} (lr={lr}); lower lr or "
                                  f"set grad_clip")
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        record = {"iteration": it, "loss": value, "wall_time_s": time.perf_counter() - t0}
        for key, v in record.items():
            history[key].append(v)
        for callback in callbacks:
            callback(it, record)
    return history


__all__ = ["finetune", "scratch_baseline", "joint_pretrain"]
