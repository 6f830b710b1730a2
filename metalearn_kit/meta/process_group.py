"""Joining and leaving the ``torch.distributed`` process group that
:func:`~metalearn_kit.meta.distributed.distributed_meta_train` runs on: the ranks described by torchrun's
environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``), NCCL with one GPU per process or gloo on CPU, and a
timeout on every collective so a dead rank stops the job instead of hanging it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from .._checks import check_float
from ..config import get_device

ENV_WORLD_SIZE = "WORLD_SIZE"
ENV_RANK = "RANK"
ENV_LOCAL_RANK = "LOCAL_RANK"
DEFAULT_TIMEOUT_S = 60.0


class RankLostError(RuntimeError):
    """A collective operation failed: another rank died, hung past the timeout or lost its network."""


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: ``rank`` of ``world_size`` processes, ``local_rank`` on its machine, the
    ``device`` it computes on, the process-group ``backend`` (``None`` when not distributed) and the
    collective ``timeout_s``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes checkpoints, logs and store records."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text.strip() == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"${name} must be an integer, got {text!r}; it is set by torchrun, unset it to run "
                         f"on one process") from None


def world_from_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from ``$RANK``, ``$WORLD_SIZE``, ``$LOCAL_RANK`` (torchrun sets
    them); ``(0, 1, 0)`` when they are unset."""
    world_size = _env_int(ENV_WORLD_SIZE, 1)
    rank = _env_int(ENV_RANK, 0)
    local_rank = _env_int(ENV_LOCAL_RANK, rank)
    if world_size < 1:
        raise ValueError(f"${ENV_WORLD_SIZE} must be >= 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"${ENV_RANK} must be in [0, {world_size - 1}] for ${ENV_WORLD_SIZE}={world_size}, got "
                         f"{rank}")
    if local_rank < 0:
        raise ValueError(f"${ENV_LOCAL_RANK} must be >= 0, got {local_rank}")
    return rank, world_size, local_rank


def init_distributed(timeout_s: float = DEFAULT_TIMEOUT_S, device: str | torch.device | None = None
                     ) -> DistributedContext:
    """Join the process group described by the environment (torchrun's ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``
    and ``MASTER_ADDR``/``MASTER_PORT``); a single-process context when ``WORLD_SIZE`` is unset or 1.

    Backend: NCCL with one GPU per process (``cuda:LOCAL_RANK``) when CUDA is available and ``device`` is
    not ``"cpu"``, gloo on CPU otherwise. ``timeout_s`` bounds every collective, so a dead rank stops the
    job instead of hanging it."""
    check_float("timeout_s", timeout_s, minimum=0.0, strict_min=True)
    rank, world_size, local_rank = world_from_env()
    if world_size == 1:
        return DistributedContext(device=get_device(device), timeout_s=timeout_s)
    wanted = get_device(device) if device is not None else None
    use_cuda = torch.cuda.is_available() and (wanted is None or wanted.type == "cuda")
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"${ENV_LOCAL_RANK}={local_rank} but this machine has {torch.cuda.device_count()} "
                             f"GPU(s); start at most that many processes per node (--nproc_per_node)")
        torch.cuda.set_device(local_rank)
        run_device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        run_device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"backend": backend, "timeout": timedelta(seconds=timeout_s),
                                  "rank": rank, "world_size": world_size}
        if use_cuda:
            kwargs["device_id"] = run_device  # lets NCCL connect eagerly and fail fast on a bad setup
        try:
            dist.init_process_group(**kwargs)
        except TypeError:  # older torch without device_id
            kwargs.pop("device_id", None)
            dist.init_process_group(**kwargs)
    return DistributedContext(rank, world_size, local_rank, run_device, backend, timeout_s)


def current_context() -> DistributedContext:
    """The context of an already initialised process group (or the single-process one)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistributedContext(device=get_device())
    backend = dist.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), _env_int(ENV_LOCAL_RANK, dist.get_rank()),
                              device, backend)


def shutdown_distributed(ctx: DistributedContext | None = None) -> None:
    """Leave the process group (no-op when not distributed). Never raises: it runs on error paths too."""
    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - after a lost rank the group may already be broken
            pass


__all__ = ["DEFAULT_TIMEOUT_S", "DistributedContext", "RankLostError", "current_context", "init_distributed",
           "shutdown_distributed", "world_from_env"]
