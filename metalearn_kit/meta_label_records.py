"""Adapt to tasks and record their meta-labels in the meta-database: :func:`evaluate_tasks` (any learner or model,
any metric) and :func:`record_start` (one *start* -- a model with its optimizer, learning rate and step count --
recorded as one run with its run-level model, what :class:`~metalearn_kit.meta_label_chooser.MetaLabelChooser`
and ``warm_start(..., by="meta_labels")`` choose among)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from ._checks import check_choice, check_float, check_int
from .meta import finetune
from .store.db import MetaDatabase
from .store.recorder import StoreRecorder

__all__ = ["evaluate_tasks", "record_start"]


def evaluate_tasks(recorder: StoreRecorder, learner_or_model: Any, tasks: Sequence[Any], loss_fn: Callable,
                   steps: int | None = None, metric_fn: Callable | None = None, metric_name: str = "query_loss",
                   lr: float | None = None, optimizer: str = "adam", save_models: bool = False) -> list[int]:
    """Adapt to each task and record its meta-labels through ``recorder`` (a
    :class:`~metalearn_kit.store.StoreRecorder`): ``support_loss`` before each step and ``metric_name``
    (``metric_fn(model, query)``, default the query loss) after 0..``steps`` steps.

    ``learner_or_model``: a learner with ``.adapt`` (MAML, Reptile, ...; ``steps`` defaults to its
    ``inner_steps``, ``lr`` to its own) or a plain ``nn.Module``, fine-tuned with
    :func:`metalearn_kit.meta.finetune` (``steps`` and ``lr`` required). ``save_models=True`` stores each
    adapted model as the task's artefact (what :func:`~metalearn_kit.warmstart.warm_start` starts
    from). Returns the task ids."""
    tasks = list(tasks)
    if not tasks:
        raise ValueError("tasks must hold at least one Task")
    metric = metric_fn if metric_fn is not None else (lambda model, batch: float(loss_fn(model, batch)))
    is_learner = hasattr(learner_or_model, "adapt") and not isinstance(learner_or_model, nn.Module) \
        or hasattr(learner_or_model, "meta_objective")
    if not is_learner:
        if not isinstance(learner_or_model, nn.Module):
            raise TypeError(f"learner_or_model must be a learner with .adapt or an nn.Module, got "
                            f"{type(learner_or_model).__name__}")
        if steps is None or lr is None:
            raise ValueError("a plain model is fine-tuned: give steps and lr (e.g. steps=10, lr=1e-3)")
    if steps is not None:
        check_int("steps", steps, minimum=0)
    if lr is not None:
        check_float("lr", lr, minimum=0.0, strict_min=True)
    task_ids = []
    for i, task in enumerate(tasks):
        if not hasattr(task, "support") or not hasattr(task, "query"):
            raise TypeError(f"tasks[{i}] must be a Task, got {type(task).__name__}")
        if is_learner:
            adapted = learner_or_model.adapt(task.support, loss_fn, steps, query=task.query, metric=metric,
                                             lr=lr)
        else:
            adapted = finetune(learner_or_model, task.support, loss_fn, steps=steps, lr=lr,
                               optimizer=optimizer, query=task.query, metric=metric)
        metrics = {"support_loss": list(adapted.support_losses),
                   metric_name: [float(v) for v in adapted.query_metrics]}
        task_ids.append(recorder.record_task_results(task, metrics,
                                                 model_state=adapted.to_module() if save_models else None))
    return task_ids


def record_start(db: MetaDatabase, name: str, init: nn.Module | None, tasks: Sequence[Any], loss_fn: Callable,
                 metric_fn: Callable, steps: int, lr: float, optimizer: str = "adam",
                 config: Mapping[str, Any] | None = None, metric_name: str = "psnr",
                 model_factory: Callable[[], nn.Module] | None = None, seed: int = 0) -> int:
    """Record start ``name``: ``init`` (a model; ``None``: scratch, a fresh ``model_factory()`` under ``seed``)
    fine-tuned ``steps`` steps of ``optimizer`` at ``lr`` on each of ``tasks``, ``metric_name``
    (``metric_fn(model, query)``) after 0..``steps`` steps as its meta-labels. The run's config holds ``start``,
    ``optimizer``, ``lr``, ``steps``, ``channels`` (of the first task) and ``init`` (``"stored"`` or
    ``"scratch"``) plus ``config``; the run-level model is ``init`` (for scratch, the random initialisation, so
    a warm start from it is that same one). Returns the run id."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty start name such as 'denoise_joint@1e-3', got {name!r}")
    check_choice("optimizer", optimizer, ("sgd", "adam"))
    check_int("steps", steps, minimum=0)
    check_float("lr", lr, minimum=0.0, strict_min=True)
    tasks = list(tasks)
    if not tasks or not hasattr(tasks[0], "support"):
        raise ValueError("tasks must hold at least one restoration Task (with support and query)")
    scratch = init is None
    if scratch:
        if model_factory is None:
            raise ValueError("a scratch start (init=None) needs model_factory to build its model")
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            init = model_factory()
    if not isinstance(init, nn.Module):
        raise TypeError(f"init must be an nn.Module (or None for scratch), got {type(init).__name__}")
    run_config = {**dict(config or {}), "start": name, "optimizer": optimizer, "lr": float(lr), "steps": steps,
                  "channels": int(tasks[0].support[0].shape[1]), "init": "scratch" if scratch else "stored"}
    recorder = StoreRecorder(db, "start", type(init).__name__, config=run_config, seed=seed)
    with recorder:
        recorder.save_model(init, {"start": name})
        evaluate_tasks(recorder, init, tasks, loss_fn, steps=steps, metric_fn=metric_fn, metric_name=metric_name,
                       lr=lr, optimizer=optimizer)
    return recorder.run_id
