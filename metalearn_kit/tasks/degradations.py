"""Degradation families: the forward models that turn a clean image into a restoration task's input.

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
default, wider for strong noise), which catches a family working on the 0-255 scale;
reading a parameter the family does not have lists the ones it has. A subclass is also probed when it is
registered (and when a task distribution first meets it): the same generator must give the same output, which
fails for a family drawing from torch's global random generator instead of ``generator``.

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

import io
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from .._checks import check_choice, check_float, check_images, check_int
from ..config import make_generator
from .degradation_checks import RAW_RANGE_TOLERANCE, Params, check_output, probe_class

SPLITS = ("train", "val", "test")

_REGISTRY: dict[str, type[Degradation]] = {}


# ----------------------------------------------------------------------------------------------------------
# Kernels and the blur operator (public: model-based restorers use the same functions)
# ----------------------------------------------------------------------------------------------------------

def gaussian_kernel(size: int, sigma: float) -> torch.Tensor:
    """Isotropic Gaussian blur kernel ``[size, size]`` (``size`` odd), normalised to sum to one."""
    check_int("size", size, minimum=1)
    if size % 2 == 0:
        raise ValueError(f"size must be odd so the kernel has a centre pixel, got {size}; use {size + 1}")
    sigma = check_float("sigma", sigma, minimum=0.0, strict_min=True)
    coords = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = g[:, None] * g[None, :]
    return (kernel / kernel.sum()).float()


def motion_kernel(size: int, length: float, angle: float) -> torch.Tensor:
    """Linear motion blur kernel ``[size, size]``: a segment of ``length`` pixels through the centre at
    ``angle`` degrees (0 = horizontal, counter-clockwise), anti-aliased by bilinear splatting, sum one."""
    check_int("size", size, minimum=1)
    if size % 2 == 0:
        raise ValueError(f"size must be odd so the kernel has a centre pixel, got {size}; use {size + 1}")
    length = check_float("length", length, minimum=1.0)
    if length > size:
        raise ValueError(f"length {length} does not fit a kernel of size {size}; use a kernel_size >= "
                         f"{math.ceil(length) | 1}")
    angle = check_float("angle", angle)
    theta = math.radians(angle)
    # Dense samples along the segment, each splatted onto its four neighbouring pixels.
    t = torch.linspace(-(length - 1) / 2, (length - 1) / 2, steps=max(2, int(length * 8)), dtype=torch.float64)
    x = size // 2 + t * math.cos(theta)
    y = size // 2 - t * math.sin(theta)  # image rows grow downwards
    kernel = torch.zeros(size, size, dtype=torch.float64)
    x0, y0 = x.floor(), y.floor()
    for dx in (0, 1):
        for dy in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            w = (1 - (x - xi).abs()) * (1 - (y - yi).abs())
            inside = (xi >= 0) & (xi < size) & (yi >= 0) & (yi < size)
            kernel.index_put_((yi[inside].long(), xi[inside].long()), w[inside], accumulate=True)
    return (kernel / kernel.sum()).float()


def check_kernel(name: str, kernel: Any, tolerance: float = 1e-4) -> torch.Tensor:
    """Check a user-given blur kernel: a finite 2-D float tensor, odd square size, summing to one."""
    if not isinstance(kernel, torch.Tensor):
        raise TypeError(f"{name} must be a 2-D torch.Tensor, got {type(kernel).__name__}")
    if kernel.dim() != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
        raise ValueError(f"{name} must be a square 2-D tensor with an odd size, got shape {tuple(kernel.shape)}")
    if not kernel.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {kernel.dtype}")
    if not torch.isfinite(kernel).all():
        raise ValueError(f"{name} contains NaN or Inf values")
    total = float(kernel.sum())
    if abs(total - 1.0) > tolerance:
        raise ValueError(f"{name} must sum to one so blurring keeps the image brightness, got sum {total:.6g}; "
                         f"divide it by kernel.sum()")
    return kernel.float()


def blur(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Convolve every channel of ``images`` ``[N, C, H, W]`` with ``kernel`` ``[k, k]`` (odd ``k``), with
    **reflect** padding of ``k // 2`` so the output keeps the input size and has no dark border.

    This is a correlation (``F.conv2d``), the convention of the whole kit; flip the kernel for a true
    convolution (the built-in Gaussian kernels are symmetric, so it makes no difference for them)."""
    images = check_images("images", images, unit_range=False)
    if not isinstance(kernel, torch.Tensor) or kernel.dim() != 2 or kernel.shape[0] != kernel.shape[1] \
            or kernel.shape[0] % 2 == 0:
        raise ValueError(f"kernel must be a square 2-D tensor with an odd size, got "
                         f"{tuple(kernel.shape) if isinstance(kernel, torch.Tensor) else type(kernel).__name__}")
    k = kernel.shape[-1]
    pad = k // 2
    n, c, h, w = images.shape
    if pad >= h or pad >= w:
        raise ValueError(f"images of size {h}x{w} are too small for a {k}x{k} kernel with reflect padding; "
                         f"use patches larger than {pad} pixels or a smaller kernel_size")
    weight = kernel.to(images.device, images.dtype).expand(c, 1, k, k)
    padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
    return F.conv2d(padded, weight, groups=c)


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
        if not _is_number(value):
            raise TypeError(f"{label} must be a number, got {type(value).__name__} {value!r}")
        if param in self.integer_params:
            if float(value) != int(value):
                raise ValueError(f"{label} must be a whole number, got {value!r}")
            value = int(value)
        low, high = self.param_limits.get(param, (None, None))
        if not math.isfinite(value):
            raise ValueError(f"{label} must be finite, got {value!r}")
        if low is not None and value < low:
            raise ValueError(f"{label} must be >= {low}, got {value!r}")
        if high is not None and value > high:
            raise ValueError(f"{label} must be <= {high}, got {value!r}")
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
        view = Params(params, owner=type(self).__name__)
        out = self.degrade(clean, view, make_generator(generator))
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
    if cls.__module__ != __name__:  # the built-in families are covered by tests/test_determinism.py
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


# ----------------------------------------------------------------------------------------------------------
# Built-in families
# ----------------------------------------------------------------------------------------------------------

class GaussianNoise(Degradation):
    """Additive white Gaussian noise of standard deviation ``sigma`` (on the [0, 1] scale), then clipped."""

    name = "gaussian_noise"
    default_ranges = {"train": {"sigma": (0.05, 0.15)}, "val": {"sigma": (0.05, 0.15)},
                      "test": {"sigma": (0.18, 0.3)}}
    param_limits = {"sigma": (0.0, None)}

    def degrade(self, clean, params, generator):
        return clean + params["sigma"] * self.randn(clean.shape, generator, clean)

    def raw_tolerance(self, params):
        # 8 sigma: a Gaussian exceeds it with probability 1e-15 per pixel
        return max(RAW_RANGE_TOLERANCE, 8 * params["sigma"])

    def operator(self, params, image_size=None):
        return {"kind": "identity", "noise_sigma": params["sigma"]}


class PoissonNoise(Degradation):
    """Shot noise: ``Poisson(peak * x) / peak`` -- a pixel of value ``x`` collects ``peak * x`` photons on
    average, so its variance is ``x / peak`` (lower ``peak`` = noisier)."""

    name = "poisson_noise"
    default_ranges = {"train": {"peak": (10.0, 60.0)}, "val": {"peak": (10.0, 60.0)},
                      "test": {"peak": (2.0, 8.0)}}
    param_limits = {"peak": (1e-3, None)}

    def degrade(self, clean, params, generator):
        rate = (clean * params["peak"]).detach().cpu()
        counts = torch.poisson(rate, generator=generator)
        return (counts / params["peak"]).to(clean.device, clean.dtype)

    def raw_tolerance(self, params):
        # counts of a pixel at 1 (rate = peak) stay below peak + 8 sqrt(peak) + 16 but with negligible probability
        # (Bernstein's bound for the Poisson tail), so counts / peak stays below 1 + 8 / sqrt(peak) + 16 / peak
        peak = params["peak"]
        return max(RAW_RANGE_TOLERANCE, 8 / math.sqrt(peak) + 16 / peak)

    def operator(self, params, image_size=None):
        return {"kind": "identity", "poisson_peak": params["peak"]}


def _default_kernel_size(needed: float, minimum: int = 15) -> int:
    size = max(minimum, math.ceil(needed))
    return size if size % 2 else size + 1


class GaussianBlur(Degradation):
    """Isotropic Gaussian blur of width ``sigma`` (pixels), optional white noise ``noise_sigma`` after it.
    The kernel (``kernel_size`` square, reflect padding) is part of the task: see :meth:`operator`."""

    name = "gaussian_blur"
    default_ranges = {"train": {"sigma": (0.5, 1.5), "noise_sigma": 0.0},
                      "val": {"sigma": (0.5, 1.5), "noise_sigma": 0.0},
                      "test": {"sigma": (1.8, 2.6), "noise_sigma": 0.0}}
    param_limits = {"sigma": (1e-3, None), "noise_sigma": (0.0, None)}

    def __init__(self, split: str = "train", kernel_size: int | None = None, **ranges: Any) -> None:
        super().__init__(split, **ranges)
        widest = max(self.possible_values("sigma"))
        # 3 sigma on each side holds 99.7% of the mass; never less than 15 so train and test kernels match.
        self.kernel_size = (_default_kernel_size(6 * widest + 1) if kernel_size is None
                            else check_int("kernel_size", kernel_size, minimum=1))
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}; use {self.kernel_size + 1}")

    def kernel(self, params: dict[str, Any]) -> torch.Tensor:
        return gaussian_kernel(self.kernel_size, params["sigma"])

    def degrade(self, clean, params, generator):
        out = blur(clean, self.kernel(params))
        if params["noise_sigma"] > 0:
            out = out + params["noise_sigma"] * self.randn(clean.shape, generator, clean)
        return out

    def check_image_size(self, height, width, params=None):
        if self.kernel_size // 2 >= min(height, width):
            raise ValueError(f"images of size {height}x{width} are too small for kernel_size {self.kernel_size}; "
                             f"use larger patches or a smaller kernel_size")

    def raw_tolerance(self, params):
        # a kernel with negative taps (sharpening, allowed for user kernels) overshoots by sum(|k|) - 1 at most
        overshoot = float(self.kernel(params).abs().sum()) - 1.0
        return max(RAW_RANGE_TOLERANCE, overshoot + 8 * params["noise_sigma"])

    def operator(self, params, image_size=None):
        return {"kind": "blur", "kernel": self.kernel(params), "padding": "reflect",
                "noise_sigma": params["noise_sigma"]}


class MotionBlur(GaussianBlur):
    """Linear motion blur: a straight streak of ``length`` pixels at ``angle`` degrees, optional noise."""

    name = "motion_blur"
    default_ranges = {"train": {"length": (3.0, 9.0), "angle": (0.0, 180.0), "noise_sigma": 0.0},
                      "val": {"length": (3.0, 9.0), "angle": (0.0, 180.0), "noise_sigma": 0.0},
                      "test": {"length": (11.0, 15.0), "angle": (0.0, 180.0), "noise_sigma": 0.0}}
    param_limits = {"length": (1.0, None), "angle": (-360.0, 360.0), "noise_sigma": (0.0, None)}

    def __init__(self, split: str = "train", kernel_size: int | None = None, **ranges: Any) -> None:
        Degradation.__init__(self, split, **ranges)
        longest = max(self.possible_values("length"))
        self.kernel_size = (_default_kernel_size(longest) if kernel_size is None
                            else check_int("kernel_size", kernel_size, minimum=1))
        if self.kernel_size % 2 == 0 or self.kernel_size < longest:
            raise ValueError(f"kernel_size must be odd and >= the longest length {longest}, got "
                             f"{self.kernel_size}")

    def kernel(self, params):
        return motion_kernel(self.kernel_size, params["length"], params["angle"])


class KernelBlur(GaussianBlur):
    """Blur with user-given kernels (each ``[k, k]``, odd ``k``, summing to one); a task picks one of them
    (``kernel_index``), optional white noise ``noise_sigma`` after it."""

    name = "kernel_blur"
    default_ranges = {}
    param_limits = {"kernel_index": (0, None), "noise_sigma": (0.0, None)}
    integer_params = frozenset({"kernel_index"})

    def __init__(self, kernels: list[torch.Tensor] | torch.Tensor | None = None, split: str = "train",
                 noise_sigma: Any = 0.0) -> None:
        if kernels is None:
            raise ValueError("kernels is required: give a list of [k, k] tensors that each sum to one")
        if isinstance(kernels, torch.Tensor):
            kernels = [kernels] if kernels.dim() == 2 else list(kernels)
        kernels = [check_kernel(f"kernels[{i}]", k) for i, k in enumerate(kernels)]
        if not kernels:
            raise ValueError("kernels must hold at least one kernel")
        if len({k.shape for k in kernels}) != 1:
            raise ValueError(f"kernels must share one size, got {sorted({tuple(k.shape) for k in kernels})}")
        Degradation.__init__(self, split)
        self.split = split
        self.kernels = kernels
        self.kernel_size = kernels[0].shape[0]
        self.ranges = {"kernel_index": self._check_range("kernel_index", (0, len(kernels) - 1)),
                       "noise_sigma": self._check_range("noise_sigma", noise_sigma)}

    def kernel(self, params):
        if params["kernel_index"] >= len(self.kernels):
            raise ValueError(f"params kernel_index must be < {len(self.kernels)}, got {params['kernel_index']}")
        return self.kernels[params["kernel_index"]]


class Inpainting(Degradation):
    """Missing pixels set to zero: ``degraded = clean * mask`` (mask 1 = kept, 0 = missing).

    ``mode`` is ``"random"`` (scattered pixels), ``"boxes"`` (rectangles) or ``"strokes"`` (thick
    scribbles), and exactly ``round(fraction * H * W)`` pixels are missing. A task has one mask, shared by
    all its images and rebuilt from ``params["mask_seed"]`` (:meth:`mask`), so the support set reveals
    where the holes are -- the task is one fixed forward operator, like a blur kernel."""

    name = "inpainting"
    default_ranges = {"train": {"mode": ["random", "boxes", "strokes"], "fraction": (0.1, 0.4)},
                      "val": {"mode": ["random", "boxes", "strokes"], "fraction": (0.1, 0.4)},
                      "test": {"mode": ["random", "boxes", "strokes"], "fraction": (0.5, 0.7)}}
    param_limits = {"fraction": (0.0, 0.95)}
    param_choices = {"mode": ("random", "boxes", "strokes")}
    extra_params = frozenset({"mask_seed"})

    def sample_params(self, generator=None):
        g = make_generator(generator)
        params = super().sample_params(g)
        params["mask_seed"] = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
        return params

    def check_params(self, params):
        params = super().check_params(params)
        if "mask_seed" not in params:
            raise ValueError("params is missing ['mask_seed'] for Inpainting; get a full set from sample_params()")
        check_int("params['mask_seed']", params["mask_seed"], minimum=0)
        return params

    def mask(self, params: dict[str, Any], image_size: tuple[int, int]) -> torch.Tensor:
        """The task's mask ``[1, 1, H, W]`` (float, 1 = kept), the same for the same params and size."""
        params = self.check_params(params)
        h, w = image_size
        g = torch.Generator().manual_seed(params["mask_seed"])
        n_missing = round(params["fraction"] * h * w)
        if params["mode"] == "random":
            missing = torch.zeros(h * w, dtype=torch.bool)
            missing[torch.randperm(h * w, generator=g)[:n_missing]] = True
            return (~missing).float().view(1, 1, h, w)
        # Shapes are added until enough pixels are covered; recording the order in which pixels were first
        # covered lets the last shape be cut short so the missing count is exact.
        order = torch.full((h * w,), h * w, dtype=torch.long)
        covered = 0
        rows = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
        cols = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w)
        for _ in range(20 * h * w):
            if covered >= n_missing:
                break
            shape = self._box(g, h, w) if params["mode"] == "boxes" else self._stroke(g, rows, cols)
            new = shape.flatten() & (order == h * w)
            count = int(new.sum())
            order[new] = covered + torch.arange(count)
            covered += count
        if covered < n_missing:  # shapes never hit the last pixels (tiny images): finish with scattered ones
            free = (order == h * w).nonzero().flatten()
            pick = free[torch.randperm(len(free), generator=g)[: n_missing - covered]]
            order[pick] = covered + torch.arange(len(pick))
        return (order >= n_missing).float().view(1, 1, h, w)

    @staticmethod
    def _box(g: torch.Generator, h: int, w: int) -> torch.Tensor:
        bh = int(torch.randint(max(1, h // 10), max(2, h // 4) + 1, (1,), generator=g))
        bw = int(torch.randint(max(1, w // 10), max(2, w // 4) + 1, (1,), generator=g))
        top = int(torch.randint(0, h - bh + 1, (1,), generator=g))
        left = int(torch.randint(0, w - bw + 1, (1,), generator=g))
        box = torch.zeros(h, w, dtype=torch.bool)
        box[top:top + bh, left:left + bw] = True
        return box

    @staticmethod
    def _stroke(g: torch.Generator, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        h, w = rows.shape
        radius = 0.5 + float(torch.rand((), generator=g)) * max(1.0, min(h, w) / 16)
        point = torch.rand(2, generator=g) * torch.tensor([h, w])
        stroke = torch.zeros(h, w, dtype=torch.bool)
        for _ in range(int(torch.randint(2, 6, (1,), generator=g))):
            angle = float(torch.rand((), generator=g)) * 2 * math.pi
            length = (0.1 + 0.3 * float(torch.rand((), generator=g))) * min(h, w)
            end = (point + length * torch.tensor([math.sin(angle), math.cos(angle)])).clamp(
                torch.zeros(2), torch.tensor([h - 1.0, w - 1.0]))
            # Distance from every pixel to the segment point -> end.
            d = end - point
            t = (((rows - point[0]) * d[0] + (cols - point[1]) * d[1]) / d.pow(2).sum().clamp_min(1e-6)).clamp(0, 1)
            dist2 = (rows - point[0] - t * d[0]) ** 2 + (cols - point[1] - t * d[1]) ** 2
            stroke |= dist2 <= radius**2
            point = end
        return stroke

    def degrade(self, clean, params, generator):
        return clean * self.mask(params, clean.shape[-2:]).to(clean.device, clean.dtype)

    def operator(self, params, image_size=None):
        if image_size is None:
            raise ValueError("image_size (H, W) is required for the inpainting operator: the mask depends on it")
        return {"kind": "mask", "mask": self.mask(params, tuple(image_size))}


class SuperResolution(Degradation):
    """Super-resolution, MZSR-style: the low-resolution image is the clean one blurred with a Gaussian
    kernel of width ``kernel_sigma`` (reflect padding) and subsampled by ``scale`` (every ``scale``-th
    pixel, starting at 0), plus optional noise ``noise_sigma``. :meth:`downsample` returns that true LR
    ``[N, C, H/scale, W/scale]``; :meth:`apply` returns it upsampled back to ``[N, C, H, W]`` with bicubic
    interpolation, the usual network input. Clean sizes must be divisible by every possible ``scale``.
    Default ranges: scale 2 for training, the unseen scale 4 for testing (both divide the kit's 28- and
    32-pixel patches); pass ``scale=[2, 3, 4]`` with patches that are multiples of 12 for all three."""

    name = "super_resolution"
    default_ranges = {"train": {"scale": [2], "kernel_sigma": (0.4, 1.6), "noise_sigma": 0.0},
                      "val": {"scale": [2], "kernel_sigma": (0.4, 1.6), "noise_sigma": 0.0},
                      "test": {"scale": [4], "kernel_sigma": (1.8, 2.6), "noise_sigma": 0.0}}
    param_limits = {"kernel_sigma": (1e-3, None), "noise_sigma": (0.0, None)}
    param_choices = {"scale": (2, 3, 4)}

    def __init__(self, split: str = "train", kernel_size: int | None = None, **ranges: Any) -> None:
        super().__init__(split, **ranges)
        widest = max(self.possible_values("kernel_sigma"))
        self.kernel_size = (_default_kernel_size(6 * widest + 1) if kernel_size is None
                            else check_int("kernel_size", kernel_size, minimum=1))
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}; use {self.kernel_size + 1}")

    def kernel(self, params: dict[str, Any]) -> torch.Tensor:
        return gaussian_kernel(self.kernel_size, params["kernel_sigma"])

    def check_image_size(self, height, width, params=None):
        for scale in self.possible_values("scale") if params is None else [params["scale"]]:
            if height % scale or width % scale:
                raise ValueError(f"clean patch size {height}x{width} must be divisible by scale {scale} for "
                                 f"super-resolution; use a patch size that is a multiple of "
                                 f"{math.lcm(*self.possible_values('scale'))}")
        if self.kernel_size // 2 >= min(height, width):
            raise ValueError(f"images of size {height}x{width} are too small for kernel_size {self.kernel_size}")

    def downsample(self, clean: torch.Tensor, params: dict[str, Any],
                   generator: torch.Generator | int | None = None) -> torch.Tensor:
        """The true low-resolution image ``[N, C, H/scale, W/scale]`` (blur, subsample, noise, clamp)."""
        clean = check_images("clean", clean)
        params = self.check_params(params)
        self.check_image_size(clean.shape[-2], clean.shape[-1], params)
        return self._downsample(clean, params, make_generator(generator)).clamp(0.0, 1.0)

    def _downsample(self, clean, params, generator):
        scale = params["scale"]
        low = blur(clean, self.kernel(params))[..., ::scale, ::scale]
        if params["noise_sigma"] > 0:
            low = low + params["noise_sigma"] * self.randn(low.shape, generator, low)
        return low

    def degrade(self, clean, params, generator):
        low = self._downsample(clean, params, generator).clamp(0.0, 1.0)
        return F.interpolate(low, size=clean.shape[-2:], mode="bicubic", align_corners=False)

    def operator(self, params, image_size=None):
        return {"kind": "downsample", "kernel": self.kernel(params), "scale": params["scale"],
                "padding": "reflect", "offset": 0, "noise_sigma": params["noise_sigma"]}


class JPEG(Degradation):
    """JPEG compression artefacts: each image is rounded to 8 bits, encoded with PIL at ``quality``
    (1-95, lower = stronger artefacts) and decoded. Colour images use PIL's default 4:2:0 chroma
    subsampling; images with 1 or other than 3 channels are coded channel by channel as greyscale."""

    name = "jpeg"
    default_ranges = {"train": {"quality": (30, 70)}, "val": {"quality": (30, 70)}, "test": {"quality": (5, 20)}}
    param_limits = {"quality": (1, 95)}
    integer_params = frozenset({"quality"})

    def degrade(self, clean, params, generator):
        from PIL import Image

        quality = params["quality"]
        data = (clean.detach().cpu() * 255).round().to(torch.uint8)
        out = torch.empty(clean.shape, dtype=torch.float32)

        def roundtrip(array, mode):
            buffer = io.BytesIO()
            Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
            buffer.seek(0)
            decoded = Image.open(buffer).convert(mode)
            return torch.frombuffer(bytearray(decoded.tobytes()), dtype=torch.uint8)

        n, c, h, w = clean.shape
        for i in range(n):
            if c == 3:
                rgb = roundtrip(data[i].permute(1, 2, 0).contiguous().numpy(), "RGB")
                out[i] = rgb.view(h, w, 3).permute(2, 0, 1).float() / 255
            else:
                for ch in range(c):
                    out[i, ch] = roundtrip(data[i, ch].contiguous().numpy(), "L").view(h, w).float() / 255
        return out.to(clean.device, clean.dtype)


BUILTIN_FAMILIES = (GaussianNoise, PoissonNoise, GaussianBlur, MotionBlur, Inpainting, SuperResolution, JPEG)
