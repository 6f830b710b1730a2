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
"""

from __future__ import annotations

import math
import statistics
from typing import Any

__all__ = ["add_roles", "find_row", "issue_targets", "paired_difference", "role_of", "targets_markdown"]

# method name prefix -> role, for the rows of the five original experiments (the operator experiments set
# their role themselves); the first matching prefix wins
_ROLE_PREFIXES = (("meta-init", "meta"), ("joint", "joint"), ("bicubic-pretrained", "joint"),
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


def _t_quantile(df: int) -> float:
    try:
        from scipy.stats import t

        return float(t.ppf(0.975, df))
    except ImportError:  # scipy is a dependency of scikit-image; the normal quantile is the fallback
        return 1.959964


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
    half = _t_quantile(len(diffs) - 1) * se
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
    when not measured), ``detail`` and, where it is a comparison, ``paired_difference``."""
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
    return targets


def targets_markdown(targets: list[dict[str, Any]]) -> str:
    """A benchmark JSON's ``targets`` as a markdown table: target, holds? (yes / **no** / not measured), measured."""
    lines = ["| target | holds? | measured |", "|---|---|---|"]
    for target in targets:
        holds = {True: "yes", False: "**no**", None: "not measured"}[target["holds"]]
        lines.append(f"| {target['target']} | {holds} | {target['detail']} |")
    return "\n".join(lines)
