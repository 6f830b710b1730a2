"""Adaptation curves: how a start point does on a task's query after each number of adaptation steps, and the
tables the restoration benchmark averages them into.

- :class:`StepMetric`: a ``metric(model, query)`` for ``finetune``/``adapt`` that measures only after the
  wanted step counts (both benchmarks use it: PSNR/SSIM for restoration, NLL and samples for generation).
- :func:`adaptation_curve` (one optimizer and learning rate), :func:`learner_curve` (a learner's own inner
  loop, e.g. Meta-SGD's learned rates), :func:`tuned_curve` (the best of several learning rates per step
  count, chosen by the *support* loss only), :func:`support_lr` (the same choice at one step count, without a
  query: what an explorer fine-tunes its baselines with).

The full-strength protocol (Adam, SGD and L-BFGS over wide grids, the chosen optimizer, rate and grid-edge flag per
step count) is :func:`metalearn_kit.evaluation.finetune_protocol.full_strength_curve`, built on :class:`StepMetric`.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..config import make_generator
from .metrics import psnr, ssim

__all__ = ["BASELINE_LRS", "ResultTable", "StepMetric", "adaptation_curve", "learner_curve", "render_images",
           "run_timed", "sample_test_tasks", "support_lr", "timed", "tuned_curve"]

BASELINE_LRS = (3e-4, 1e-3, 3e-3)


class StepMetric:
    """``metric(model, query)`` for ``adapt``/``finetune``, called once per step (0, 1, ...): after each step in
    ``steps`` it stores ``measure(model, query)`` (a dict of values) in :attr:`records` and returns its first
    value; other steps return NaN at no cost."""

    def __init__(self, steps: Sequence[int], measure: Callable[[Any, tuple], dict[str, Any]]) -> None:
        self.wanted = set(steps)
        self.measure = measure
        self.calls = 0
        self.records: dict[int, dict[str, Any]] = {}

    def __call__(self, model, query) -> float:
        step = self.calls
        self.calls += 1
        if step not in self.wanted:
            return math.nan
        self.records[step] = self.measure(model, query)
        return float(next(iter(self.records[step].values())))

    def values(self, key: str) -> dict[int, Any]:
        """``{step: value of key}`` over the recorded steps."""
        return {step: record[key] for step, record in self.records.items()}


def render_images(model, query) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's restoration of ``query[0]`` (with the operator ``query[2]`` when there is one), clamped to
    [0, 1], and the target ``query[1]``."""
    batch = query
    out = model(batch[0], batch[2]) if len(batch) > 2 and batch[2].dim() != 1 else model(batch[0])
    return out.clamp(0, 1), query[1]


def _image_quality(render: Callable) -> Callable[[Any, tuple], dict[str, float]]:
    def measure(model, query) -> dict[str, float]:
        prediction, target = render(model, query)
        return {"psnr": psnr(prediction, target), "ssim": ssim(prediction, target)}
    return measure


def adaptation_curve(model: nn.Module, support, query, loss_fn: Callable, steps: Sequence[int], lr: float,
                     optimizer: str = "sgd", render: Callable = render_images,
                     grad_clip: float | None = None) -> dict[str, Any]:
    """Fine-tune a copy of ``model`` on ``support`` and record query PSNR/SSIM after each of ``steps``.
    Returns ``{"psnr": {step: dB}, "ssim": {step: value}, "support_loss": {step: loss}, "seconds": s}``
    (``support_loss[k]``: the support loss after ``k`` steps, used to pick baseline learning rates)."""
    from ..meta import finetune

    curve = StepMetric(steps, _image_quality(render))
    start = time.perf_counter()
    # one extra step: support_losses[k] is the loss *before* step k+1, i.e. after k steps
    adapted = finetune(model, support, loss_fn, max(steps) + 1, lr, optimizer, query=query, metric=curve,
                       grad_clip=grad_clip)
    seconds = time.perf_counter() - start
    support_loss = {k: float(adapted.support_losses[k]) for k in steps}
    return {"psnr": curve.values("psnr"), "ssim": curve.values("ssim"), "support_loss": support_loss,
            "seconds": seconds}


def learner_curve(learner, support, query, loss_fn: Callable, steps: Sequence[int],
                  render: Callable = render_images) -> dict[str, Any]:
    """:func:`adaptation_curve` for a learner that adapts with its own inner loop (Meta-SGD's learned rates):
    ``learner.adapt`` on ``support``, query PSNR/SSIM after each of ``steps``."""
    curve = StepMetric(steps, _image_quality(render))
    start = time.perf_counter()
    adapted = learner.adapt(support, loss_fn, steps=max(steps) + 1, query=query, metric=curve)
    support_loss = {k: float(adapted.support_losses[k]) for k in steps}
    return {"psnr": curve.values("psnr"), "ssim": curve.values("ssim"), "support_loss": support_loss,
            "seconds": time.perf_counter() - start}


def tuned_curve(model: nn.Module, support, query, loss_fn: Callable, steps: Sequence[int],
                lrs: Sequence[float] = BASELINE_LRS, optimizer: str = "adam",
                render: Callable = render_images, extra: Sequence[tuple[str, float]] = ()) -> dict[str, Any]:
    """:func:`adaptation_curve` for ``optimizer`` at each learning rate in ``lrs`` (and each ``(optimizer, lr)``
    in ``extra``, e.g. the meta-init's own SGD setting); at each step count keep the run with the lowest
    *support* loss (no query information). ``seconds`` is the time of one run (the mean)."""
    from ..meta import DivergenceError

    runs, kept = [], []
    for opt, lr in [(optimizer, lr) for lr in lrs] + list(extra):
        try:
            runs.append(adaptation_curve(model, support, query, loss_fn, steps, lr, opt, render))
            kept.append((opt, lr))
        except DivergenceError:  # a learning rate too large for this start: not a candidate
            continue
    if not runs:
        raise DivergenceError(f"every learning rate diverged: {list(lrs)} ({optimizer}) and {list(extra)}")
    out: dict[str, Any] = {"psnr": {}, "ssim": {}, "lr": {}, "seconds": sum(r["seconds"] for r in runs) / len(runs)}
    for k in steps:
        best_i = min(range(len(runs)), key=lambda i: (not math.isfinite(runs[i]["support_loss"][k]),
                                                      runs[i]["support_loss"][k]))
        best = runs[best_i]
        out["psnr"][k], out["ssim"][k], out["lr"][k] = best["psnr"][k], best["ssim"][k], kept[best_i]
    return out


def support_lr(model: nn.Module, support, loss_fn: Callable, steps: int, lrs: Sequence[float] = BASELINE_LRS,
               optimizer: str = "adam", extra: Sequence[tuple[str, float]] = ()) -> tuple[str, float]:
    """The ``(optimizer, lr)`` among ``optimizer`` at each of ``lrs`` and each ``(optimizer, lr)`` of ``extra``
    whose fine-tuning of ``model`` on ``support`` reaches the lowest *support* loss after ``steps`` steps: the rule
    of :func:`tuned_curve` at one step count, with no query at all. ``model`` is unchanged."""
    from .._checks import check_int
    from ..meta import DivergenceError, finetune

    check_int("steps", steps, minimum=1)
    candidates = [(optimizer, float(lr)) for lr in lrs] + [(opt, float(lr)) for opt, lr in extra]
    if not candidates:
        raise ValueError("lrs and extra are both empty: give at least one learning rate, e.g. lrs=BASELINE_LRS")
    best, best_loss = None, math.inf
    for opt, lr in candidates:
        try:
            adapted = finetune(model, support, loss_fn, steps + 1, lr, opt)  # support_losses[steps]: after steps
        except DivergenceError:  # too large for this start: not a candidate
            continue
        loss = float(adapted.support_losses[steps])
        if math.isfinite(loss) and (best is None or loss < best_loss):
            best, best_loss = (opt, lr), loss
    if best is None:
        raise DivergenceError(f"every learning rate diverged on the support set: {candidates}")
    return best


class ResultTable:
    """Accumulates per-task results of one experiment into mean rows. A method may carry a ``role`` (``meta``,
    ``meta_tuned``, ``joint``, ``scratch``, ``classical``, ``input``: what it is, for the benchmark's comparisons);
    a curve with fine-tuning choices (:func:`~metalearn_kit.evaluation.finetune_protocol.full_strength_curve`'s
    ``optimizer``, ``lr``, ``grid_edge``) has them recorded per task on its PSNR rows."""

    def __init__(self, experiment: str) -> None:
        self.experiment = experiment
        self.values: dict[tuple[str, int | None, str], list[float]] = {}
        self.roles: dict[str, str] = {}
        self.grids: dict[str, dict[str, list[float]]] = {}
        self.choices: dict[tuple[str, int], list[tuple[str | None, float | None, bool]]] = {}

    def add(self, method: str, steps: int | None, metric: str, value: float) -> None:
        self.values.setdefault((method, steps, metric), []).append(float(value))

    def _role(self, method: str, role: str | None) -> None:
        if role is not None:
            self.roles[method] = role

    def add_curve(self, method: str, curve: dict, role: str | None = None, grid: Any = None) -> None:
        """One task's curve of ``method``; ``grid``: the :class:`~.finetune_protocol.FinetuneGrid` it searched."""
        self._role(method, role)
        if grid is not None:
            self.grids[method] = {name: list(getattr(grid, name)) for name in ("adam", "sgd", "lbfgs")}
        for k in curve["psnr"]:
            self.add(method, k, "psnr", curve["psnr"][k])
            self.add(method, k, "ssim", curve["ssim"][k])
            if "grid_edge" in curve:  # a full-strength search: which optimizer and rate won, and at a grid edge?
                self.choices.setdefault((method, k), []).append(
                    (curve["optimizer"][k], curve["lr"][k], bool(curve["grid_edge"][k])))
        self.add(method, max(curve["psnr"]), "wall_time_s", curve["seconds"])

    def add_images(self, method: str, steps: int | None, prediction: torch.Tensor, target: torch.Tensor,
                   seconds: float, role: str | None = None) -> None:
        self._role(method, role)
        self.add(method, steps, "psnr", psnr(prediction, target))
        self.add(method, steps, "ssim", ssim(prediction, target))
        self.add(method, steps, "wall_time_s", seconds)

    def rows(self, **extra) -> list[dict[str, Any]]:
        """One row per (method, steps, metric): ``value`` (mean over tasks), ``tasks``, ``stderr``, ``per_task``
        (the task order, the same for every method, so benchmarks can pair differences), ``role`` where known,
        ``optimizer``/``lr`` (one per task), ``grid_edge`` (any task) and ``grid_edge_tasks`` on the PSNR rows of a
        full-strength search (with the ``grid`` searched, when given), and ``extra``."""
        out = []
        for (m, s, metric), v in self.values.items():
            row = {"experiment": self.experiment, "method": m, "steps": s, "metric": metric,
                   "value": sum(v) / len(v), "tasks": len(v),
                   "stderr": statistics.stdev(v) / len(v) ** 0.5 if len(v) > 1 else None, "per_task": v}
            if m in self.roles:
                row["role"] = self.roles[m]
            chosen = self.choices.get((m, s)) if metric == "psnr" else None
            if chosen:
                row.update(optimizer=[c[0] for c in chosen], lr=[c[1] for c in chosen],
                           grid_edge=any(c[2] for c in chosen), grid_edge_tasks=sum(c[2] for c in chosen))
                if m in self.grids:
                    row["grid"] = self.grids[m]
            out.append({**row, **extra})
        return out


def timed(fn: Callable[..., torch.Tensor], *args) -> tuple[torch.Tensor, float]:
    """``(fn(*args), seconds)``."""
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def sample_test_tasks(sampler, n: int, seed: int) -> list:
    """``n`` test tasks from ``sampler``; test draws never share a seed with training draws."""
    g = make_generator(seed + 10_000)
    return [sampler.sample(g) for _ in range(n)]


def run_timed(names: Sequence[str], known: Sequence[str], profile: str,
              run: Callable[[str], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """``run(name)``'s rows for each of ``names`` (each among ``known``, checked before any runs), every row
    stamped with ``profile`` and its experiment's wall time (``experiment_wall_time_s``)."""
    for name in names:
        if name not in known:
            raise ValueError(f"names must be among {list(known)}, got {name!r}")
    rows: list[dict[str, Any]] = []
    for name in names:
        start = time.perf_counter()
        part = run(name)
        elapsed = time.perf_counter() - start
        for row in part:
            row["profile"] = profile
            row["experiment_wall_time_s"] = elapsed
        rows += part
    return rows
