"""Input checks shared by the whole kit. Each raises ``ValueError``/``TypeError`` naming the argument,
the value it got and how to fix it, so no raw error from deep inside torch reaches a user."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

__all__ = ["check_choice", "check_float", "check_float_fields", "check_images", "check_int", "check_int_fields",
           "check_model_input"]


def check_int(name: str, value, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_float(name: str, value, minimum: float | None = None, maximum: float | None = None,
                strict_min: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and (value <= minimum if strict_min else value < minimum):
        raise ValueError(f"{name} must be {'>' if strict_min else '>='} {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_int_fields(obj, names: Iterable[str], minimum: int | None = None, maximum: int | None = None) -> None:
    """:func:`check_int` on each attribute ``names`` of ``obj`` (a config's fields), in order: the first bad one
    raises, named by its field."""
    for name in names:
        check_int(name, getattr(obj, name), minimum, maximum)


def check_float_fields(obj, names: Iterable[str], minimum: float | None = None, maximum: float | None = None,
                       strict_min: bool = False) -> None:
    """:func:`check_float` on each attribute ``names`` of ``obj`` (a config's fields), in order: the first bad one
    raises, named by its field."""
    for name in names:
        check_float(name, getattr(obj, name), minimum, maximum, strict_min)


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def check_images(name: str, images, rank: int = 4, unit_range: bool = True) -> torch.Tensor:
    """Check an image tensor: floating dtype, the given rank (4: ``[N, C, H, W]``, 3: ``[C, H, W]``),
    no NaN/Inf, and (by default) values in [0, 1]."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if not images.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor with values in [0, 1], got dtype {images.dtype}; "
                        f"convert with images.float() / 255")
    if images.dim() != rank:
        layout = {4: "[N, C, H, W]", 3: "[C, H, W]", 5: "[tasks, shots, C, H, W]"}.get(rank, f"rank {rank}")
        raise ValueError(f"{name} must have shape {layout}, got shape {tuple(images.shape)}")
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} contains NaN or Inf values")
    if unit_range and images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError(f"{name} must have values in [0, 1], got range "
                         f"[{images.min().item():.3g}, {images.max().item():.3g}]; rescale it first")
    return images


def check_input_dtype(name: str, x: torch.Tensor, model: torch.nn.Module) -> None:
    """``x`` must have the dtype of ``model``'s floating parameters: float64 or uint8 images given to a float32
    model fail deep inside ``conv2d`` otherwise. Metadata only: ``vmap``-safe, no GPU sync."""
    for p in model.parameters():
        if p.is_floating_point():
            if x.dtype != p.dtype:
                fix = f"{name}.float() / 255" if x.dtype == torch.uint8 else f"{name}.to({p.dtype})"
                raise TypeError(f"{name} has dtype {x.dtype} but this {type(model).__name__} computes in {p.dtype}; "
                                f"convert it with {fix}")
            return


def check_model_input(name: str, x, channels: int, image_size: int | None = None,
                      model: torch.nn.Module | None = None) -> torch.Tensor:
    """Check the shape of a model's image input ``[N, channels, H, W]`` (and ``H == W == image_size`` when
    given), and its dtype against ``model``'s parameters when given. Shapes and dtypes only, no values: cheap,
    ``vmap``-safe and no GPU sync, so a forward pass can afford it."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a [N, C, H, W] tensor, got {shape}; add a batch dimension with "
                         f"{name}[None] for one image")
    if x.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channel(s) for this model, got {x.shape[1]} "
                         f"(shape {tuple(x.shape)}); build the model with channels={x.shape[1]} or convert the images")
    if image_size is not None and (x.shape[-2] != image_size or x.shape[-1] != image_size):
        raise ValueError(f"{name} must be {image_size}x{image_size} for this model, got {x.shape[-2]}x{x.shape[-1]}; "
                         f"resize the images or build the model with image_size={x.shape[-1]}")
    if model is not None:
        check_input_dtype(name, x, model)
    return x
