"""The meta-database reads artefacts only inside its own artefact folder: a row whose path climbs out with
``..``, is absolute, or goes through a symlink leading outside is refused -- by id, by listing and by the
warm-start candidates -- even when the file outside has the recorded sha256 (a planted copy)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
import torch
from torch import nn

from metalearn_kit.store import MetaDatabase, MetaDatabaseError


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(3, 2)


def _plant(tmp_path: Path, escape: str) -> tuple[MetaDatabase, int, Path]:
    """A database with one artefact whose row is rewritten to point at a copy outside the artefact folder."""
    db = MetaDatabase(tmp_path / "db" / "meta.sqlite")
    run = db.add_run("maml", "tiny")
    inside = db.add_artefact(run, None, Tiny())
    [entry] = db.artefacts()
    outside = tmp_path / "elsewhere" / "w.safetensors"
    outside.parent.mkdir()
    outside.write_bytes(inside.read_bytes())  # same bytes, so the sha256 check alone would pass
    if escape == "dotdot":
        recorded = os.path.relpath(outside, db.artefact_dir)  # ../elsewhere/w.safetensors
        assert recorded.startswith("..")
    elif escape == "absolute":
        recorded = str(outside)
    else:  # a symlink inside the folder that points outside
        link = db.artefact_dir / "run1" / "link.safetensors"
        link.symlink_to(outside)
        recorded = "run1/link.safetensors"
    con = sqlite3.connect(db.path)
    con.execute("UPDATE artefacts SET path = ? WHERE id = ?", (recorded, entry["id"]))
    con.commit()
    con.close()
    return db, entry["id"], outside


@pytest.mark.parametrize("escape", ["dotdot", "absolute", "symlink"])
def test_artefact_paths_outside_the_folder_are_refused(tmp_path, escape):
    db, artefact_id, outside = _plant(tmp_path, escape)
    with db:
        with pytest.raises(MetaDatabaseError, match=r"refusing artefact 1: its recorded path .*(absolute|outside)"):
            db.load_artefact(artefact_id)
        with pytest.raises(MetaDatabaseError, match="refusing artefact 1"):
            db.artefacts()
        with pytest.raises(MetaDatabaseError, match="refusing artefact 1"):
            db.descriptor_candidates()
        with pytest.raises(ValueError, match="not under this database's artefact folder"):
            db.load_artefact(outside)


def test_paths_inside_the_folder_still_load(tmp_path):
    db = MetaDatabase(tmp_path / "meta.sqlite")
    with db:
        run = db.add_run("maml", "tiny")
        model = Tiny()
        path = db.add_artefact(run, None, model)
        # a symlink that stays inside the folder is fine
        (db.artefact_dir / "alias.safetensors").symlink_to(path)
        con = sqlite3.connect(db.path)
        con.execute("UPDATE artefacts SET path = 'alias.safetensors' WHERE id = 1")
        con.commit()
        con.close()
        state, _ = db.load_artefact(1)
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
        assert db.artefacts()[0]["path"] == path.resolve()
