"""What each row of ``bench restoration`` is (its ``role``) and the targets the restoration benchmark is judged
by, each checked with a paired difference over the same test tasks: mean, standard error and 95% interval (Student t).

Targets (checked, never enforced -- a miss is reported as a miss):

- per operator family: meta-init after 5 steps >= joint pretraining after 5 steps + 1.0 dB with the lower end
  of the paired 95% interval above 0; and meta-init after 5 steps >= meta-init before adaptation + 2.0 dB;
- at least three families meet both;
- SIREN image fitting: meta-init after 2 steps >= standard init after 20 steps;
- MZSR: meta-init after 1 step >= bicubic-pretrained after 1 step + 0.5 dB;
- the homogeneous white-noise denoising stays in the benchmark as the counter-example, its verdict (meta-init
  vs joint pretraining after 5 steps) reported as measured;
- the whole fast benchmark under 10 minutes.

The five original experiments under the operator families' protocol (:func:`protocol_targets`): per experiment,
meta@5 beats the best full-strength baseline@5 (joint or scratch, the best mean there) with the paired 95% interval
above 0, and meta@50 >= meta@5 - 0.1 dB (adapting longer does not hurt); :func:`protocol_lines` says, per
experiment, meta against the best baseline and the best classical method at 5 and 50 steps.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from .paired import t_quantile

__all__ = ["BASELINE_ROLES", "add_roles", "best_baseline", "find_row", "issue_targets", "paired_difference",
           "protocol_lines", "protocol_targets", "role_of", "targets_markdown"]

# method name prefix -> role, for the rows of the five original experiments (the operator experiments set
# their role themselves); the first matching prefix wins
_ROLE_PREFIXES = (("meta-init + full-strength", "meta_tuned"),
                  ("meta-init", "meta"), ("joint", "joint"), ("bicubic-pretrained", "joint"),
                  ("scratch", "scratch"), ("ZSSR", "scratch"), ("standard init", "scratch"),
                  ("noisy input", "input"), ("degraded input", "input"), ("bicubic", "input"))


def role_of(method: str) -> str:
    """The role of a benchmark method: ``meta``, ``joint``, ``scratch``, ``classical``, ``oracle`` or
    ``input`` (methods named ``oracle: ...`` are oracles; unlisted names are classical references)."""
    if method.startswith("oracle"):
        return "oracle"
    for prefix, role in _ROLE_PREFIXES:
        if method.startswith(prefix):
            return role
    return "classical"


def add_roles(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give every row without one a ``role`` (in place; returns ``rows``)."""
    for row in rows:
        row.setdefault("role", role_of(row["method"]))
    return rows


def find_row(rows, experiment: str, role: str, steps: int | None, method_prefix: str = "",
             metric: str = "psnr") -> dict | None:
    """The first row of ``rows`` with this ``experiment``, ``role``, ``steps`` (``None``: step-free methods),
    ``metric`` and a method name starting with ``method_prefix``; ``None`` if there is none. Its ``per_task``
    values (same task order for every method) feed :func:`~metalearn_kit.evaluation.paired_verdict`."""
    for row in rows:
        if (row["experiment"] == experiment and row.get("role") == role and row["steps"] == steps
                and row["metric"] == metric and row["method"].startswith(method_prefix)):
            return row
    return None


_find = find_row


def paired_difference(a: dict, b: dict, margin: float = 0.0) -> dict[str, Any] | None:
    """``a - b - margin`` task by task (the rows' ``per_task`` values, same task order): ``mean``, ``stderr``,
    ``ci95`` ``[low, high]`` and ``tasks``; ``None`` when either row lacks per-task values."""
    if not a or not b or not a.get("per_task") or not b.get("per_task") or len(a["per_task"]) != len(b["per_task"]):
        return None
    diffs = [x - y - margin for x, y in zip(a["per_task"], b["per_task"])]
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return {"mean": mean, "stderr": None, "ci95": None, "tasks": len(diffs)}
    se = statistics.stdev(diffs) / math.sqrt(len(diffs))
    half = t_quantile(len(diffs) - 1) * se
    return {"mean": mean, "stderr": se, "ci95": [mean - half, mean + half], "tasks": len(diffs)}


def _target(text: str, holds: bool | None, detail: str, difference: dict | None = None, **extra) -> dict[str, Any]:
    entry = {"target": text, "holds": holds, "detail": detail, **extra}
    if difference is not None:
        entry["paired_difference"] = difference
    return entry


def _describe(label_a: str, a: dict, label_b: str, b: dict, diff: dict, margin: float) -> str:
    ci = diff["ci95"]
    raw = diff["mean"] + margin
    ci_text = "" if ci is None else f", 95% [{ci[0] + margin:+.2f}, {ci[1] + margin:+.2f}]"
    se_text = "" if diff["stderr"] is None else f" +- {diff['stderr']:.2f}"
    return (f"{label_a} {a['value']:.2f} vs {label_b} {b['value']:.2f} dB: difference {raw:+.2f}{se_text} dB"
            f"{ci_text} over {diff['tasks']} tasks")


def _margin_target(rows, experiment: str, text: str, a_key: tuple, b_key: tuple, margin: float,
                   need_positive_ci: bool, min_tasks: int = 1) -> dict[str, Any]:
    a, b = _find(rows, experiment, *a_key), _find(rows, experiment, *b_key)
    diff = paired_difference(a, b, margin) if a and b else None
    if diff is None:
        return _target(text, None, "not measured")
    holds = diff["mean"] >= 0
    if need_positive_ci:  # the lower end of the 95% interval of the raw difference (a - b) above 0
        holds = holds and diff["ci95"] is not None and diff["ci95"][0] + margin > 0
    holds = holds and diff["tasks"] >= min_tasks
    label_a = f"{a_key[0]}@{a_key[1]}"
    label_b = f"{b_key[0]}@{b_key[1]}"
    return _target(text, holds, _describe(label_a, a, label_b, b, diff, margin), diff, experiment=experiment)


def issue_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per target of the experiments other than the operator families (those are in
    :func:`~metalearn_kit.evaluation.operator_report.operator_targets`): ``target``, ``holds`` (True/False/None
    when not measured), ``detail`` and, where it is a comparison, ``paired_difference``; then
    :func:`protocol_targets`."""
    targets = []
    targets.append(_margin_target(rows, "image_fitting", "image_fitting (SIREN): meta@2 >= standard init@20",
                                  ("meta", 2, "meta-init (MAML)"), ("scratch", 20), 0.0, False))
    targets.append(_margin_target(rows, "super_resolution", "super_resolution (MZSR): meta@1 >= pretrained@1 + 0.5 dB",
                                  ("meta", 1), ("joint", 1), 0.5, False))
    meta, joint = _find(rows, "denoising", "meta", 5), _find(rows, "denoising", "joint", 5)
    diff = paired_difference(meta, joint) if meta and joint else None
    if diff is None:
        targets.append(_target("white-noise denoising stays as the counter-example, verdict as measured", None,
                               "not measured"))
    else:
        verdict = "joint pretraining wins" if diff["mean"] < 0 else "meta-init wins"
        targets.append(_target("white-noise denoising stays as the counter-example, verdict as measured", True,
                               f"{verdict}: " + _describe("meta@5", meta, "joint@5", joint, diff, 0.0), diff))
    return targets + protocol_targets(rows)


BASELINE_ROLES = ("joint", "scratch")  # the fine-tuned baselines the meta-init is compared with
PROTOCOL_EXPERIMENTS = ("denoising", "super_resolution", "deblurring", "inpainting", "image_fitting",
                        "self_supervised")


def best_baseline(rows, experiment: str, steps: int) -> dict | None:
    """The PSNR row of :data:`BASELINE_ROLES` with the best mean after ``steps`` steps in ``experiment``: the
    strongest baseline there, which the meta-init must beat (``None`` when none ran that long)."""
    found = [r for r in (find_row(rows, experiment, role, steps) for role in BASELINE_ROLES) if r is not None]
    return max(found, key=lambda r: r["value"], default=None)


def _meta_beats_best(rows, experiment: str, steps: int) -> dict[str, Any]:
    text = f"{experiment}: meta@{steps} > best full-strength baseline@{steps} (paired 95% lower end > 0)"
    meta, best = find_row(rows, experiment, "meta", steps), best_baseline(rows, experiment, steps)
    diff = paired_difference(meta, best) if meta and best else None
    if diff is None:
        return _target(text, None, "not measured", experiment=experiment)
    holds = diff["mean"] > 0 and diff["ci95"] is not None and diff["ci95"][0] > 0
    return _target(text, holds, _describe(f"meta@{steps}", meta, f"{best['role']}@{steps}", best, diff, 0.0), diff,
                   experiment=experiment)


def _no_decline(rows, experiment: str) -> dict[str, Any]:
    text = f"{experiment}: meta@50 >= meta@5 - 0.1 dB"
    at5, at50 = find_row(rows, experiment, "meta", 5), find_row(rows, experiment, "meta", 50)
    if not at5 or not at50:
        return _target(text, None, "not measured", experiment=experiment)
    return _target(text, at50["value"] >= at5["value"] - 0.1, f"{at5['value']:.2f} -> {at50['value']:.2f} dB",
                   experiment=experiment)


def protocol_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The operator families' targets for each of the five original experiments present in ``rows``: meta@5 beats
    the best full-strength baseline@5 (paired 95% interval above 0), and meta@50 >= meta@5 - 0.1 dB."""
    present = [e for e in PROTOCOL_EXPERIMENTS if any(r["experiment"] == e for r in rows)]
    return [t for e in present for t in (_meta_beats_best(rows, e, 5), _no_decline(rows, e))]


def _best_classical(rows, experiment: str) -> dict | None:
    found = [r for r in rows if r["experiment"] == experiment and r.get("role") == "classical"
             and r["metric"] == "psnr"]
    return max(found, key=lambda r: r["value"], default=None)


def protocol_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Per experiment, the meta-init (its own inner loop) against the best full-strength baseline at 5 and 50 steps
    (paired mean difference and 95% interval) and against the best classical method at 50 steps."""
    lines = []
    for experiment in [e for e in PROTOCOL_EXPERIMENTS if any(r["experiment"] == e for r in rows)]:
        parts = []
        for steps in (5, 50):
            meta, best = find_row(rows, experiment, "meta", steps), best_baseline(rows, experiment, steps)
            diff = paired_difference(meta, best) if meta and best else None
            if diff is not None:
                ci = "" if diff["ci95"] is None else f" [{diff['ci95'][0]:+.2f}, {diff['ci95'][1]:+.2f}]"
                parts.append(f"meta@{steps} {meta['value']:.2f} vs {best['role']}@{steps} {best['value']:.2f} dB "
                             f"({diff['mean']:+.2f}{ci})")
        meta50, classical = find_row(rows, experiment, "meta", 50), _best_classical(rows, experiment)
        if meta50 and classical:
            diff = paired_difference(meta50, classical)
            parts.append(f"best classical {classical['method']} {classical['value']:.2f} dB (meta@50 "
                         f"{diff['mean']:+.2f})" if diff else f"best classical {classical['value']:.2f} dB")
        if parts:
            tasks = (find_row(rows, experiment, "meta", 5) or {}).get("tasks")
            lines.append(f"{experiment} ({tasks} tasks): " + "; ".join(parts))
    return lines


def targets_markdown(targets: list[dict[str, Any]]) -> str:
    """A benchmark JSON's ``targets`` as a markdown table: target, holds? (yes / **no** / not measured), measured."""
    lines = ["| target | holds? | measured |", "|---|---|---|"]
    for target in targets:
        holds = {True: "yes", False: "**no**", None: "not measured"}[target["holds"]]
        lines.append(f"| {target['target']} | {holds} | {target['detail']} |")
    return "\n".join(lines)
