"""The meta-labels read back for choosing a start: every recorded value of one metric at one adaptation step,
with the tasks (family, descriptor) and the runs (the start: algorithm, backbone, config) it belongs to, and a
cheap token that changes whenever those could have changed (so a reader may cache what it built from them)."""

from __future__ import annotations

import json
from typing import Any

from .db import MetaDatabase
from .records import _check_name

__all__ = ["meta_label_rows", "state_token"]


def state_token(db: MetaDatabase) -> tuple:
    """A fingerprint of ``db``'s content that changes when a result, task, run or descriptor is added or a run is
    finished (rows are only ever added, so maxima and counts see every change that matters)."""
    row = db._read(
        "SELECT (SELECT MAX(id) FROM results), (SELECT COUNT(*) FROM results), (SELECT MAX(id) FROM tasks), "
        "(SELECT COUNT(descriptor) FROM tasks), (SELECT MAX(id) FROM runs), (SELECT MAX(finished) FROM runs), "
        "(SELECT MAX(id) FROM artefacts)")[0]
    return (str(db.path), *tuple(row))


def meta_label_rows(db: MetaDatabase, metric: str = "psnr", step: int = 5) -> dict[str, list[dict[str, Any]]]:
    """Every meta-label ``metric`` after ``step`` adaptation steps in ``db``, averaged per (task, run), with the
    tasks and runs it names: ``{"labels": [{task_id, run_id, value}], "tasks": [{id, family, descriptor,
    descriptor_version}], "runs": [{id, algorithm, backbone, config, kit_version}]}`` (JSON fields decoded)."""
    if not isinstance(db, MetaDatabase):
        raise TypeError(f"db must be a MetaDatabase, got {type(db).__name__}")
    _check_name("metric", metric)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise TypeError(f"step must be an int >= 0 (adaptation steps taken), got {step!r}")
    labels = db._read("SELECT task_id, run_id, AVG(value) AS value FROM results WHERE metric = ? AND step = ? "
                      "GROUP BY task_id, run_id ORDER BY task_id, run_id", (metric, step))
    tasks = db._read("SELECT id, family, descriptor, descriptor_version FROM tasks WHERE id IN "
                     "(SELECT DISTINCT task_id FROM results WHERE metric = ? AND step = ?) ORDER BY id",
                     (metric, step))
    runs = db._read("SELECT id, algorithm, backbone, config, kit_version FROM runs WHERE id IN "
                    "(SELECT DISTINCT run_id FROM results WHERE metric = ? AND step = ?) ORDER BY id",
                    (metric, step))
    return {"labels": [dict(r) for r in labels],
            "tasks": [{**dict(t), "descriptor": json.loads(t["descriptor"]) if t["descriptor"] else None}
                      for t in tasks],
            "runs": [{**dict(r), "config": json.loads(r["config"]) if r["config"] else {}} for r in runs]}
