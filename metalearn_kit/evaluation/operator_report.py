"""The operator families' report: one table per family (query PSNR per method and step count at each support size
``K``, the fine-tuning choices, the crossover) and the benchmark's targets for them, computed from the rows of
:func:`~metalearn_kit.evaluation.operator_experiments.operator_experiment`.

Targets (pre-registered, checked at every ``K``; a miss is printed as a miss):

- in at least two families, the meta-init after 5 steps beats the best full-strength baseline after 5 steps
  (joint, joint + learned step sizes, scratch; the best by mean), the paired 95% interval's lower end above 0;
- in every family, the meta-init after 50 steps is no more than 0.1 dB below itself after 5 steps (adapting
  longer than meta-training did does not hurt).
"""

from __future__ import annotations

import statistics
from typing import Any

from .operator_experiments import BASELINE_ROLES
from .restoration_targets import paired_difference

__all__ = ["operator_tables", "operator_targets"]


def _psnr_rows(rows: list[dict[str, Any]], family: str, k: int) -> list[dict[str, Any]]:
    return [r for r in rows if r["experiment"] == family and r.get("support_size") == k and r["metric"] == "psnr"]


def _at(rows: list[dict[str, Any]], role: str, steps: int | None) -> dict[str, Any] | None:
    return next((r for r in rows if r["role"] == role and r["steps"] == steps), None)


def _best_baseline(rows: list[dict[str, Any]], steps: int) -> dict[str, Any] | None:
    found = [r for r in (_at(rows, role, steps) for role in BASELINE_ROLES) if r is not None]
    return max(found, key=lambda r: r["value"]) if found else None


def _choice_text(row: dict[str, Any]) -> str:
    """The most frequent (optimizer, lr) a fine-tuned row chose over its tasks, and the edge flag."""
    if not row.get("optimizer"):
        return ""
    pairs = [f"{o} {lr:.0e}" for o, lr in zip(row["optimizer"], row["lr"]) if o is not None]
    if not pairs:
        return ""
    common = statistics.mode(pairs)
    edge = f", {row['grid_edge_tasks']} at a grid edge" if row.get("grid_edge") else ""
    return f"  [{common} in {pairs.count(common)}/{len(pairs)} tasks{edge}]"


def family_table(rows: list[dict[str, Any]], family: str, k: int) -> str:
    """One family's table at support size ``k``: every method's mean query PSNR per step count."""
    chosen = _psnr_rows(rows, family, k)
    steps = sorted({r["steps"] for r in chosen if r["steps"] is not None})
    lines = [f"{family}, K = {k} ({chosen[0]['tasks'] if chosen else 0} test tasks, "
             f"{chosen[0].get('test_source') if chosen else '?'})",
             f"{'method':<56}" + "".join(f"{'@' + str(s):>8}" for s in steps)]
    for method in dict.fromkeys(r["method"] for r in chosen):
        mine = {r["steps"]: r for r in chosen if r["method"] == method}
        if None in mine:
            lines.append(f"{method[:55]:<56}{mine[None]['value']:>8.2f}  (no steps)")
            continue
        cells = "".join(f"{mine[s]['value']:>8.2f}" if s in mine else f"{'':>8}" for s in steps)
        lines.append(f"{method[:55]:<56}{cells}{_choice_text(mine[max(mine)])}")
    summary = next((r for r in rows if r["experiment"] == family and r.get("support_size") == k
                    and r["metric"] == "crossover_step"), None)
    if summary is not None:
        lines.append(f"crossover: {summary['summary']}")
    return "\n".join(lines)


def operator_tables(rows: list[dict[str, Any]]) -> str:
    """Every family's table at every support size, separated by blank lines."""
    pairs = dict.fromkeys((r["experiment"], r["support_size"]) for r in rows if r.get("support_size") is not None)
    return "\n\n".join(family_table(rows, family, k) for family, k in pairs)


def _target(text: str, holds: bool | None, detail: str, **extra: Any) -> dict[str, Any]:
    return {"target": text, "holds": holds, "detail": detail, **extra}


def _meta_beats_best(rows: list[dict[str, Any]], family: str, k: int) -> tuple[bool | None, str]:
    chosen = _psnr_rows(rows, family, k)
    meta, best = _at(chosen, "meta", 5), _best_baseline(chosen, 5)
    diff = paired_difference(meta, best) if meta and best else None
    if diff is None:
        return None, f"{family}: not measured"
    low = diff["ci95"][0] if diff["ci95"] else None
    holds = diff["mean"] > 0 and low is not None and low > 0
    interval = f"[{low:+.2f}, {diff['ci95'][1]:+.2f}]" if low is not None else "n/a"
    return holds, f"{family}: meta@5 - {best['role']}@5 = {diff['mean']:+.2f} dB, 95% {interval}"


def _no_decline(rows: list[dict[str, Any]], family: str, k: int) -> tuple[bool | None, str]:
    chosen = _psnr_rows(rows, family, k)
    at5, at50 = _at(chosen, "meta", 5), _at(chosen, "meta", 50)
    if not at5 or not at50:
        return None, f"{family}: not measured"
    return at50["value"] >= at5["value"] - 0.1, f"{family}: {at5['value']:.2f} -> {at50['value']:.2f} dB"


def operator_targets(rows: list[dict[str, Any]], total_wall_time_s: float | None = None) -> list[dict[str, Any]]:
    """The targets of the module docs at every support size, and the benchmark's wall time (under 15 minutes)."""
    families = list(dict.fromkeys(r["experiment"] for r in rows if r.get("support_size") is not None))
    sizes = sorted({r["support_size"] for r in rows if r.get("support_size") is not None})
    targets = []
    for k in sizes:
        beats = [_meta_beats_best(rows, f, k) for f in families]
        measured = [h for h, _ in beats if h is not None]
        targets.append(_target(f"K = {k}: in >= 2 families meta@5 beats the best full-strength baseline@5 "
                               f"(paired 95% lower end > 0)", None if not measured else sum(measured) >= 2,
                               "; ".join(d for _, d in beats), support_size=k))
        declines = [_no_decline(rows, f, k) for f in families]
        measured = [h for h, _ in declines if h is not None]
        targets.append(_target(f"K = {k}: in every family meta@50 >= meta@5 - 0.1 dB",
                               None if not measured else all(measured), "; ".join(d for _, d in declines),
                               support_size=k))
    if total_wall_time_s is not None:
        targets.append(_target("bench restoration --profile fast under 15 minutes", total_wall_time_s < 900,
                               f"{total_wall_time_s:.0f} s"))
    return targets
