"""One "severity" knob for a degradation family: 0 = the mildest training level, 1 = the harshest test level.

Built-in families keep training and test ranges that differ in the parameters that set the severity (noise
level, blur width, scale, missing fraction, JPEG quality); those parameters are moved together along the
knob, from the training end furthest from the test range to the test end furthest from the training range
(so for JPEG, where lower quality is harsher, the knob lowers the quality). A user-given ``Degradation``
instance has one set of ranges: its numeric ``(low, high)`` ranges go from ``low`` (0) to ``high`` (1).
Parameters not on the knob (angle, inpainting mode, ...) keep their ranges and are drawn per task.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from .._checks import check_float

__all__ = ["SeverityKnob"]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numbers(spec: Any) -> list[float]:
    values = list(spec) if isinstance(spec, (tuple, list)) else [spec]
    return [float(v) for v in values if _is_number(v)]


@dataclass
class _Axis:
    param: str
    start: float          # value at severity 0
    end: float            # value at severity 1
    choices: list | None  # discrete values (ordered from start to end) for choice parameters
    integer: bool
    train: tuple[float, float] | None = None  # range of the value in training (None: no split information)
    test: tuple[float, float] | None = None

    def value(self, severity: float) -> Any:
        if self.choices is not None:
            return self.choices[round(severity * (len(self.choices) - 1))]
        value = self.start + severity * (self.end - self.start)
        return int(round(value)) if self.integer else value


class SeverityKnob:
    """Maps a severity in [0, 1] to parameter values of one degradation family.

    Args:
        family: a registered family name, a ``Degradation`` subclass, or an instance (user-defined families
            included).
    """

    def __init__(self, family: Any) -> None:
        from ..tasks.degradations import Degradation, make_degradation

        self.family = family
        if isinstance(family, Degradation):
            self.template = family
            self.name = family.name or type(family).__name__
            self.axes = self._instance_axes(family)
        else:
            self.template = make_degradation(family, split="train")
            self.name = self.template.name or type(self.template).__name__
            ranges = type(self.template).default_ranges
            if "train" in ranges and "test" in ranges:
                self.axes = self._split_axes(self.template, ranges["train"], ranges["test"])
            else:
                self.axes = self._instance_axes(self.template)

    @staticmethod
    def _instance_axes(degradation: Any) -> list[_Axis]:
        axes = []
        for param, spec in degradation.ranges.items():
            if isinstance(spec, tuple) and _is_number(spec[0]) and spec[0] != spec[1]:
                axes.append(_Axis(param, float(spec[0]), float(spec[1]), None, param in degradation.integer_params))
        return axes

    @staticmethod
    def _split_axes(degradation: Any, train: dict, test: dict) -> list[_Axis]:
        axes = []
        for param in train:
            if param not in test or train[param] == test[param]:
                continue
            a, b = _numbers(train[param]), _numbers(test[param])
            if not a or not b:
                continue
            harsher_up = sum(b) / len(b) > sum(a) / len(a)
            start = min(a) if harsher_up else max(a)
            end = max(b) if harsher_up else min(b)
            choices = None
            if isinstance(train[param], list) or isinstance(test[param], list):
                # only the listed values: others may not fit the images (e.g. scale 3 on 28-pixel patches)
                choices = sorted(set(a) | set(b), reverse=not harsher_up)
                choices = [int(c) if float(c).is_integer() else c for c in choices]
            axes.append(_Axis(param, start, end, choices, param in degradation.integer_params,
                              (min(a), max(a)), (min(b), max(b))))
        return axes

    @property
    def adjustable(self) -> bool:
        """False when the family has no numeric range to move (the severity knob does nothing)."""
        return bool(self.axes)

    def values(self, severity: float) -> dict[str, Any]:
        """Parameter values at ``severity`` (in [0, 1])."""
        severity = check_float("severity", severity, minimum=0.0, maximum=1.0)
        return {axis.param: axis.value(severity) for axis in self.axes}

    def degradation(self, severity: float) -> Any:
        """A degradation of this family with the knob's parameters fixed at ``severity``."""
        from ..tasks.degradations import Degradation, make_degradation

        values = self.values(severity)
        if isinstance(self.family, Degradation):
            # user instances may need constructor arguments we do not know (kernels): copy, then fix values
            fixed = copy.copy(self.family)
            fixed.ranges = dict(self.family.ranges)
            for param, value in values.items():
                fixed.ranges[param] = fixed._check_range(param, value)
            return fixed
        level = self.level(severity)
        fixed = make_degradation(self.family, split=level or "train", **values)
        fixed.split = level  # task titles then say whether this is a training or a test level (None: neither)
        return fixed

    def level(self, severity: float) -> str | None:
        """``"train"`` or ``"test"`` when every knob parameter lies in that split's range at ``severity``, else
        ``None`` (between the ranges, or a family without split information)."""
        values = self.values(severity)
        for split in ("train", "test"):
            spans = [getattr(axis, split) for axis in self.axes]
            if spans and all(span is not None and span[0] <= float(values[axis.param]) <= span[1]
                             for axis, span in zip(self.axes, spans)):
                return split
        return None

    def describe(self, severity: float) -> str:
        """Text for the widget: each parameter's value and whether training or testing uses that level."""
        parts = []
        for axis in self.axes:
            value = axis.value(check_float("severity", severity, minimum=0.0, maximum=1.0))
            text = f"{axis.param} = {value:.3g}" if isinstance(value, float) else f"{axis.param} = {value}"
            if axis.train is not None and axis.test is not None:
                if axis.train[0] <= float(value) <= axis.train[1]:
                    text += " (meta-training level)"
                elif axis.test[0] <= float(value) <= axis.test[1]:
                    text += " (meta-test level, unseen in training)"
                else:
                    text += " (between training and test levels)"
            parts.append(text)
        return ", ".join(parts) if parts else "this family has no adjustable parameter range"
