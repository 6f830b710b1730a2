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
config = MetaTrainConfig(iterations=1000, meta_batch=32, checkpoint_dir="runs/denoise", resume=True)
history = distributed_meta_train(learner, sampler, loss_fn, config, ctx)
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

import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from .._checks import check_int
from ..tasks.task import Task, TaskBatch, stack_tasks
from .inner import DivergenceError
from .maml import MetaOutput
from .process_group import (
    DistributedContext,
    RankLostError,
    current_context,
    init_distributed,
    shutdown_distributed,
    world_from_env,
)
from .step import LossFn
from .train import MetaTrainConfig, meta_train, takes_config
from .train_state import CHECKPOINT_NAME, check_resume_target, checkpoint_iteration, last_checkpoint_text


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

    def meta_objective(self, tasks, loss_fn: LossFn, query_before: bool = False) -> MetaOutput:
        """Meta-objective of the whole meta-batch ``tasks``, computed over all ranks (see the class doc)."""
        ctx = self.ctx
        if not isinstance(tasks, TaskBatch):
            tasks = stack_tasks(list(tasks))
        n = len(tasks)
        check_meta_batch(n, ctx.world_size, name="meta-batch size")
        span = shard_range(n, ctx.world_size, ctx.rank)
        params = [p for p in self.learner.parameters() if p.requires_grad]
        out, grads, failure = self._shard_objective(take_shard(tasks, *span), loss_fn, query_before, params)
        if not ctx.distributed:
            if failure is not None:
                raise failure
            return self._finish(tasks, out.loss.detach(), grads, params, out.query_after, out.query_before,
                                out.support_losses)
        header, flat_grads = self._pack(out, grads, params, failure, n, span)
        self._all_reduce(header, "the meta-batch statistics")
        self._all_reduce(flat_grads, "the meta-gradients")
        loss_total, used, stats = self._unpack(header, failure, len(params), n)
        dtype = params[0].dtype if params else torch.float32
        return self._finish(tasks, (loss_total / ctx.world_size).to(dtype), self._average(flat_grads, used, params),
                            params, stats[:, 0].to(dtype), stats[:, 1].to(dtype) if query_before else None,
                            stats[:, 2:].to(dtype))

    def _shard_objective(self, shard, loss_fn: LossFn, query_before: bool, params: list[torch.Tensor]
                         ) -> tuple[MetaOutput | None, list[torch.Tensor | None], DivergenceError | None]:
        """This rank's meta-objective and its meta-gradient; a divergence is returned, not raised, so that
        every rank still joins the all-reduce and learns which ranks failed."""
        try:
            with self._random_streams():
                out = self.learner.meta_objective(shard, loss_fn, query_before=query_before)
                return out, list(torch.autograd.grad(out.loss, params, allow_unused=True)), None
        except DivergenceError as err:
            return None, [None] * len(params), err

    def _pack(self, out: MetaOutput | None, grads, params, failure, n: int, span: tuple[int, int]
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(header, flat gradients)`` for two SUM all-reduces. The header is ``[failed flag per rank | loss |
        used flag per parameter | per-task stats]``, each rank writing its own rows of the stats (query loss
        after, before, support losses by step) and the others leaving zeros."""
        ctx, steps = self.ctx, self.learner.inner_steps
        device = params[0].device if params else ctx.device
        stats = torch.zeros(n, 2 + steps, device=device, dtype=torch.float64)
        flags = torch.zeros(ctx.world_size, device=device, dtype=torch.float64)
        loss_value = torch.zeros(1, device=device, dtype=torch.float64)
        used = torch.zeros(len(params), device=device, dtype=torch.float64)
        if failure is not None:
            flags[ctx.rank] = 1.0
        else:
            start, stop = span
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
        return torch.cat([flags, loss_value, used, stats.reshape(-1)]), flat_grads

    def _unpack(self, header: torch.Tensor, failure: DivergenceError | None, n_params: int, n: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(summed loss, used count per parameter, per-task stats [n, columns])`` of the reduced header;
        raises when a rank diverged or a parameter got a gradient on some ranks only."""
        ctx = self.ctx
        flags, rest = header[:ctx.world_size], header[ctx.world_size:]
        loss_total, used, stats = rest[0], rest[1:1 + n_params], rest[1 + n_params:].reshape(n, -1)
        if flags.any():
            failed = [r for r in range(ctx.world_size) if flags[r] > 0]
            if failure is not None:
                raise DivergenceError(f"{failure} (rank {ctx.rank}; failed ranks {failed})") from failure
            raise DivergenceError(f"a loss became NaN/Inf on rank(s) {failed} (see their message); "
                                  f"lower meta_lr/inner_lr or set grad_clip")
        if ((used > 0) & (used < ctx.world_size)).any():
            names = [name for name, p in self.learner.named_parameters() if p.requires_grad]
            odd = [names[i] for i in range(n_params) if 0 < used[i] < ctx.world_size]
            raise RuntimeError(f"parameters {odd[:5]} got a meta-gradient on some ranks only: the model's graph "
                               f"depends on the tasks, which data parallelism over tasks cannot average")
        return loss_total, used, stats

    def _average(self, flat_grads: torch.Tensor, used: torch.Tensor, params: list[torch.Tensor]
                 ) -> list[torch.Tensor | None]:
        """The summed flat gradients, per parameter and divided by the world size (``None``: no gradient)."""
        averaged, offset = [], 0
        for p, u in zip(params, used):
            size = p.numel()
            averaged.append(flat_grads[offset:offset + size].view_as(p) / self.ctx.world_size if u > 0 else None)
            offset += size
        return averaged

    def _all_reduce(self, tensor: torch.Tensor, what: str) -> None:
        try:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        except Exception as err:  # noqa: BLE001 - gloo/NCCL raise RuntimeError subclasses of several kinds
            first_line = str(err).splitlines()[0] if str(err) else ""
            raise RankLostError(f"rank {self.ctx.rank} lost: no answer from the other ranks while all-reducing "
                                f"{what} ({type(err).__name__}: {first_line})") from err

    def _finish(self, tasks, loss_value: torch.Tensor, grads, params, query_after, query_before,
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

    def meta_loss(self, tasks, loss_fn: LossFn) -> torch.Tensor:
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


@takes_config
def distributed_meta_train(learner, task_sampler, loss_fn: LossFn, config: MetaTrainConfig,
                           ctx: DistributedContext | None = None, *, val_sampler=None,
                           callbacks: Iterable[Callable] = (), store=None, generator: torch.Generator | int | None = 0,
                           observers: Iterable[BatchObserver] = ()) -> dict[str, Any]:
    """:func:`~metalearn_kit.meta.train.meta_train` with the same ``config`` on every rank of ``ctx`` (default:
    the current process group, or one process), each computing ``meta_batch / world_size`` tasks of every
    meta-batch. ``generator`` is the *shared* task seed.

    ``config.iterations`` is required, and several ranks refuse ``time_budget_s`` (the ranks would stop at
    different steps). Rank 0 checkpoints, validates, calls ``callbacks``, ``store`` and ``observers``; the
    other ranks resume from rank 0's checkpoint, sent over the network. Returns the history (on rank 0 with
    validation; the other ranks' lack it).

    Raises :class:`RankLostError` when another rank dies or stops answering within ``ctx.timeout_s``."""
    ctx = ctx if ctx is not None else current_context()
    _check_distributed_run(learner, config, ctx)
    sharded = ShardedLearner(learner, ctx, observers)
    if not ctx.distributed:
        return meta_train(sharded, task_sampler, loss_fn, config, val_sampler=val_sampler,
                          callbacks=tuple(callbacks), store=store, generator=generator)
    private: Path | None = None
    try:
        _broadcast_state(learner, ctx)
        if not ctx.is_main:
            private = Path(tempfile.mkdtemp(prefix=f"metalearn-kit-rank{ctx.rank}-"))
        main = ctx.is_main
        return meta_train(sharded, task_sampler, loss_fn, _rank_config(config, ctx, private),
                          val_sampler=val_sampler if main else None, callbacks=tuple(callbacks) if main else (),
                          store=store if main else None, generator=generator)
    except RankLostError as err:
        raise RankLostError(f"{err}. Last checkpoint: {last_checkpoint_text(config.checkpoint_dir)}; resume with "
                            f"--resume (resume=True)") from err.__cause__
    finally:
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)


def _check_distributed_run(learner, config: MetaTrainConfig, ctx: DistributedContext) -> None:
    if config.time_budget_s is not None and ctx.distributed:
        raise ValueError("time_budget_s cannot be used with several ranks (they would stop at different "
                         "iterations and wait for each other forever); give iterations")
    if config.iterations is None:
        raise ValueError("distributed_meta_train needs iterations: MetaTrainConfig(iterations=...)")
    check_meta_batch(config.meta_batch, ctx.world_size)
    if ctx.is_main:  # rank 0's disk holds the run; the CLI's preflight stops every rank together
        check_resume_target(config.resume, config.checkpoint_dir)
    if ctx.backend == "nccl":
        wrong = [n for n, p in learner.named_parameters() if p.device.type != "cuda"]
        if wrong:
            raise ValueError(f"the NCCL backend needs the learner on the GPU, but {wrong[:3]} are on the CPU; "
                             f"call learner.to(ctx.device) first")


def _rank_config(config: MetaTrainConfig, ctx: DistributedContext, private: Path | None) -> MetaTrainConfig:
    """Rank 0 runs ``config``. The other ranks keep their copy of the state in their ``private`` folder: they
    must be able to resume exactly like rank 0, but never write to the run's folder; they resume when rank 0
    sent them a checkpoint, and show no progress bar."""
    resume = config.resume
    if resume:
        found = _share_checkpoint(config.checkpoint_path, (private or Path(".")) / CHECKPOINT_NAME, ctx)
        resume = resume if ctx.is_main else found
    if ctx.is_main:
        return config
    return replace(config, checkpoint_dir=private, checkpoint_every=2**62, resume=resume, progress=False)


__all__ = ["DistributedContext", "RankLostError", "ShardedLearner", "init_distributed", "shutdown_distributed",
           "current_context", "world_from_env", "check_meta_batch", "shard_range", "take_shard",
           "distributed_meta_train", "checkpoint_iteration", "last_checkpoint_text"]
