"""The restoration experiments where the support set identifies the task (one per family of
:mod:`metalearn_kit.tasks.operators` with a row in :mod:`metalearn_kit.recipes.operator_families`), under the
pre-registered protocol: test tasks on the Kodak24 photographs with the held-out parameter bands, drawn with
``TEST_SEED`` (:mod:`metalearn_kit.data.photo_sets`), the same tasks for every method, for each support size ``K``
in ``SUPPORT_SIZES`` and each step count of ``config.steps`` (0 ... 50).

Every method restores the same query images after adapting on the same support pairs:

- ``meta``: the Meta-SGD init adapted with its own learned (per-step, non-negative) step sizes;
- ``meta_tuned``: the same initialisation fine-tuned at full strength instead (below): what the init alone buys;
- ``joint``: the same model jointly pretrained on the same task distribution (at least meta-training's image
  passes), fine-tuned at full strength;
- ``joint_step_sizes``: the joint init frozen, with Meta-SGD step sizes meta-learned on the same tasks: what the
  learned preconditioner alone buys;
- ``scratch``: the same model from a random init, fine-tuned at full strength;
- ``classical``: the family's classical methods fitted on the support pairs, generic ones and, where the family
  has a closed form, its own operator fitted by least squares;
- ``oracle``: given the task's true operator (an upper reference); ``input``: the degraded query itself.

Full strength: Adam and SGD over log grids of learning rates and L-BFGS, chosen per step count by the *support*
loss only (:func:`~metalearn_kit.evaluation.finetune_protocol.full_strength_curve`); each such row records the
optimizer and learning rate chosen per task and flags a choice at a grid edge. Rows carry ``role``, ``stderr``,
``per_task`` (same task order for every method), ``support_size`` and ``test_source``; one ``crossover`` row per
``K`` says the first step count where the best baseline is within noise of, or ahead of, the meta-init.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config import get_profile
from .metrics import psnr, ssim

# the families the benchmark runs (each a row of metalearn_kit.recipes.operator_families.OPERATOR_FAMILIES)
OPERATOR_EXPERIMENTS = ("tone_curve", "colour_cast", "stripe_noise")
ROLES = ("meta", "meta_tuned", "joint", "joint_step_sizes", "scratch", "classical", "oracle", "input")
SUPPORT_SIZES = (1, 2, 5)
# A restoration equal to its target (a saturated patch restored exactly) has infinite PSNR and a diverged one (NaN
# output) none; both are recorded as finite scores so every task stays in the paired statistics: PSNR is capped at
# 100 dB (far beyond 8-bit precision, ~59 dB) and a NaN counts as 0 dB, the score of a failed restoration.
PSNR_CAP_DB = 100.0


def profile_grid(profile: str):
    """The fine-tuning grid of ``profile``: the full-strength grid (Adam 1e-5 ... 1, SGD 1e-4 ... 10, L-BFGS) in
    the full profile; in the fast one (2-core CPU budget) the part of it around the choices made on dev tasks
    (Adam 1e-4 ... 0.1, SGD 0.01 ... 3, L-BFGS). The dev run's first cut, Adam 1e-3 ... 0.1 and SGD 0.1 ... 1, was
    chosen at its lower edge in 1-5-step searches (stripes above all), so it reaches lower; the rows flag any
    choice at an edge."""
    from .finetune_protocol import FULL_STRENGTH_GRID, FinetuneGrid, decade_grid

    if profile == "full":
        return FULL_STRENGTH_GRID
    return FinetuneGrid(adam=decade_grid(1e-4, 0.1), sgd=decade_grid(0.01, 3.0), lbfgs=(1.0,))
BASELINE_ROLES = ("joint", "joint_step_sizes", "scratch")  # what the crossover compares the meta-init with
METHODS = {"meta": "meta-init + learned step sizes (Meta-SGD)",
           "meta_tuned": "meta-init + full-strength fine-tuning",
           "joint": "joint pretrained + full-strength fine-tuning",
           "joint_step_sizes": "joint init + learned step sizes",
           "scratch": "scratch + full-strength fine-tuning"}


class _Results:
    """Per-task values per (method, role, K, steps, metric), in task order, and the fine-tuning choices."""

    def __init__(self, experiment: str) -> None:
        self.experiment = experiment
        self.values: dict[tuple[str, str, int, int | None, str], list[float]] = {}
        self.choices: dict[tuple[str, str, int, int], list[tuple[str | None, float | None, bool]]] = {}

    def add(self, method: str, role: str, k: int, steps: int | None, metric: str, value: float) -> None:
        value = float(value)
        if metric == "psnr":  # paired statistics need finite values: see PSNR_CAP_DB
            value = 0.0 if math.isnan(value) else min(value, PSNR_CAP_DB)
        self.values.setdefault((method, role, k, steps, metric), []).append(value)

    def add_images(self, method: str, role: str, k: int, prediction: torch.Tensor, target: torch.Tensor) -> None:
        self.add(method, role, k, None, "psnr", psnr(prediction.clamp(0, 1), target))
        self.add(method, role, k, None, "ssim", ssim(prediction.clamp(0, 1), target))

    def add_curve(self, role: str, k: int, curve: dict) -> None:
        method = METHODS[role]
        for step in curve["psnr"]:
            self.add(method, role, k, step, "psnr", curve["psnr"][step])
            self.add(method, role, k, step, "ssim", curve["ssim"][step])
            if "optimizer" in curve:
                self.choices.setdefault((method, role, k, step), []).append(
                    (curve["optimizer"][step], curve["lr"][step], bool(curve["grid_edge"][step])))
        self.add(method, role, k, max(curve["psnr"]), "wall_time_s", curve["seconds"])

    def per_task(self, role: str, k: int) -> dict[int, list[float]]:
        """``{steps: per-task PSNR}`` of ``role`` at support size ``k``."""
        return {steps: v for (_, r, kk, steps, metric), v in self.values.items()
                if r == role and kk == k and metric == "psnr" and steps is not None}

    def rows(self, **extra: Any) -> list[dict[str, Any]]:
        out = []
        for (method, role, k, steps, metric), values in self.values.items():
            row = {"experiment": self.experiment, "method": method, "role": role, "steps": steps, "metric": metric,
                   "value": statistics.fmean(values), "stderr": standard_error(values), "tasks": len(values),
                   "per_task": values, "support_size": k, **extra}
            chosen = self.choices.get((method, role, k, steps)) if metric == "psnr" else None
            if chosen:
                row.update(optimizer=[c[0] for c in chosen], lr=[c[1] for c in chosen],
                           grid_edge=any(c[2] for c in chosen), grid_edge_tasks=sum(c[2] for c in chosen))
            out.append(row)
        return out


def standard_error(values: list[float]) -> float | None:
    """Standard error of the mean over tasks (``None`` for a single task)."""
    return statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else None


@dataclass
class _Starts:
    """The trained starts every task adapts from, and where each came from (``"loaded"`` / ``"trained"``)."""

    meta: nn.Module
    joint: nn.Module
    joint_step_sizes: nn.Module
    sources: dict[str, str]


def _load_starts(config, seed: int) -> _Starts:
    from ..recipes.operator_families import load_model
    from ..recipes.operator_recipe import checkpoint_names

    names = checkpoint_names(config.family)
    loaded = {role: load_model(names[role], role, config, seed) for role in ("meta", "joint", "joint_step_sizes")}
    return _Starts(*(loaded[r][0] for r in ("meta", "joint", "joint_step_sizes")),
                   sources={r: loaded[r][1] for r in loaded})


def _adapted_rows(results: _Results, starts: _Starts, config, task, k: int, seed: int, grid) -> None:
    """The learned rows of one task: both learned-rate learners, and the three starts at full strength."""
    from ..recipes.operator_recipe import build_model, restoration_loss
    from .curves import learner_curve
    from .finetune_protocol import full_strength_curve

    support, query, steps = task.support, task.query, list(config.steps)
    results.add_curve("meta", k, learner_curve(starts.meta, support, query, restoration_loss, steps))
    results.add_curve("joint_step_sizes", k,
                      learner_curve(starts.joint_step_sizes, support, query, restoration_loss, steps))
    torch.manual_seed(seed)
    for role, start in (("meta_tuned", starts.meta.model), ("joint", starts.joint), ("scratch", build_model(config))):
        results.add_curve(role, k, full_strength_curve(start, support, query, restoration_loss, steps, grid=grid))


def _reference_rows(results: _Results, family: str, task, degradation, k: int) -> None:
    """The classical references (generic and parametric, fitted on the support) and the oracle of one task."""
    from . import operator_references as references

    support, query = task.support, task.query
    fitted = {**references.classical_methods(family, support, query[0]),
              **references.parametric_methods(family, support, query[0])}
    for label, restored in fitted.items():
        results.add_images(label, "classical", k, restored, query[1])
    for label, restored in references.oracles(family, task.info["params"], degradation, query[0], support).items():
        results.add_images(label, "oracle", k, restored, query[1])


def crossover_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One ``crossover`` row per (experiment, support size) of ``rows``: the first step count >= 1 (before any
    step nothing has adapted) where the best of :data:`BASELINE_ROLES` is within noise of, or ahead of, the
    meta-init, paired over the same tasks, and who is ahead at the last step count."""
    from .finetune_protocol import crossover

    def curve(part: list[dict[str, Any]], role: str) -> dict[int, list[float]]:
        return {r["steps"]: r["per_task"] for r in part if r["role"] == role and r["steps"]}

    out = []
    for experiment, k in dict.fromkeys((r["experiment"], r["support_size"]) for r in rows if r.get("support_size")):
        part = [r for r in rows if r["experiment"] == experiment and r.get("support_size") == k
                and r["metric"] == "psnr"]
        baselines = {METHODS[role]: curve(part, role) for role in BASELINE_ROLES if curve(part, role)}
        if not curve(part, "meta") or not baselines:
            continue
        found = crossover(curve(part, "meta"), baselines)
        out.append({"experiment": experiment, "method": "crossover", "role": "summary", "steps": found.step,
                    "metric": "crossover_step", "value": found.step, "support_size": k,
                    "last_step": found.last_step, "winner_at_last_step": found.winner, "summary": found.line()})
    return out


def operator_experiment(family: str, profile: str | None = None, seed: int = 0, sizes: dict | None = None,
                        classical: bool = True, test_ranges: dict[str, Any] | None = None,
                        support_sizes: tuple[int, ...] = SUPPORT_SIZES, grid=None, split: str = "test"
                        ) -> list[dict[str, Any]]:
    """Run one family's experiment (see the module docs) for each support size in ``support_sizes``; ``sizes``
    overrides config fields (e.g. ``{"test_tasks": 4}``); ``test_ranges`` (``{param: (low, high) or [bands]}``)
    replaces the test split's parameter ranges, e.g. with values outside the training range (the experiment is
    then named ``<family>@<params>``); ``grid`` the fine-tuning grid (default: :func:`profile_grid`);
    ``split="val"`` runs the same protocol on dev tasks (dev photographs, training bands, ``DEV_SEED``), where
    choices may be made. Returns its rows."""
    from dataclasses import replace

    from .._checks import check_choice
    from ..config import make_generator
    from ..data.photo_sets import DEV_SEED, TEST_SEED
    from ..recipes.operator_families import operator_family
    from ..recipes.operator_recipe import task_distribution

    check_choice("split", split, ("test", "val"))
    if not support_sizes or any(not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in support_sizes):
        raise ValueError(f"support_sizes must be a non-empty tuple of support pair counts >= 1, e.g. (1, 2, 5), "
                         f"got {support_sizes!r}")
    config = operator_family(family).config(profile)
    config = replace(config, **sizes) if sizes else config
    starts = _load_starts(config, seed)
    results = _Results(f"{family}@{','.join(sorted(test_ranges))}" if test_ranges else family)
    source = None
    for k in support_sizes:
        test = task_distribution(config, split, ranges=test_ranges, shots=k)
        source, degradation = test.source.split, test.degradation(family)
        # the same pre-registered draw for every method and support size
        generator = make_generator(TEST_SEED if split == "test" else DEV_SEED)
        for _ in range(config.test_tasks):
            task = test.sample(generator)
            results.add_images("degraded input", "input", k, task.query[0], task.query[1])
            _adapted_rows(results, starts, config, task, k, seed, grid or profile_grid(get_profile(profile)))
            if classical:
                _reference_rows(results, family, task, degradation, k)
    extra = {"test_ranges": degradation.ranges} if test_ranges else {}
    rows = results.rows(sources=starts.sources, channels=config.channels, test_patch=config.test_patch,
                        test_source=source, **extra)
    return rows + crossover_rows(rows)


def run_operator_experiments(names: list[str] | None = None, profile: str | None = None, seed: int = 0,
                             classical: bool = True, jobs: int = 1) -> list[dict[str, Any]]:
    """Run the named operator experiments (default: all) and return their rows, each with ``profile`` and the
    experiment's wall time. ``jobs > 1`` runs that many families at once, each in its own process on one thread
    (the families share nothing; rows come back in the order of ``names``)."""
    from .._checks import check_int
    from ..recipes.operator_families import OPERATOR_FAMILIES, operator_family
    from .curves import run_timed

    profile = get_profile(profile)
    jobs = check_int("jobs", jobs, minimum=1)
    names = list(OPERATOR_EXPERIMENTS if names is None else names)
    if jobs == 1:
        return run_timed(names, list(OPERATOR_FAMILIES), profile,
                         lambda name: operator_experiment(name, profile, seed, classical=classical))
    from .parallel import map_in_processes

    for name in names:  # checked before any process starts
        operator_family(name)
    parts = map_in_processes(_timed_family, [(name, profile, seed, classical) for name in names], jobs,
                             cost=lambda args: _relative_cost(args[0]))
    return [row for part in parts for row in part]


def _relative_cost(family: str) -> float:
    """How long a family takes, relatively: the filter restorers (stripes, blur, shifts) take about three times as
    long per task as the pointwise ones on the 2-core CPU, so they start first."""
    from ..recipes.operator_families import operator_family

    return 3.0 if operator_family(family).config("fast").model == "filter" else 1.0


def _timed_family(name: str, profile: str, seed: int, classical: bool) -> list[dict[str, Any]]:
    """One family's rows stamped like :func:`~metalearn_kit.evaluation.curves.run_timed` does (a worker's job)."""
    import time

    start = time.perf_counter()
    rows = operator_experiment(name, profile, seed, classical=classical)
    elapsed = time.perf_counter() - start
    for row in rows:
        row.update(profile=profile, experiment_wall_time_s=elapsed)
    return rows
