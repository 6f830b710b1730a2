"""The meta-database: every task met in meta-training, every run, and the meta-labels (how well each
run's model did on each task after each adaptation step), in one SQLite file.

Meta-testing reads it back: the most similar stored task gives a warm start for a new task
(:mod:`metalearn_kit.warmstart`).

>>> db = MetaDatabase("meta.sqlite")                      # doctest: +SKIP
>>> run = db.add_run("maml", "unet-small", config={"inner_steps": 5}, seed=0)
>>> task = db.add_task(some_task)                          # Task -> fingerprint + descriptor
>>> db.record_result(run, task, "psnr", step=5, value=27.3)
>>> db.best_runs(family="denoise", metric="psnr")

Safety: the file is opened in WAL mode with a busy timeout, and every write is one short
``BEGIN IMMEDIATE ... COMMIT`` transaction, so threads and processes may write at the same time and a
process killed mid-write loses at most its open transaction, never a committed row. Each thread (and
each process after a fork) gets its own connection. ``synchronous=NORMAL`` keeps commits durable
against a crashed or killed process; only a power cut can lose the last few commits.

Model files go to a folder beside the database (``<name>.artefacts/``), written atomically through
:func:`metalearn_kit.checkpoints.save`; their sha256 is recorded and checked again on load.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .connection import Connection
from .records import (
    DB_ENV,
    DEFAULT_FILENAME,
    ArtefactIntegrityError,
    MetaDatabaseError,
    _check_id,
    _check_name,
    _check_value,
    _dumps,
    default_path,
    file_sha256,
    tensor_fingerprint,
    to_jsonable,
)

__all__ = ["ArtefactIntegrityError", "DB_ENV", "DEFAULT_FILENAME", "MetaDatabase", "MetaDatabaseError",
           "default_path", "file_sha256", "tensor_fingerprint", "to_jsonable"]


class MetaDatabase(Connection):
    """The meta-database in one SQLite file (``path``; default :func:`default_path`).

    ``create=False`` refuses a missing file instead of creating it. ``timeout`` (seconds) is how long a
    write waits for another writer. Use as a context manager, or call :meth:`close`.
    """

    # -------------------------------------------------------------- writing

    def add_run(self, algorithm: str, backbone: str, config: Mapping[str, Any] | None = None,
                seed: int | None = None, machine: Mapping[str, Any] | None = None,
                kit_version: str | None = None) -> int:
        """Record a (meta-)training run; returns its id. ``machine`` defaults to
        :func:`metalearn_kit.config.describe_machine`, ``kit_version`` to the installed version."""
        _check_name("algorithm", algorithm)
        _check_name("backbone", backbone)
        if config is not None and not isinstance(config, Mapping):
            raise TypeError(f"config must be a dict or None, got {type(config).__name__}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        if machine is None:
            from ..config import describe_machine

            machine = describe_machine()
        if kit_version is None:
            from .. import __version__ as kit_version
        with self._write() as con:
            cur = con.execute(
                "INSERT INTO runs (algorithm, backbone, config, kit_version, seed, machine, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (algorithm, backbone, _dumps(config or {}), str(kit_version), seed, _dumps(machine), time.time()))
            return int(cur.lastrowid)

    def finish_run(self, run_id: int, final_metrics: Mapping[str, Any] | None = None, status: str = "finished",
                   history: Mapping[str, Any] | None = None, config: Mapping[str, Any] | None = None) -> None:
        """Mark a run finished (or ``status="failed"``) and store its final metrics, and optionally its
        training ``history`` (dict of lists) and ``config`` entries (merged into the stored config). A field
        left ``None`` keeps its stored value."""
        row = self._require("runs", _check_id("run_id", run_id))
        _check_name("status", status)
        for name, value in (("final_metrics", final_metrics), ("history", history), ("config", config)):
            if value is not None and not isinstance(value, Mapping):
                raise TypeError(f"{name} must be a dict or None, got {type(value).__name__}")
        merged = {**json.loads(row["config"]), **(config or {})}
        with self._write() as con:
            # a field not given keeps what an earlier call stored
            con.execute("UPDATE runs SET status = ?, finished = ?, final_metrics = COALESCE(?, final_metrics), "
                        "history = COALESCE(?, history), config = ? WHERE id = ?",
                        (status, time.time(), None if final_metrics is None else _dumps(final_metrics),
                         None if history is None else _dumps(history), _dumps(merged), run_id))

    def add_task(self, task_or_info: Any, descriptor: Any = None) -> int:
        """Record a task; returns its id (the same id again for the same data).

        ``task_or_info``: a :class:`~metalearn_kit.tasks.task.Task` (its support/query tensors are
        fingerprinted; for a restoration task ``(degraded, clean)`` a descriptor is computed from the support
        set) or an info ``dict`` alone (fingerprinted by its content; no descriptor). ``descriptor``: a vector
        to store instead of the computed one, or ``False`` to store none.
        """
        from ..tasks.task import Task

        if isinstance(task_or_info, Task):
            info = dict(task_or_info.info)
            fingerprint = tensor_fingerprint([*task_or_info.support, *task_or_info.query])
        elif isinstance(task_or_info, Mapping):
            info = dict(task_or_info)
            fingerprint = "info-sha256:" + hashlib.sha256(_dumps(info).encode()).hexdigest()
        else:
            raise TypeError(f"task_or_info must be a Task or its info dict, got {type(task_or_info).__name__}")
        family = info.get("family")
        family = None if family is None else str(family)
        params = {k: v for k, v in info.items() if k != "family"}

        from .similarity import DESCRIPTOR_VERSION, is_restoration_support, task_descriptor

        vector = None
        if descriptor is None and isinstance(task_or_info, Task) and is_restoration_support(task_or_info.support):
            vector = task_descriptor(task_or_info.support)
        elif descriptor is not None and descriptor is not False:
            vector = descriptor
        if vector is not None:
            vector = [float(v) for v in to_jsonable(vector)]
            if not vector or not all(math.isfinite(v) for v in vector):
                raise ValueError(f"descriptor must be a non-empty vector of finite numbers, got {vector[:8]}")
        with self._write() as con:
            row = con.execute("SELECT id, descriptor FROM tasks WHERE fingerprint = ?", (fingerprint,)).fetchone()
            if row is not None:
                if vector is not None and row["descriptor"] is None:
                    con.execute("UPDATE tasks SET descriptor = ?, descriptor_version = ? WHERE id = ?",
                                (json.dumps(vector), DESCRIPTOR_VERSION, row["id"]))
                return int(row["id"])
            cur = con.execute(
                "INSERT INTO tasks (family, params, fingerprint, descriptor, descriptor_version, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (family, _dumps(params), fingerprint, None if vector is None else json.dumps(vector),
                 None if vector is None else DESCRIPTOR_VERSION, time.time()))
            return int(cur.lastrowid)

    def record_result(self, run_id: int, task_id: int, metric: str, step: int, value: float,
                      iteration: int | None = None) -> None:
        """Record one meta-label: ``metric`` of run ``run_id`` on task ``task_id`` after ``step`` adaptation
        steps (0 = before adapting)."""
        self.record_results([(run_id, task_id, metric, step, value, iteration)])

    def record_results(self, rows: Iterable[Sequence[Any] | Mapping[str, Any]]) -> int:
        """Record many meta-labels in one transaction (all or none). Each row is
        ``(run_id, task_id, metric, step, value[, iteration])`` or a dict with those keys. Returns the count."""
        clean = []
        for index, row in enumerate(rows):
            if isinstance(row, Mapping):
                row = (row.get("run_id"), row.get("task_id"), row.get("metric"), row.get("step"),
                       row.get("value"), row.get("iteration"))
            if not isinstance(row, (tuple, list)) or len(row) not in (5, 6):
                raise TypeError(f"rows[{index}] must be (run_id, task_id, metric, step, value[, iteration]), "
                                f"got {row!r}")
            run_id, task_id, metric, step, value = row[:5]
            iteration = row[5] if len(row) == 6 else None
            _check_id(f"rows[{index}] run_id", run_id)
            _check_id(f"rows[{index}] task_id", task_id)
            _check_name(f"rows[{index}] metric", metric)
            if isinstance(step, bool) or not isinstance(step, int) or step < 0:
                raise TypeError(f"rows[{index}] step must be an int >= 0 (adaptation steps taken), got {step!r}")
            if iteration is not None and (isinstance(iteration, bool) or not isinstance(iteration, int)):
                raise TypeError(f"rows[{index}] iteration must be an int or None, got {iteration!r}")
            clean.append((run_id, task_id, metric, step, _check_value(f"rows[{index}] value", value), iteration))
        if not clean:
            return 0
        try:
            with self._write() as con:
                con.executemany("INSERT INTO results (run_id, task_id, metric, step, value, iteration) "
                                "VALUES (?, ?, ?, ?, ?, ?)", clean)
        except sqlite3.IntegrityError as err:
            raise ValueError(f"rows refer to a run_id or task_id not in the database ({err}); add the run "
                             f"with add_run and the task with add_task first") from err
        return len(clean)

    def add_artefact(self, run_id: int, task_id: int | None, model_or_state: Any,
                     meta: Mapping[str, Any] | None = None) -> Path:
        """Save a model (``nn.Module`` or state dict) for run ``run_id`` (and task ``task_id``, or ``None`` for
        a run-level model such as a meta-learned initialisation). The ``.safetensors`` file is written
        atomically under :attr:`artefact_dir` and its sha256 recorded. Returns the file's path."""
        from ..checkpoints import save

        self._require("runs", _check_id("run_id", run_id))
        if task_id is not None:
            self._require("tasks", _check_id("task_id", task_id))
        if meta is not None and not isinstance(meta, Mapping):
            raise TypeError(f"meta must be a dict or None, got {type(meta).__name__}")
        meta = to_jsonable(dict(meta or {}))
        task_part = f"task{task_id}" if task_id is not None else "run-level"
        relative = Path(f"run{run_id}") / f"{task_part}-{uuid.uuid4().hex[:16]}.safetensors"
        path = self.artefact_dir / relative
        save(path, model_or_state, {**meta, "run_id": run_id, "task_id": task_id})
        digest = file_sha256(path)
        # file first, row second: a crash in between leaves an unreferenced file, never a row without a file
        with self._write() as con:
            con.execute("INSERT INTO artefacts (run_id, task_id, path, sha256, meta, created) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (run_id, task_id, relative.as_posix(), digest, _dumps(meta), time.time()))
        return path

    # -------------------------------------------------------------- reading

    def _require(self, table: str, row_id: int) -> sqlite3.Row:
        row = self._read(f"SELECT * FROM {table} WHERE id = ?", (row_id,))
        if not row:
            known = self._read(f"SELECT MIN(id), MAX(id), COUNT(*) FROM {table}")[0]
            hint = f"ids {known[0]}..{known[1]}" if known[2] else "none yet"
            raise ValueError(f"no {table[:-1]} with id {row_id} in {str(self.path)!r} ({table}: {hint})")
        return row[0]

    def artefacts(self, run_id: int | None = None, task_id: int | None = None) -> list[dict[str, Any]]:
        """Stored models (dicts with ``id, run_id, task_id, path, sha256, meta, created``), oldest first."""
        rows = self._read("SELECT * FROM artefacts WHERE (? IS NULL OR run_id = ?) AND (? IS NULL OR task_id = ?) "
                          "ORDER BY id", (run_id, run_id, task_id, task_id))
        return [self._artefact_dict(r) for r in rows]

    def _artefact_dict(self, row: sqlite3.Row) -> dict[str, Any]:
        out = dict(row)
        out["meta"] = json.loads(out["meta"])
        out["path"] = self.artefact_dir / out["path"]
        return out

    def load_artefact(self, artefact: int | str | os.PathLike, model: Any = None):
        """Load a stored model by id (or by the path :meth:`add_artefact` returned), after checking its
        sha256. Returns ``(state_dict, meta)``, or ``(model, meta)`` with the weights loaded when ``model`` is
        given. Raises :class:`ArtefactIntegrityError` if the file changed since it was recorded."""
        from ..checkpoints import load

        if isinstance(artefact, (str, os.PathLike)):
            path = Path(artefact).resolve()
            try:
                relative = path.relative_to(self.artefact_dir).as_posix()
            except ValueError as err:
                raise ValueError(f"artefact path {str(path)!r} is not under this database's artefact folder "
                                 f"{str(self.artefact_dir)!r}") from err
            rows = self._read("SELECT * FROM artefacts WHERE path = ?", (relative,))
            if not rows:
                raise ValueError(f"artefact path {str(path)!r} is not recorded in {str(self.path)!r}")
            row = self._artefact_dict(rows[0])
        else:
            row = self._artefact_dict(self._require("artefacts", _check_id("artefact", artefact)))
        path = row["path"]
        if not path.exists():
            raise FileNotFoundError(f"artefact {row['id']} file {str(path)!r} is missing; it was deleted or moved "
                                    f"after being recorded")
        digest = file_sha256(path)
        if digest != row["sha256"]:
            raise ArtefactIntegrityError(
                f"refusing to load artefact {row['id']}: {str(path)!r} changed since it was recorded (sha256 "
                f"{digest[:16]}... on disk, {row['sha256'][:16]}... recorded); restore the original file or "
                f"record the new model with add_artefact")
        loaded, file_meta = load(path, model=model)
        return loaded, {**file_meta, **row["meta"], "artefact_id": row["id"]}

    def run(self, run_id: int) -> dict[str, Any]:
        """One run's row as a dict (JSON fields decoded)."""
        return self._run_dict(self._require("runs", _check_id("run_id", run_id)))

    @staticmethod
    def _run_dict(row: sqlite3.Row) -> dict[str, Any]:
        out = dict(row)
        for key in ("config", "machine", "final_metrics", "history"):
            out[key] = json.loads(out[key]) if out.get(key) else ({} if key in ("config", "machine") else None)
        return out

    def runs(self) -> list[dict[str, Any]]:
        """Every run with its number of tasks and results, newest first."""
        rows = self._read(
            "SELECT runs.*, (SELECT COUNT(DISTINCT task_id) FROM results WHERE run_id = runs.id) AS n_tasks, "
            "(SELECT COUNT(*) FROM results WHERE run_id = runs.id) AS n_results, "
            "(SELECT COUNT(*) FROM artefacts WHERE run_id = runs.id) AS n_artefacts FROM runs ORDER BY id DESC")
        runs = [self._run_dict(r) for r in rows]
        for run in runs:
            run.pop("history")  # can be long; run(run_id) has it
        return runs

    @staticmethod
    def _task_dict(row: sqlite3.Row) -> dict[str, Any]:
        out = dict(row)
        out["params"] = json.loads(out["params"])
        out["descriptor"] = json.loads(out["descriptor"]) if out["descriptor"] else None
        return out

    def task(self, task_id: int) -> dict[str, Any]:
        return self._task_dict(self._require("tasks", _check_id("task_id", task_id)))

    def tasks(self, family: str | None = None) -> list[dict[str, Any]]:
        rows = self._read("SELECT * FROM tasks WHERE (? IS NULL OR family = ?) ORDER BY id", (family, family))
        return [self._task_dict(r) for r in rows]

    def families(self) -> list[str]:
        return [r[0] for r in self._read("SELECT DISTINCT family FROM tasks WHERE family IS NOT NULL ORDER BY 1")]

    def metrics(self) -> list[str]:
        return [r[0] for r in self._read("SELECT DISTINCT metric FROM results ORDER BY 1")]

    def best_runs(self, family: str | None = None, metric: str = "psnr", step: int | None = None,
                  higher_is_better: bool = True, limit: int | None = 10) -> list[dict[str, Any]]:
        """Runs ranked by their mean ``metric`` over the tasks (of ``family``, if given) at adaptation ``step``
        (default: each run's last recorded step for that metric). Each entry: ``run_id, algorithm, backbone,
        seed, step, mean, std, n_tasks, n_results``."""
        _check_name("metric", metric)
        if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
            raise TypeError(f"step must be an int >= 0 or None (last step of each run), got {step!r}")
        if not isinstance(higher_is_better, bool):
            raise TypeError(f"higher_is_better must be True or False, got {higher_is_better!r}")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise TypeError(f"limit must be a positive int or None, got {limit!r}")
        rows = self._read(
            """WITH chosen AS (
                   SELECT r.run_id, r.task_id, r.step, r.value FROM results r JOIN tasks t ON t.id = r.task_id
                   WHERE r.metric = ? AND (? IS NULL OR t.family = ?) AND (? IS NULL OR r.step = ?)),
               last AS (SELECT run_id, MAX(step) AS step FROM chosen GROUP BY run_id)
               SELECT c.run_id, l.step, AVG(c.value) AS mean, AVG(c.value * c.value) AS mean_sq,
                      COUNT(DISTINCT c.task_id) AS n_tasks, COUNT(*) AS n_results,
                      runs.algorithm, runs.backbone, runs.seed
               FROM chosen c JOIN last l ON c.run_id = l.run_id AND c.step = l.step JOIN runs ON runs.id = c.run_id
               GROUP BY c.run_id""",
            (metric, family, family, step, step))
        out = []
        for r in rows:
            variance = max(r["mean_sq"] - r["mean"] ** 2, 0.0)
            out.append({"run_id": r["run_id"], "algorithm": r["algorithm"], "backbone": r["backbone"],
                        "seed": r["seed"], "step": r["step"], "mean": r["mean"], "std": math.sqrt(variance),
                        "n_tasks": r["n_tasks"], "n_results": r["n_results"]})
        out.sort(key=lambda e: (-e["mean"] if higher_is_better else e["mean"], e["run_id"]))
        return out[:limit] if limit is not None else out

    def learning_curve(self, task_id: int, run_id: int | None = None,
                       metric: str = "psnr") -> dict[int, list[tuple[int, float]]]:
        """``{run_id: [(step, mean value), ...]}`` for task ``task_id`` (only run ``run_id`` if given), steps
        ascending; a value recorded several times at one step (e.g. one per iteration) is averaged."""
        self._require("tasks", _check_id("task_id", task_id))
        if run_id is not None:
            self._require("runs", _check_id("run_id", run_id))
        _check_name("metric", metric)
        rows = self._read("SELECT run_id, step, AVG(value) AS value FROM results WHERE task_id = ? AND metric = ? "
                          "AND (? IS NULL OR run_id = ?) GROUP BY run_id, step ORDER BY run_id, step",
                          (task_id, metric, run_id, run_id))
        curves: dict[int, list[tuple[int, float]]] = {}
        for r in rows:
            curves.setdefault(r["run_id"], []).append((r["step"], r["value"]))
        return curves

    def run_record(self, run_id: int) -> dict[str, Any]:
        """Everything about a run: its row, the tasks it met, per-metric per-step summaries and its artefacts."""
        record = self.run(run_id)
        tasks = self._read("SELECT * FROM tasks WHERE id IN (SELECT DISTINCT task_id FROM results WHERE run_id = ?) "
                           "ORDER BY id", (run_id,))
        record["tasks"] = [self._task_dict(t) for t in tasks]
        summary: dict[str, dict[int, dict[str, float]]] = {}
        for r in self._read("SELECT metric, step, AVG(value) AS mean, MIN(value) AS min, MAX(value) AS max, "
                            "COUNT(*) AS count FROM results WHERE run_id = ? GROUP BY metric, step "
                            "ORDER BY metric, step", (run_id,)):
            summary.setdefault(r["metric"], {})[r["step"]] = {"mean": r["mean"], "min": r["min"], "max": r["max"],
                                                              "count": r["count"]}
        record["results"] = summary
        record["n_results"] = sum(s["count"] for m in summary.values() for s in m.values())
        record["artefacts"] = self.artefacts(run_id=run_id)
        return record

    EXPORT_COLUMNS = ("result_id", "run_id", "algorithm", "backbone", "seed", "kit_version", "run_status",
                      "task_id", "family", "params", "fingerprint", "metric", "step", "iteration", "value")

    def export_csv(self, path: str | os.PathLike) -> int:
        """Write every result joined with its run and task to a CSV file (atomically); returns the row count."""
        from ..checkpoints import atomic_write_bytes

        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a file path, got {type(path).__name__}")
        rows = self._read(
            "SELECT r.id, r.run_id, runs.algorithm, runs.backbone, runs.seed, runs.kit_version, runs.status, "
            "r.task_id, t.family, t.params, t.fingerprint, r.metric, r.step, r.iteration, r.value "
            "FROM results r JOIN runs ON runs.id = r.run_id JOIN tasks t ON t.id = r.task_id ORDER BY r.id")
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.EXPORT_COLUMNS)
        writer.writerows(tuple(r) for r in rows)
        atomic_write_bytes(Path(path), buffer.getvalue().encode())
        return len(rows)

    def descriptor_candidates(self) -> list[dict[str, Any]]:
        """Stored models usable for warm starts: each artefact with its task's family and descriptor (``None``
        for a run-level artefact or a task without a descriptor) and its run's algorithm and backbone."""
        rows = self._read(
            "SELECT a.id AS artefact_id, a.run_id, a.task_id, a.path, t.family, t.descriptor, t.descriptor_version, "
            "runs.algorithm, runs.backbone FROM artefacts a JOIN runs ON runs.id = a.run_id "
            "LEFT JOIN tasks t ON t.id = a.task_id ORDER BY a.id")
        out = []
        for r in rows:
            entry = dict(r)
            entry["descriptor"] = json.loads(entry["descriptor"]) if entry["descriptor"] else None
            entry["path"] = self.artefact_dir / entry["path"]
            out.append(entry)
        return out
