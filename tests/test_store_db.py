"""The meta-database: schema and migrations, foreign files, concurrent writers, a killed writer, artefact
integrity, queries and the ``metalearn-kit db`` command."""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from metalearn_kit.cli import main as cli_main
from metalearn_kit.store import ArtefactIntegrityError, MetaDatabase, MetaDatabaseError, schema
from metalearn_kit.tasks.task import Task

REPO = Path(__file__).resolve().parents[1]


def _task(seed: int, family: str = "denoise", sigma: float = 0.1) -> Task:
    g = torch.Generator().manual_seed(seed)
    clean = 0.2 + 0.6 * torch.rand(6, 1, 8, 8, generator=g)
    degraded = (clean + sigma * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    return Task((degraded[:3], clean[:3]), (degraded[3:], clean[3:]), {"family": family, "sigma": sigma})


class Tiny(nn.Module):
    def __init__(self, width: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3, padding=1)
        self.out = nn.Conv2d(width, 1, 3, padding=1)

    def forward(self, x):
        return x + self.out(torch.relu(self.conv(x)))


@pytest.fixture
def db(tmp_path):
    with MetaDatabase(tmp_path / "meta.sqlite") as database:
        yield database


def _filled(db: MetaDatabase) -> dict:
    """Two runs on two families, results at steps 0..2."""
    runs = {"maml": db.add_run("maml", "tiny", config={"inner_steps": 2}, seed=0),
            "scratch": db.add_run("scratch", "tiny", config={}, seed=1)}
    tasks = [db.add_task(_task(i, "denoise" if i < 3 else "deblur")) for i in range(5)]
    rows = []
    for name, run in runs.items():
        base = 25.0 if name == "maml" else 20.0
        for t in tasks:
            rows += [(run, t, "psnr", step, base + step) for step in range(3)]
            rows += [(run, t, "query_loss", step, 1.0 / (base + step)) for step in range(3)]
    db.record_results(rows)
    return {"runs": runs, "tasks": tasks}


# ------------------------------------------------------------------ schema, files, versions


def test_new_file_is_marked_and_at_latest_version(tmp_path):
    path = tmp_path / "sub" / "meta.sqlite"
    with MetaDatabase(path) as db:
        assert db.schema_version == schema.SCHEMA_VERSION
        assert db.migrated_from == 1  # a fresh file is built as v1 and migrated: the path is always exercised
        assert db.integrity_check() == "ok"
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA application_id").fetchone()[0] == schema.APPLICATION_ID
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT value FROM meta WHERE key = 'application'").fetchone()[0] == "metalearn-kit"
    con.close()
    with MetaDatabase(path) as again:  # reopening migrates nothing
        assert again.migrated_from is None


def test_default_path_follows_env(tmp_path, monkeypatch):
    target = tmp_path / "env.sqlite"
    monkeypatch.setenv("METALEARN_KIT_DB", str(target))
    with MetaDatabase() as db:
        assert db.path == target.resolve()
    assert target.exists()


def test_v1_file_is_migrated(tmp_path):
    # a version-1 file written by hand, as the first release laid it out
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.executescript(textwrap.dedent(f"""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE tasks (id INTEGER PRIMARY KEY, family TEXT, params TEXT NOT NULL DEFAULT '{{}}',
            fingerprint TEXT NOT NULL UNIQUE, descriptor TEXT, created REAL NOT NULL);
        CREATE TABLE runs (id INTEGER PRIMARY KEY, algorithm TEXT NOT NULL, backbone TEXT NOT NULL,
            config TEXT NOT NULL DEFAULT '{{}}', kit_version TEXT NOT NULL, seed INTEGER,
            machine TEXT NOT NULL DEFAULT '{{}}', created REAL NOT NULL);
        CREATE TABLE results (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id),
            task_id INTEGER NOT NULL REFERENCES tasks(id), metric TEXT NOT NULL, step INTEGER NOT NULL,
            value REAL NOT NULL);
        CREATE TABLE artefacts (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id),
            task_id INTEGER REFERENCES tasks(id), path TEXT NOT NULL UNIQUE, sha256 TEXT NOT NULL,
            meta TEXT NOT NULL DEFAULT '{{}}', created REAL NOT NULL);
        INSERT INTO meta VALUES ('application', 'metalearn-kit');
        INSERT INTO tasks VALUES (1, 'denoise', '{{"sigma": 0.1}}', 'abc', '[0.1, 0.2]', 1.0);
        INSERT INTO runs VALUES (1, 'maml', 'tiny', '{{}}', '0.0.1', 3, '{{}}', 1.0);
        INSERT INTO results VALUES (1, 1, 1, 'psnr', 0, 20.0);
        INSERT INTO results VALUES (2, 1, 1, 'psnr', 5, 26.5);
        PRAGMA application_id = {schema.APPLICATION_ID};
        PRAGMA user_version = 1;
    """))
    con.commit()
    con.close()

    with MetaDatabase(path) as db:
        assert db.migrated_from == 1
        assert db.schema_version == schema.SCHEMA_VERSION
        assert db.counts() == {"tasks": 1, "runs": 1, "results": 2, "artefacts": 0}
        run = db.run(1)
        assert run["status"] == "running" and run["seed"] == 3 and run["kit_version"] == "0.0.1"
        assert db.task(1)["descriptor_version"] == 1
        assert db.best_runs(metric="psnr") == [
            {"run_id": 1, "algorithm": "maml", "backbone": "tiny", "seed": 3, "step": 5, "mean": 26.5,
             "std": 0.0, "n_tasks": 1, "n_results": 1}]
        # the new columns work on the migrated file
        db.record_result(1, 1, "psnr", 6, 27.0, iteration=4)
        db.finish_run(1, {"psnr": 27.0})
        assert db.run(1)["status"] == "finished"
        indexes = {r[0] for r in db._read("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"results_run_metric", "results_task_metric"} <= indexes


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "new.sqlite"
    MetaDatabase(path).close()
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    with pytest.raises(MetaDatabaseError, match=r"newer than this metalearn-kit understands.*upgrade"):
        MetaDatabase(path)


def test_foreign_sqlite_and_non_sqlite_files_are_refused(tmp_path):
    foreign = tmp_path / "other.sqlite"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE users (name TEXT)")
    con.commit()
    con.close()
    before = foreign.read_bytes()
    with pytest.raises(MetaDatabaseError, match=r"another application.*users"):
        MetaDatabase(foreign)
    assert foreign.read_bytes() == before  # refused without being touched (no WAL switch, no tables)

    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a database\n" * 10)
    with pytest.raises(MetaDatabaseError, match="not a SQLite database"):
        MetaDatabase(text)
    with pytest.raises(MetaDatabaseError, match="is a folder"):
        MetaDatabase(tmp_path)
    with pytest.raises(FileNotFoundError, match="no meta-database"):
        MetaDatabase(tmp_path / "missing.sqlite", create=False)

    empty = tmp_path / "empty.sqlite"
    empty.touch()  # an empty file is a valid, empty SQLite database: ours to initialise
    with MetaDatabase(empty) as db:
        assert db.schema_version == schema.SCHEMA_VERSION


# ------------------------------------------------------------------ writing and queries


def test_add_task_fingerprints_and_deduplicates(db):
    first = db.add_task(_task(0))
    assert db.add_task(_task(0)) == first  # same data, same task
    assert db.add_task(_task(1)) != first
    info_only = db.add_task({"family": "denoise", "sigma": 0.3, "kernel": torch.ones(2, 2)})
    assert db.add_task({"family": "denoise", "sigma": 0.3, "kernel": torch.ones(2, 2)}) == info_only
    row = db.task(first)
    assert row["family"] == "denoise" and row["params"] == {"sigma": 0.1}
    assert len(row["fingerprint"]) == 64 and row["descriptor"] is not None  # restoration: described
    info_row = db.task(info_only)
    assert info_row["fingerprint"].startswith("info-sha256:") and info_row["descriptor"] is None
    assert info_row["params"]["kernel"] == [[1.0, 1.0], [1.0, 1.0]]
    with pytest.raises(TypeError, match="task_or_info must be a Task"):
        db.add_task([1, 2])
    with pytest.raises(ValueError, match="finite"):
        db.add_task({"family": "x"}, descriptor=[float("nan")])


def test_queries(db):
    ids = _filled(db)
    maml, scratch = ids["runs"]["maml"], ids["runs"]["scratch"]
    best = db.best_runs(metric="psnr")
    assert [b["run_id"] for b in best] == [maml, scratch]
    assert best[0]["step"] == 2 and best[0]["mean"] == pytest.approx(27.0) and best[0]["n_tasks"] == 5
    lowest_loss = db.best_runs(metric="query_loss", higher_is_better=False)
    assert lowest_loss[0]["run_id"] == maml
    at_step0 = db.best_runs(family="deblur", metric="psnr", step=0)
    assert at_step0[0]["mean"] == pytest.approx(25.0) and at_step0[0]["n_tasks"] == 2
    assert db.best_runs(family="no-such-family") == []

    curve = db.learning_curve(ids["tasks"][0], metric="psnr")
    assert curve == {maml: [(0, 25.0), (1, 26.0), (2, 27.0)], scratch: [(0, 20.0), (1, 21.0), (2, 22.0)]}
    assert list(db.learning_curve(ids["tasks"][0], run_id=scratch)) == [scratch]

    record = db.run_record(maml)
    assert record["algorithm"] == "maml" and record["config"] == {"inner_steps": 2}
    assert record["machine"]["torch"] == torch.__version__
    assert len(record["tasks"]) == 5 and record["n_results"] == 30
    assert record["results"]["psnr"][2]["mean"] == pytest.approx(27.0)
    with pytest.raises(ValueError, match="no run with id 99"):
        db.run_record(99)


def test_record_results_is_all_or_nothing(db):
    run = db.add_run("maml", "tiny")
    task = db.add_task(_task(0))
    with pytest.raises(ValueError, match="not in the database"):
        db.record_results([(run, task, "psnr", 0, 1.0), (run, 999, "psnr", 0, 2.0)])
    assert db.counts()["results"] == 0
    with pytest.raises(TypeError, match=r"rows\[0\] step must be an int >= 0"):
        db.record_result(run, task, "psnr", -1, 1.0)
    with pytest.raises(ValueError, match="NaN"):
        db.record_result(run, task, "psnr", 0, float("nan"))
    assert db.record_results([{"run_id": run, "task_id": task, "metric": "psnr", "step": 1,
                               "value": torch.tensor(3.5)}]) == 1


def test_export_csv(db, tmp_path):
    _filled(db)
    out = tmp_path / "results.csv"
    assert db.export_csv(out) == 60
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 60 and tuple(rows[0]) == MetaDatabase.EXPORT_COLUMNS
    assert rows[0]["algorithm"] == "maml" and json.loads(rows[0]["params"])["sigma"] == 0.1


# ------------------------------------------------------------------ artefacts


def test_artefact_round_trip_and_tamper_refusal(db):
    run = db.add_run("maml", "tiny")
    task = db.add_task(_task(0))
    model = Tiny()
    path = db.add_artefact(run, task, model, {"note": "after 5 steps", "loss": torch.tensor(0.5)})
    assert path.exists() and path.parent.parent == db.artefact_dir
    [entry] = db.artefacts(run_id=run)
    assert entry["sha256"] and entry["meta"]["note"] == "after 5 steps"

    restored, meta = db.load_artefact(entry["id"], model=Tiny())
    assert all(torch.equal(a, b) for a, b in zip(restored.state_dict().values(), model.state_dict().values()))
    assert meta["artefact_id"] == entry["id"] and meta["loss"] == 0.5
    state, _ = db.load_artefact(path)  # by the returned path too
    assert set(state) == set(model.state_dict())

    # replace the weights with another valid checkpoint: same format, different content
    from metalearn_kit.checkpoints import save

    save(path, Tiny(), {})
    with pytest.raises(ArtefactIntegrityError, match=r"changed since it was recorded"):
        db.load_artefact(entry["id"])
    path.unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        db.load_artefact(entry["id"])
    run_level = db.add_artefact(run, None, Tiny().state_dict())
    assert "run-level" in run_level.name
    with pytest.raises(ValueError, match="no task with id 42"):
        db.add_artefact(run, 42, Tiny())


# ------------------------------------------------------------------ concurrency and crashes


def _writer(path: str, worker: int, count: int, barrier) -> None:
    with MetaDatabase(path) as db:
        run = db.add_run(f"writer{worker}", "none", machine={}, seed=worker)
        task = db.add_task({"family": "stress", "worker": worker})
        barrier.wait()  # both processes write at the same time
        for i in range(count):
            db.record_result(run, task, "value", i, float(worker * 100000 + i))


def test_two_processes_write_concurrently(tmp_path):
    path = str(tmp_path / "meta.sqlite")  # not created yet: both processes race to create the schema too
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(path, w, 1000, barrier)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    with MetaDatabase(path) as db:
        assert db.counts()["results"] == 2000
        values = {r[0] for r in db._read("SELECT value FROM results")}
        assert values == {float(w * 100000 + i) for w in (1, 2) for i in range(1000)}
        assert db.integrity_check() == "ok"


def test_threads_share_one_database_object(db):
    run = db.add_run("threads", "none")
    task = db.add_task({"family": "stress"})

    def write(offset: int) -> None:
        for i in range(50):
            db.record_result(run, task, "value", i, float(offset + i))

    threads = [threading.Thread(target=write, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert db.counts()["results"] == 200
    # a pickled database (as handed to a worker process) reopens the same file with its own connection
    copy = pickle.loads(pickle.dumps(db))
    copy.record_result(run, task, "value", 0, -1.0)
    assert db.counts()["results"] == 201 and copy.path == db.path
    copy.close()


def test_many_openers_race_to_create_one_file(tmp_path):
    path = tmp_path / "fresh.sqlite"
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def open_and_write(worker: int) -> None:
        try:
            barrier.wait()
            with MetaDatabase(path) as db:
                db.add_run(f"opener{worker}", "none", machine={})
        except BaseException as err:  # reported below; a thread's exception would otherwise be lost
            errors.append(err)

    threads = [threading.Thread(target=open_and_write, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with MetaDatabase(path) as db:
        assert db.counts()["runs"] == 6 and db.schema_version == schema.SCHEMA_VERSION


KILLED_WRITER = """
import sys, time
from metalearn_kit.store import MetaDatabase
db = MetaDatabase(sys.argv[1])
run = db.add_run("killed", "none", machine={})
task = db.add_task({"family": "stress"})
hold_at = int(sys.argv[2])
done = 0
while True:
    if done == hold_at:
        # open a write transaction, insert rows, and stay inside it until killed
        with db._write() as con:
            for i in range(1000):
                con.execute("INSERT INTO results (run_id, task_id, metric, step, value) VALUES (?, ?, 'value', ?, 0)",
                            (run, task, 10**6 + i))
                if i == 10:
                    print("inside", flush=True)
                time.sleep(0.01)
    db.record_results([(run, task, "value", done + i, float(done + i)) for i in range(25)])
    done += 25
    print(done, flush=True)   # acknowledged only after COMMIT returned
"""


def _run_until_killed(path: Path, hold_at: int, kill_after: int | None) -> tuple[int, bool]:
    """Start the writer; SIGKILL it once ``kill_after`` rows are acknowledged (a random point in its loop)
    or, with ``kill_after=None``, once it reports being inside its open transaction. Returns the last
    acknowledged count and whether it was killed inside the transaction."""
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path), str(hold_at)], stdout=subprocess.PIPE,
                            text=True, cwd=REPO)
    acknowledged, inside = 0, False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline().strip()
            if not line:
                break
            if line == "inside":
                inside = True
                break
            acknowledged = int(line)
            if kill_after is not None and acknowledged >= kill_after:
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    for line in proc.stdout.read().split():  # acknowledgements still in the pipe
        if line != "inside":
            acknowledged = int(line)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return acknowledged, inside


def test_writer_killed_inside_a_transaction_loses_only_that_transaction(tmp_path):
    path = tmp_path / "meta.sqlite"
    acknowledged, inside = _run_until_killed(path, hold_at=300, kill_after=None)
    assert inside and acknowledged == 300
    with MetaDatabase(path, timeout=5) as db:
        assert db.integrity_check() == "ok"
        assert db.counts()["results"] == 300  # every committed row, none of the open transaction's
        assert db.run(1)["status"] == "running"  # never finished, and says so
        db.record_result(1, 1, "value", 0, 1.0)  # the dead writer's lock is gone
        assert db.counts()["results"] == 301


def test_writer_killed_at_a_random_point_keeps_committed_rows(tmp_path):
    path = tmp_path / "meta.sqlite"
    acknowledged, _ = _run_until_killed(path, hold_at=-1, kill_after=500)
    assert acknowledged >= 500
    with MetaDatabase(path, timeout=5) as db:
        assert db.integrity_check() == "ok"
        rows = db.counts()["results"]
        # every acknowledged row is there (one more batch may have committed before its acknowledgement),
        # and batches are whole: a transaction is all or nothing
        assert acknowledged <= rows <= acknowledged + 25 and rows % 25 == 0


# ------------------------------------------------------------------ the db command


def test_cli_list_show_best_export(tmp_path, capsys):
    path = tmp_path / "meta.sqlite"
    with MetaDatabase(path) as db:
        ids = _filled(db)
        db.add_artefact(ids["runs"]["maml"], ids["tasks"][0], Tiny())
    base = ["db", "--path", str(path)]

    assert cli_main([*base, "list"]) == 0
    out = capsys.readouterr().out
    assert "maml" in out and "scratch" in out and "n_results" in out

    assert cli_main([*base, "show", str(ids["runs"]["maml"])]) == 0
    out = capsys.readouterr().out
    assert "run 1: maml on tiny" in out and "psnr by adaptation step" in out and "artefact 1" in out

    assert cli_main([*base, "best", "--family", "deblur", "--metric", "psnr"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:2] == ["run_id", "algorithm"] and lines[1].split()[1] == "maml"

    assert cli_main([*base, "best", "--metric", "query_loss", "--lower-is-better", "--json"]) == 0
    best = json.loads(capsys.readouterr().out)
    assert best[0]["algorithm"] == "maml" and len(best) == 2

    csv_path = tmp_path / "out.csv"
    assert cli_main([*base, "export", str(csv_path)]) == 0
    assert "wrote 60 results" in capsys.readouterr().out
    assert len(csv_path.read_text().splitlines()) == 61

    assert cli_main([*base, "show", "99"]) == 2
    assert "no run with id 99" in capsys.readouterr().err
    assert cli_main([*base, "show", "abc"]) == 2
    assert "RUN must be an integer" in capsys.readouterr().err
    assert cli_main(["db", "--path", str(tmp_path / "none.sqlite"), "list"]) == 2
    assert "no meta-database" in capsys.readouterr().err
    assert not (tmp_path / "none.sqlite").exists()  # looking does not create a file
