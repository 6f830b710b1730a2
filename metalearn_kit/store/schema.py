"""The meta-database's versioned SQLite schema and its migrations.

The file carries two marks so the kit knows a file is its own before touching it:

- ``PRAGMA application_id`` = :data:`APPLICATION_ID` (a 32-bit int in the SQLite header);
- a ``meta`` table with ``application = 'metalearn-kit'``.

``PRAGMA user_version`` holds the schema version. A fresh file is built by running the version-1
statements and then every migration in order, so the migration path is exercised on every new file,
not only on old ones. Each migration runs inside the opener's write transaction, so a process killed
half-way through leaves the file at its previous version (SQLite DDL is transactional).

Tables (version 2):

- ``tasks``: ``id, family, params`` (JSON), ``fingerprint`` (sha256 of the support/query tensors, or
  ``info-sha256:...`` when only the info dict was given), ``descriptor`` (JSON list of floats),
  ``descriptor_version``, ``created``.
- ``runs``: ``id, algorithm, backbone, config`` (JSON), ``kit_version, seed, machine`` (JSON),
  ``created, status, finished, final_metrics, history`` (JSON).
- ``results`` (the meta-labels): ``id, run_id, task_id, metric, step`` (adaptation step), ``value``,
  ``iteration`` (meta-training iteration, or NULL).
- ``artefacts``: ``id, run_id, task_id`` (NULL for a run-level model), ``path`` (relative to the artefact
  folder), ``sha256`` (of the ``.safetensors`` file), ``meta`` (JSON), ``created``.
"""

from __future__ import annotations

import sqlite3

__all__ = ["APPLICATION_ID", "APPLICATION_NAME", "MIGRATIONS", "SCHEMA_V1", "SCHEMA_VERSION", "create_v1", "migrate"]

APPLICATION_NAME = "metalearn-kit"
# "MLKD" in ASCII: metalearn-kit database. Written to the SQLite header by PRAGMA application_id.
APPLICATION_ID = 0x4D4C4B44
SCHEMA_VERSION = 2

SCHEMA_V1 = [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE tasks (
        id INTEGER PRIMARY KEY,
        family TEXT,
        params TEXT NOT NULL DEFAULT '{}',
        fingerprint TEXT NOT NULL UNIQUE,
        descriptor TEXT,
        created REAL NOT NULL)""",
    """CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        algorithm TEXT NOT NULL,
        backbone TEXT NOT NULL,
        config TEXT NOT NULL DEFAULT '{}',
        kit_version TEXT NOT NULL,
        seed INTEGER,
        machine TEXT NOT NULL DEFAULT '{}',
        created REAL NOT NULL)""",
    """CREATE TABLE results (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        task_id INTEGER NOT NULL REFERENCES tasks(id),
        metric TEXT NOT NULL,
        step INTEGER NOT NULL,
        value REAL NOT NULL)""",
    """CREATE TABLE artefacts (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        task_id INTEGER REFERENCES tasks(id),
        path TEXT NOT NULL UNIQUE,
        sha256 TEXT NOT NULL,
        meta TEXT NOT NULL DEFAULT '{}',
        created REAL NOT NULL)""",
]

# MIGRATIONS[v] takes a file from version v - 1 to version v.
MIGRATIONS: dict[int, list[str]] = {
    2: [
        # run life cycle: a run killed mid-training stays 'running', so it can be told apart
        "ALTER TABLE runs ADD COLUMN status TEXT NOT NULL DEFAULT 'running'",
        "ALTER TABLE runs ADD COLUMN finished REAL",
        "ALTER TABLE runs ADD COLUMN final_metrics TEXT",
        # the meta-training loop's per-iteration history (JSON dict of lists), as meta_train returns it
        "ALTER TABLE runs ADD COLUMN history TEXT",
        # descriptors are only comparable within one layout version
        "ALTER TABLE tasks ADD COLUMN descriptor_version INTEGER",
        # version-1 files could only hold the version-1 descriptor layout
        "UPDATE tasks SET descriptor_version = 1 WHERE descriptor IS NOT NULL",
        "ALTER TABLE results ADD COLUMN iteration INTEGER",
        "CREATE INDEX results_run_metric ON results(run_id, metric, step)",
        "CREATE INDEX results_task_metric ON results(task_id, metric, step)",
        "CREATE INDEX artefacts_task ON artefacts(task_id)",
        "CREATE INDEX tasks_family ON tasks(family)",
    ],
}

assert max(MIGRATIONS) == SCHEMA_VERSION


def create_v1(con: sqlite3.Connection, created_by: str) -> None:
    """Write the version-1 tables and marks into an empty file (inside the caller's transaction)."""
    for statement in SCHEMA_V1:
        con.execute(statement)
    con.execute("INSERT INTO meta (key, value) VALUES ('application', ?)", (APPLICATION_NAME,))
    con.execute("INSERT INTO meta (key, value) VALUES ('created_by', ?)", (created_by,))
    con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    con.execute("PRAGMA user_version = 1")


def migrate(con: sqlite3.Connection, from_version: int) -> list[int]:
    """Apply every migration after ``from_version`` (inside the caller's transaction); return the versions
    applied."""
    applied = []
    for version in range(from_version + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[version]:
            con.execute(statement)
        con.execute(f"PRAGMA user_version = {version}")
        applied.append(version)
    return applied
