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

import functools
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._checks import check_float, check_int
from ..config import describe_machine, make_generator
from ..tasks.task import TaskBatch, stack_tasks
from .inner import DivergenceError
from .step import LossFn
from .train_state import CHECKPOINT_NAME, check_resume, check_resume_target, load_run, save_run

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
    """Every setting of the outer loop, checked on construction (a bad value raises naming the field).

    Budget: ``iterations`` meta-steps (total, counting those before a resume) or ``time_budget_s`` seconds of
    training, whichever comes first; at least one of them. Each step samples ``meta_batch`` tasks, computes the
    learner's meta-objective and applies ``meta_optimizer`` (``"adam"``, ``"adamw"``, ``"sgd"`` or a callable
    ``(params, lr) -> Optimizer``) at ``meta_lr``; ``meta_lr_schedule="cosine"`` anneals it as
    ``meta_lr * (1 + cos(pi * i / iterations)) / 2`` at step ``i`` (large steps early, small ones to settle;
    needs ``iterations``; a function of the step number, so a resumed run follows the same schedule).
    ``grad_clip``: clip the meta-gradient's global norm. ``query_before``: also measure each task's query loss
    before adaptation (a diagnostic: one forward per task).

    Validation (with a ``val_sampler``) every ``val_every`` steps and at the end, on ``val_tasks`` tasks drawn
    once with seed ``val_seed``: mean query loss before/after ``val_steps`` (default ``inner_steps``) steps.

    ``checkpoint_dir``: save every ``checkpoint_every`` steps and at the end. ``resume``: ``False``, ``True``
    (continue the run saved in ``checkpoint_dir``, bit-identical on CPU; there must be one) or
    ``"if_present"`` (continue it if there is one). ``progress``: tqdm bar (also off with ``$TQDM_DISABLE``).
    """

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
    checkpoint_dir: str | os.PathLike | None = None
    checkpoint_every: int = 100
    resume: bool | str = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.iterations is None and self.time_budget_s is None:
            raise ValueError("give iterations or time_budget_s (or both): meta_train needs a budget, e.g. "
                             "MetaTrainConfig(iterations=100)")
        if self.iterations is not None:
            check_int("iterations", self.iterations, minimum=1)
        if self.time_budget_s is not None:
            check_float("time_budget_s", self.time_budget_s, minimum=0.0, strict_min=True)
        check_int("meta_batch", self.meta_batch, minimum=1)
        check_float("meta_lr", self.meta_lr, minimum=0.0, strict_min=True)
        if not callable(self.meta_optimizer) and self.meta_optimizer not in META_OPTIMIZERS:
            raise ValueError(f"meta_optimizer must be one of {META_OPTIMIZERS} or a callable (params, lr) -> "
                             f"torch.optim.Optimizer, got {self.meta_optimizer!r}")
        if self.meta_lr_schedule not in META_LR_SCHEDULES:
            raise ValueError(f"meta_lr_schedule must be one of {META_LR_SCHEDULES}, got {self.meta_lr_schedule!r}")
        if self.meta_lr_schedule == "cosine" and self.iterations is None:
            raise ValueError("meta_lr_schedule='cosine' needs iterations (the schedule ends at the last iteration); "
                             "give iterations or use meta_lr_schedule='constant' with a time budget")
        if self.grad_clip is not None:
            check_float("grad_clip", self.grad_clip, minimum=0.0, strict_min=True)
        for name in ("query_before", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        check_int("val_every", self.val_every, minimum=1)
        check_int("val_tasks", self.val_tasks, minimum=1)
        if self.val_steps is not None:
            check_int("val_steps", self.val_steps, minimum=0)
        check_int("val_seed", self.val_seed, minimum=0)
        check_int("checkpoint_every", self.checkpoint_every, minimum=1)
        check_resume(self.resume, self.checkpoint_dir)

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

    @property
    def checkpoint_path(self) -> Path | None:
        """The run's checkpoint file in ``checkpoint_dir`` (``None`` without one)."""
        return None if self.checkpoint_dir is None else Path(self.checkpoint_dir) / CHECKPOINT_NAME


def takes_config(train: Callable) -> Callable:
    """Decorates a training loop that takes a :class:`MetaTrainConfig`: the loop settings given as loose
    keyword arguments (``iterations=100``) are refused with the call that works instead."""
    @functools.wraps(train)
    def checked(*args, **kwargs):
        loose = [k for k in kwargs if k in MetaTrainConfig.__dataclass_fields__]
        if loose:
            settings = ", ".join(f"{k}=..." for k in loose)
            raise TypeError(f"{train.__name__}() takes the loop settings as one config, not as keyword arguments "
                            f"{loose}: pass MetaTrainConfig({settings}) as its fourth argument")
        return train(*args, **kwargs)
    return checked


@dataclass
class _Run:
    """One meta_train call's state, carried from step to step (``iteration``: meta-steps done so far)."""

    learner: Any
    task_sampler: Any
    loss_fn: LossFn
    config: MetaTrainConfig
    callbacks: tuple[Callable, ...]
    generator: torch.Generator
    params: list[torch.Tensor]
    optimizer: torch.optim.Optimizer
    described: dict[str, Any]
    history: dict[str, Any] = field(default_factory=lambda: {k: [] for k in TRAIN_KEYS + VAL_KEYS})
    start: int = 0
    iteration: int = 0
    saved_at: int = 0
    elapsed_before: float = 0.0
    val_batch: TaskBatch | None = None
    last_val: dict[str, float] | None = None


@takes_config
def meta_train(learner, task_sampler, loss_fn: LossFn, config: MetaTrainConfig, *, val_sampler=None,
               callbacks: Callable | Sequence[Callable] = (), store=None,
               generator: torch.Generator | int | None = 0) -> dict[str, Any]:
    """Meta-train ``learner`` (MAML, MetaSGD, Reptile, ...) on tasks from ``task_sampler`` with the outer-loop
    settings ``config`` (:class:`MetaTrainConfig`: budget, meta-optimizer, validation, checkpoints)::

        meta_train(learner, tasks, loss_fn, MetaTrainConfig(iterations=100, meta_batch=4))

    ``val_sampler``: held-out tasks for validation. ``callbacks`` are called as ``callback(iteration, record)``
    after every step (live plots). ``store``: see the module docstring. ``generator``: seed or
    ``torch.Generator`` of the task sampler.

    Returns the history: a dict of lists, one entry per iteration for ``TRAIN_KEYS`` (``iteration``,
    ``meta_loss``, ``query_loss_before``/``after`` (NaN when not computed), ``support_loss_first``/``last``,
    ``grad_norm``, ``wall_time_s``: cumulative training time), one per validation for ``VAL_KEYS``, plus
    ``config`` (dict: ``learner`` and ``loop``, :meth:`MetaTrainConfig.describe`) and ``stopped``
    (``"iterations"`` or ``"time_budget"``).

    Raises :class:`DivergenceError` naming the meta iteration and the learning rates when a loss or the
    meta-gradient becomes NaN/Inf.
    """
    run = _start_run(learner, task_sampler, loss_fn, config, callbacks, generator)
    if val_sampler is not None:
        run.val_batch = sample_tasks(val_sampler, config.val_tasks, torch.Generator().manual_seed(config.val_seed))
    stopped = _train(run)
    return _finish_run(run, stopped, store)


def _start_run(learner, task_sampler, loss_fn: LossFn, config: MetaTrainConfig,
               callbacks: Callable | Sequence[Callable], generator: torch.Generator | int | None) -> _Run:
    """Check the arguments, build the meta-optimizer and restore a saved run when resuming."""
    if not hasattr(learner, "meta_objective"):
        raise TypeError(f"learner must be a MAML/MetaSGD/Reptile learner, got {type(learner).__name__}")
    if not isinstance(config, MetaTrainConfig):
        raise TypeError(f"config must be a MetaTrainConfig, e.g. MetaTrainConfig(iterations=100, meta_batch=4), "
                        f"got {type(config).__name__}")
    check_resume_target(config.resume, config.checkpoint_dir)
    callbacks = (callbacks,) if isinstance(callbacks, Callable) else tuple(callbacks)
    generator = make_generator(generator)
    params = [p for p in learner.parameters() if p.requires_grad]
    optimizer = make_meta_optimizer(config.meta_optimizer, params, config.meta_lr)
    described = {"learner": learner.config(), "loop": config.describe()}
    run = _Run(learner, task_sampler, loss_fn, config, callbacks, generator, params, optimizer, described)
    path = config.checkpoint_path
    if config.resume and path is not None and path.exists():
        run.start, saved_history = load_run(path, learner, optimizer, generator, described)
        run.iteration = run.saved_at = run.start
        run.history.update({k: list(saved_history.get(k, [])) for k in TRAIN_KEYS + VAL_KEYS})
    run.elapsed_before = run.history["wall_time_s"][-1] if run.history["wall_time_s"] else 0.0
    return run


def _train(run: _Run) -> str:
    """Meta-steps until the budget is spent; returns why the loop stopped (``"iterations"``, ``"time_budget"``)."""
    from tqdm.auto import tqdm

    config = run.config
    bar = tqdm(total=config.iterations, initial=run.start, disable=progress_disabled(config.progress),
               desc=f"meta-train {run.learner.algorithm}")
    t0 = time.perf_counter()
    try:
        while config.iterations is None or run.iteration < config.iterations:
            elapsed = run.elapsed_before + (time.perf_counter() - t0)
            if config.time_budget_s is not None and elapsed >= config.time_budget_s:
                return "time_budget"
            tasks = sample_tasks(run.task_sampler, config.meta_batch, run.generator)
            step = _meta_step(run, tasks)
            run.iteration += 1
            record = {"iteration": run.iteration, **step, "wall_time_s": run.elapsed_before + time.perf_counter() - t0}
            _after_step(run, record)
            bar.update(1)
            bar.set_postfix(loss=f"{record['meta_loss']:.4g}")
    finally:
        bar.close()
    return "iterations"


def _after_step(run: _Run, record: dict[str, float]) -> None:
    """Log the step, validate and checkpoint when due, call the callbacks (they see the validation)."""
    config = run.config
    for key in TRAIN_KEYS:
        run.history[key].append(record[key])
    is_last = config.iterations is not None and run.iteration == config.iterations
    if run.val_batch is not None and (run.iteration % config.val_every == 0 or is_last):
        run.last_val = _validate(run)
        record.update(run.last_val)
    for callback in run.callbacks:
        callback(run.iteration, record)
    if config.checkpoint_path is not None and (run.iteration % config.checkpoint_every == 0 or is_last):
        _save(run)


def _finish_run(run: _Run, stopped: str, store) -> dict[str, Any]:
    """A last validation and checkpoint when the last step had none; the store record; the history."""
    history = run.history
    if run.val_batch is not None and run.iteration > run.start and (not history["val_iteration"]
                                                                    or history["val_iteration"][-1] != run.iteration):
        run.last_val = _validate(run)
    if run.config.checkpoint_path is not None and run.iteration > run.saved_at:
        _save(run)
    history["config"] = run.described
    history["stopped"] = stopped
    final = {k: history[k][-1] for k in TRAIN_KEYS if history[k]}
    if run.last_val:
        final.update(run.last_val)
    path = run.config.checkpoint_path
    _call_store(store, kind="meta_train", config=run.described, history=history, final=final,
                checkpoint=str(path) if path is not None else None, machine=describe_machine())
    return history


def _save(run: _Run) -> None:
    save_run(run.config.checkpoint_path, run.learner, run.optimizer, run.generator, run.history, run.described,
             run.iteration)
    run.saved_at = run.iteration


def _meta_step(run: _Run, tasks: TaskBatch) -> dict[str, float]:
    """One outer step: the learner's meta-objective on ``tasks``, backward, clip, step at the scheduled
    meta learning rate. Returns the step's record (losses, gradient norm)."""
    learner, config, optimizer, number = run.learner, run.config, run.optimizer, run.iteration + 1

    def rates() -> str:
        return f"meta_lr={config.meta_lr}, {learner.inner_lr_text()}"

    optimizer.zero_grad(set_to_none=True)
    try:
        out = learner.meta_objective(tasks, run.loss_fn, query_before=config.query_before)
    except DivergenceError as err:
        raise DivergenceError(f"at meta iteration {number} (meta_lr={config.meta_lr}): {err}") from err
    meta_loss = float(out.loss.detach())
    if not math.isfinite(meta_loss):
        raise DivergenceError(f"meta loss became {meta_loss} at meta iteration {number} ({rates()}); "
                              f"lower meta_lr/inner_lr or set grad_clip")
    out.loss.backward()
    clip = config.grad_clip if config.grad_clip is not None else math.inf
    grad_norm = float(torch.nn.utils.clip_grad_norm_(run.params, clip))
    if not math.isfinite(grad_norm):
        raise DivergenceError(f"meta-gradient became NaN/Inf at meta iteration {number} ({rates()}); "
                              f"lower meta_lr/inner_lr or set grad_clip")
    if config.meta_lr_schedule != "constant":
        for group in optimizer.param_groups:
            group["lr"] = config.meta_lr_at(run.iteration)
    optimizer.step()
    support = out.support_losses
    return {"meta_loss": meta_loss,
            "query_loss_before": float(out.query_before.mean()) if out.query_before is not None else math.nan,
            "query_loss_after": float(out.query_after.mean()),
            "support_loss_first": float(support[:, 0].mean()) if support.shape[-1] else math.nan,
            "support_loss_last": float(support[:, -1].mean()) if support.shape[-1] else math.nan,
            "grad_norm": grad_norm}


def _validate(run: _Run) -> dict[str, float]:
    # validation must not move torch's global RNG (random forwards): the training run then does not depend on
    # when validation ran, which keeps resumed runs bit-identical
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        result = run.learner.evaluate(run.val_batch, run.loss_fn, steps=run.config.val_steps)
    run.history["val_iteration"].append(run.iteration)
    run.history["val_query_loss_before"].append(result["query_loss_before"])
    run.history["val_query_loss_after"].append(result["query_loss_after"])
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
           "meta_train", "sample_tasks", "make_meta_optimizer", "progress_disabled", "takes_config"]
