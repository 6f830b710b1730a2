"""Whether the generation benchmark's targets hold.

:func:`check_targets`: the benchmark's targets on unseen classes, each with a paired 95% interval (the mean
per-task difference +- Student's t quantile times its standard error, the rule of
:func:`~metalearn_kit.evaluation.paired.paired_verdict`; per-task values are in each row's ``per_task``):

- query NLL: the best inner-loop method below joint pretraining + fine-tuning (interval below 0) on glyphs and
  on real Omniglot;
- a learned generator beats affine jitter on downstream 5-way 1-shot and 5-shot accuracy, or on recall at
  equal precision (interval above 0);
- no trivial baseline passes the downstream target (none has a likelihood, so none can pass the NLL one);
- ``bench generation --profile fast`` under 15 minutes.

:func:`check_earlier_targets`: the targets of the round before, kept for reference. Nothing is tuned here;
whatever fails is reported as failing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .paired import paired_verdict, t_quantile

__all__ = ["INNER_LOOP", "WALL_LIMIT_S", "check_earlier_targets", "check_targets", "paired_difference"]

INNER_LOOP = ("maml", "fomaml", "reptile", "cavia")
WALL_LIMIT_S = 15 * 60


def _mean_se(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    se = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n) if n > 1 else 0.0
    return mean, se


def _row(rows: Sequence[dict], source: str | None, method: str, shots: int, steps: int, metric: str
         ) -> dict | None:
    for row in rows:
        if ((row["method"], row["shots"], row["steps"], row["metric"]) == (method, shots, steps, metric)
                and source in (None, row.get("source"))):
            return row
    return None


def paired_difference(rows: Sequence[dict], source: str | None, a: tuple[str, int], b: tuple[str, int],
                      metric: str, shots: int) -> tuple[float, float] | None:
    """Mean and 95% half-width (t quantile x standard error) of the per-task ``a - b`` of ``metric`` at ``shots``
    (``a``, ``b``: ``(method,
    steps)``) on ``source``'s rows, or None when either is not measured."""
    ra, rb = _row(rows, source, a[0], shots, a[1], metric), _row(rows, source, b[0], shots, b[1], metric)
    if ra is None or rb is None or len(ra["per_task"]) != len(rb["per_task"]) or not ra["per_task"]:
        return None
    mean, se = _mean_se([x - y for x, y in zip(ra["per_task"], rb["per_task"], strict=True)])
    return mean, (t_quantile(len(ra["per_task"]) - 1) * se if len(ra["per_task"]) > 1 else 0.0)


def _text(diff: tuple[float, float]) -> str:
    return f"{diff[0]:+.3g} +- {diff[1]:.2g}"


def _nll_target(rows: Sequence[dict], sources: list[str], shots: int, steps: int) -> dict[str, Any]:
    """The best inner-loop method's query NLL below joint + fine-tuning on every source (interval below 0)."""
    verdicts, details = [], []
    for source in sources:
        measured = [(r["value"], r["method"]) for m in INNER_LOOP
                    if (r := _row(rows, source, m, shots, steps, "query_nll_nats")) is not None]
        diff = None if not measured else paired_difference(rows, source, (min(measured)[1], steps),
                                                           ("joint", steps), "query_nll_nats", shots)
        if diff is None:
            details.append(f"{source}: not measured")
            continue
        verdicts.append(diff[0] + diff[1] < 0)
        details.append(f"{source}: NLL({min(measured)[1]}) - NLL(joint+ft) = {_text(diff)} nats")
    missing = {"glyphs", "omniglot"} - set(sources)
    details += [f"{source}: not run" for source in sorted(missing)]
    holds = False if False in verdicts else (None if missing or not verdicts else True)
    return {"target": f"query NLL ({shots} shots, {steps} steps): the best inner-loop method below joint "
                      f"pretraining + fine-tuning (paired interval below 0) on glyphs and on real Omniglot",
            "holds": holds, "detail": "; ".join(details)}


def _steps_of(rows: Sequence[dict], source: str, method: str, shots: int, steps: int) -> int | None:
    """The ``k`` a method is compared at: ``steps`` where it has rows there, else its only ``k`` (0)."""
    ks = {r["steps"] for r in rows if r["method"] == method and r["shots"] == shots and r.get("source") == source}
    return steps if steps in ks else (min(ks) if len(ks) == 1 else None)


def _beats_jitter(rows: Sequence[dict], source: str, method: str, steps: int, shots_list: Sequence[int]
                  ) -> tuple[bool, str] | None:
    """Does ``method`` beat affine jitter on downstream accuracy at every K of ``shots_list``, or on recall at
    equal precision (precision interval reaching 0 or above) at every K? Lower interval end above 0."""
    downstream, recall, parts = [], [], []
    for shots in shots_list:
        k = _steps_of(rows, source, method, shots, steps)
        if k is None:
            return None
        acc = paired_difference(rows, source, (method, k), ("affine_jitter", 0), "downstream_accuracy", shots)
        rec = paired_difference(rows, source, (method, k), ("affine_jitter", 0), "recall", shots)
        prec = paired_difference(rows, source, (method, k), ("affine_jitter", 0), "precision", shots)
        if acc is None:
            return None
        downstream.append(acc[0] - acc[1] > 0)
        recall.append(rec is not None and prec is not None and rec[0] - rec[1] > 0 and prec[0] + prec[1] >= 0)
        parts.append(f"K={shots} k={k}: downstream {_text(acc)}" + (
            "" if rec is None or prec is None else f", recall {_text(rec)}, precision {_text(prec)}"))
    return all(downstream) or all(recall), f"{method} - affine_jitter: " + "; ".join(parts)


def _value(rows: list[dict], method: str, shots: int, steps: int, metric: str) -> float | None:
    for row in rows:
        if (row["method"], row["shots"], row["steps"], row["metric"]) == (method, shots, steps, metric):
            return row["value"]
    return None


def check_earlier_targets(result: dict, shots: int = 5, steps: int = 10) -> list[dict[str, Any]]:
    """The earlier targets (sample metrics that copies pass) on one source's ``result``, each as ``{"target", "holds"
    (True/False/None = not measured), "detail"}``, kept for reference: their sample metrics do not tell a
    generator from a copier (the trivial rows show it). "No worse than" is a paired test: the mean per-task
    difference is within 1.96 standard errors."""
    rows = result["rows"]
    per_task = result["info"]["per_task"]

    def paired(a: str, b: str, metric: str) -> tuple[float, float] | None:
        xa = per_task.get(f"{a}|{shots}|{steps}|{metric}")
        xb = per_task.get(f"{b}|{shots}|{steps}|{metric}")
        if not xa or not xb or len(xa) != len(xb):
            return None
        if len(xa) < 2:  # one task: no standard error (paired_verdict needs two)
            return _mean_se([x - y for x, y in zip(xa, xb, strict=True)])
        comparison = paired_verdict(xa, xb)  # the kit's one paired comparison: mean and se of a - b
        return comparison.mean, comparison.se

    out = []
    for algo in ("maml", "fomaml", "reptile"):
        vs_scratch, vs_joint = paired(algo, "scratch", "query_nll_nats"), paired(algo, "joint", "query_nll_nats")
        holds = None
        if vs_scratch is not None and vs_joint is not None:
            holds = vs_scratch[0] < 0 and vs_joint[0] <= 1.96 * vs_joint[1]
        detail = ("not measured" if holds is None else
                  f"NLL({algo}) - NLL(scratch) = {vs_scratch[0]:+.2f} +- {vs_scratch[1]:.2f} nats, "
                  f"NLL({algo}) - NLL(joint+ft) = {vs_joint[0]:+.2f} +- {vs_joint[1]:.2f} nats")
        out.append({"target": f"{algo} VAE, {shots} shots, {steps} steps: query NLL < scratch and no worse than "
                              f"joint pretraining + fine-tuning", "holds": holds, "detail": detail})
    ns = [_value(rows, "statistician", k, 0, "query_nll_nats") for k in (1, 5, 10)]
    holds = None if None in ns else bool(ns[0] > ns[1] > ns[2])
    out.append({"target": "NS-lite query NLL decreases as shots go 1 -> 5 -> 10", "holds": holds,
                "detail": "not measured" if holds is None else " -> ".join(f"{v:.2f}" for v in ns) + " nats"})
    meta_methods = ("maml", "fomaml", "reptile", "figr", "cavia")
    candidates = [(m, _value(rows, m, shots, steps, "prototype_accuracy")) for m in meta_methods]
    candidates = [(m, v) for m, v in candidates if v is not None]
    scratch_fd = _value(rows, "scratch", shots, steps, "frechet_distance")
    if not candidates or scratch_fd is None:
        out.append({"target": "best meta-learned samples: prototype accuracy >= 60% and Frechet < scratch",
                    "holds": None, "detail": "not measured"})
    else:
        best, acc = max(candidates, key=lambda mv: mv[1])
        fd = _value(rows, best, shots, steps, "frechet_distance")
        out.append({"target": f"best meta-learned samples ({best}, {shots} shots, {steps} steps): 5-way prototype "
                              f"accuracy >= 60% and Frechet < scratch",
                    "holds": bool(acc >= 0.6 and fd < scratch_fd),
                    "detail": f"accuracy {acc:.1%}, Frechet {fd:.2f} vs scratch {scratch_fd:.2f}"})
    out.append(_inner_loop_target(rows, paired, shots, steps))
    background = result["info"].get("cgan_background")
    out.append({"target": "conditional GAN: samples of the background classes classified correctly >= 80% by the "
                          "feature network", "holds": None if background is None else background["accuracy"] >= 0.8,
                "detail": "not measured" if background is None else
                f"accuracy {background['accuracy']:.1%} over {background['classes']} classes (real held-out images: "
                f"{background['holdout_accuracy']:.1%}), novelty ratio {background['novelty_ratio']:.2f}"})
    return out


def _inner_loop_target(rows: list[dict], paired, shots: int, steps: int) -> dict[str, Any]:
    """The inner-loop target: some ``inner_loop`` method with prototype accuracy >= 60% and novelty ratio >= 0.8
    at the same ``(shots, steps)``, and query NLL no worse than joint + fine-tuning (paired, 1.96 s.e.)."""
    verdicts = []
    for method in INNER_LOOP:
        acc = _value(rows, method, shots, steps, "prototype_accuracy")
        novelty = _value(rows, method, shots, steps, "novelty_ratio")
        vs_joint = paired(method, "joint", "query_nll_nats")
        if acc is None or novelty is None or vs_joint is None:
            continue
        holds = acc >= 0.6 and novelty >= 0.8 and vs_joint[0] <= 1.96 * vs_joint[1]
        verdicts.append((holds, acc, method, f"{method}: accuracy {acc:.1%}, novelty ratio {novelty:.2f}, "
                                             f"NLL - NLL(joint+ft) = {vs_joint[0]:+.2f} +- {vs_joint[1]:.2f} nats"))
    target = (f"an inner-loop method ({shots} shots, {steps} steps): prototype accuracy >= 60% with novelty ratio "
              f">= 0.8, query NLL no worse than joint pretraining + fine-tuning")
    if not verdicts:
        return {"target": target, "holds": None, "detail": "not measured"}
    verdicts.sort(key=lambda v: (v[0], v[1]), reverse=True)
    return {"target": target, "holds": bool(verdicts[0][0]), "detail": "; ".join(v[3] for v in verdicts)}


def _downstream_target(rows: Sequence[dict], sources: list[str], methods: Sequence[str], steps: int,
                       shots_list: Sequence[int], label: str) -> dict[str, Any]:
    """Some method of ``methods`` beats affine jitter (:func:`_beats_jitter`) on every source."""
    verdicts, details = [], []
    for source in sources:
        found = [v for m in methods if (v := _beats_jitter(rows, source, m, steps, shots_list)) is not None]
        if not found:
            details.append(f"{source}: not measured")
            continue
        verdicts.append(any(v[0] for v in found))
        winners = [v[1] for v in found if v[0]]
        details.append(f"{source}: " + ("; ".join(winners) if winners else "none beats affine_jitter"))
    holds = None if not verdicts else all(verdicts)
    shots_text = " and ".join(f"{s}-shot" for s in shots_list)
    return {"target": f"{label} beats affine jitter on downstream 5-way {shots_text} accuracy, or on recall at "
                      f"equal precision (paired interval's lower end above 0)", "holds": holds,
            "detail": " | ".join(details)}


def check_targets(rows: Sequence[dict], shots: int = 5, steps: int = 10, downstream_shots: Sequence[int] = (1, 5),
                  wall_s: float | None = None) -> list[dict[str, Any]]:
    """The benchmark's targets on ``rows`` (of every source run; each row with ``source``, ``kind`` and
    ``per_task``), each ``{"target", "holds" (True/False/None = not measured), "detail"}``. ``wall_s``: the
    benchmark's wall time, for the time target."""
    if isinstance(rows, dict):  # a result of evaluate_generation
        rows = rows["rows"]
    sources = sorted({r.get("source", "glyphs") for r in rows})
    learned = sorted({r["method"] for r in rows if r["kind"] not in ("trivial", "reference")})
    trivial = sorted({r["method"] for r in rows if r["kind"] == "trivial"} - {"affine_jitter", "support_only"})
    out = [_nll_target(rows, sources, shots, steps),
           _downstream_target(rows, sources, learned, steps, downstream_shots, "a learned generator")]
    passed = _downstream_target(rows, sources, trivial, steps, downstream_shots, "a trivial baseline")
    out.insert(0, {"target": "no trivial baseline passes any target below (none has a likelihood; the downstream "
                             "target is checked for copies, blurred copies and the support mean)",
                   "holds": None if passed["holds"] is None else not passed["holds"], "detail": passed["detail"]})
    out.append({"target": "bench generation --profile fast under 15 minutes on 2 cores",
                "holds": None if wall_s is None else wall_s < WALL_LIMIT_S,
                "detail": "not measured" if wall_s is None else f"{wall_s / 60:.1f} min"})
    return out
