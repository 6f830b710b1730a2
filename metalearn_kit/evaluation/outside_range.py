"""Outside the training range: the operator families (whose support set identifies the task), tested on
parameters beyond every value meta-training (and joint pretraining) saw, next to the usual held-out test bands.

The shipped fast checkpoints of each family are tested twice on held-out photographs: on the test split's bands
(interleaved with the training bands, as in ``bench restoration``) and on :data:`OUTSIDE` ranges that lie beyond
the whole training interval of one parameter (the other parameters keep their test ranges). Each run reports the
degraded input's PSNR and, per step count, the paired difference meta-init - joint pretraining after the same
fine-tuning steps, with its standard error over tasks (``scripts/restoration_outside_range.py`` prints and saves it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["OUTSIDE", "outside_range", "summarise"]

# one parameter per family, pushed beyond the interval its training bands cover
OUTSIDE = {
    "tone_curve": {"log2_gamma": [(-2.0, -1.6), (1.6, 2.0)]},  # trained within [-1.5, 1.5] (gamma 0.35-2.8)
    "colour_cast": {"hue": [(-180.0, -130.0), (130.0, 180.0)]},  # trained within [-120, 120] degrees
    "stripe_noise": {"period": (11.0, 16.0)},  # trained on periods 3-10 pixels
}
# one support size keeps the screen short; 5 pairs is the benchmark's largest
SUPPORT_SIZE = 5


def summarise(rows: list[dict], steps: list[int]) -> dict:
    """The degraded input's PSNR and, per step count, meta and joint PSNR and their paired difference
    (meta - joint)."""
    from .paired import paired_verdict

    psnr = {(r["role"], r["steps"]): r for r in rows if r["metric"] == "psnr"}
    out = []
    for k in steps:
        meta, joint = psnr[("meta", k)], psnr[("joint", k)]
        diff = paired_verdict(meta["per_task"], joint["per_task"])
        out.append({"steps": k, "meta_psnr": meta["value"], "joint_psnr": joint["value"],
                    "meta_minus_joint": diff.mean, "std_error": diff.se, "tasks": diff.n,
                    "verdict": f"meta-init {diff.verdict} joint"})
    return {"input_psnr": psnr[("input", None)]["value"], "by_steps": out}


def _line(family: str, ranges: dict | None, summary: dict, line: dict) -> str:
    label = "held-out bands in the range" if ranges is None else f"outside: {ranges}"
    return (f"{family:<14}{label[:33]:<34}{summary['input_psnr']:>9.2f}{line['steps']:>4}{line['meta_psnr']:>10.2f}"
            f"{line['joint_psnr']:>10.2f}{line['meta_minus_joint']:>+13.2f} +- {line['std_error']:.2f}")


def outside_range(families: list[str], log: Callable[[str], None] = print) -> dict[str, Any]:
    """Test each of ``families`` (keys of :data:`OUTSIDE`) inside and outside its training range at the fast
    profile; ``log`` gets a table line per step count. Returns ``{"profile", "device", "outside", "families":
    {family: {"inside": summary, "outside": summary}}, "rows", "wall_time_s"}``."""
    unknown = [f for f in families if f not in OUTSIDE]
    if unknown or not families:
        raise ValueError(f"families must be among {list(OUTSIDE)}, got {families!r}")
    from ..recipes.operator_families import operator_family
    from .operator_experiments import operator_experiment

    start = time.perf_counter()
    payload: dict[str, Any] = {"profile": "fast", "device": "cpu", "outside": OUTSIDE, "families": {}, "rows": []}
    log(f"{'family':<14}{'test tasks':<34}{'input dB':>9}{'k':>4}{'meta dB':>10}{'joint dB':>10}{'meta - joint':>22}")
    for family in families:
        steps = [k for k in operator_family(family).config("fast").steps if k > 0]
        payload["families"][family] = {}
        for where, ranges in (("inside", None), ("outside", OUTSIDE[family])):
            rows = operator_experiment(family, "fast", classical=False, test_ranges=ranges,
                                       support_sizes=(SUPPORT_SIZE,))
            summary = summarise(rows, steps)
            payload["families"][family][where] = summary
            payload["rows"] += [{**r, "where": where} for r in rows]
            for line in summary["by_steps"]:
                log(_line(family, ranges, summary, line))
    payload["wall_time_s"] = time.perf_counter() - start
    return payload
