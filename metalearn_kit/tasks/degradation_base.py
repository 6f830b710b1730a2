"""Degradation families, their base class and their registry: the forward models that turn a clean image
into a restoration task's input.

A :class:`Degradation` is a *family* (for example Gaussian noise) with a *range* for each parameter
(for example ``sigma`` in ``(0.05, 0.15)``). A restoration task draws one parameter set from those ranges
(:meth:`Degradation.sample_params`) and applies it to every image of the task (:meth:`Degradation.apply`),
so the support set shows the model the very degradation the query set asks it to undo.

Parameter ranges are written the same way everywhere:

- a number or a string: the parameter is fixed (``sigma=0.1``, ``mode="boxes"``);
- a tuple ``(low, high)``: drawn uniformly (integers inclusive for integer parameters);
- a list ``[a, b, c]``: one entry drawn uniformly.

Each built-in family has ``default_ranges`` per split (``"train"``, ``"val"``, ``"test"``). The test
ranges are disjoint from the training ranges in the parameter that sets the severity (noise level, blur
width, scale, missing fraction, quality), so meta-test tasks measure generalisation to *unseen* degradation
levels; ``"val"`` repeats the training ranges (new images, same distribution) for model selection.

Every output is clamped to [0, 1]. Noise is therefore clipped at black and white: measure the noise level
of a family on mid-grey images (0.5) or before clamping, as the tests do.

:meth:`Degradation.apply` checks what ``degrade`` returns, so a wrong family fails where it is applied and
names itself: the output must be a tensor of the clean images' shape and dtype, finite, and within
``[-raw_tolerance(params), 1 + raw_tolerance(params)]`` before clamping (:data:`RAW_RANGE_TOLERANCE` = 4 by
default, wider for strong noise), which catches a family working on the 0-255 scale; reading a parameter the
family does not have lists the ones it has. A subclass is also probed when it is registered (and when a task
distribution first meets it): the same generator must give the same output, which fails for a family drawing
from torch's global random generator instead of ``generator`` (see :mod:`.degradation_checks`).

Adding a family takes a subclass with a ``name``, ``default_ranges`` and a ``degrade`` method; it is then
registered, so ``make_degradation("your_name")`` and :class:`~metalearn_kit.tasks.RestorationTasks` accept
it like a built-in one::

    class SaltAndPepper(Degradation):
        name = "salt_and_pepper"
        default_ranges = {"train": {"amount": (0.02, 0.1)}, "test": {"amount": (0.15, 0.3)}}
        param_limits = {"amount": (0.0, 1.0)}

        def degrade(self, clean, params, generator):
            u = self.rand(clean.shape, generator, clean)
            out = clean.clone()
            out[u < params["amount"] / 2] = 0.0
            out[(u >= params["amount"] / 2) & (u < params["amount"])] = 1.0
            return out
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from .._checks import check_choice, check_float, check_images
from ..config import make_generator
from .degradation_checks import RAW_RANGE_TOLERANCE, Params, check_output, probe_class

__all__ = ["SPLITS", "Degradation", "list_degradations", "make_degradation", "register_degradation",
           "restoration_split"]

SPLITS = ("train", "val", "test")

_REGISTRY: dict[str, type[Degradation]] = {}
_KIT_PACKAGE = __name__.split(".")[0] + "."  # families defined in the kit: tests/test_reliability.py probes them


# ----------------------------------------------------------------------------------------------------------
# Base class and registry
# ----------------------------------------------------------------------------------------------------------

def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Degradation:
    """A degradation family with a range per parameter.

    Subclasses set ``name`` (registry key), ``default_ranges`` (``{split: {param: range}}``),
    ``param_limits`` (``{param: (low, high)}``, ``None`` for no bound), ``param_choices``
    (``{param: allowed values}``) and ``integer_params``, and implement :meth:`degrade`. They may override
    :meth:`operator` (the known forward model), :meth:`check_image_size` and :meth:`sample_params`.

    Args:
        split: which entry of ``default_ranges`` to start from (``"train"``, ``"val"`` or ``"test"``).
        **ranges: parameter ranges overriding the split's defaults (number/str fixed, ``(low, high)``
            uniform, list = choice).
    """

    name: ClassVar[str] = ""
    default_ranges: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    param_limits: ClassVar[Mapping[str, tuple[float | None, float | None]]] = {}
    param_choices: ClassVar[Mapping[str, tuple]] = {}
    integer_params: ClassVar[frozenset[str]] = frozenset()
    # parameters sample_params adds beyond the ranges (e.g. Inpainting's mask_seed)
    extra_params: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, register: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if register and cls.__dict__.get("name"):
            register_degradation(cls)

    def __init__(self, split: str = "train", **ranges: Any) -> None:
        known = set().union(*(set(r) for r in self.default_ranges.values())) if self.default_ranges else set()
        if self.default_ranges:
            check_choice("split", split, set(self.default_ranges) | ({"val"} if "train" in self.default_ranges
                                                                       else set()))
            base = self.default_ranges.get(split, self.default_ranges.get("train", {}))
        else:
            base = {}
        unknown = sorted(set(ranges) - known) if known else []
        if unknown:
            raise ValueError(f"{type(self).__name__} has no parameter(s) {unknown}; its parameters are "
                             f"{sorted(known)}")
        self.split = split
        self.ranges: dict[str, Any] = {}
        for param, spec in {**base, **ranges}.items():
            self.ranges[param] = self._check_range(param, spec)
        missing = sorted(known - set(self.ranges))
        if missing:
            raise ValueError(f"{type(self).__name__} split {split!r} has no default range for {missing}; "
                             f"pass them, e.g. {missing[0]}=(low, high)")

    # -- ranges ---------------------------------------------------------------------------------------------
    def _check_value(self, param: str, value: Any) -> Any:
        label = f"{type(self).__name__} {param}"
        if param in self.param_choices:
            if value not in self.param_choices[param]:
                raise ValueError(f"{label} must be one of {list(self.param_choices[param])}, got {value!r}")
            return value
        check_float(label, value, *self.param_limits.get(param, (None, None)))  # a finite number within limits
        if param in self.integer_params:
            if float(value) != int(value):
                raise ValueError(f"{label} must be a whole number, got {value!r}")
            value = int(value)
        return value

    def _check_range(self, param: str, spec: Any) -> Any:
        if isinstance(spec, tuple):
            if len(spec) != 2:
                raise ValueError(f"{type(self).__name__} {param} range must be (low, high), got {spec!r}")
            low, high = (self._check_value(param, v) for v in spec)
            if not (_is_number(low) and low <= high):
                raise ValueError(f"{type(self).__name__} {param} range must have low <= high, got {spec!r}")
            return (low, high)
        if isinstance(spec, list):
            if not spec:
                raise ValueError(f"{type(self).__name__} {param} choices must be a non-empty list")
            return [self._check_value(param, v) for v in spec]
        return self._check_value(param, spec)

    def sample_params(self, generator: torch.Generator | int | None = None) -> dict[str, Any]:
        """Draw one parameter set from the ranges (plain Python values, JSON-serialisable)."""
        g = make_generator(generator)
        params: dict[str, Any] = {}
        for param, spec in self.ranges.items():
            if isinstance(spec, tuple):
                low, high = spec
                if param in self.integer_params:
                    params[param] = int(torch.randint(low, high + 1, (1,), generator=g))
                else:
                    params[param] = float(low + (high - low) * torch.rand((), generator=g, dtype=torch.float64))
            elif isinstance(spec, list):
                params[param] = spec[int(torch.randint(len(spec), (1,), generator=g))]
            else:
                params[param] = spec
        return params

    def possible_values(self, param: str) -> list[Any]:
        """The values ``param`` can take when it is fixed or a choice (a range gives its two ends)."""
        spec = self.ranges[param]
        return list(spec) if isinstance(spec, (tuple, list)) else [spec]

    def check_params(self, params: Any) -> dict[str, Any]:
        """Check a parameter dict (as :meth:`sample_params` returns) before applying it."""
        if not isinstance(params, Mapping):
            raise TypeError(f"params must be a dict of {type(self).__name__} parameters, got "
                            f"{type(params).__name__}")
        missing = sorted(set(self.ranges) - set(params))
        if missing:
            raise ValueError(f"params is missing {missing} for {type(self).__name__}; get a full set from "
                             f"sample_params()")
        unknown = sorted(set(params) - set(self.ranges) - self.extra_params)
        if unknown:
            raise ValueError(f"params has unknown name(s) {unknown} for {type(self).__name__}; its parameters are "
                             f"{sorted(set(self.ranges) | self.extra_params)} (a subclass whose sample_params adds "
                             f"more lists them in extra_params)")
        for param in self.ranges:
            self._check_value(param, params[param])
        return dict(params)

    # -- the forward model ----------------------------------------------------------------------------------
    def degrade(self, clean: torch.Tensor, params: dict[str, Any], generator: torch.Generator) -> torch.Tensor:
        """Subclasses implement this: the raw forward model on checked input ``[N, C, H, W]``. The result is
        clamped to [0, 1] by :meth:`apply`."""
        raise NotImplementedError(f"{type(self).__name__} must implement degrade(clean, params, generator)")

    def apply(self, clean: torch.Tensor, params: dict[str, Any],
              generator: torch.Generator | int | None = None) -> torch.Tensor:
        """Degrade ``clean`` ``[N, C, H, W]`` (float, [0, 1]) with ``params``; same shape, clamped to [0, 1].
        Random parts (noise) come from ``generator``, so the same seed gives the same output. The raw output of
        :meth:`degrade` is checked (shape, dtype, finite, range; see the module docs) before the clamp."""
        clean = check_images("clean", clean)
        params = self.check_params(params)
        self.check_image_size(clean.shape[-2], clean.shape[-1], params)
        out = self.degrade(clean, Params(params, owner=type(self).__name__), make_generator(generator))
        return check_output(self, out, clean, params).clamp(0.0, 1.0)

    def raw_tolerance(self, params: dict[str, Any]) -> float:
        """How far :meth:`degrade`'s raw output may leave [0, 1] before the clamp (:data:`RAW_RANGE_TOLERANCE`);
        a family adding noise overrides this with a bound that its noise level cannot reach by chance."""
        return RAW_RANGE_TOLERANCE

    def __call__(self, clean: torch.Tensor, generator: torch.Generator | int | None = None
                 ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Sample parameters and apply them: returns ``(degraded, params)``."""
        g = make_generator(generator)
        params = self.sample_params(g)
        return self.apply(clean, params, g), params

    def operator(self, params: dict[str, Any], image_size: tuple[int, int] | None = None) -> dict[str, Any] | None:
        """The known forward model for model-based restorers (kernel, mask, scale, noise level), or ``None``
        when the family has none. ``image_size`` ``(H, W)`` is needed by operators that depend on it (masks)."""
        return None

    def check_image_size(self, height: int, width: int, params: dict[str, Any] | None = None) -> None:
        """Raise ``ValueError`` if images of this size cannot be degraded (e.g. not divisible by the scale)
        with ``params``, or with any parameters the ranges allow when ``params`` is ``None``."""

    # -- helpers for subclasses: random draws on the CPU generator, moved to the images' device -------------
    @staticmethod
    def randn(shape: torch.Size | tuple, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(tuple(shape), generator=generator).to(like.device, like.dtype)

    @staticmethod
    def rand(shape: torch.Size | tuple, generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
        return torch.rand(tuple(shape), generator=generator).to(like.device, like.dtype)

    def __repr__(self) -> str:
        ranges = ", ".join(f"{k}={v!r}" for k, v in self.ranges.items())
        return f"{type(self).__name__}({ranges})"


def register_degradation(cls: type[Degradation]) -> type[Degradation]:
    """Register a :class:`Degradation` subclass under ``cls.name`` (done automatically on subclassing).
    Re-running the same class definition (a notebook cell) replaces it; another class with a taken
    name is an error."""
    if not (isinstance(cls, type) and issubclass(cls, Degradation)):
        raise TypeError(f"cls must be a Degradation subclass, got {cls!r}")
    if not isinstance(cls.name, str) or not cls.name:
        raise ValueError(f"{cls.__name__}.name must be a non-empty string to register it")
    old = _REGISTRY.get(cls.name)
    if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"degradation name {cls.name!r} is already taken by {old.__module__}.{old.__qualname__}; "
                         f"give {cls.__qualname__} another name")
    if not cls.__module__.startswith(_KIT_PACKAGE):  # a user's family: probed when its class is defined
        probe_class(cls)  # before registering: a refused class leaves the registry as it was
    _REGISTRY[cls.name] = cls
    return cls


def list_degradations() -> list[str]:
    """Names of the registered degradation families (built-in and user-defined)."""
    return sorted(_REGISTRY)


def make_degradation(family: str | Degradation | type[Degradation], split: str = "train",
                     **ranges: Any) -> Degradation:
    """Build a degradation by registry name (``make_degradation("gaussian_noise", sigma=(0.05, 0.2))``),
    from a class, or pass an instance through unchanged."""
    if isinstance(family, Degradation):
        if ranges:
            raise ValueError(f"family is already a {type(family).__name__} instance; ranges {sorted(ranges)} "
                             f"cannot be applied to it, build a new one instead")
        return family
    if isinstance(family, type) and issubclass(family, Degradation):
        return family(split=split, **ranges)
    if not isinstance(family, str):
        raise TypeError(f"family must be a degradation name, class or instance, got {type(family).__name__}")
    if family not in _REGISTRY:
        raise ValueError(f"unknown degradation family {family!r}; known families: {list_degradations()}")
    return _REGISTRY[family](split=split, **ranges)


def restoration_split(family: str | type[Degradation], split: str, **ranges: Any) -> Degradation:
    """The degradation ``family`` with its ranges for ``split`` (``"train"``, ``"val"`` or ``"test"``):
    meta-test tasks use degradation levels never seen in meta-training."""
    check_choice("split", split, SPLITS)
    return make_degradation(family, split=split, **ranges)


