"""Fine-tuned baselines at full strength: the optimizer and learning rate chosen per step count on the *support*
set only, from a grid wide enough that the choice is not at its edge (and a flag when it is), and the crossover of
a baseline with the meta-init.

- :class:`FinetuneGrid`: the typed grid (Adam and SGD over log grids of learning rates, L-BFGS with a strong-Wolfe
  line search); :data:`FULL_STRENGTH_GRID` the wide one, :func:`decade_grid` builds the log grids.
- :func:`full_strength_curve`: one fine-tuning run per grid point up to ``max(steps)`` (all rates of one optimizer
  in one vectorised pass); at each step count the run with the lowest support loss is kept and only its weights
  are scored on the query.
- :func:`crossover`: the first step count where the best baseline is within noise of, or ahead of, the meta-init
  (the paired verdict of :mod:`~metalearn_kit.evaluation.paired`), and who wins at the last step count.

**What a step is.** Adam and SGD: one update from one gradient of the support loss (the kit's inner loop,
:func:`metalearn_kit.meta.finetune`). L-BFGS: one ``torch.optim.LBFGS.step`` with ``max_iter=1`` -- one
quasi-Newton direction and a strong-Wolfe line search along it, at most ``lbfgs_max_eval`` support-loss gradients
in all (a step may cost more gradients than an Adam step; the curve records how many under ``evaluations``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .._checks import check_float, check_int
from .curves import StepMetric, render_images
from .metrics import psnr, ssim
from .paired import PairedComparison, paired_verdict

__all__ = ["FULL_STRENGTH_GRID", "Crossover", "FinetuneGrid", "crossover", "decade_grid", "full_strength_curve"]

OPTIMIZERS = ("adam", "sgd", "lbfgs")


def decade_grid(low: float, high: float, mantissas: Sequence[float] = (1.0, 3.0)) -> tuple[float, ...]:
    """Learning rates ``m * 10**e`` for each mantissa ``m`` and integer ``e``, from ``low`` to ``high`` inclusive,
    ascending: ``decade_grid(1e-3, 1)`` is ``(1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)`` (about half a decade apart)."""
    low = check_float("low", low, minimum=0.0, strict_min=True)
    high = check_float("high", high, minimum=low)
    values = []
    for e in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1):
        for m in mantissas:
            value = float(f"{m}e{e}")  # through the decimal text, so 3e-4 is the float 3e-4 exactly
            if low * (1 - 1e-9) <= value <= high * (1 + 1e-9):
                values.append(value)
    return tuple(sorted(set(values)))


@dataclass(frozen=True)
class FinetuneGrid:
    """The fine-tuning choices searched per task: each of ``adam``, ``sgd`` and ``lbfgs`` a tuple of learning
    rates (ascending; empty leaves that optimizer out). For L-BFGS the rate scales the line search's first trial
    step; ``lbfgs_max_eval`` bounds the support-loss gradients of one L-BFGS step (its line search included) and
    ``lbfgs_history`` is its memory."""

    adam: tuple[float, ...] = ()
    sgd: tuple[float, ...] = ()
    lbfgs: tuple[float, ...] = ()
    lbfgs_max_eval: int = 4
    lbfgs_history: int = 10

    def __post_init__(self) -> None:
        for name in OPTIMIZERS:
            lrs = getattr(self, name)
            if not isinstance(lrs, tuple):
                raise TypeError(f"{name} must be a tuple of learning rates, got {type(lrs).__name__} {lrs!r}")
            for lr in lrs:
                check_float(f"{name} learning rate", lr, minimum=0.0, strict_min=True)
            if list(lrs) != sorted(set(lrs)):
                raise ValueError(f"{name} must be ascending without repeats, got {lrs}; e.g. decade_grid(1e-4, 1)")
        if not self.points():
            raise ValueError("adam, sgd and lbfgs are all empty: give at least one learning rate")
        check_int("lbfgs_max_eval", self.lbfgs_max_eval, minimum=2)  # 1 would accept the first trial unchecked
        check_int("lbfgs_history", self.lbfgs_history, minimum=1)

    def points(self) -> list[tuple[str, float]]:
        """Every ``(optimizer, lr)`` of the grid, optimizer by optimizer, each ascending."""
        return [(name, lr) for name in OPTIMIZERS for lr in getattr(self, name)]

    def is_edge(self, optimizer: str, lr: float) -> bool:
        """Whether ``lr`` is the smallest or largest rate of ``optimizer``'s grid: a choice there may be limited by
        the grid. A one-point grid has no edge (L-BFGS's line search picks its own step size)."""
        lrs = getattr(self, optimizer)
        return len(lrs) > 1 and lr in (lrs[0], lrs[-1])


# Adam 1e-5 ... 1 and SGD 1e-4 ... 10, about half a decade apart, plus L-BFGS: wide enough that the kit's operator
# restorers never chose an edge on dev tasks.
FULL_STRENGTH_GRID = FinetuneGrid(adam=decade_grid(1e-5, 1.0), sgd=decade_grid(1e-4, 10.0), lbfgs=(1.0,))


def _support_loss(loss_fn: Callable, support) -> Callable[[Any, tuple], dict[str, Any]]:
    """A :class:`StepMetric` measure that records the support loss and the weights (no query is ever scored)."""
    def measure(model, _support) -> dict[str, Any]:
        return {"loss": float(loss_fn(model, support)), "tensors": dict(model.tensors)}
    return measure


def _first_order_run(model: nn.Module, support, loss_fn: Callable, steps: Sequence[int], optimizer: str, lr: float,
                     grad_clip: float | None) -> dict[int, dict[str, Any]]:
    """``{k: {"loss", "tensors", "evaluations"}}`` after each of ``steps`` reached by Adam/SGD at ``lr``; a run that
    diverges keeps the step counts before it."""
    from ..meta import DivergenceError, finetune

    record = StepMetric(steps, _support_loss(loss_fn, support))
    try:
        # the support stands in as "query": the measure reads only the support, never the query
        finetune(model, support, loss_fn, max(steps), lr, optimizer, query=support, metric=record,
                 grad_clip=grad_clip)
    except DivergenceError:  # too large for this start: the steps it reached stay candidates
        pass
    return {k: {**r, "evaluations": k} for k, r in record.records.items()}


def _lbfgs_run(model: nn.Module, support, loss_fn: Callable, steps: Sequence[int], lr: float,
               grid: FinetuneGrid) -> dict[int, dict[str, Any]]:
    """:func:`_first_order_run` for L-BFGS (one ``step`` = one iteration and its line search)."""
    work = copy.deepcopy(model)
    params = [p for p in work.parameters() if p.requires_grad]
    opt = torch.optim.LBFGS(params, lr=lr, max_iter=1, max_eval=grid.lbfgs_max_eval,
                            history_size=grid.lbfgs_history, line_search_fn="strong_wolfe")
    evaluations = 0

    def closure() -> torch.Tensor:
        nonlocal evaluations
        evaluations += 1
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(work, support)
        loss.backward()
        for p in params:  # L-BFGS flattens gradients with view(): a transposed weight's gradient must be copied
            if p.grad is not None and not p.grad.is_contiguous():
                p.grad = p.grad.contiguous()
        return loss

    wanted, out = set(steps), {}
    for k in range(max(steps) + 1):
        if k > 0:
            opt.step(closure)
        with torch.no_grad():
            loss = float(loss_fn(work, support))
            tensors = {n: t.detach().clone() for n, t in work.state_dict().items()}
        if not math.isfinite(loss) or not all(bool(torch.isfinite(t).all()) for t in tensors.values()):
            break  # diverged: the steps before stay candidates
        if k in wanted:
            out[k] = {"loss": loss, "tensors": tensors, "evaluations": evaluations}
    return out


def _grid_runs(model, support, loss_fn, steps, grid, grad_clip) -> list[tuple[str, float, dict]]:
    """One run per grid point: ``[(optimizer, lr, {k: record})]`` in grid order. All rates of Adam (and of SGD) run
    in one vectorised pass (:func:`~metalearn_kit.evaluation.batched_finetune.batched_runs`); L-BFGS, one point,
    on its own."""
    from .batched_finetune import batched_runs

    runs = []
    for optimizer in OPTIMIZERS:
        lrs = getattr(grid, optimizer)
        if optimizer == "lbfgs":
            runs += [(optimizer, lr, _lbfgs_run(model, support, loss_fn, steps, lr, grid)) for lr in lrs]
        elif lrs:
            records = batched_runs(model, support, loss_fn, steps, optimizer, lrs, grad_clip)
            runs += [(optimizer, lr, run) for lr, run in zip(lrs, records, strict=True)]
    return runs


def _reference_grid_runs(model, support, loss_fn, steps, grid, grad_clip) -> list[tuple[str, float, dict]]:
    """:func:`_grid_runs` one fine-tuning run at a time (the reference the batched pass is tested against)."""
    runs = []
    for optimizer, lr in grid.points():
        if optimizer == "lbfgs":
            records = _lbfgs_run(model, support, loss_fn, steps, lr, grid)
        else:
            records = _first_order_run(model, support, loss_fn, steps, optimizer, lr, grad_clip)
        runs.append((optimizer, lr, records))
    return runs


def _choose(runs: list[tuple[str, float, dict]], k: int) -> tuple[str, float, dict] | None:
    """The run with the lowest finite support loss after ``k`` steps (ties: the smaller rate, then grid order)."""
    order = {id(run): i for i, run in enumerate(runs)}
    candidates = [run for run in runs if k in run[2] and math.isfinite(run[2][k]["loss"])]
    return min(candidates, key=lambda run: (run[2][k]["loss"], run[1], order[id(run)]), default=None)


def full_strength_curve(model: nn.Module, support, query, loss_fn: Callable, steps: Sequence[int],
                        grid: FinetuneGrid = FULL_STRENGTH_GRID, render: Callable = render_images,
                        grad_clip: float | None = None) -> dict[str, Any]:
    """Fine-tune copies of ``model`` on ``support`` with every ``(optimizer, lr)`` of ``grid`` for ``max(steps)``
    steps; after each step count ``k`` in ``steps`` keep the run whose *support* loss is lowest and score its
    weights on ``query``. ``model`` is unchanged; the query is read only to score the chosen weights.

    ``support``, ``query``: ``(degraded [K, C, H, W], clean [K, C, H, W])``; ``render(model, query)`` gives the
    ``(prediction, target)`` scored; ``grad_clip`` clips Adam/SGD gradients (L-BFGS's line search bounds its own
    step). A run whose loss or weights become NaN/Inf stops there: it is a candidate only before that step.

    Returns ``{"psnr", "ssim", "support_loss", "optimizer", "lr", "grid_edge", "evaluations", "per_optimizer":
    {k: ...}, "seconds"}``: at ``k = 0`` nothing is fine-tuned (``optimizer`` and ``lr`` are ``None``, ``grid_edge``
    False); ``grid_edge[k]`` is True when the chosen rate is an end of its optimizer's grid; ``evaluations[k]`` the
    support-loss gradients the chosen run took; ``per_optimizer[k]`` (``k > 0``) each optimizer's own best rate,
    its support loss and edge flag; ``seconds`` the whole search. A step count every run diverged before gets NaN
    scores and ``optimizer`` ``None``.
    """
    import time

    from ..meta.functional import FunctionalModel

    steps = sorted({check_int("steps", k, minimum=0) for k in steps})
    if not steps:
        raise ValueError("steps must name at least one step count, e.g. (0, 1, 2, 5, 10, 20, 50)")
    start = time.perf_counter()
    runs = _grid_runs(model, support, loss_fn, steps, grid, grad_clip)
    keys = ("psnr", "ssim", "support_loss", "optimizer", "lr", "grid_edge", "evaluations")
    out: dict[str, Any] = {key: {} for key in keys}
    for k in steps:
        best = _choose(runs, k)
        if best is None:
            values = (math.nan, math.nan, math.nan, None, None, False, 0)
        else:
            optimizer, lr, records = best
            with torch.no_grad():
                prediction, target = render(FunctionalModel(model, records[k]["tensors"]), query)
            tuned = k > 0
            values = (psnr(prediction, target), ssim(prediction, target), records[k]["loss"],
                      optimizer if tuned else None, lr if tuned else None, tuned and grid.is_edge(optimizer, lr),
                      records[k]["evaluations"])
        for key, value in zip(keys, values, strict=True):
            out[key][k] = value
    out["per_optimizer"] = {k: _best_per_optimizer(runs, k, grid) for k in steps if k > 0}
    out["seconds"] = time.perf_counter() - start
    return out


def _best_per_optimizer(runs: list[tuple[str, float, dict]], k: int, grid: FinetuneGrid) -> dict[str, dict]:
    """``{optimizer: {"lr", "support_loss", "grid_edge"}}``: each optimizer's own choice after ``k`` steps, so a
    reader sees whether a grid that lost is itself cut short at an edge."""
    out = {}
    for name in OPTIMIZERS:
        best = _choose([run for run in runs if run[0] == name], k)
        if best is not None:
            out[name] = {"lr": best[1], "support_loss": best[2][k]["loss"], "grid_edge": grid.is_edge(name, best[1])}
    return out


@dataclass(frozen=True)
class Crossover:
    """Where the best baseline catches the meta-init. ``step``: the first step count whose verdict is not "the
    meta-init beats the baseline" (``None`` when the meta-init beats it at every step count); ``verdicts``:
    ``{k: (baseline name, PairedComparison of meta-init minus that baseline)}``; ``last_step`` and ``winner``:
    ``"meta-init"``, the baseline's name, or ``"within noise"`` at the last step count."""

    step: int | None
    last_step: int
    winner: str
    verdicts: dict[int, tuple[str, PairedComparison]] = field(default_factory=dict)

    def line(self, unit: str = "dB") -> str:
        """e.g. ``"crossover at 10 steps (joint); at 50 steps: joint"``."""
        where = "none" if self.step is None else f"at {self.step} steps ({self.verdicts[self.step][0]})"
        mean = self.verdicts[self.last_step][1]
        return (f"crossover {where}; at {self.last_step} steps: {self.winner} "
                f"(meta-init {mean.mean:+.3g} +- {mean.se:.2g} {unit})")


def crossover(meta: Mapping[int, Sequence[float]], baselines: Mapping[str, Mapping[int, Sequence[float]]],
              higher_is_better: bool = True, z: float | None = None) -> Crossover:
    """The crossover of the meta-init with the best baseline. ``meta``: ``{k: per-task values}`` after ``k``
    steps; ``baselines``: ``{name: {k: per-task values}}`` on the same tasks in the same order. At each step count
    both have, the best baseline is the one with the best mean there, and :func:`paired_verdict` (``z`` standard
    errors; default its paired 95% interval) compares the meta-init with it."""
    if not baselines:
        raise ValueError("baselines must name at least one baseline curve, e.g. {'joint': {5: [...], ...}}")
    common = sorted(set(meta).intersection(*(set(curve) for curve in baselines.values())))
    if not common:
        raise ValueError(f"meta and baselines share no step count: meta has {sorted(meta)}, baselines "
                         f"{ {name: sorted(curve) for name, curve in baselines.items()} }")
    sign = 1.0 if higher_is_better else -1.0
    verdicts: dict[int, tuple[str, PairedComparison]] = {}
    for k in common:
        name = max(baselines, key=lambda n: sign * sum(baselines[n][k]) / len(baselines[n][k]))
        verdicts[k] = (name, paired_verdict(meta[k], baselines[name][k], higher_is_better, z))
    step = next((k for k in common if verdicts[k][1].verdict != "beats"), None)
    last_name, last = verdicts[common[-1]]
    winner = {"beats": "meta-init", "is beaten by": last_name}.get(last.verdict, "within noise")
    return Crossover(step=step, last_step=common[-1], winner=winner, verdicts=verdicts)
