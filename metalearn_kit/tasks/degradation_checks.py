"""Checks on what a degradation family does, applied where it is used so a wrong family names itself.

- :func:`check_output`: the raw output of ``degrade`` must be a tensor of the clean images' shape and dtype,
  finite, and inside ``[-t, 1 + t]`` before the clamp to [0, 1], with ``t = degradation.raw_tolerance(params)``
  (:data:`RAW_RANGE_TOLERANCE` = 4, wider for a family whose noise may be stronger). A family working on the
  0-255 scale, returning uint8 or float64, or dividing by zero is refused instead of being clamped into a
  plausible-looking image.
- :class:`Params`: the dict ``degrade`` reads; a misspelt name raises :class:`UnknownParameterError` listing
  the valid names instead of a raw ``KeyError``.
- :func:`check_determinism`: two generators in the same state must give the same parameters and output; a
  family drawing from torch's global generator (or numpy, or ``random``) would make the same seed give
  different tasks. :func:`probe_class` runs it when a user family is registered, :func:`probe_instance`
  when a task distribution first meets one that could not be built with its defaults.

This module knows degradations only by duck typing (``sample_params``, ``apply``, ``raw_tolerance``,
``check_image_size``), so ``degradations`` imports it and not the reverse.
"""

from __future__ import annotations

from typing import Any

import torch

# How far a family's raw output (before the clamp to [0, 1]) may leave [0, 1]. 4.0 holds zero-mean noise up to a
# standard deviation of 0.5 (a PSNR of 6 dB, where an image is mostly noise) at 8 sigma, which a Gaussian passes
# with probability 1e-15 per pixel, so a user's noise family (additive or multiplicative) is not refused by
# chance; it is still 50 times below the 0-255 scale, the mistake this check is for. Noiseless forward models stay
# far inside it (bicubic upsampling overshoots by at most 0.45); families whose noise can be stronger widen it
# (Degradation.raw_tolerance).
RAW_RANGE_TOLERANCE = 4.0

_PROBED: set[type] = set()  # user classes whose determinism probe has passed


class UnknownParameterError(ValueError, KeyError):
    """``degrade`` read a parameter its family does not have. A ``KeyError`` too, so code catching
    ``KeyError`` keeps working; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would print the message quoted, as a repr
        return str(self.args[0])


class NondeterministicDegradationError(ValueError):
    """A degradation gave two different results for two generators in the same state."""


class Params(dict):
    """The parameter dict ``degrade`` receives: a missing key is a misspelt name, reported with the valid ones."""

    def __init__(self, params: dict[str, Any], owner: str) -> None:
        super().__init__(params)
        self.owner = owner

    def __missing__(self, key: Any) -> Any:
        raise UnknownParameterError(f"{self.owner}.degrade read params[{key!r}], but {self.owner} has no parameter "
                                    f"{key!r}; its parameters are {sorted(self)}. Fix the name in degrade or in "
                                    f"default_ranges")


def check_output(degradation: Any, out: Any, clean: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
    """Check the raw output of ``degradation.degrade(clean, params, ...)`` (before the clamp); returns it."""
    name = type(degradation).__name__
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"{name}.degrade must return a torch.Tensor, got {type(out).__name__}")
    if out.shape != clean.shape:
        raise ValueError(f"{name}.degrade returned shape {tuple(out.shape)}, expected {tuple(clean.shape)} (the "
                         f"clean shape); return one degraded image per clean image, at its size")
    if out.dtype != clean.dtype:
        hint = ("work on the [0, 1] float images it is given, not on 0-255 integers" if not out.is_floating_point()
                else "return out.to(clean.dtype)")
        raise TypeError(f"{name}.degrade returned dtype {out.dtype} for {clean.dtype} images; {hint}")
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"{name}.degrade returned NaN or Inf values (params {dict(params)}); look for a division "
                         f"by zero or a log of zero in degrade")
    tolerance = float(degradation.raw_tolerance(params))
    if out.numel():
        low, high = float(out.min()), float(out.max())
        if low < -tolerance or high > 1.0 + tolerance:
            raise ValueError(f"{name}.degrade returned values in [{low:.3g}, {high:.3g}] before clamping, outside "
                             f"[{-tolerance:.3g}, {1 + tolerance:.3g}] ([0, 1] with tolerance {tolerance:.3g}): work "
                             f"on the [0, 1] scale (divide 0-255 values by 255); a family whose noise goes further "
                             f"by design overrides raw_tolerance(params)")
    return out


def probe_image(image_size: tuple[int, int], channels: int = 1) -> torch.Tensor:
    """A fixed probe batch ``[2, C, H, W]`` in [0.1, 0.9]: a ramp plus a checkerboard, no random numbers."""
    h, w = image_size
    ramp = torch.linspace(0.1, 0.7, w).expand(h, w)
    checks = ((torch.arange(h)[:, None] // 2 + torch.arange(w)[None, :] // 2) % 2).float()
    one = (ramp + 0.2 * checks).expand(channels, h, w)
    return torch.stack([one, one.flip(-1)]).contiguous()


def check_determinism(degradation: Any, image_size: tuple[int, int] = (32, 32), channels: int = 1) -> None:
    """Raise :class:`NondeterministicDegradationError` if ``degradation`` gives different parameters or outputs
    for two generators in the same state. Sizes the family cannot degrade are skipped (nothing to compare)."""
    try:
        degradation.check_image_size(*image_size)
    except ValueError:
        return
    clean = probe_image(image_size, channels)
    runs = []
    for _ in range(2):
        params = degradation.sample_params(torch.Generator().manual_seed(20))
        runs.append((params, degradation.apply(clean, params, torch.Generator().manual_seed(21))))
    (params_a, out_a), (params_b, out_b) = runs
    name = type(degradation).__name__
    if params_a != params_b:
        raise NondeterministicDegradationError(
            f"{name}.sample_params gave different parameters for the same generator ({params_a} vs {params_b}); "
            f"draw every random number from the generator it is given")
    if not torch.equal(out_a, out_b):
        raise NondeterministicDegradationError(
            f"{name}.degrade gave different outputs for the same generator: it draws random numbers elsewhere "
            f"(torch.rand/randn without generator=..., numpy, random), so the same seed gives different tasks; "
            f"use the generator argument, e.g. self.randn(clean.shape, generator, clean)")


def probe_instance(degradation: Any, image_size: tuple[int, int] = (32, 32), channels: int = 1) -> None:
    """The determinism probe of a user family, once per class; raises on non-determinism or a misspelt
    parameter. Other faults (NaN, dtype, ...) are left to :func:`check_output` where the family is used."""
    cls = type(degradation)
    if cls in _PROBED:
        return
    try:
        check_determinism(degradation, image_size, channels)
    except (NondeterministicDegradationError, UnknownParameterError):
        raise
    except (TypeError, ValueError, RuntimeError):
        return  # probed again at the next first use; apply reports the fault with its own message
    _PROBED.add(cls)


def probe_class(cls: type) -> None:
    """Probe a newly registered family if it can be built with its defaults (otherwise its first use does)."""
    _PROBED.discard(cls)  # a re-run notebook cell redefines the class: probe the new definition
    try:
        instance = cls()
    except (TypeError, ValueError):
        return
    probe_instance(instance)
