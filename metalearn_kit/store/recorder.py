"""Record meta-training and its meta-labels into the meta-database.

Hook contract (what :func:`metalearn_kit.meta.meta_train` and notebooks call; with ``store=None``, the
default of ``meta_train``, nothing is recorded anywhere):

- ``store.record(**fields)``: ``meta_train`` calls this once when the run ends with ``kind="meta_train"``,
  ``config``, ``history``, ``final``, ``checkpoint`` and ``machine``; the recorder stores the config, the
  per-iteration history and the final metrics on its run and marks it finished.
  ``store.record(iteration, tasks, per_task_metrics, model_states=None)`` (positional, no ``kind``) records
  a meta-batch: ``tasks[i]`` with ``per_task_metrics[i]`` (all results in one transaction).
- ``store.record_task_results(task, metrics, model_state=None, iteration=None)``: one task. ``task`` is the
  :class:`~metalearn_kit.tasks.task.Task` (preferred: its data is fingerprinted and, for restoration,
  described for warm starts) or only its ``info`` dict. ``metrics`` maps a metric name to its values by
  adaptation step: ``{"psnr": [before, after 1 step, ...]}``. ``model_state`` (``nn.Module`` or state dict),
  if given, is stored as that task's model.
- ``store.finish(final_metrics)``: the run ended.

The per-task meta-labels come from adapting to tasks: :meth:`StoreRecorder.evaluate_tasks` adapts a learner
(or fine-tunes a plain model) on each task's support set, records the support loss and the query metric
after every step, and can store each adapted model for later warm starts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from .._checks import check_float, check_int
from .db import MetaDatabase

__all__ = ["StoreRecorder"]


class StoreRecorder:
    """Records one run (``algorithm`` on ``backbone`` with ``config`` and ``seed``) into ``db`` (a
    :class:`MetaDatabase` or a path). The run row is created at construction; ``run_id`` holds its id."""

    def __init__(self, db: MetaDatabase | str | Any, algorithm: str, backbone: str,
                 config: Mapping[str, Any] | None = None, seed: int | None = None):
        self._owns_db = not isinstance(db, MetaDatabase)
        self.db = db if isinstance(db, MetaDatabase) else MetaDatabase(db)
        self.run_id = self.db.add_run(algorithm, backbone, config=config, seed=seed)
        self.iteration: int | None = None
        self.tasks_recorded = 0
        self.results_recorded = 0
        self.finished = False

    def __repr__(self) -> str:
        return (f"StoreRecorder(run {self.run_id} in {self.db.path}, {self.tasks_recorded} tasks, "
                f"{self.results_recorded} results)")

    def _rows(self, task_id: int, metrics: Mapping[str, Sequence[float]], iteration: int | None) -> list[tuple]:
        if not isinstance(metrics, Mapping):
            raise TypeError(f"metrics must be a dict metric name -> values by adaptation step, "
                            f"got {type(metrics).__name__}")
        rows = []
        for metric, values in metrics.items():
            if hasattr(values, "tolist"):
                values = values.tolist()
            if isinstance(values, (int, float)):
                values = [values]
            if not isinstance(values, Sequence):
                raise TypeError(f"metrics[{metric!r}] must be a list of values by adaptation step, got "
                                f"{type(values).__name__}")
            for step, value in enumerate(values):
                if value is None or (isinstance(value, float) and math.isnan(value)):
                    continue  # a step that was not measured
                rows.append((self.run_id, task_id, metric, step, value, iteration))
        return rows

    def record_task_results(self, task: Any, metrics: Mapping[str, Sequence[float]], model_state: Any = None,
                            iteration: int | None = None) -> int:
        """Record one task's meta-labels (and optionally its model); returns the task id."""
        iteration = self.iteration if iteration is None else iteration
        task_id = self.db.add_task(task)
        rows = self._rows(task_id, metrics, iteration)
        self.results_recorded += self.db.record_results(rows)
        self.tasks_recorded += 1
        if model_state is not None:
            self.db.add_artefact(self.run_id, task_id, model_state, {"iteration": iteration})
        return task_id

    def record(self, iteration: int | None = None, tasks: Sequence[Any] | None = None,
               per_task_metrics: Sequence[Mapping[str, Sequence[float]]] | None = None,
               model_states: Sequence[Any] | None = None, **fields: Any) -> list[int]:
        """A meta-batch (``iteration, tasks, per_task_metrics[, model_states]``; returns the task ids), or
        ``meta_train``'s end-of-run call (keyword fields with ``kind="meta_train"``; returns ``[]``)."""
        if "kind" in fields:
            if fields["kind"] != "meta_train":
                raise ValueError(f"kind must be 'meta_train' (the only record meta_train sends), got "
                                 f"{fields['kind']!r}")
            config = dict(fields.get("config") or {})
            if fields.get("checkpoint"):
                config["checkpoint"] = fields["checkpoint"]
            self.db.finish_run(self.run_id, fields.get("final") or {}, history=fields.get("history"),
                               config={"meta_train": config})
            self.finished = True
            return []
        if fields:
            raise TypeError(f"record() got unexpected keyword arguments {sorted(fields)}; pass iteration, tasks, "
                            f"per_task_metrics (and model_states), or meta_train's fields with kind=")
        if iteration is None or tasks is None or per_task_metrics is None:
            raise TypeError("record() needs iteration, tasks and per_task_metrics")
        tasks = list(tasks)
        per_task_metrics = list(per_task_metrics)
        if len(per_task_metrics) != len(tasks):
            raise ValueError(f"per_task_metrics must have one entry per task ({len(tasks)}), "
                             f"got {len(per_task_metrics)}")
        if model_states is not None and len(model_states) != len(tasks):
            raise ValueError(f"model_states must have one entry per task ({len(tasks)}), got {len(model_states)}")
        self.iteration = iteration
        task_ids = [self.db.add_task(t) for t in tasks]
        rows = [row for tid, m in zip(task_ids, per_task_metrics) for row in self._rows(tid, m, iteration)]
        self.results_recorded += self.db.record_results(rows)
        self.tasks_recorded += len(tasks)
        for tid, state in zip(task_ids, model_states or [None] * len(tasks)):
            if state is not None:
                self.db.add_artefact(self.run_id, tid, state, {"iteration": iteration})
        return task_ids

    def evaluate_tasks(self, learner_or_model: Any, tasks: Sequence[Any], loss_fn: Callable,
                       steps: int | None = None, metric_fn: Callable | None = None, metric_name: str = "query_loss",
                       lr: float | None = None, optimizer: str = "adam", save_models: bool = False) -> list[int]:
        """Adapt to each task and record its meta-labels: ``support_loss`` before each step and ``metric_name``
        (``metric_fn(model, query)``, default the query loss) after 0..``steps`` steps.

        ``learner_or_model``: a learner with ``.adapt`` (MAML, Reptile, ...; ``steps`` defaults to its
        ``inner_steps``, ``lr`` to its own) or a plain ``nn.Module``, fine-tuned with
        :func:`metalearn_kit.meta.finetune` (``steps`` and ``lr`` required). ``save_models=True`` stores each
        adapted model as the task's artefact (what :func:`~metalearn_kit.warmstart.warm_start` starts
        from). Returns the task ids."""
        from ..meta import finetune

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
            task_ids.append(self.record_task_results(task, metrics,
                                                     model_state=adapted.to_module() if save_models else None))
        return task_ids

    def save_model(self, model_or_state: Any, meta: Mapping[str, Any] | None = None) -> Path:
        """Store a run-level model (e.g. the meta-learned initialisation); returns its file path."""
        return self.db.add_artefact(self.run_id, None, model_or_state, meta)

    def finish(self, final_metrics: Mapping[str, Any] | None = None, status: str = "finished") -> None:
        """Mark the run ``status`` with ``final_metrics``; closes the database if the recorder opened it."""
        self.db.finish_run(self.run_id, final_metrics, status=status)
        self.finished = True
        if self._owns_db:
            self.db.close()

    def __enter__(self) -> StoreRecorder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # a run that ended in an exception is marked failed, not silently finished
        if not self.finished or exc_type is not None:
            self.finish(status="failed" if exc_type is not None else "finished")
        elif self._owns_db:
            self.db.close()
