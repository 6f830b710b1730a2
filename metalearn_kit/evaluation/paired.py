"""The paired verdict: does method A beat method B on the same tasks, or is the difference within noise?

Both methods are scored on the *same* tasks, so the per-task differences ``a_i - b_i`` remove the spread between
easy and hard tasks. A verdict of "beats" needs the mean difference above ``z`` standard errors of that mean;
"is beaten by" below ``-z``; anything between is "is within noise of". By default ``z`` is the 97.5% quantile of
Student's t with ``n - 1`` degrees of freedom (:func:`t_quantile`), so the verdict agrees with the paired 95% interval
the benchmarks report: with 3 tasks it is 4.30 standard errors, with 8 tasks 2.36, with 48 tasks 2.01. One function,
used by the notebooks and the benchmarks' targets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .._checks import check_float

__all__ = ["PairedComparison", "paired_verdict", "t_quantile", "VERDICTS"]

VERDICTS = ("beats", "is beaten by", "is within noise of")


def t_quantile(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom: a paired 95% interval is the mean
    difference +- this many standard errors (1.96 as ``df`` grows)."""
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"df must be an int >= 1 (tasks - 1), got {df!r}")
    try:
        from scipy.stats import t
    except ImportError:  # scipy comes with scikit-image; without it, the normal quantile
        return 1.959964
    return float(t.ppf(0.975, df))


@dataclass(frozen=True)
class PairedComparison:
    """``mean`` and ``se``: the mean per-task difference (a - b, sign turned so positive is better for a) and
    its standard error over ``n`` tasks; ``verdict`` one of :data:`VERDICTS`."""

    mean: float
    se: float
    n: int
    verdict: str

    def line(self, a: str, b: str, unit: str = "") -> str:
        """e.g. ``"maml is within noise of joint: +0.27 +- 0.21 dB (paired, 4 tasks)"``."""
        unit = f" {unit}" if unit else ""
        return f"{a} {self.verdict} {b}: {self.mean:+.3g} +- {self.se:.2g}{unit} (paired, {self.n} tasks)"


def paired_verdict(a: Sequence[float], b: Sequence[float], higher_is_better: bool = True,
                   z: float | None = None) -> PairedComparison:
    """Compare per-task scores ``a`` and ``b`` (same tasks, same order, at least 2).

    ``higher_is_better=False`` for losses (NLL, distances): the difference is then ``b - a``, so a positive
    mean always means "a is better". ``z`` is the number of standard errors a difference must exceed (default:
    :func:`t_quantile` of ``n - 1``, so "beats" means the paired 95% interval lies above 0).
    """
    a, b = list(a), list(b)
    if len(a) != len(b):
        raise ValueError(f"a and b must score the same tasks, got {len(a)} and {len(b)} values; pass per-task "
                         "scores of both methods in the same task order")
    if len(a) < 2:
        raise ValueError(f"a paired verdict needs at least 2 tasks, got {len(a)}; score more tasks")
    z = t_quantile(len(a) - 1) if z is None else check_float("z", z, minimum=0.0, strict_min=True)
    sign = 1.0 if higher_is_better else -1.0
    diffs = [sign * (float(x) - float(y)) for x, y in zip(a, b, strict=True)]
    if not all(math.isfinite(d) for d in diffs):
        raise ValueError(f"a and b must be finite numbers, got differences {diffs}")
    n = len(diffs)
    mean = sum(diffs) / n
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n)
    verdict = VERDICTS[0] if mean > z * se else VERDICTS[1] if mean < -z * se else VERDICTS[2]
    return PairedComparison(mean=mean, se=se, n=n, verdict=verdict)
