"""The meta-label chooser: k-NN regression of each start's recorded PSNR from the new task's descriptor, its
labelled fallbacks, its refusals, and ``warm_start(..., by="meta_labels")`` end to end on tiny models."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metalearn_kit.meta_label_chooser import ChooserConfig, MetaLabelChooser, MetaLabelError
from metalearn_kit.meta_label_records import record_start
from metalearn_kit.store import DESCRIPTOR_NAMES, MetaDatabase
from metalearn_kit.tasks.task import Task
from metalearn_kit.warmstart import restoration_psnr, warm_start

D = len(DESCRIPTOR_NAMES)


pytestmark = pytest.mark.usefixtures("one_thread")


def _centre(family: str) -> torch.Tensor:
    """Family A: high noise entries; family B: a strong mean shift."""
    centre = torch.zeros(D, dtype=torch.float64)
    centre[0 if family == "A" else 4] = 1.0
    return centre


def _synthetic_db(path, tasks_per_family: int = 6, kit_version: str | None = None,
                  families: tuple[str, ...] = ("A", "B")) -> tuple[MetaDatabase, dict[str, int]]:
    """Start X reaches 30 dB on family A and 20 dB on B; start Y 25 dB on A and 28 dB on B (so Y is the single
    best default, 26.5 dB on average against 25); start C (3 channels) would be best everywhere."""
    db = MetaDatabase(path)
    runs = {name: db.add_run("start", "tiny", config={"start": name, "channels": channels, "lr": 1e-3,
                                                      "optimizer": "adam"}, kit_version=kit_version)
            for name, channels in (("X", 1), ("Y", 1), ("C", 3))}
    values = {"A": {"X": 30.0, "Y": 25.0, "C": 40.0}, "B": {"X": 20.0, "Y": 28.0, "C": 40.0}}
    g = torch.Generator().manual_seed(0)
    rows = []
    for family in families:
        for i in range(tasks_per_family):
            vector = _centre(family) + 0.01 * torch.randn(D, generator=g, dtype=torch.float64)
            task_id = db.add_task({"family": family, "index": i}, descriptor=vector)
            rows += [(runs[name], task_id, "psnr", 5, value + 0.1 * i) for name, value in values[family].items()]
    db.record_results(rows)
    return db, runs


def test_the_chooser_picks_each_familys_best_start(tmp_path):
    db, runs = _synthetic_db(tmp_path / "m.sqlite")
    chooser = MetaLabelChooser(db)
    near_a = chooser.choose(descriptor=_centre("A"), channels=1)
    near_b = chooser.choose(descriptor=_centre("B"), channels=1)
    assert near_a.start.name == "X" and near_b.start.name == "Y"
    assert near_a.fallback is None and near_b.fallback is None
    assert set(near_a.predicted) == {"X", "Y"}  # the 3-channel start is not applicable to a grey task
    # k=8 neighbours: the 6 tasks of A nearest (and weighted most), then 2 of B
    assert [n.family for n in near_a.neighbours] == ["A"] * 6 + ["B"] * 2
    assert 29.0 <= near_a.predicted["X"] <= 30.6 and 25.0 <= near_a.predicted["Y"] <= 26.0
    assert abs(sum(n.weight for n in near_a.neighbours) - 1.0) < 1e-9
    assert near_a.labelled_tasks == 12 and near_a.stored_labels == 36
    # a colour task may use the colour start
    assert chooser.choose(descriptor=_centre("A"), channels=3).start.name == "C"
    # restricting the neighbours to a recorded family: only its tasks are neighbours
    restricted = chooser.choose(descriptor=_centre("A"), channels=1, family="A")
    assert restricted.start.name == "X" and [n.family for n in restricted.neighbours] == ["A"] * 6
    assert 30.0 <= restricted.predicted["X"] <= 30.6


def test_cold_start_falls_back_to_the_single_best_default_and_says_so(tmp_path):
    db, _ = _synthetic_db(tmp_path / "m.sqlite", tasks_per_family=2)  # 4 labelled tasks < min_tasks=5
    with pytest.warns(RuntimeWarning, match="cold_start"):
        choice = MetaLabelChooser(db).choose(descriptor=_centre("A"), channels=1)
    assert choice.fallback == "cold_start" and choice.start.name == "Y"  # Y: 26.5 dB mean, X: 25
    assert "single best default 'Y'" in choice.reason and choice.predicted == {}
    empty = MetaDatabase(tmp_path / "empty.sqlite")
    with pytest.warns(RuntimeWarning, match="cold_start"):
        nothing = MetaLabelChooser(empty).choose(descriptor=_centre("A"))
    assert nothing.start is None and nothing.fallback == "cold_start" and nothing.labelled_tasks == 0


def test_a_task_far_from_every_stored_task_is_a_labelled_fallback(tmp_path):
    db, _ = _synthetic_db(tmp_path / "m.sqlite")
    far = torch.zeros(D, dtype=torch.float64)
    far[7] = 50.0  # nothing recorded looks like this
    with pytest.warns(RuntimeWarning, match="novel_task"):
        choice = MetaLabelChooser(db).choose(descriptor=far, channels=1)
    assert choice.fallback == "novel_task" and choice.start.name == "Y" and len(choice.neighbours) == 8
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # novelty=None: no fallback, no warning
        assert MetaLabelChooser(db, novelty=None).choose(descriptor=far, channels=1).fallback is None


def test_bad_inputs_raise_naming_the_argument(tmp_path):
    db, _ = _synthetic_db(tmp_path / "m.sqlite")
    chooser = MetaLabelChooser(db)
    with pytest.raises(ValueError, match=f"descriptor must have {D} entries"):
        chooser.choose(descriptor=torch.zeros(D - 1))
    with pytest.raises(ValueError, match="family 'C_unknown' has no meta-labels"):
        chooser.choose(descriptor=_centre("A"), family="C_unknown")
    with pytest.raises(TypeError, match="exactly one of task"):
        chooser.choose()
    with pytest.raises(ValueError, match="k must be"):
        ChooserConfig(k=0)
    with pytest.raises(ValueError, match="kit_versions"):
        MetaLabelChooser(db, kit_versions="newest")
    with pytest.raises(TypeError, match="db must be a MetaDatabase"):
        MetaLabelChooser("m.sqlite")


def test_labels_of_another_kit_version_or_descriptor_layout_are_refused(tmp_path):
    old, _ = _synthetic_db(tmp_path / "old.sqlite", kit_version="0.0.1")
    with pytest.raises(MetaLabelError, match="recorded by metalearn-kit \\['0.0.1'\\] only.*kit_versions='any'"):
        MetaLabelChooser(old).choose(descriptor=_centre("A"), channels=1)
    assert MetaLabelChooser(old, kit_versions="any").choose(descriptor=_centre("A"), channels=1).start.name == "X"
    other = MetaDatabase(tmp_path / "other.sqlite")
    run = other.add_run("start", "tiny", config={"start": "X"})
    task = other.add_task({"family": "A"}, descriptor=[0.1, 0.2, 0.3])  # another layout: 3 entries
    other.record_result(run, task, "psnr", 5, 30.0)
    with pytest.raises(MetaLabelError, match=f"no labelled task has a descriptor of version 1 with {D} entries"):
        MetaLabelChooser(other).choose(descriptor=_centre("A"))


def test_the_label_table_is_cached_until_the_database_changes(tmp_path):
    db, runs = _synthetic_db(tmp_path / "m.sqlite")
    chooser = MetaLabelChooser(db)
    table = chooser.table()
    assert chooser.table() is table and table.labels.shape == (12, 3)
    task_id = db.tasks(family="A")[0]["id"]
    db.record_result(runs["Y"], task_id, "psnr", 5, 99.0)  # a new label: the table is read again
    assert chooser.table() is not table


# ---------------------------------------------------------------------------------------------- end to end

def _task(g: torch.Generator, gain: float, size: int = 12) -> Task:
    """A darkening task: degraded = gain * clean (plus a little noise)."""
    clean = 0.2 + 0.6 * F.interpolate(torch.rand(8, 1, 4, 4, generator=g), size=(size, size), mode="bilinear",
                                      align_corners=False)
    degraded = (gain * clean + 0.01 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    return Task((degraded[:4], clean[:4]), (degraded[4:], clean[4:]), {"family": "darken", "gain": gain})


def _model(scale: float) -> nn.Module:
    model = nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        model.weight.fill_(scale)
        model.bias.zero_()
    return model


def _loss(model, batch):
    return F.mse_loss(model(batch[0]), batch[1])


def test_warm_start_by_meta_labels_starts_from_the_best_recorded_start(tmp_path):
    g = torch.Generator().manual_seed(1)
    stored = [_task(g, 0.5) for _ in range(6)]
    db = MetaDatabase(tmp_path / "m.sqlite")
    good = record_start(db, "inverse@1e-2", _model(2.0), stored, _loss, restoration_psnr, steps=3, lr=1e-2)
    bad = record_start(db, "identity@1e-3", _model(1.0), stored, _loss, restoration_psnr, steps=3, lr=1e-3)
    assert db.run(good)["config"]["init"] == "stored" and db.run(bad)["config"]["channels"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback
        result = warm_start(db, _task(g, 0.5), lambda: _model(0.0), _loss, by="meta_labels", finetune_steps=2,
                            chooser=MetaLabelChooser(db, step=3))
    assert result.source.run_id == good and result.fallback is None
    assert result.meta_label_choice.start.config["lr"] == 1e-2 and result.models_evaluated == 0
    assert result.meta_label_choice.predicted["inverse@1e-2"] > result.meta_label_choice.predicted["identity@1e-3"]
    assert len(result.support_losses) == 2 and result.support_losses[0] < 1e-3  # started from the inverse


def test_warm_start_by_meta_labels_says_when_it_falls_back(tmp_path):
    g = torch.Generator().manual_seed(2)
    db = MetaDatabase(tmp_path / "m.sqlite")
    record_start(db, "identity@1e-3", _model(1.0), [_task(g, 0.5) for _ in range(2)], _loss, restoration_psnr,
                 steps=1, lr=1e-3)
    with pytest.warns(RuntimeWarning, match="cold_start"):
        result = warm_start(db, _task(g, 0.5), lambda: _model(0.0), _loss, by="meta_labels", finetune_steps=1,
                            chooser=MetaLabelChooser(db, step=1))
    assert result.fallback == "cold_start" and result.meta_label_choice.start.name == "identity@1e-3"
    with pytest.raises(ValueError, match="name must be a non-empty start name"):
        record_start(db, "", _model(1.0), [_task(g, 0.5)], _loss, restoration_psnr, steps=1, lr=1e-3)


# ---------------------------------------------------------------------------------------------- the benchmark's rows

def test_benchmark_rows_and_targets_from_known_curves():
    from metalearn_kit.warmstart_benchmark import CHOOSERS, bench_config, rows_of, targets_of

    # two tasks, two starts: start 0 reaches 30 dB @5 on task 0, start 1 reaches 32 dB @5 on task 1
    def curve(at5: float) -> dict:
        return {"psnr": [20.0] * 5 + [at5] * 16, "support_loss": 0.1}

    curves = [[curve(30.0), curve(25.0)], [curve(26.0), curve(32.0)]]
    picks = {name: [0, 1] for name in CHOOSERS}
    picks["best_default"] = [0, 0]
    timing = {"per_query": [1.0, 2.0, 3.0], "median": 2.0, "build_ms": 10.0, "stored_labels": 100}
    rows = rows_of(picks, curves, timing)
    psnr5 = {r["chooser"]: r for r in rows if r["metric"] == "psnr" and r["steps"] == 5}
    assert psnr5["meta_labels"]["per_task"] == [30.0, 32.0] and psnr5["meta_labels"]["value"] == 31.0
    assert psnr5["best_default"]["per_task"] == [30.0, 26.0] and abs(psnr5["best_default"]["stderr"] - 2.0) < 1e-12
    rates = {r["chooser"]: r["value"] for r in rows if r["metric"] == "oracle_pick_rate"}
    assert rates == {"meta_labels": 1.0, "best_default": 0.5, "descriptor": 1.0, "support_loss": 1.0, "oracle": 1.0}
    latency = next(r for r in rows if r["metric"] == "latency_ms")
    assert latency["value"] == 2.0 and latency["stored_labels"] == 100
    targets = targets_of(rows)
    assert targets[0]["value"] == 3.0 and targets[0]["interval"][0] < 0 and not targets[0]["holds"]  # 2 tasks: wide
    assert [t["holds"] for t in targets[1:]] == [True, True, True, True]
    assert bench_config("fast").test_per_family * 4 >= 64
    with pytest.raises(ValueError, match="profile must be"):
        bench_config("huge")


def test_latency_reads_a_synthetic_database_of_the_given_size():
    from metalearn_kit.warmstart_benchmark import latency

    timing = latency(labels=200, queries=3)
    assert timing["stored_labels"] == 200 and len(timing["per_query"]) == 3
    assert timing["median"] == sorted(timing["per_query"])[1]
