"""The warm-start benchmark behind ``metalearn-kit bench warmstart``: a mixed stream of restoration tasks from
several families, the meta-labels of every start recorded on training photographs, and five ways to choose a
start for held-out test tasks (Kodak24, held-out parameter bands), all fine-tuned with the same budget.

**Starts.** A start is a model with its inner optimizer (Adam) and learning rate (:data:`LRS`). The models are
the shipped checkpoints that take ``degraded -> clean`` patches directly: each operator family's Meta-SGD init
(its weights) and joint model, the generic denoiser's MAML init and joint model, and a scratch model per format.
A grey model can be fine-tuned on any grey task and a colour model on colour tasks, so a start applies to the
tasks of its channel count (the chooser reads ``channels`` from the start's config).

**Stream.** Families take turns (:data:`FAMILIES`): tone curve, stripe noise, colour cast and blind motion blur
(their recipe's task distributions) and white Gaussian noise (its registered ``gaussian_noise`` family), all 4 + 4
pairs of 64-pixel patches. Stored tasks: training photographs and training parameter bands, seed :data:`STORE_SEED`.
Test tasks: Kodak24 and the held-out bands, seed ``TEST_SEED``, read once.

**Choosers** (each picks one start per test task; its curve is the one recorded for that start, so every
chooser is scored on the same fine-tuning runs, paired):

- ``meta_labels``: :class:`~metalearn_kit.meta_label_chooser.MetaLabelChooser` (k-NN regression of PSNR@5);
- ``best_default``: the start with the best mean PSNR@5 over the stored tasks (among those that apply);
- ``descriptor``: the stored task nearest by :func:`~metalearn_kit.store.similarity.descriptor_distance` (what
  ``warm_start(by="descriptor")`` ranks by), and the start that did best on it;
- ``support_loss``: the model with the lowest loss on the new support set before fine-tuning (what
  ``warm_start(by="support_loss")`` ranks by), with that model's best learning rate over the stored tasks;
- ``oracle``: the start with the best *test query* PSNR@5 on each task (labelled: it knows the answer).
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .evaluation.paired import t_quantile
from .meta import finetune
from .meta_label_chooser import MetaLabelChooser
from .recipes.operator_recipe import photo_source, restoration_loss, task_distribution
from .store.db import MetaDatabase
from .store.similarity import descriptor_distance, task_descriptor
from .warmstart import restoration_psnr

__all__ = ["CHOOSERS", "FAMILIES", "LRS", "REPORT_STEPS", "STORE_SEED", "WarmStartBenchConfig", "bench_config",
           "build_store", "choose_all", "curves_of", "latency", "load_models", "rows_of", "starts_of", "stream",
           "targets_of", "test_tasks"]

FAMILIES = ("tone_curve", "stripe_noise", "gaussian_noise", "colour_cast", "directional_blur")
LRS = (1e-3, 1e-2)
REPORT_STEPS = (0, 1, 5, 20)
CHOOSERS = ("meta_labels", "best_default", "descriptor", "support_loss", "oracle")
STORE_SEED = 31_337  # the stored (training-photograph) tasks' seed; the test tasks use TEST_SEED
PATCH = 64
# model name -> (shipped checkpoint, or None for a scratch model of that format; channels)
MODELS: dict[str, tuple[str | None, int]] = {
    "tone_curve_meta": ("restoration_tone_curve_metasgd", 1), "tone_curve_joint": ("restoration_tone_curve_joint", 1),
    "stripe_noise_meta": ("restoration_stripe_noise_metasgd", 1),
    "stripe_noise_joint": ("restoration_stripe_noise_joint", 1),
    "directional_blur_meta": ("restoration_directional_blur_metasgd", 1),
    "directional_blur_joint": ("restoration_directional_blur_joint", 1),
    "denoise_maml": ("restoration_denoise_maml", 1), "denoise_joint": ("restoration_denoise_joint", 1),
    "scratch_grey": (None, 1),
    "colour_cast_meta": ("restoration_colour_cast_metasgd", 3),
    "colour_cast_joint": ("restoration_colour_cast_joint", 3), "scratch_colour": (None, 3),
}


@dataclass(frozen=True)
class WarmStartBenchConfig:
    """Sizes of one profile: stored tasks and test tasks per family, fine-tuning steps, worker processes."""

    store_per_family: int
    test_per_family: int
    steps: int = 20
    workers: int = 2
    latency_labels: int = 100_000
    latency_queries: int = 50

    def __post_init__(self) -> None:
        for name in ("store_per_family", "test_per_family", "steps", "workers", "latency_labels",
                     "latency_queries"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.steps < max(REPORT_STEPS):
            raise ValueError(f"steps must be >= {max(REPORT_STEPS)} (PSNR is reported after {REPORT_STEPS} steps)")


def bench_config(profile: str) -> WarmStartBenchConfig:
    """``fast``: 16 stored and 16 test tasks per family (64 test tasks); ``full``: 48 and 32."""
    if profile not in ("fast", "full"):
        raise ValueError(f"profile must be 'fast' or 'full', got {profile!r}")
    return WarmStartBenchConfig(16, 16) if profile == "fast" else WarmStartBenchConfig(48, 32)


def load_models(seed: int = 0) -> dict[str, nn.Module]:
    """The models of :data:`MODELS` (shipped weights; a Meta-SGD checkpoint gives its init), in eval mode."""
    from .models.operator_nets import FilterRestorer, PointwiseRestorer
    from .pretrained import load_pretrained

    models = {}
    for name, (checkpoint, channels) in MODELS.items():
        if checkpoint is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = FilterRestorer(1, 16, 3) if channels == 1 else PointwiseRestorer(3, 32, 2)
        else:
            model = load_pretrained(checkpoint)[0]
            model = model.model if hasattr(model, "model") and isinstance(model.model, nn.Module) else model
        models[name] = model.eval()
    return models


def starts_of(models: dict[str, nn.Module]) -> list[dict[str, Any]]:
    """Every start: ``{"start", "model", "lr", "optimizer", "channels"}`` (each model at each of :data:`LRS`)."""
    return [{"start": f"{name}@{lr:g}", "model": name, "lr": lr, "optimizer": "adam", "channels": MODELS[name][1]}
            for name in models for lr in LRS]


def _distribution(family: str, split: str):
    from .recipes.operator_families import operator_family
    from .tasks.restoration import RestorationTasks

    if family == "gaussian_noise":
        return RestorationTasks(photo_source(split, PATCH, 1), family, 4, 4, split=split)
    config = operator_family(family).config("fast")
    # the stored tasks use the test tasks' patch size, so their descriptors compare like with like
    return task_distribution(replace(config, train_patch=PATCH, test_patch=PATCH), split)


def stream(split: str, per_family: int, seed: int) -> list:
    """A mixed stream: families take turns, ``per_family`` tasks each, from one generator seeded ``seed``."""
    distributions = {family: _distribution(family, split) for family in FAMILIES}
    generator = torch.Generator().manual_seed(seed)
    return [distributions[family].sample(generator) for _ in range(per_family) for family in FAMILIES]


def test_tasks(per_family: int) -> list:
    """The test stream: Kodak24 photographs, held-out parameter bands, seed ``TEST_SEED`` (read once)."""
    from .data.photo_sets import TEST_SEED

    return stream("test", per_family, TEST_SEED)


# ------------------------------------------------------------------------------------------ fine-tuning curves

_WORKER_MODELS: dict[str, nn.Module] = {}


def _init_worker(models: dict[str, nn.Module]) -> None:
    torch.set_num_threads(1)  # tiny models: one thread per process, the processes share the cores
    _WORKER_MODELS.update(models)


def _task_curves(job: tuple[Any, list[dict[str, Any]], int]) -> list[dict[str, Any]]:
    """One task's fine-tuning curve (query PSNR after 0..steps steps) and first support loss for each start."""
    task, starts, steps = job
    out = []
    for start in starts:
        if start["channels"] != task.support[0].shape[1]:
            out.append(None)
            continue
        adapted = finetune(_WORKER_MODELS[start["model"]], task.support, restoration_loss, steps=steps,
                           lr=start["lr"], optimizer=start["optimizer"], query=task.query, metric=restoration_psnr)
        out.append({"psnr": [float(v) for v in adapted.query_metrics],
                    "support_loss": float(adapted.support_losses[0])})
    return out


def curves_of(tasks: list, models: dict[str, nn.Module], starts: list[dict[str, Any]], steps: int,
              workers: int = 2) -> list[list[dict[str, Any] | None]]:
    """``curves[task][start]``: ``{"psnr": [after 0..steps steps], "support_loss"}``, ``None`` where the start does
    not apply (other channels); computed in ``workers`` processes."""
    jobs = [(task, starts, steps) for task in tasks]
    if workers == 1:
        _init_worker(models)
        return [_task_curves(job) for job in jobs]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                             initargs=(models,)) as pool:
        return list(pool.map(_task_curves, jobs, chunksize=1))


def build_store(db: MetaDatabase, tasks: list, models: dict[str, nn.Module], starts: list[dict[str, Any]],
                curves: list[list[dict[str, Any] | None]]) -> dict[str, int]:
    """Record every start as a run (its config and run-level model) and its curves on ``tasks`` as meta-labels
    (``psnr`` after each step, ``support_loss`` before the first); returns ``{start name: run id}``."""
    runs = {}
    for start in starts:
        run = db.add_run("start", type(models[start["model"]]).__name__, config={**start, "init": "stored"}, seed=0)
        db.add_artefact(run, None, models[start["model"]], {"start": start["start"]})
        runs[start["start"]] = run
    for task, row in zip(tasks, curves):
        task_id = db.add_task(task)
        labels = []
        for start, curve in zip(starts, row):
            if curve is not None:
                run = runs[start["start"]]
                labels += [(run, task_id, "psnr", step, value) for step, value in enumerate(curve["psnr"])]
                labels.append((run, task_id, "support_loss", 0, curve["support_loss"]))
        db.record_results(labels)
    for run in runs.values():
        db.finish_run(run)
    return runs


# ------------------------------------------------------------------------------------------ the choosers

def _stored_labels(db: MetaDatabase, starts: list[dict[str, Any]], step: int) -> tuple[list, torch.Tensor]:
    """The stored tasks (with descriptors) and their labels ``[T, S]`` (NaN: start does not apply)."""
    from .store.labels import meta_label_rows

    rows = meta_label_rows(db, "psnr", step)
    runs = {r["id"]: r["config"]["start"] for r in rows["runs"]}
    column = {s["start"]: j for j, s in enumerate(starts)}
    line = {t["id"]: i for i, t in enumerate(rows["tasks"])}
    labels = torch.full((len(rows["tasks"]), len(starts)), math.nan, dtype=torch.float64)
    for r in rows["labels"]:
        labels[line[r["task_id"]], column[runs[r["run_id"]]]] = r["value"]
    return rows["tasks"], labels


def _column_best(labels: torch.Tensor, applicable: torch.Tensor) -> int:
    """The applicable column with the best mean over the rows that have it."""
    known = ~labels.isnan()
    means = labels.nan_to_num(0.0).sum(0) / known.sum(0).clamp_min(1)
    means = torch.where(applicable & known.any(0), means, -math.inf)
    return int(means.argmax())


def choose_all(db: MetaDatabase, tasks: list, starts: list[dict[str, Any]], curves: list, step: int = 5
               ) -> dict[str, Any]:
    """Each chooser's start (index into ``starts``) for each test task, plus what the meta-label chooser said."""
    stored, labels = _stored_labels(db, starts, step)
    chooser = MetaLabelChooser(db, step=step)
    picks: dict[str, list[int]] = {name: [] for name in CHOOSERS}
    fallbacks, neighbours_right = [], 0
    index = {s["start"]: j for j, s in enumerate(starts)}
    for task, row in zip(tasks, curves):
        applicable = torch.tensor([c is not None for c in row])
        choice = chooser.choose(task)
        picks["meta_labels"].append(index[choice.start.name])
        fallbacks.append(choice.fallback)
        neighbours_right += int(choice.neighbours[0].family == task.info["family"]) if choice.neighbours else 0
        picks["best_default"].append(_column_best(labels, applicable))
        descriptor = task_descriptor(task)
        usable = [i for i, t in enumerate(stored) if bool((~labels[i].isnan() & applicable).any())]
        nearest = min(usable, key=lambda i: descriptor_distance(descriptor, stored[i]["descriptor"]))
        picks["descriptor"].append(_column_best(labels[nearest:nearest + 1], applicable))
        losses = {starts[j]["model"]: c["support_loss"] for j, c in enumerate(row) if c is not None}
        model = min(losses, key=losses.get)
        picks["support_loss"].append(_column_best(labels, torch.tensor([s["model"] == model for s in starts])))
        picks["oracle"].append(max((j for j, c in enumerate(row) if c is not None), key=lambda j: row[j]["psnr"][step]))
    return {"picks": picks, "fallbacks": fallbacks, "nearest_family_right": neighbours_right / len(tasks)}


# ------------------------------------------------------------------------------------------ latency at scale

def _synthetic_store(db: MetaDatabase, labels: int, starts: int = 20, seed: int = 0) -> None:
    """``labels`` random meta-labels: ``labels // starts`` tasks (random descriptors, 5 families) x ``starts``."""
    from .store.similarity import DESCRIPTOR_NAMES

    g = torch.Generator().manual_seed(seed)
    runs = [db.add_run("start", "synthetic", config={"start": f"s{j}", "channels": 1}) for j in range(starts)]
    rows = []
    for i in range(labels // starts):
        descriptor = torch.randn(len(DESCRIPTOR_NAMES), generator=g, dtype=torch.float64) * 0.1
        task = db.add_task({"family": f"f{i % 5}", "index": i}, descriptor=descriptor)
        values = 25 + 5 * torch.rand(starts, generator=g)
        rows += [(run, task, "psnr", 5, float(v)) for run, v in zip(runs, values)]
    db.record_results(rows)


def latency(labels: int = 100_000, queries: int = 50, seed: int = 0) -> dict[str, Any]:
    """Milliseconds per choice over a synthetic database of ``labels`` meta-labels: ``per_query`` (table cached:
    each is one database-state check and one distance computation), ``median``, and ``build_ms`` (reading the
    table once after the database changed)."""
    from .store.similarity import DESCRIPTOR_NAMES

    with tempfile.TemporaryDirectory() as folder:
        db = MetaDatabase(Path(folder) / "latency.sqlite")
        _synthetic_store(db, labels, seed=seed)
        chooser = MetaLabelChooser(db)
        g = torch.Generator().manual_seed(seed + 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # random queries may be far: fallbacks are fine here
            started = time.perf_counter()
            chooser.choose(descriptor=torch.zeros(len(DESCRIPTOR_NAMES)), channels=1)
            build_ms = 1000 * (time.perf_counter() - started)
            per_query = []
            for _ in range(queries):
                descriptor = torch.randn(len(DESCRIPTOR_NAMES), generator=g, dtype=torch.float64) * 0.1
                started = time.perf_counter()
                chooser.choose(descriptor=descriptor, channels=1)
                per_query.append(1000 * (time.perf_counter() - started))
        stored = chooser.table().stored_labels
        db.close()
    return {"per_query": per_query, "median": statistics.median(per_query), "build_ms": build_ms,
            "stored_labels": stored}


# ------------------------------------------------------------------------------------------ rows and targets

def _mean_se(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    se = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n) if n > 1 else 0.0
    return mean, se


def rows_of(picks: dict[str, list[int]], curves: list, timing: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows ``chooser, steps, metric, value, stderr, per_task`` (same task order for every chooser)."""
    rows = []
    for name in CHOOSERS:
        for step in REPORT_STEPS:
            per_task = [curves[t][j]["psnr"][step] for t, j in enumerate(picks[name])]
            mean, se = _mean_se(per_task)
            rows.append({"chooser": name, "steps": step, "metric": "psnr", "value": mean, "stderr": se,
                         "per_task": per_task})
        hits = [float(j == o) for j, o in zip(picks[name], picks["oracle"])]
        rate, _ = _mean_se(hits)
        rows.append({"chooser": name, "steps": 5, "metric": "oracle_pick_rate", "value": rate,
                     "stderr": math.sqrt(rate * (1 - rate) / len(hits)), "per_task": hits})
    mean, se = _mean_se(timing["per_query"])
    rows.append({"chooser": "meta_labels", "steps": 5, "metric": "latency_ms", "value": timing["median"],
                 "stderr": se, "per_task": timing["per_query"], "stored_labels": timing["stored_labels"],
                 "statistic": "median over queries", "build_ms": timing["build_ms"]})
    return rows


def _row(rows: list[dict[str, Any]], chooser: str, metric: str, steps: int = 5) -> dict[str, Any]:
    return next(r for r in rows if r["chooser"] == chooser and r["metric"] == metric and r["steps"] == steps)


def _paired(rows: list[dict[str, Any]], a: str, b: str) -> tuple[float, float, float]:
    """Mean PSNR@5 difference ``a - b`` over the same tasks and its paired 95% interval (Student's t)."""
    diffs = [x - y for x, y in zip(_row(rows, a, "psnr")["per_task"], _row(rows, b, "psnr")["per_task"])]
    mean, se = _mean_se(diffs)
    half = t_quantile(len(diffs) - 1) * se
    return mean, mean - half, mean + half


def targets_of(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, each with ``holds`` and the measured figures."""
    out = []
    diff, low, high = _paired(rows, "meta_labels", "best_default")
    out.append({"target": "meta_labels @5 >= best_default @5 + 0.5 dB, interval above 0",
                "holds": diff >= 0.5 and low > 0, "value": diff, "interval": [low, high]})
    for other in ("descriptor", "support_loss"):
        diff, low, high = _paired(rows, "meta_labels", other)
        out.append({"target": f"meta_labels @5 >= {other} @5", "holds": diff >= 0, "value": diff,
                    "interval": [low, high]})
    rate = _row(rows, "meta_labels", "oracle_pick_rate")["value"]
    out.append({"target": "meta_labels picks the oracle's start in >= 70% of tasks", "holds": rate >= 0.7,
                "value": rate})
    timing = _row(rows, "meta_labels", "latency_ms")
    out.append({"target": f"choice over {timing['stored_labels']} meta-labels < 100 ms (median of "
                          f"{len(timing['per_task'])} queries)", "holds": timing["value"] < 100.0,
                "value": timing["value"]})
    return out
