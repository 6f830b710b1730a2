"""Device choice, the ``fast``/``full`` profiles and seeding.

The profile is the *only* place the kit decides between small (``fast``, the default everywhere, GPU included)
and real (``full``, an explicit opt-in) sizes:
every experiment keeps a table ``{"fast": ..., "full": ...}`` of its sizes and reads the active entry
with :func:`profile_sizes`. Nothing else branches on the profile.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from typing import TypeVar

import torch

__all__ = ["DEVICE_ENV", "PROFILES", "PROFILE_ENV", "T", "describe_machine", "get_device", "get_profile",
           "make_generator", "profile_sizes", "seed_everything"]

PROFILES = ("fast", "full")
DEFAULT_PROFILE = "fast"  # on every device; "full" is opted into (get_profile)
# the help of every command's --profile option, so all of them say the same default
PROFILE_HELP = ("sizes: fast (small, minutes) or full (the real sizes, for a GPU); "
                "default: $METALEARN_KIT_PROFILE, else fast")
DEVICE_ENV = "METALEARN_KIT_DEVICE"
PROFILE_ENV = "METALEARN_KIT_PROFILE"

T = TypeVar("T")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def get_device(device: str | torch.device | None = None) -> torch.device:
    """The device experiments run on: ``device`` if given, else ``$METALEARN_KIT_DEVICE``,
    else CUDA, then Apple MPS, then CPU."""
    choice = device if device is not None else os.environ.get(DEVICE_ENV) or None
    if choice is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(choice)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"device must be 'cpu', 'cuda', 'cuda:N' or 'mps', got {choice!r} "
            f"(from {'the device argument' if device is not None else '$' + DEVICE_ENV})"
        ) from err
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {choice!r} asks for CUDA but torch.cuda.is_available() is False; "
                         f"use 'cpu' or unset ${DEVICE_ENV}")
    if resolved.type == "mps" and not _mps_available():
        raise ValueError(f"device {choice!r} asks for Apple MPS, which is not available; use 'cpu'")
    return resolved


def get_profile(profile: str | None = None) -> str:
    """The active profile: ``profile`` if given, else ``$METALEARN_KIT_PROFILE``, else ``fast`` on every device.

    ``fast`` is the default on a GPU too, so a notebook on Colab or a command on a workstation starts from the
    shipped checkpoints and runs in minutes; ``full`` (the real sizes, trained where no full-size checkpoint is
    shipped) is always an explicit choice: ``METALEARN_KIT_PROFILE=full`` or ``profile="full"``."""
    choice = profile if profile is not None else os.environ.get(PROFILE_ENV) or None
    if choice is None:
        return DEFAULT_PROFILE
    if choice not in PROFILES:
        source = "the profile argument" if profile is not None else "$" + PROFILE_ENV
        raise ValueError(f"profile must be one of {PROFILES}, got {choice!r} (from {source}); "
                         f"'full' is the opt-in to the real sizes")
    return choice


def profile_sizes(table: Mapping[str, T], profile: str | None = None) -> T:
    """Pick the entry of ``table`` (keys ``"fast"`` and ``"full"``) for the active profile."""
    name = get_profile(profile)
    missing = [p for p in PROFILES if p not in table]
    if missing:
        raise ValueError(f"size table must have entries for {PROFILES}, missing {missing}")
    return table[name]


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a fresh ``torch.Generator`` seeded with ``seed``
    for code that takes an explicit generator (all of the kit's samplers do)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # numpy is a dependency; stay importable without it anyway
        pass
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def make_generator(generator: torch.Generator | int | None) -> torch.Generator:
    """Normalise a ``generator`` argument: an int seed, a ``torch.Generator``, or ``None``
    (a generator seeded from torch's global RNG, so ``torch.manual_seed`` still controls it)."""
    if generator is None:
        return torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
    if isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, int) and not isinstance(generator, bool) and generator >= 0:
        return torch.Generator().manual_seed(generator)
    raise TypeError(f"generator must be a torch.Generator, a non-negative int seed or None, got {generator!r}")


def describe_machine() -> dict:
    """Facts about this machine for benchmark tables and checkpoint metadata."""
    import platform

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
