"""Meta-training on several processes (GPUs, machines) with ``torch.distributed``.

Data parallelism over the tasks of a meta-batch: every rank samples the *whole* meta-batch from the shared,
seeded task generator (sampling is cheap next to the inner loops), keeps its slice of ``meta_batch /
world_size`` tasks, computes its meta-gradient, and one all-reduce averages the meta-gradients (and gathers
the per-task losses for the log). Every rank then takes the same optimizer step, so a run on N processes
gives the same parameters as the 1-process run with the same seed and meta-batch (up to float rounding),
for every learner: MAML, FOMAML and Meta-SGD average ``d query_loss / d theta``; Reptile averages its update
direction ``theta - mean(phi)`` (its ``meta_objective`` surrogate has that gradient). Forwards that draw random
numbers (a VAE's reparameterisation) get independent streams per rank, so those runs match the 1-process
run in distribution, not bit for bit.

```python
ctx = init_distributed(timeout_s=60)          # reads WORLD_SIZE/RANK/LOCAL_RANK (torchrun sets them)
learner.to(ctx.device)
history = distributed_meta_train(learner, sampler, loss_fn, ctx, iterations=1000, meta_batch=32,
                                 checkpoint_dir="runs/denoise", resume=True)
shutdown_distributed(ctx)
```

Only rank 0 writes checkpoints, validates, calls callbacks and the ``store`` hook. The other ranks get rank
0's checkpoint over the network when resuming, so nodes need no shared file system. A rank that dies makes
the next collective of the others fail (gloo: at once, NCCL: after ``timeout_s``); they raise
:class:`RankLostError`, whose message names the last checkpoint to resume from.

The engine's :func:`~metalearn_kit.meta.train.meta_train` is reused unchanged: :class:`ShardedLearner`
wraps the learner so that ``meta_objective`` returns a loss whose gradient is already the all-reduced
meta-gradient (a surrogate ``sum(theta * g_mean)`` plus the global mean loss as its value).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from .._checks import check_float, check_int
from ..config import get_device
from ..tasks.task import Task, TaskBatch, stack_tasks
from .inner import DivergenceError
from .maml import MetaOutput
from .train import meta_train
from .train_state import CHECKPOINT_NAME, checkpoint_iteration, last_checkpoint_text

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


# ---------------------------------------------------------------- sharding a meta-batch
def check_meta_batch(meta_batch: int, world_size: int, name: str = "meta_batch") -> int:
    """``meta_batch`` must split evenly over the ranks (equal shards keep the averaged gradient exact)."""
    check_int(name, meta_batch, minimum=1)
    check_int("world_size", world_size, minimum=1)
    if meta_batch % world_size:
        lower = max(world_size, meta_batch - meta_batch % world_size)
        raise ValueError(f"{name}={meta_batch} is not divisible by the world size {world_size}: every rank takes "
                         f"{name} / world_size tasks; use a multiple of {world_size} such as {lower} or "
                         f"{lower + world_size}")
    return meta_batch


def shard_range(meta_batch: int, world_size: int, rank: int) -> tuple[int, int]:
    """Task indices ``[start, stop)`` of ``rank``'s shard of a meta-batch."""
    check_meta_batch(meta_batch, world_size)
    check_int("rank", rank, minimum=0, maximum=world_size - 1)
    per_rank = meta_batch // world_size
    return rank * per_rank, (rank + 1) * per_rank


def take_shard(tasks: TaskBatch | Iterable[Task], start: int, stop: int) -> TaskBatch | list[Task]:
    """Tasks ``start..stop-1`` of a meta-batch (a TaskBatch stays a TaskBatch)."""
    if isinstance(tasks, TaskBatch):
        return TaskBatch(tuple(t[start:stop] for t in tasks.support), tuple(t[start:stop] for t in tasks.query),
                         tasks.infos[start:stop])
    return list(tasks)[start:stop]


# ---------------------------------------------------------------- the learner wrapper
BatchObserver = Callable[[TaskBatch | list, MetaOutput], None]


class ShardedLearner:
    """A learner (MAML, FOMAML, MetaSGD, Reptile; either backend) whose ``meta_objective`` works on this
    rank's shard of the meta-batch and returns a loss whose ``backward()`` leaves the meta-gradient averaged
    over all ranks on the parameters. Everything else (``parameters``, ``state_dict``, ``config``,
    ``evaluate``, ``adapt``, ...) is the wrapped learner's, so checkpoints are interchangeable with
    1-process runs (a run may be resumed with another number of ranks).

    ``observers``: called on rank 0 as ``observer(tasks, output)`` with the whole meta-batch and the gathered
    per-task losses after every meta-step (used to record tasks into the meta-database)."""

    def __init__(self, learner, ctx: DistributedContext | None = None,
                 observers: Iterable[BatchObserver] = ()) -> None:
        if not hasattr(learner, "meta_objective"):
            raise TypeError(f"learner must be a MAML/MetaSGD/Reptile learner, got {type(learner).__name__}")
        self.__dict__["learner"] = learner
        self.__dict__["ctx"] = ctx if ctx is not None else current_context()
        self.__dict__["observers"] = list(observers)

    def __getattr__(self, name: str):
        return getattr(self.__dict__["learner"], name)

    def __setattr__(self, name: str, value) -> None:
        setattr(self.learner, name, value)

    def __repr__(self) -> str:
        return f"ShardedLearner({type(self.learner).__name__}, rank {self.ctx.rank} of {self.ctx.world_size})"

    @contextmanager
    def _random_streams(self) -> Iterator[None]:
        # Random ops inside the forward: every rank restored the same global RNG state, so without this they
        # would draw the *same* noise for different tasks. One draw from the (shared) global RNG keeps all
        # ranks' states equal for checkpoints; the forward runs on a per-rank stream derived from it.
        if not self.ctx.distributed:
            yield
            return
        seed = int(torch.randint(0, 2**62, (1,)))
        devices = [self.ctx.device.index or 0] if self.ctx.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed + 7919 * self.ctx.rank)
            yield

    def meta_objective(self, tasks, loss_fn, query_before: bool = False) -> MetaOutput:
        """Meta-objective of the whole meta-batch ``tasks``, computed over all ranks (see the class doc)."""
        ctx, learner = self.ctx, self.learner
        if not isinstance(tasks, TaskBatch):
            tasks = stack_tasks(list(tasks))
        n = len(tasks)
        check_meta_batch(n, ctx.world_size, name="meta-batch size")
        start, stop = shard_range(n, ctx.world_size, ctx.rank)
        shard = take_shard(tasks, start, stop)
        params = [p for p in learner.parameters() if p.requires_grad]
        steps = learner.inner_steps
        device = params[0].device if params else ctx.device
        failure: DivergenceError | None = None
        grads: list[torch.Tensor | None] = [None] * len(params)
        try:
            with self._random_streams():
                out = learner.meta_objective(shard, loss_fn, query_before=query_before)
                grads = list(torch.autograd.grad(out.loss, params, allow_unused=True))
        except DivergenceError as err:
            failure, out = err, None
        if not ctx.distributed:
            if failure is not None:
                raise failure
            return self._finish(tasks, out, out.loss.detach(), grads, params, out.query_after, out.query_before,
                                out.support_losses)

        # One SUM all-reduce carries everything: [failed flag per rank | loss | used flag per parameter |
        # gradients | per-task stats, each rank writing its own rows (the others leave zeros)].
        columns = 2 + steps  # query_after, query_before, support losses by step
        stats = torch.zeros(n, columns, device=device, dtype=torch.float64)
        flags = torch.zeros(ctx.world_size, device=device, dtype=torch.float64)
        loss_value = torch.zeros(1, device=device, dtype=torch.float64)
        used = torch.zeros(len(params), device=device, dtype=torch.float64)
        if failure is not None:
            flags[ctx.rank] = 1.0
        else:
            loss_value[0] = out.loss.detach().double()
            used = torch.tensor([g is not None for g in grads], device=device, dtype=torch.float64)
            stats[start:stop, 0] = out.query_after.detach().double()
            if out.query_before is not None:
                stats[start:stop, 1] = out.query_before.detach().double()
            if steps:
                stats[start:stop, 2:] = out.support_losses.detach().double().reshape(stop - start, -1)[:, :steps]
        dtype = params[0].dtype if params else torch.float32
        flat_grads = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).to(dtype)
                                for g, p in zip(grads, params)]) if params else torch.zeros(0, device=device)
        header = torch.cat([flags, loss_value, used, stats.reshape(-1)])
        self._all_reduce(header, "the meta-batch statistics")
        self._all_reduce(flat_grads, "the meta-gradients")
        flags, rest = header[:ctx.world_size], header[ctx.world_size:]
        loss_total, used, stats = rest[0], rest[1:1 + len(params)], rest[1 + len(params):].reshape(n, columns)
        if flags.any():
            failed = [r for r in range(ctx.world_size) if flags[r] > 0]
            if failure is not None:
                raise DivergenceError(f"{failure} (rank {ctx.rank}; failed ranks {failed})") from failure
            raise DivergenceError(f"a loss became NaN/Inf on rank(s) {failed} (see their message); "
                                  f"lower meta_lr/inner_lr or set grad_clip")
        if ((used > 0) & (used < ctx.world_size)).any():
            names = [n for n, p in learner.named_parameters() if p.requires_grad]
            odd = [names[i] for i in range(len(params)) if 0 < used[i] < ctx.world_size]
            raise RuntimeError(f"parameters {odd[:5]} got a meta-gradient on some ranks only: the model's graph "
                               f"depends on the tasks, which data parallelism over tasks cannot average")
        averaged, offset = [], 0
        for p, u in zip(params, used):
            size = p.numel()
            averaged.append(flat_grads[offset:offset + size].view_as(p) / ctx.world_size if u > 0 else None)
            offset += size
        loss = (loss_total / ctx.world_size).to(dtype)
        query_before = stats[:, 1].to(dtype) if query_before else None
        support = stats[:, 2:].to(dtype)
        return self._finish(tasks, out, loss, averaged, params, stats[:, 0].to(dtype), query_before, support)

    def _all_reduce(self, tensor: torch.Tensor, what: str) -> None:
        try:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        except Exception as err:  # noqa: BLE001 - gloo/NCCL raise RuntimeError subclasses of several kinds
            first_line = str(err).splitlines()[0] if str(err) else ""
            raise RankLostError(f"rank {self.ctx.rank} lost: no answer from the other ranks while all-reducing "
                                f"{what} ({type(err).__name__}: {first_line})") from err

    def _finish(self, tasks, out, loss_value: torch.Tensor, grads, params, query_after, query_before,
                support) -> MetaOutput:
        # value: the mean query loss over the whole meta-batch; gradient: the averaged meta-gradient
        surrogate = loss_value.detach().clone().requires_grad_(False)
        pieces = [(p * g.detach()).sum() for p, g in zip(params, grads) if g is not None]
        if pieces:
            linear = torch.stack(pieces).sum()
            surrogate = surrogate + linear - linear.detach()
        result = MetaOutput(surrogate, query_after.detach(), support.detach(),
                            None if query_before is None else query_before.detach())
        if self.ctx.is_main:
            for observer in self.observers:
                observer(tasks, result)
        return result

    def meta_loss(self, tasks, loss_fn) -> torch.Tensor:
        """``meta_objective(tasks, loss_fn).loss`` over all ranks (not the wrapped learner's, one rank only)."""
        return self.meta_objective(tasks, loss_fn).loss


# ---------------------------------------------------------------- the loop
def _broadcast_state(learner, ctx: DistributedContext) -> None:
    """Make every rank start from rank 0's weights (seeding makes them equal already; this makes sure)."""
    for tensor in learner.state_dict().values():
        try:
            dist.broadcast(tensor, src=0)
        except Exception as err:  # noqa: BLE001
            raise RankLostError(f"rank {ctx.rank} lost: no answer from the other ranks while broadcasting the "
                                f"initial weights ({err})") from err


def _share_checkpoint(source: Path | None, target: Path, ctx: DistributedContext) -> bool:
    """Send rank 0's checkpoint bytes to every other rank (no shared file system needed); returns whether a
    checkpoint exists."""
    payload = [source.read_bytes() if ctx.is_main and source is not None and source.exists() else None]
    try:
        dist.broadcast_object_list(payload, src=0)
    except Exception as err:  # noqa: BLE001
        raise RankLostError(f"rank {ctx.rank} lost: no answer from the other ranks while sharing the "
                            f"checkpoint ({err})") from err
    if payload[0] is None:
        return False
    if not ctx.is_main:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(payload[0])
    return True


def distributed_meta_train(learner, task_sampler, loss_fn: Callable, ctx: DistributedContext | None = None, *,
                           iterations: int, meta_batch: int = 8, checkpoint_dir: str | os.PathLike | None = None,
                           checkpoint_every: int = 100, resume: bool = False, val_sampler=None,
                           callbacks: Iterable[Callable] = (), store=None, progress: bool = True,
                           observers: Iterable[BatchObserver] = (), **meta_train_kwargs) -> dict[str, Any]:
    """:func:`~metalearn_kit.meta.train.meta_train` on every rank of ``ctx`` (default: the current process
    group, or one process), each computing ``meta_batch / world_size`` tasks of every meta-batch.

    Same arguments as ``meta_train`` (passed through ``meta_train_kwargs``: ``meta_lr``, ``meta_optimizer``,
    ``generator`` (the *shared* task seed), ``val_every``, ``grad_clip``, ...), except that ``iterations`` is
    required: a time budget would stop the ranks at different steps. Rank 0 checkpoints, validates, calls
    ``callbacks``, ``store`` and ``observers``; the other ranks resume from rank 0's checkpoint, sent over the
    network. Returns the history (on rank 0 with validation; the other ranks' lack it).

    Raises :class:`RankLostError` when another rank dies or stops answering within ``ctx.timeout_s``."""
    ctx = ctx if ctx is not None else current_context()
    if "time_budget_s" in meta_train_kwargs and meta_train_kwargs["time_budget_s"] is not None:
        if ctx.distributed:
            raise ValueError("time_budget_s cannot be used with several ranks (they would stop at different "
                             "iterations and wait for each other forever); give iterations")
    check_int("iterations", iterations, minimum=1)
    check_meta_batch(meta_batch, ctx.world_size)
    check_int("checkpoint_every", checkpoint_every, minimum=1)
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir (the folder of the run to continue)")
    if ctx.backend == "nccl":
        wrong = [n for n, p in learner.named_parameters() if p.device.type != "cuda"]
        if wrong:
            raise ValueError(f"the NCCL backend needs the learner on the GPU, but {wrong[:3]} are on the CPU; "
                             f"call learner.to(ctx.device) first")
    sharded = ShardedLearner(learner, ctx, observers)
    if not ctx.distributed:
        return meta_train(sharded, task_sampler, loss_fn, iterations=iterations, meta_batch=meta_batch,
                          checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, resume=resume,
                          val_sampler=val_sampler, callbacks=tuple(callbacks), store=store, progress=progress,
                          **meta_train_kwargs)

    private: Path | None = None
    try:
        _broadcast_state(learner, ctx)
        if ctx.is_main:
            run_dir = checkpoint_dir
            every = checkpoint_every
        else:
            # the other ranks keep their copy of the state in a private folder: they must be able to resume
            # exactly like rank 0, but never write to the run's folder
            private = Path(tempfile.mkdtemp(prefix=f"metalearn-kit-rank{ctx.rank}-"))
            run_dir, every = private, 2**62
        rank_resume = False
        if resume:
            source = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
            target = (private or Path(".")) / CHECKPOINT_NAME
            rank_resume = _share_checkpoint(source, target, ctx)
            if ctx.is_main:
                rank_resume = resume
        return meta_train(sharded, task_sampler, loss_fn, iterations=iterations, meta_batch=meta_batch,
                          checkpoint_dir=run_dir, checkpoint_every=every, resume=rank_resume and run_dir is not None,
                          val_sampler=val_sampler if ctx.is_main else None,
                          callbacks=tuple(callbacks) if ctx.is_main else (),
                          store=store if ctx.is_main else None, progress=progress and ctx.is_main,
                          **meta_train_kwargs)
    except RankLostError as err:
        raise RankLostError(f"{err}. Last checkpoint: {last_checkpoint_text(checkpoint_dir)}; resume with "
                            f"--resume (resume=True)") from err.__cause__
    finally:
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)


__all__ = ["DistributedContext", "RankLostError", "ShardedLearner", "init_distributed", "shutdown_distributed",
           "current_context", "world_from_env", "check_meta_batch", "shard_range", "take_shard",
           "distributed_meta_train", "checkpoint_iteration", "last_checkpoint_text"]
