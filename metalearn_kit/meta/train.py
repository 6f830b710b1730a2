"""The meta-training loop: sample a meta-batch, compute the learner's meta-objective, step the meta-optimizer;
with validation, callbacks for live plots, NaN guards, checkpoints and exact resume.

Resume is exact: a run stopped after N of 2N iterations and resumed gives bit-identical parameters (on CPU)
to an uninterrupted 2N-iteration run, because the checkpoint holds the learner's weights, the meta-optimizer
state, the task sampler's generator state and torch's global RNG state, and the history so far
(:mod:`~metalearn_kit.meta.train_state`).

``store`` hook (for the meta-database): any object with a ``record(**fields)`` method, or a plain callable
taking the same keyword arguments. When the run ends, ``meta_train`` calls it once with
``kind="meta_train"``, ``config`` (learner + loop settings), ``history``, ``final`` (the last record),
``checkpoint`` (path or None) and ``machine`` (:func:`~metalearn_kit.config.describe_machine`). Nothing is
recorded when ``store`` is None.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._checks import check_float, check_int
from ..config import describe_machine, make_generator
from ..tasks.task import TaskBatch, stack_tasks
from .inner import DivergenceError
from .train_state import CHECKPOINT_NAME, load_run, save_run

META_OPTIMIZERS = ("adam", "adamw", "sgd")
META_LR_SCHEDULES = ("constant", "cosine")
TRAIN_KEYS = ("iteration", "meta_loss", "query_loss_before", "query_loss_after", "support_loss_first",
              "support_loss_last", "grad_norm", "wall_time_s")
VAL_KEYS = ("val_iteration", "val_query_loss_before", "val_query_loss_after")


def sample_tasks(sampler, n: int, generator: torch.Generator) -> TaskBatch:
    """``sampler.sample_batch(n, generator)`` (the task distributions), or ``sampler(n, generator)``."""
    if hasattr(sampler, "sample_batch"):
        tasks = sampler.sample_batch(n, generator)
    elif callable(sampler):
        tasks = sampler(n, generator)
    else:
        raise TypeError(f"task_sampler must have a .sample_batch(n, generator) method or be a callable "
                        f"(n, generator) -> TaskBatch, got {type(sampler).__name__}")
    if not isinstance(tasks, TaskBatch):
        tasks = stack_tasks(tasks)
    return tasks


def make_meta_optimizer(meta_optimizer, params, meta_lr: float) -> torch.optim.Optimizer:
    """``"adam"``, ``"adamw"``, ``"sgd"`` or a callable ``(params, lr) -> Optimizer``, at ``meta_lr``."""
    if callable(meta_optimizer) and not isinstance(meta_optimizer, str):
        return meta_optimizer(params, meta_lr)
    if meta_optimizer not in META_OPTIMIZERS:
        raise ValueError(f"meta_optimizer must be one of {META_OPTIMIZERS} or a callable (params, lr) -> "
                         f"torch.optim.Optimizer, got {meta_optimizer!r}")
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[meta_optimizer]
    return cls(params, lr=meta_lr)


def progress_disabled(progress: bool) -> bool:
    """Whether the tqdm bar is off: ``progress=False`` or ``$TQDM_DISABLE`` set to a true value."""
    flag = os.environ.get("TQDM_DISABLE", "").strip().lower()
    return (not progress) or flag not in ("", "0", "false", "no")


@dataclass(frozen=True)
class MetaTrainConfig:
    """The outer loop's settings, checked on construction (see :func:`meta_train` for their meaning)."""

    iterations: int | None = None
    time_budget_s: float | None = None
    meta_batch: int = 8
    meta_lr: float = 1e-3
    meta_optimizer: str | Callable = "adam"
    meta_lr_schedule: str = "constant"
    grad_clip: float | None = None
    query_before: bool = True
    val_every: int = 50
    val_tasks: int = 16
    val_steps: int | None = None
    val_seed: int = 1234
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        if self.iterations is None and self.time_budget_s is None:
            raise ValueError("give iterations or time_budget_s (or both): meta_train needs a budget")
        if self.iterations is not None:
            check_int("iterations", self.iterations, minimum=1)
        if self.time_budget_s is not None:
            check_float("time_budget_s", self.time_budget_s, minimum=0.0, strict_min=True)
        check_int("meta_batch", self.meta_batch, minimum=1)
        check_float("meta_lr", self.meta_lr, minimum=0.0, strict_min=True)
        check_int("val_every", self.val_every, minimum=1)
        check_int("val_tasks", self.val_tasks, minimum=1)
        check_int("checkpoint_every", self.checkpoint_every, minimum=1)
        if self.meta_lr_schedule not in META_LR_SCHEDULES:
            raise ValueError(f"meta_lr_schedule must be one of {META_LR_SCHEDULES}, got {self.meta_lr_schedule!r}")
        if self.meta_lr_schedule == "cosine" and self.iterations is None:
            raise ValueError("meta_lr_schedule='cosine' needs iterations (the schedule ends at the last iteration); "
                             "give iterations or use meta_lr_schedule='constant' with a time budget")
        if self.grad_clip is not None:
            check_float("grad_clip", self.grad_clip, minimum=0.0, strict_min=True)

    def describe(self) -> dict[str, Any]:
        """The JSON-able ``"loop"`` part of a run's config (checkpoints, the meta-database)."""
        return {"meta_batch": self.meta_batch, "meta_lr": self.meta_lr,
                "meta_optimizer": self.meta_optimizer if isinstance(self.meta_optimizer, str) else "custom",
                "grad_clip": self.grad_clip, "iterations": self.iterations, "time_budget_s": self.time_budget_s,
                "val_every": self.val_every, "val_tasks": self.val_tasks, "val_steps": self.val_steps,
                "meta_lr_schedule": self.meta_lr_schedule}

    def meta_lr_at(self, iteration: int) -> float:
        """The meta learning rate of step ``iteration`` (0-based): constant, or cosine-annealed to 0."""
        if self.meta_lr_schedule == "cosine":
            return self.meta_lr * 0.5 * (1.0 + math.cos(math.pi * iteration / self.iterations))
        return self.meta_lr


def meta_train(learner, task_sampler, loss_fn: Callable, iterations: int | None = None,
               time_budget_s: float | None = None, meta_batch: int = 8, meta_lr: float = 1e-3,
               meta_optimizer: str | Callable = "adam", val_sampler=None, val_every: int = 50, val_tasks: int = 16,
               val_steps: int | None = None, val_seed: int = 1234, callbacks: Sequence[Callable] = (),
               checkpoint_dir: str | os.PathLike | None = None, checkpoint_every: int = 100, resume: bool = False,
               grad_clip: float | None = None, generator: torch.Generator | int | None = 0, progress: bool = True,
               store=None, query_before: bool = True, meta_lr_schedule: str = "constant") -> dict[str, Any]:
    """Meta-train ``learner`` (MAML, MetaSGD, Reptile, ...) on tasks from ``task_sampler``.

    Runs ``iterations`` meta-steps (total, counting those before a resume) or until ``time_budget_s`` seconds
    of training have passed, whichever comes first (at least one of them is required). Each step samples
    ``meta_batch`` tasks, computes ``learner.meta_objective`` and applies ``meta_optimizer`` (``"adam"``,
    ``"adamw"``, ``"sgd"`` or a callable ``(params, lr) -> Optimizer``) with ``meta_lr``.

    Validation every ``val_every`` steps (and at the end) on ``val_tasks`` tasks drawn once from ``val_sampler``
    with seed ``val_seed``: mean query loss before/after ``val_steps`` (default ``inner_steps``) adaptation
    steps. ``callbacks`` are called as ``callback(iteration, record)`` after every step (live plots).

    ``checkpoint_dir``: save every ``checkpoint_every`` steps and at the end; ``resume=True`` continues from the
    checkpoint there (bit-identical on CPU). ``grad_clip``: clip the meta-gradient's global norm.
    ``meta_lr_schedule``: ``"constant"`` or ``"cosine"`` (``meta_lr * (1 + cos(pi * i / iterations)) / 2`` at
    step ``i``: large steps early, small ones to settle at the end; needs ``iterations``; it is a function of
    the step number, so a resumed run follows the same schedule).
    ``generator``: seed or ``torch.Generator`` of the task sampler. ``progress``: tqdm bar (also off with
    ``$TQDM_DISABLE``). ``store``: see the module docstring. The loop settings are checked as a
    :class:`MetaTrainConfig`.

    Returns the history: a dict of lists, one entry per iteration for ``TRAIN_KEYS`` (``iteration``,
    ``meta_loss``, ``query_loss_before``/``after`` (NaN when not computed), ``support_loss_first``/``last``,
    ``grad_norm``, ``wall_time_s``: cumulative training time), one per validation for ``VAL_KEYS``, plus
    ``config`` (dict) and ``stopped`` (``"iterations"`` or ``"time_budget"``).

    Raises :class:`DivergenceError` naming the meta iteration and the learning rates when a loss or the
    meta-gradient becomes NaN/Inf.
    """
    from tqdm.auto import tqdm

    if not hasattr(learner, "meta_objective"):
        raise TypeError(f"learner must be a MAML/MetaSGD/Reptile learner, got {type(learner).__name__}")
    settings = MetaTrainConfig(iterations=iterations, time_budget_s=time_budget_s, meta_batch=meta_batch,
                               meta_lr=meta_lr, meta_optimizer=meta_optimizer, meta_lr_schedule=meta_lr_schedule,
                               grad_clip=grad_clip, query_before=query_before, val_every=val_every,
                               val_tasks=val_tasks, val_steps=val_steps, val_seed=val_seed,
                               checkpoint_every=checkpoint_every)
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir (the folder of the run to continue)")
    if isinstance(callbacks, Callable):
        callbacks = (callbacks,)
    generator = make_generator(generator)
    params = [p for p in learner.parameters() if p.requires_grad]
    optimizer = make_meta_optimizer(meta_optimizer, params, meta_lr)
    config = {"learner": learner.config(), "loop": settings.describe()}

    history: dict[str, Any] = {k: [] for k in TRAIN_KEYS + VAL_KEYS}
    start = 0
    path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    if resume and path is not None and path.exists():
        start, saved_history = load_run(path, learner, optimizer, generator, config)
        history.update({k: list(saved_history.get(k, [])) for k in TRAIN_KEYS + VAL_KEYS})
    elapsed_before = history["wall_time_s"][-1] if history["wall_time_s"] else 0.0
    val_batch = None
    if val_sampler is not None:
        val_batch = sample_tasks(val_sampler, val_tasks, torch.Generator().manual_seed(val_seed))

    stopped = "iterations"
    bar = tqdm(total=iterations, initial=start, disable=progress_disabled(progress),
               desc=f"meta-train {learner.algorithm}")
    t0 = time.perf_counter()
    iteration, saved_at, last_val = start, start, None
    try:
        while iterations is None or iteration < iterations:
            if time_budget_s is not None and elapsed_before + (time.perf_counter() - t0) >= time_budget_s:
                stopped = "time_budget"
                break
            tasks = sample_tasks(task_sampler, meta_batch, generator)
            step = _meta_step(learner, tasks, loss_fn, optimizer, params, settings, iteration)
            iteration += 1
            record = {"iteration": iteration, **step, "wall_time_s": elapsed_before + time.perf_counter() - t0}
            for key in TRAIN_KEYS:
                history[key].append(record[key])
            is_last = iterations is not None and iteration == iterations
            if val_batch is not None and (iteration % val_every == 0 or is_last):
                last_val = _validate(learner, val_batch, loss_fn, val_steps, history, iteration)
                record.update(last_val)
            for callback in callbacks:
                callback(iteration, record)
            if path is not None and (iteration % checkpoint_every == 0 or is_last):
                save_run(path, learner, optimizer, generator, history, config, iteration)
                saved_at = iteration
            bar.update(1)
            bar.set_postfix(loss=f"{record['meta_loss']:.4g}")
    finally:
        bar.close()
    if val_batch is not None and iteration > start and (not history["val_iteration"]
                                                        or history["val_iteration"][-1] != iteration):
        last_val = _validate(learner, val_batch, loss_fn, val_steps, history, iteration)
    if path is not None and iteration > saved_at:
        save_run(path, learner, optimizer, generator, history, config, iteration)
    history["config"] = config
    history["stopped"] = stopped
    final = {k: history[k][-1] for k in TRAIN_KEYS if history[k]}
    if last_val:
        final.update(last_val)
    _call_store(store, kind="meta_train", config=config, history=history, final=final,
                checkpoint=str(path) if path is not None else None, machine=describe_machine())
    return history


def _meta_step(learner, tasks, loss_fn: Callable, optimizer: torch.optim.Optimizer, params: list[torch.Tensor],
               settings: MetaTrainConfig, iteration: int) -> dict[str, float]:
    """One outer step: the learner's meta-objective on ``tasks``, backward, clip, step at the scheduled
    meta learning rate. Returns the step's record (losses, gradient norm)."""
    def rates() -> str:
        return f"meta_lr={settings.meta_lr}, {learner.inner_lr_text()}"

    optimizer.zero_grad(set_to_none=True)
    try:
        out = learner.meta_objective(tasks, loss_fn, query_before=settings.query_before)
    except DivergenceError as err:
        raise DivergenceError(f"at meta iteration {iteration + 1} (meta_lr={settings.meta_lr}): {err}") from err
    meta_loss = float(out.loss.detach())
    if not math.isfinite(meta_loss):
        raise DivergenceError(f"meta loss became {meta_loss} at meta iteration {iteration + 1} ({rates()}); "
                              f"lower meta_lr/inner_lr or set grad_clip")
    out.loss.backward()
    clip = settings.grad_clip if settings.grad_clip is not None else math.inf
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
    if not math.isfinite(grad_norm):
        raise DivergenceError(f"meta-gradient became NaN/Inf at meta iteration {iteration + 1} ({rates()}); "
                              f"lower meta_lr/inner_lr or set grad_clip")
    if settings.meta_lr_schedule != "constant":
        for group in optimizer.param_groups:
            group["lr"] = settings.meta_lr_at(iteration)
    optimizer.step()
    support = out.support_losses
    return {"meta_loss": meta_loss,
            "query_loss_before": float(out.query_before.mean()) if out.query_before is not None else math.nan,
            "query_loss_after": float(out.query_after.mean()),
            "support_loss_first": float(support[:, 0].mean()) if support.shape[-1] else math.nan,
            "support_loss_last": float(support[:, -1].mean()) if support.shape[-1] else math.nan,
            "grad_norm": grad_norm}


def _validate(learner, val_batch, loss_fn, val_steps, history, iteration) -> dict[str, float]:
    # validation must not move torch's global RNG (random forwards): the training run then does not depend on
    # when validation ran, which keeps resumed runs bit-identical
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        result = learner.evaluate(val_batch, loss_fn, steps=val_steps)
    history["val_iteration"].append(iteration)
    history["val_query_loss_before"].append(result["query_loss_before"])
    history["val_query_loss_after"].append(result["query_loss_after"])
    return {"val_query_loss_before": result["query_loss_before"], "val_query_loss_after": result["query_loss_after"]}


def _call_store(store, **fields) -> None:
    if store is None:
        return
    if hasattr(store, "record"):
        store.record(**fields)
    elif callable(store):
        store(**fields)
    else:
        raise TypeError(f"store must have a .record(**fields) method or be callable, got {type(store).__name__}")


__all__ = ["CHECKPOINT_NAME", "META_OPTIMIZERS", "META_LR_SCHEDULES", "TRAIN_KEYS", "VAL_KEYS", "MetaTrainConfig",
           "meta_train", "sample_tasks", "make_meta_optimizer", "progress_disabled"]
