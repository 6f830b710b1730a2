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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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
