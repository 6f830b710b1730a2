"""The meta-database's SQLite connection: one file in WAL mode with a busy timeout, one connection per thread
(and per process after a fork), every write one short ``BEGIN IMMEDIATE ... COMMIT`` transaction, retried while
the file is locked; schema migration on open. :class:`~metalearn_kit.store.db.MetaDatabase` adds the tables'
reads and writes on top."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from . import schema
from .records import DEFAULT_FILENAME, SQLITE_MAGIC, MetaDatabaseError, default_path

__all__ = ["Connection"]


def _reopen(cls: type, path: str, timeout: float) -> Connection:
    return cls(path, create=False, timeout=timeout)


class Connection:
    """The SQLite file ``path`` (default :func:`default_path`), opened and migrated; ``create=False`` refuses a
    missing file, ``timeout`` (seconds) is how long a write waits for another writer."""

    def __init__(self, path: str | os.PathLike | None = None, *, create: bool = True, timeout: float = 30.0):
        if path is None:
            path = default_path()
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a file path (str or Path) or None, got {type(path).__name__}")
        path = Path(path).expanduser()
        if str(path) == ":memory:":
            raise ValueError("path ':memory:' is not supported: the meta-database is shared between threads "
                             "and processes; give a file path (e.g. a tmp_path / 'meta.sqlite')")
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.path = path.resolve()
        self.timeout = float(timeout)
        self._local = threading.local()
        self._connections: list[tuple[int, sqlite3.Connection]] = []  # (pid that opened it, connection)
        self._lock = threading.Lock()
        self._closed = False
        if self.path.is_dir():
            raise MetaDatabaseError(f"path {str(self.path)!r} is a folder; give a file path such as "
                                    f"{str(self.path / DEFAULT_FILENAME)!r}")
        if not self.path.exists():
            if not create:
                raise FileNotFoundError(f"no meta-database at {str(self.path)!r}; record a run first "
                                        f"(StoreRecorder or MetaDatabase(path).add_run) or pass the right --path")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._check_header()
        self._open_and_migrate()

    # -------------------------------------------------------------- opening

    def _check_header(self) -> None:
        """Refuse a file that is not SQLite at all before sqlite3 sees it."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
        if head != SQLITE_MAGIC:
            raise MetaDatabaseError(f"{str(self.path)!r} is not a SQLite database (it starts with {head[:16]!r}); "
                                    f"it is not a metalearn-kit meta-database. Give another --path or move "
                                    f"the file away")

    def _connect(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: no implicit transactions; each write opens BEGIN IMMEDIATE itself
            con = sqlite3.connect(str(self.path), timeout=self.timeout, isolation_level=None,
                                  check_same_thread=False)
        except sqlite3.Error as err:
            raise MetaDatabaseError(f"cannot open meta-database {str(self.path)!r}: {err}") from err
        con.row_factory = sqlite3.Row
        con.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        return con

    def _open_and_migrate(self) -> None:
        con = self._connect()
        try:
            self._check_foreign(con)
            self._retry_locked(lambda: con.execute("PRAGMA journal_mode = WAL").fetchone())
            con.execute("PRAGMA synchronous = NORMAL")
            con.execute("PRAGMA foreign_keys = ON")
            self._begin(con)
            try:
                # read the version again inside the write lock: another process may have created or
                # migrated the file between our first look and now
                self._check_foreign(con)
                version = con.execute("PRAGMA user_version").fetchone()[0]
                if version == 0:
                    from .. import __version__

                    schema.create_v1(con, f"metalearn-kit {__version__}")
                    version = 1
                self.migrated_from = version if version < schema.SCHEMA_VERSION else None
                schema.migrate(con, version)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as err:
            con.close()
            raise MetaDatabaseError(f"{str(self.path)!r} cannot be used as a meta-database: {err}") from err
        except BaseException:
            con.close()
            raise
        self._remember(con)

    def _check_foreign(self, con: sqlite3.Connection) -> None:
        own_transaction = not con.in_transaction
        if own_transaction:
            # one snapshot for the reads below: another opener may be creating the file right now, and
            # reading its header before and its tables after that commit would make it look foreign
            self._retry_locked(lambda: con.execute("BEGIN"))
        try:
            app_id = con.execute("PRAGMA application_id").fetchone()[0]
            version = con.execute("PRAGMA user_version").fetchone()[0]
            tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        finally:
            if own_transaction:
                con.execute("COMMIT")
        if app_id != schema.APPLICATION_ID:
            if app_id == 0 and not tables:
                return  # an empty SQLite file: ours to initialise
            raise MetaDatabaseError(
                f"{str(self.path)!r} is a SQLite database of another application (application_id {app_id:#x}, "
                f"tables {tables[:8]}), not a metalearn-kit meta-database; give another path")
        row = con.execute("SELECT value FROM meta WHERE key = 'application'").fetchone() if "meta" in tables else None
        if row is None or row[0] != schema.APPLICATION_NAME:
            raise MetaDatabaseError(f"{str(self.path)!r} carries the metalearn-kit application id but no "
                                    f"'application' entry in its meta table; the file is damaged or foreign")
        if version > schema.SCHEMA_VERSION:
            raise MetaDatabaseError(
                f"{str(self.path)!r} has meta-database schema version {version}, newer than this "
                f"metalearn-kit understands ({schema.SCHEMA_VERSION}); upgrade metalearn-kit "
                f"(pip install -U metalearn-kit) to open it")

    def _retry_locked(self, action):
        deadline = time.monotonic() + self.timeout
        delay = 0.005
        while True:
            try:
                return action()
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) and "busy" not in str(err):
                    raise
                if time.monotonic() > deadline:
                    raise MetaDatabaseError(f"meta-database {str(self.path)!r} stayed locked for more than "
                                            f"{self.timeout:g} s: {err}") from err
                time.sleep(delay)
                delay = min(delay * 2, 0.1)

    def _begin(self, con: sqlite3.Connection) -> None:
        # IMMEDIATE takes the write lock at once, so two writers never deadlock upgrading read locks
        self._retry_locked(lambda: con.execute("BEGIN IMMEDIATE"))

    def _remember(self, con: sqlite3.Connection) -> None:
        self._local.con = con
        self._local.pid = os.getpid()
        with self._lock:
            self._connections.append((os.getpid(), con))

    def _con(self) -> sqlite3.Connection:
        if self._closed:
            raise ValueError(f"meta-database {str(self.path)!r} is closed; open a new MetaDatabase")
        con = getattr(self._local, "con", None)
        if con is None or getattr(self._local, "pid", None) != os.getpid():
            # a new thread, or a forked child (a connection must never cross a fork)
            con = self._connect()
            con.execute("PRAGMA synchronous = NORMAL")
            con.execute("PRAGMA foreign_keys = ON")
            self._remember(con)
        return con

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        con = self._con()
        self._begin(con)
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        self._retry_locked(lambda: con.execute("COMMIT"))

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return self._con().execute(sql, params).fetchall()

    def close(self) -> None:
        """Close every connection this object opened in this process (a forked child leaves its parent's
        connections alone: SQLite connections must not cross a fork)."""
        pid = os.getpid()
        with self._lock:
            mine = [con for owner, con in self._connections if owner == pid]
            self._connections = []
        for con in mine:
            with contextlib.suppress(sqlite3.Error):
                con.close()
        self._closed = True

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def __reduce__(self):
        # pickling (e.g. passing the database to a worker process) sends the path; the worker opens its own
        # connections, since SQLite connections cannot travel between processes
        return (_reopen, (type(self), str(self.path), self.timeout))

    @property
    def schema_version(self) -> int:
        return self._read("PRAGMA user_version")[0][0]

    @property
    def artefact_dir(self) -> Path:
        """Folder beside the database file that holds the stored models."""
        return self.path.with_name(self.path.name + ".artefacts")

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check``: ``'ok'`` for a sound file."""
        return self._read("PRAGMA integrity_check")[0][0]

    def counts(self) -> dict[str, int]:
        """Number of rows in each table."""
        return {t: self._read(f"SELECT COUNT(*) FROM {t}")[0][0] for t in ("tasks", "runs", "results", "artefacts")}

