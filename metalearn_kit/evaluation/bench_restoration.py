"""The restoration benchmark's report: whether each target holds, where meta-learning wins or loses, and one
text table. (``metalearn-kit bench restoration`` runs it: :mod:`metalearn_kit.commands.bench_restoration`.)

Targets (checked, never enforced -- a miss is printed as a miss):

- denoising and deblurring/inpainting: the meta-learned init beats scratch training with the same number of
  steps by >= 5 dB at some step count <= 5;
- super-resolution: meta-init after 1 step >= bicubic-pretrained after 1 step + 0.5 dB, and after 10 steps
  >= the ZSSR-style network after 300 steps;
- image fitting: meta-init after 2 steps >= standard init after 20 steps.

Beside them the table says where meta-learning loses to joint pretraining or to the best classical method, and,
under the full-strength protocol, the meta-init against the best fine-tuned baseline at 5 and 50 steps (paired over
the same test tasks) and against the best classical method.
"""

from __future__ import annotations

from typing import Any

__all__ = ["check_targets", "comparisons", "format_table"]


def _value(rows, experiment, method_prefix, steps, metric="psnr") -> float | None:
    for row in rows:
        if (row["experiment"] == experiment and row["method"].startswith(method_prefix) and row["steps"] == steps
                and row["metric"] == metric):
            return row["value"]
    return None


def check_targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target as ``{"target", "holds" (True/False/None when not measured), "detail"}``."""
    checks: list[dict[str, Any]] = []
    for experiment in ("denoising", "deblurring", "inpainting"):
        steps = sorted({r["steps"] for r in rows if r["experiment"] == experiment and r["steps"] is not None
                        and r["steps"] <= 5 and r["method"].startswith("meta-init")})
        margins = []
        for k in steps:
            meta, scratch = _value(rows, experiment, "meta-init", k), _value(rows, experiment, "scratch", k)
            if meta is not None and scratch is not None:
                margins.append((meta - scratch, k))
        if margins:
            margin, k = max(margins)
            checks.append({"target": f"{experiment}: meta-init beats scratch by >= 5 dB at <= 5 steps",
                           "holds": margin >= 5.0, "detail": f"best margin {margin:+.2f} dB at {k} steps"})
        else:
            checks.append({"target": f"{experiment}: meta-init beats scratch by >= 5 dB at <= 5 steps",
                           "holds": None, "detail": "not measured"})
    meta1, pre1 = _value(rows, "super_resolution", "meta-init", 1), _value(rows, "super_resolution", "bicubic-pre", 1)
    meta10, zssr = _value(rows, "super_resolution", "meta-init", 10), _value(rows, "super_resolution", "ZSSR", 300)
    checks.append({"target": "super_resolution: meta-init@1 >= pretrained@1 + 0.5 dB",
                   "holds": None if meta1 is None or pre1 is None else meta1 >= pre1 + 0.5,
                   "detail": "not measured" if meta1 is None or pre1 is None
                   else f"{meta1:.2f} vs {pre1:.2f} dB ({meta1 - pre1:+.2f})"})
    checks.append({"target": "super_resolution: meta-init@10 >= ZSSR-style scratch@300",
                   "holds": None if meta10 is None or zssr is None else meta10 >= zssr,
                   "detail": "not measured" if meta10 is None or zssr is None
                   else f"{meta10:.2f} vs {zssr:.2f} dB ({meta10 - zssr:+.2f})"})
    # the target is the plain learned init's (MAML); the Meta-SGD row, which also learns its step sizes, is a
    # stronger meta-learner beside it, not a replacement for it
    meta2, std20 = _value(rows, "image_fitting", "meta-init (MAML)", 2), _value(rows, "image_fitting", "standard", 20)
    checks.append({"target": "image_fitting: meta-init@2 >= standard init@20",
                   "holds": None if meta2 is None or std20 is None else meta2 >= std20,
                   "detail": "not measured" if meta2 is None or std20 is None
                   else f"{meta2:.2f} vs {std20:.2f} dB ({meta2 - std20:+.2f})"})
    return checks


def comparisons(rows: list[dict[str, Any]]) -> list[str]:
    """Lines saying, per experiment, whether the meta-learned init (at its largest measured step count) beats
    joint pretraining at the same steps and the best classical method; then, where the rows carry roles, the
    protocol's paired lines (:func:`~metalearn_kit.evaluation.restoration_targets.protocol_lines`: meta against
    the best full-strength baseline at 5 and 50 steps and against the best classical method)."""
    from .restoration_targets import protocol_lines

    lines = []
    for experiment in dict.fromkeys(r["experiment"] for r in rows):
        part = [r for r in rows if r["experiment"] == experiment and r["metric"] == "psnr"]
        meta = [r for r in part if r["method"].startswith("meta-init") and r["steps"] is not None]
        if not meta:
            continue
        top = max(meta, key=lambda r: r["steps"])
        text = f"{experiment}: meta-init@{top['steps']} {top['value']:.2f} dB"
        joint = _value(rows, experiment, "joint", top["steps"]) or _value(rows, experiment, "bicubic-pre", top["steps"])
        if joint is not None:
            verdict = "meta wins" if top["value"] > joint else "META LOSES"
            text += f"; pretrained@{top['steps']} {joint:.2f} dB ({verdict})"
        classical = [r for r in part if r["steps"] is None and "input" not in r["method"]
                     and r.get("role", "classical") == "classical"]
        if classical:
            best = max(classical, key=lambda r: r["value"])
            text += (f"; best classical {best['method']} {best['value']:.2f} dB "
                     f"({'meta wins' if top['value'] > best['value'] else 'META LOSES'})")
        lines.append(text)
    return lines + protocol_lines(rows)


def format_table(rows: list[dict[str, Any]]) -> str:
    """One line per (experiment, method, steps): PSNR, SSIM and seconds per task."""
    keyed: dict[tuple, dict[str, float]] = {}
    for row in rows:
        keyed.setdefault((row["experiment"], row["method"], row["steps"]), {})[row["metric"]] = row["value"]
    lines = [f"{'experiment':22s} {'method':46s} {'steps':>5s} {'PSNR':>7s} {'SSIM':>6s} {'sec':>7s}"]
    for (experiment, method, steps), values in keyed.items():
        psnr = values.get("psnr")
        ssim = values.get("ssim")
        sec = values.get("wall_time_s")
        lines.append(f"{experiment:22s} {method:46s} {'-' if steps is None else steps:>5} "
                     f"{'' if psnr is None else f'{psnr:7.2f}':>7s} {'' if ssim is None else f'{ssim:6.3f}':>6s} "
                     f"{'' if sec is None else f'{sec:7.2f}':>7s}")
    return "\n".join(lines)
