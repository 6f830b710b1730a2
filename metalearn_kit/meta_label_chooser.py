"""Choose how to start a new task from the meta-labels of similar stored tasks (the meta-database's use at
meta-test time; auto-sklearn's meta-learned warm start and algorithm selection with a performance predictor are
the anchors).

A **start** is one run of the meta-database: a model or initialisation with its inner optimizer, learning rate and
step count (its ``config``, e.g. ``{"start": "denoise_joint@1e-2", "optimizer": "adam", "lr": 0.01,
"channels": 1}``). Its **meta-labels** are the ``metric`` (default PSNR) it reached after ``step`` fine-tuning
steps on each stored task (``results`` rows). For a new task the chooser:

1. computes the task's :func:`~metalearn_kit.store.similarity.task_descriptor` and *standardises* it with the
   mean and standard deviation of the stored tasks' descriptors (so no entry dominates by its units), the
   deviation floored at the entry's typical scale (:data:`~metalearn_kit.store.similarity.DESCRIPTOR_SCALES`)
   so an entry that barely varies among the stored tasks is not blown up into noise;
2. finds the ``k`` nearest stored tasks (Euclidean distance, one vectorised computation over all of them);
3. predicts each start's metric as the distance-weighted mean (weights ``1 / (distance + 1e-6)``) of its labels
   on those neighbours that have one (k-nearest-neighbour regression; ``k = 8`` by default: small enough to stay
   within a family, large enough to average a task's noise);
4. starts from the best predicted.

Only the starts that fit the task are considered: a start whose config records ``channels`` is used only for
tasks with that many channels, and ``backbone`` restricts them further. Fallbacks, always labelled
(``choice.fallback`` and a ``RuntimeWarning``), never silent: fewer than ``min_tasks`` (default 5) labelled stored
tasks (``"cold_start"``), or a task farther from every stored task than ``novelty`` (default 3) times the 95th
percentile of the stored tasks' nearest-neighbour distances (``"novel_task"``: probably a family nobody recorded)
-- both start from the *single best default*, the start with the best mean label over all stored tasks.

Refused with a clear error: meta-labels only from another kit version (``kit_versions="same"``) or only with
descriptors of another layout version or length, a descriptor of another length, and a ``family`` the database
never recorded. The label matrix is built once per database state (:func:`~metalearn_kit.store.labels.
state_token`) and cached, so a choice over 100,000 meta-labels costs one distance computation.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from ._checks import check_choice, check_float, check_int
from .store.db import MetaDatabase
from .store.labels import meta_label_rows, state_token
from .store.similarity import (
    DESCRIPTOR_NAMES,
    DESCRIPTOR_SCALES,
    DESCRIPTOR_VERSION,
    is_restoration_support,
    task_descriptor,
)

__all__ = ["ChooserConfig", "MetaLabelChoice", "MetaLabelChooser", "MetaLabelError", "Neighbour", "Start"]

_EPS = 1e-6
_NOVELTY_SAMPLE = 1000  # stored tasks used to measure the typical nearest-neighbour distance


class MetaLabelError(ValueError):
    """Meta-labels that cannot be used for this kit or this task (another version, another descriptor)."""


@dataclass(frozen=True)
class ChooserConfig:
    """How the chooser reads the labels: ``metric`` at ``step`` steps; ``k`` neighbours; ``min_tasks`` labelled
    tasks below which it falls back; ``novelty`` (``None``: never); ``kit_versions`` ``"same"`` (labels from runs
    of this kit's major.minor version only) or ``"any"``."""

    metric: str = "psnr"
    step: int = 5
    k: int = 8
    min_tasks: int = 5
    novelty: float | None = 3.0
    kit_versions: str = "same"

    def __post_init__(self) -> None:
        if not isinstance(self.metric, str) or not self.metric:
            raise ValueError(f"metric must be a recorded metric name such as 'psnr', got {self.metric!r}")
        check_int("step", self.step, minimum=0)
        check_int("k", self.k, minimum=1)
        check_int("min_tasks", self.min_tasks, minimum=1)
        if self.novelty is not None:
            check_float("novelty", self.novelty, minimum=0.0, strict_min=True)
        check_choice("kit_versions", self.kit_versions, ("same", "any"))


@dataclass(frozen=True)
class Start:
    """One start (a run of the database): ``name`` (its config's ``"start"``, else ``algorithm/backbone#run``)."""

    run_id: int
    name: str
    algorithm: str
    backbone: str
    config: dict = field(hash=False, compare=False)

    @property
    def channels(self) -> int | None:
        value = self.config.get("channels")
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass
class Neighbour:
    """A stored task the prediction used: its ``distance`` (standardised), ``weight`` and labels by start."""

    task_id: int
    family: str | None
    distance: float
    weight: float
    labels: dict[str, float]


@dataclass
class MetaLabelChoice:
    """What :meth:`MetaLabelChooser.choose` returns. ``start`` is ``None`` only when nothing is recorded."""

    start: Start | None
    predicted: dict[str, float]  # start name -> predicted metric (best first); empty on a fallback
    neighbours: list[Neighbour]  # nearest first
    fallback: str | None  # None, "cold_start" or "novel_task"
    reason: str  # one line: why this start
    labelled_tasks: int  # stored tasks with a label of an applicable start
    stored_labels: int  # meta-labels in the table read
    seconds: float = 0.0


@dataclass
class _Table:
    """The meta-labels as matrices: ``descriptors [T, D]``, ``labels [T, S]`` (NaN: not recorded)."""

    starts: list[Start]
    task_ids: list[int]
    families: list[str | None]
    descriptors: torch.Tensor
    labels: torch.Tensor
    stored_labels: int
    subsets: dict = field(default_factory=dict)  # applicable-start key -> _Subset


@dataclass
class _Subset:
    """The stored tasks labelled by a set of starts, standardised: ``z [T', D]``, ``labels [T', S']``."""

    columns: torch.Tensor
    rows: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    z: torch.Tensor
    labels: torch.Tensor
    default: int  # column (into ``columns``) of the single best default
    typical_nn: float  # 95th percentile of the stored tasks' nearest-neighbour distances


def _release(version: str) -> str:
    return ".".join(str(version).split(".")[:2])


def _start_name(run: dict[str, Any]) -> str:
    name = run["config"].get("start") if isinstance(run["config"], dict) else None
    return str(name) if name else f"{run['algorithm']}/{run['backbone']}#{run['id']}"


def _usable_runs(runs: list[dict[str, Any]], config: ChooserConfig, db: MetaDatabase) -> list[dict[str, Any]]:
    """The runs whose labels this kit may use (``kit_versions``); refuses when none is left."""
    if config.kit_versions == "any" or not runs:
        return runs
    from . import __version__

    usable = [r for r in runs if _release(r["kit_version"]) == _release(__version__)]
    if not usable:
        found = sorted({r["kit_version"] for r in runs})
        raise MetaLabelError(f"db {str(db.path)!r} holds meta-labels recorded by metalearn-kit {found} only; this is "
                             f"{__version__}, whose models and descriptors may differ. Re-record the starts with "
                             f"this version, or pass kit_versions='any' to use them anyway")
    if len(usable) < len(runs):
        warnings.warn(f"ignoring {len(runs) - len(usable)} run(s) of db recorded by another metalearn-kit version "
                      f"(kit_versions='same')", RuntimeWarning, stacklevel=4)
    return usable


def _usable_tasks(tasks: list[dict[str, Any]], db: MetaDatabase) -> list[dict[str, Any]]:
    """The tasks whose descriptors this kit computes the same way; refuses when labelled tasks exist but none is."""
    usable = [t for t in tasks if t["descriptor"] is not None and t["descriptor_version"] == DESCRIPTOR_VERSION
              and len(t["descriptor"]) == len(DESCRIPTOR_NAMES)]
    if tasks and not usable:
        versions = sorted({(t["descriptor_version"], len(t["descriptor"] or [])) for t in tasks}, key=str)
        raise MetaLabelError(f"db {str(db.path)!r}: no labelled task has a descriptor of version "
                             f"{DESCRIPTOR_VERSION} with {len(DESCRIPTOR_NAMES)} entries (found (version, length) "
                             f"{versions}); its tasks were described by another kit version: record them again")
    if len(usable) < len(tasks):
        warnings.warn(f"ignoring {len(tasks) - len(usable)} labelled task(s) of db without a descriptor of version "
                      f"{DESCRIPTOR_VERSION}", RuntimeWarning, stacklevel=4)
    return usable


def build_table(db: MetaDatabase, config: ChooserConfig) -> _Table:
    """Read ``db``'s meta-labels (``config.metric`` at ``config.step``) into matrices."""
    rows = meta_label_rows(db, config.metric, config.step)
    runs = _usable_runs(rows["runs"], config, db)
    tasks = _usable_tasks(rows["tasks"], db)
    column = {r["id"]: j for j, r in enumerate(runs)}
    line = {t["id"]: i for i, t in enumerate(tasks)}
    labels = torch.full((len(tasks), len(runs)), math.nan, dtype=torch.float64)
    kept = [(line[r["task_id"]], column[r["run_id"]], r["value"]) for r in rows["labels"]
            if r["task_id"] in line and r["run_id"] in column]
    if kept:
        i, j, v = zip(*kept)
        labels[list(i), list(j)] = torch.tensor(v, dtype=torch.float64)
    descriptors = torch.tensor([t["descriptor"] for t in tasks], dtype=torch.float64).reshape(-1, len(DESCRIPTOR_NAMES))
    starts = [Start(r["id"], _start_name(r), r["algorithm"], r["backbone"], dict(r["config"])) for r in runs]
    return _Table(starts, [t["id"] for t in tasks], [t["family"] for t in tasks], descriptors, labels, len(kept))


def _typical_nn(z: torch.Tensor) -> float:
    """95th percentile of the nearest-other-task distance over (a fixed sample of) the stored tasks."""
    if len(z) < 2:
        return math.inf
    sample = torch.linspace(0, len(z) - 1, min(len(z), _NOVELTY_SAMPLE)).round().long().unique()
    distances = torch.cdist(z[sample], z)
    distances[torch.arange(len(sample)), sample] = math.inf  # a task is not its own neighbour
    return float(torch.quantile(distances.min(1).values, 0.95))


def _subset(table: _Table, columns: torch.Tensor) -> _Subset:
    """The stored tasks labelled by ``columns`` (starts), standardised, with the best default among them."""
    labels = table.labels[:, columns]
    rows = (~labels.isnan()).any(1).nonzero().reshape(-1)
    labels, x = labels[rows], table.descriptors[rows]
    mean = x.mean(0) if len(x) else torch.zeros(x.shape[1], dtype=torch.float64)
    std = x.std(0) if len(x) > 1 else torch.ones(x.shape[1], dtype=torch.float64)
    # never divide by less than the entry's typical scale: an entry that barely varies among the stored tasks
    # would otherwise be blown up into noise as loud as the entries that tell the families apart
    std = torch.maximum(std, DESCRIPTOR_SCALES)
    z = (x - mean) / std
    counts = (~labels.isnan()).sum(0)
    means = torch.where(counts > 0, labels.nan_to_num(0.0).sum(0) / counts.clamp_min(1), -math.inf)
    default = int(means.argmax()) if len(columns) else -1
    return _Subset(columns, rows, mean, std, z, labels, default, _typical_nn(z))


class MetaLabelChooser:
    """Chooses a start for new tasks from ``db``'s meta-labels (see the module docstring); ``config`` a
    :class:`ChooserConfig` (or its fields as keywords). The label table is rebuilt only when ``db`` changes."""

    def __init__(self, db: MetaDatabase, config: ChooserConfig | None = None, **fields: Any):
        if not isinstance(db, MetaDatabase):
            raise TypeError(f"db must be a MetaDatabase, got {type(db).__name__}")
        if config is not None and fields:
            raise TypeError("give config or its fields as keywords, not both")
        if config is not None and not isinstance(config, ChooserConfig):
            raise TypeError(f"config must be a ChooserConfig, got {type(config).__name__}")
        self.db = db
        self.config = config if config is not None else ChooserConfig(**fields)
        self._token: tuple | None = None
        self._table: _Table | None = None

    def table(self) -> _Table:
        """The label matrices for the database as it is now (cached per :func:`state_token`)."""
        token = state_token(self.db)
        if self._table is None or token != self._token:
            self._table, self._token = build_table(self.db, self.config), token
        return self._table

    @property
    def starts(self) -> list[Start]:
        return list(self.table().starts)

    def _applicable(self, table: _Table, channels: int | None, backbone: str | None) -> _Subset:
        columns = [j for j, s in enumerate(table.starts)
                   if (channels is None or s.channels in (None, channels))
                   and (backbone is None or s.backbone == backbone)]
        key = tuple(columns)
        if key not in table.subsets:
            table.subsets[key] = _subset(table, torch.tensor(columns, dtype=torch.long))
        return table.subsets[key]

    def _query(self, task: Any, descriptor: Any) -> tuple[torch.Tensor, int | None]:
        """The new task's descriptor ``[D]`` and channel count (``None`` when only a descriptor is given)."""
        if (task is None) == (descriptor is None):
            raise TypeError("give exactly one of task (a restoration Task or its support tuple) and descriptor")
        channels = None
        if task is not None:
            support = getattr(task, "support", task)
            if not is_restoration_support(support):
                raise TypeError(f"task must be a restoration Task or its support tuple (degraded [K, C, H, W], "
                                f"clean [K, C, H, W]), got {type(task).__name__}")
            descriptor, channels = task_descriptor(support), int(support[0].shape[1])
        vector = torch.as_tensor(descriptor, dtype=torch.float64).detach().reshape(-1)
        if vector.numel() != len(DESCRIPTOR_NAMES):
            raise ValueError(f"descriptor must have {len(DESCRIPTOR_NAMES)} entries (descriptor version "
                             f"{DESCRIPTOR_VERSION}: {DESCRIPTOR_NAMES[0]}, ...), got {vector.numel()}; compute it "
                             f"with store.similarity.task_descriptor of this kit")
        if not torch.isfinite(vector).all():
            raise ValueError("descriptor contains NaN or Inf")
        return vector, channels

    def choose(self, task: Any = None, *, descriptor: Any = None, channels: int | None = None,
               backbone: str | None = None, family: str | None = None) -> MetaLabelChoice:
        """The start to use for ``task`` (a restoration Task or its support tuple; or give its ``descriptor``).

        ``channels`` (default: the task's) and ``backbone`` restrict the starts; ``family``, if given, must be a
        family the database recorded, and restricts the neighbours to it."""
        started = time.perf_counter()
        vector, task_channels = self._query(task, descriptor)
        if channels is not None:
            check_int("channels", channels, minimum=1)
        table = self.table()
        subset = self._applicable(table, channels if channels is not None else task_channels, backbone)
        rows = self._family_rows(table, subset, family)
        choice = self._predict(table, subset, vector, rows)
        if choice.fallback is not None:
            warnings.warn(f"meta-label chooser fell back ({choice.fallback}): {choice.reason}", RuntimeWarning,
                          stacklevel=2)
        choice.seconds = time.perf_counter() - started
        return choice

    @staticmethod
    def _family_rows(table: _Table, subset: _Subset, family: str | None) -> torch.Tensor | None:
        """Indices into ``subset``'s tasks of ``family`` (``None``: all); an unrecorded family is refused."""
        if family is None:
            return None
        families = [table.families[int(i)] for i in subset.rows]
        rows = [i for i, f in enumerate(families) if f == family]
        if not rows:
            raise ValueError(f"family {family!r} has no meta-labels of an applicable start in the database "
                             f"(recorded: {sorted({f for f in families if f is not None})}); record its runs first, "
                             f"or pass family=None to choose by the descriptor alone")
        return torch.tensor(rows, dtype=torch.long)

    def _fallback(self, table: _Table, subset: _Subset, kind: str, reason: str,
                  neighbours: list[Neighbour]) -> MetaLabelChoice:
        """The single best default (the best mean label over the stored tasks), labelled as a fallback."""
        start = table.starts[int(subset.columns[subset.default])] if len(subset.columns) and len(subset.rows) \
            else None
        what = f"the single best default {start.name!r}" if start is not None else "no start (nothing recorded)"
        return MetaLabelChoice(start, {}, neighbours, kind, f"{reason}; using {what}", len(subset.rows),
                               table.stored_labels)

    def _neighbours(self, table: _Table, subset: _Subset, order: torch.Tensor, distances: torch.Tensor,
                    weights: torch.Tensor) -> list[Neighbour]:
        out = []
        for index, distance, weight in zip(order.tolist(), distances.tolist(), weights.tolist()):
            labels = {table.starts[int(c)].name: float(v) for c, v in zip(subset.columns, subset.labels[index])
                      if not math.isnan(float(v))}
            task_row = int(subset.rows[index])
            out.append(Neighbour(table.task_ids[task_row], table.families[task_row], distance, weight, labels))
        return out

    def _predict(self, table: _Table, subset: _Subset, vector: torch.Tensor,
                 rows: torch.Tensor | None) -> MetaLabelChoice:
        """k-NN regression of every applicable start's label (one distance computation over the stored tasks)."""
        config = self.config
        candidates = torch.arange(len(subset.rows)) if rows is None else rows
        if len(candidates) < config.min_tasks:
            return self._fallback(table, subset, "cold_start", f"{len(candidates)} labelled stored task(s), fewer "
                                  f"than min_tasks={config.min_tasks}", [])
        z = (vector - subset.mean) / subset.std
        distances = (subset.z[candidates] - z).square().sum(1).sqrt()
        k = min(config.k, len(candidates))
        nearest, position = torch.topk(distances, k, largest=False)  # ascending
        order = candidates[position]
        weights = 1.0 / (nearest + _EPS)
        labels = subset.labels[order]
        known = ~labels.isnan()
        total = (weights[:, None] * known).sum(0)
        predicted = (weights[:, None] * labels.nan_to_num(0.0)).sum(0) / total.clamp_min(_EPS)
        predicted = torch.where(total > 0, predicted, -math.inf)
        neighbours = self._neighbours(table, subset, order, nearest, weights / weights.sum())
        if config.novelty is not None and float(nearest[0]) > config.novelty * subset.typical_nn:
            return self._fallback(table, subset, "novel_task", f"the nearest stored task is {float(nearest[0]):.2f} "
                                  f"away, more than novelty={config.novelty} x the stored tasks' typical "
                                  f"nearest distance {subset.typical_nn:.2f} (a family nobody recorded?)", neighbours)
        best = int(predicted.argmax())
        if not math.isfinite(float(predicted[best])):
            return self._fallback(table, subset, "cold_start", "no neighbour has a label of an applicable start",
                                  neighbours)
        ranking = sorted(((table.starts[int(c)].name, float(p)) for c, p in zip(subset.columns, predicted)
                          if math.isfinite(float(p))), key=lambda pair: -pair[1])
        start = table.starts[int(subset.columns[best])]
        reason = (f"best predicted {config.metric}@{config.step} = {float(predicted[best]):.2f} from the {k} nearest "
                  f"stored tasks (families {sorted({n.family for n in neighbours if n.family}, key=str)})")
        return MetaLabelChoice(start, dict(ranking), neighbours, None, reason, len(subset.rows), table.stored_labels)
