"""``metalearn-kit train EXPERIMENT``: meta-train a named experiment (:mod:`metalearn_kit.recipes.experiments`).

One process:   metalearn-kit train denoise --profile fast --out runs/denoise
N GPUs:        torchrun --standalone --nproc_per_node N -m metalearn_kit.cli train denoise --out runs/denoise
N machines:    torchrun --nnodes M --nproc_per_node N --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
                   --rdzv-id denoise -m metalearn_kit.cli train denoise --out runs/denoise
               (on every machine; HOST is one of them, reachable by all; --rdzv-id names this job)

Writes ``OUT/meta_train.safetensors`` (the resumable checkpoint), ``OUT/model.safetensors`` (the meta-learned
initial weights), for Meta-SGD ``OUT/inner_lrs.safetensors`` (the learned inner learning rates, one tensor per
parameter name) and ``OUT/train_log.json`` (settings, history, timings). Under torchrun every rank computes
``meta_batch / world_size`` tasks of each meta-batch; rank 0 alone writes files and store records.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import checkpoints
from ..config import PROFILE_HELP, PROFILES, describe_machine, seed_everything

__all__ = ["configure_parser", "main"]

LOG_NAME = "train_log.json"
MODEL_NAME = "model.safetensors"
LRS_NAME = "inner_lrs.safetensors"
EXIT_RANK_LOST = 1


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from ..recipes.experiments import ALGORITHMS, BACKENDS, list_experiments

    parser.description = __doc__.split("\n\n")[0]
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "\n\n".join(__doc__.split("\n\n")[1:])
    parser.add_argument("experiment", help=f"one of {', '.join(list_experiments())}")
    # checked by _validate (an error naming the flag), not by argparse choices
    parser.add_argument("--profile", default=None, metavar="{" + ",".join(PROFILES) + "}", help=PROFILE_HELP)
    parser.add_argument("--algorithm", default=None, help=f"{' | '.join(ALGORITHMS)} (default: the experiment's)")
    parser.add_argument("--backend", default="auto", help=f"{' | '.join(BACKENDS)} (default: auto)")
    parser.add_argument("--iterations", type=int, default=None, help="meta-steps in total, counting those "
                                                                     "before a resume (default: the profile's)")
    parser.add_argument("--meta-batch", type=int, default=None,
                        help="tasks per meta-step over all ranks; divisible by the number of ranks")
    parser.add_argument("--meta-lr", type=float, default=None, help="outer learning rate (default: the profile's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the task stream")
    parser.add_argument("--out", default=None, help="run folder (default: runs/EXPERIMENT-ALGORITHM)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its checkpoint (an error when --out holds none)")
    parser.add_argument("--resume-if-present", action="store_true",
                        help="continue the run in --out if it holds a checkpoint, else start a fresh one there")
    parser.add_argument("--checkpoint-every", type=int, default=None, help="meta-steps between checkpoints")
    parser.add_argument("--store", default=None, metavar="PATH",
                        help="record the run, sampled tasks and final weights into this meta-database")
    parser.add_argument("--store-every", type=int, default=10,
                        help="with --store: record the tasks of every N-th meta-batch (default 10)")
    parser.add_argument("--device", default=None, help="cpu | cuda | mps (default: $METALEARN_KIT_DEVICE or the best)")
    parser.add_argument("--dist-timeout", type=float, default=60.0,
                        help="seconds a rank waits for the others before giving up (default 60)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _fail(flag: str, message: str) -> ValueError:
    return ValueError(f"{flag} {message}")


def _validate(args: argparse.Namespace, world_size: int) -> None:
    """Bad arguments -> ValueError naming the flag (the CLI turns it into exit code 2) before any work."""
    from ..recipes.experiments import ALGORITHMS, BACKENDS, list_experiments

    if args.experiment not in list_experiments():
        raise _fail("experiment", f"must be one of {list_experiments()}, got {args.experiment!r}")
    if args.profile is not None and args.profile not in PROFILES:
        raise _fail("--profile", f"must be one of {list(PROFILES)}, got {args.profile!r}")
    if args.algorithm is not None and args.algorithm not in ALGORITHMS:
        raise _fail("--algorithm", f"must be one of {list(ALGORITHMS)}, got {args.algorithm!r}")
    if args.backend not in BACKENDS:
        raise _fail("--backend", f"must be one of {list(BACKENDS)}, got {args.backend!r}")
    if args.resume and args.resume_if_present:
        raise _fail("--resume-if-present", "cannot be combined with --resume: pick --resume (the run must exist) "
                                           "or --resume-if-present (continue it if it exists)")
    for flag, value in (("--iterations", args.iterations), ("--meta-batch", args.meta_batch),
                        ("--checkpoint-every", args.checkpoint_every), ("--store-every", args.store_every)):
        if value is not None and value < 1:
            raise _fail(flag, f"must be >= 1, got {value}")
    if args.seed < 0:
        raise _fail("--seed", f"must be >= 0, got {args.seed}")
    if args.meta_lr is not None and not (math.isfinite(args.meta_lr) and args.meta_lr > 0):
        raise _fail("--meta-lr", f"must be a finite number > 0, got {args.meta_lr}")
    if not (math.isfinite(args.dist_timeout) and args.dist_timeout > 0):
        raise _fail("--dist-timeout", f"must be a finite number of seconds > 0, got {args.dist_timeout}")
    if args.meta_batch is not None and args.meta_batch % world_size:
        lower = max(world_size, args.meta_batch - args.meta_batch % world_size)
        raise _fail("--meta-batch", f"{args.meta_batch} is not divisible by the world size {world_size} (ranks "
                                    f"started by torchrun): every rank takes meta-batch / world size tasks; use "
                                    f"{lower} or {lower + world_size}")


def _jsonable(value: Any) -> Any:
    """Strict JSON: NaN/Inf -> null, tuples -> lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


class _TaskRecorder:
    """Feeds the meta-database: the observer keeps the last meta-batch with its per-task losses, the callback
    records it on every ``every``-th iteration (the observer does not know the iteration number)."""

    def __init__(self, recorder, every: int, inner_steps: int) -> None:
        self.recorder, self.every, self.inner_steps = recorder, every, inner_steps
        self.pending = None

    def observe(self, tasks, output) -> None:
        self.pending = (tasks, output)

    def callback(self, iteration: int, record: dict) -> None:
        if self.pending is None or iteration % self.every:
            return
        tasks, output = self.pending
        self.pending = None
        metrics = []
        for i in range(len(tasks)):
            # query loss by adaptation step: step 0 (before) and step inner_steps (after); the steps in between
            # were not measured (None is skipped by the recorder)
            curve: list[float | None] = [None] * (self.inner_steps + 1)
            if output.query_before is not None:
                curve[0] = float(output.query_before[i])
            curve[self.inner_steps] = float(output.query_after[i])
            metrics.append({"query_loss": curve})
        self.recorder.record(iteration, list(tasks), metrics)


def _open_store(path: str, setup):
    try:
        from ..store import MetaDatabase, StoreRecorder
    except ImportError as err:  # the store is optional in a stripped-down install
        raise ValueError(f"--store is not available in this installation ({err}); run without --store") from err
    db = MetaDatabase(path)
    return StoreRecorder(db, setup.algorithm, type(setup.model).__name__, config=setup.describe(), seed=setup.seed)


def _preflight(args: argparse.Namespace, out: Path, ctx) -> None:
    """Checks only rank 0 can make (its disk), shared with every rank so that all of them stop together."""
    from ..meta.distributed import checkpoint_iteration
    from ..meta.train import CHECKPOINT_NAME

    problem = None
    if ctx.is_main:
        exists = (out / CHECKPOINT_NAME).exists()
        if exists and not (args.resume or args.resume_if_present):
            problem = (f"--out {str(out)!r} already holds a run (iteration {checkpoint_iteration(out)}); pass "
                       f"--resume to continue it or choose another --out")
        if args.resume and not exists:
            problem = (f"--resume but --out {str(out)!r} holds no run ({CHECKPOINT_NAME} missing): check the "
                       f"folder name, or pass --resume-if-present to start a fresh run there")
    if ctx.distributed:
        import torch.distributed as dist

        box = [problem]
        dist.broadcast_object_list(box, src=0)
        problem = box[0]
    if problem:
        raise ValueError(problem)


class _Run:
    """What the failure paths of :func:`main` need: the run folder, the process's context, the log so far and the
    meta-database recorder (``None`` without ``--store`` and on the ranks other than 0)."""

    def __init__(self, out: Path, ctx) -> None:
        self.out, self.ctx = out, ctx
        self.log: dict[str, Any] = {}
        self.recorder = None

    def fail(self, status: str | None = None, error: str | None = None) -> None:
        """Write ``status`` and ``error`` into rank 0's log (when given) and mark the store's run failed."""
        if status is not None and self.ctx.is_main and self.log:
            self.log.update(status=status, error=error)
            _write_log(self.out, self.log)
        if self.recorder is not None and not self.recorder.finished:
            self.recorder.finish(status="failed")


def main(args: argparse.Namespace) -> int:
    from ..meta import DivergenceError
    from ..meta.distributed import RankLostError, init_distributed, shutdown_distributed, world_from_env
    from ..recipes.experiments import get_experiment

    _, world_size, _ = world_from_env()
    _validate(args, world_size)
    algorithm_name = args.algorithm or get_experiment(args.experiment).default_algorithm
    out = Path(args.out) if args.out is not None else Path("runs") / f"{args.experiment}-{algorithm_name}"
    ctx = init_distributed(timeout_s=args.dist_timeout, device=args.device)

    def stopped_by_launcher(signum, frame):  # torchrun stops the surviving ranks with SIGTERM when one dies
        raise RankLostError(f"rank {ctx.rank} lost: stopped by signal {signal.Signals(signum).name} (the launcher "
                            f"stops every rank when one of them fails)")

    previous_handler = signal.signal(signal.SIGTERM, stopped_by_launcher) if ctx.distributed else None
    run = _Run(out, ctx)
    try:
        return _train(args, run)
    except RankLostError as err:
        print(f"metalearn-kit train: {err}", file=sys.stderr, flush=True)
        run.fail("rank_lost", str(err))
        return EXIT_RANK_LOST
    except DivergenceError as err:
        run.fail("diverged", str(err))
        raise  # the CLI prints it as one line (exit 2): lower --meta-lr or the experiment's inner_lr
    except BaseException:
        run.fail()
        raise
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
        shutdown_distributed(ctx)


def _train(args: argparse.Namespace, run: _Run) -> int:
    """Build the experiment, meta-train it on every rank, and (rank 0) write the model and the log."""
    from ..meta.distributed import checkpoint_iteration, distributed_meta_train
    from ..recipes.experiments import build_experiment

    ctx = run.ctx
    _preflight(args, run.out, ctx)
    seed_everything(args.seed)
    setup = build_experiment(args.experiment, profile=args.profile, algorithm=args.algorithm,
                             backend=args.backend, device=ctx.device, seed=args.seed)
    setup.train = _loop_settings(args, setup.train, run.out, ctx.world_size)
    resumed_from = checkpoint_iteration(run.out) if (setup.train.resume and ctx.is_main) else None
    run.log = {"experiment": setup.describe(), "command": sys.argv, "world_size": ctx.world_size,
               "device": str(ctx.device), "backend_distributed": ctx.backend, "out": str(run.out),
               "resumed_from": resumed_from, "status": "running"}
    callbacks, observers = [], []
    if args.store is not None and ctx.is_main:
        run.recorder = _open_store(args.store, setup)
        tasks = _TaskRecorder(run.recorder, args.store_every, setup.learner.inner_steps)
        callbacks.append(tasks.callback)
        observers.append(tasks.observe)
        run.log["store"] = {"path": str(args.store), "run_id": run.recorder.run_id}
    start = time.perf_counter()
    history = distributed_meta_train(setup.learner, setup.task_sampler, setup.loss_fn, setup.train, ctx,
                                     val_sampler=setup.val_sampler, callbacks=callbacks, store=run.recorder,
                                     generator=args.seed, observers=observers)
    if ctx.is_main:
        _write_results(args, setup, history, run, start)
    return 0


def _loop_settings(args: argparse.Namespace, train, out: Path, world_size: int):
    """The experiment's :class:`~metalearn_kit.meta.train.MetaTrainConfig` with the command line's overrides,
    checkpoints in ``out`` and the resume mode."""
    from ..meta.train_state import RESUME_IF_PRESENT

    overrides = {name: value for name, value in (("iterations", args.iterations), ("meta_batch", args.meta_batch),
                                                 ("meta_lr", args.meta_lr), ("checkpoint_every", args.checkpoint_every))
                 if value is not None}
    resume = True if args.resume else RESUME_IF_PRESENT if args.resume_if_present else False
    train = replace(train, **overrides, checkpoint_dir=out, resume=resume, progress=not args.no_progress)
    if train.meta_batch % world_size:
        raise _fail("--meta-batch", f"is needed: the experiment's meta-batch {train.meta_batch} is not "
                                    f"divisible by the world size {world_size}")
    return train


def _write_results(args: argparse.Namespace, setup, history: dict, run: _Run, start: float) -> None:
    """Rank 0: the meta-learned weights (and Meta-SGD's learned rates), the store's artefact, the log
    (``start``: ``time.perf_counter()`` when training began)."""
    from ..meta import MetaSGD
    from ..meta.train import CHECKPOINT_NAME

    out, recorder = run.out, run.recorder
    done = history["iteration"][-1] if history["iteration"] else 0
    model_meta = {"kind": "meta_learned_init", "experiment": setup.name, "algorithm": setup.algorithm,
                  "iteration": done, "learner": setup.learner.config(), "seed": args.seed}
    checkpoints.save(out / MODEL_NAME, setup.model, model_meta)
    if isinstance(setup.learner, MetaSGD):  # the learned rates are half of what Meta-SGD learnt
        rates = {name: rate.detach() for name, rate in setup.learner.learned_rates().items()}
        checkpoints.save(out / LRS_NAME, rates, {**model_meta, "kind": "meta_learned_inner_lrs"})
    final = {k: history[k][-1] for k in ("meta_loss", "query_loss_before", "query_loss_after",
                                        "val_query_loss_before", "val_query_loss_after") if history.get(k)}
    if recorder is not None:
        # meta_train's store hook already finished the run with its config, history and final figures
        recorder.save_model(setup.model, model_meta)
        if not recorder.finished:
            recorder.finish({k: v for k, v in final.items() if math.isfinite(v)})
        recorder.db.close()
    run.log.update(status="finished", iterations_done=done, stopped=history.get("stopped"), final=final,
                   run_wall_time_s=time.perf_counter() - start, checkpoint=str(out / CHECKPOINT_NAME),
                   model=str(out / MODEL_NAME), machine=describe_machine(),
                   history={k: v for k, v in history.items() if k != "config"})
    _write_log(out, run.log)
    summary = ", ".join(f"{k} {v:.4g}" for k, v in final.items() if math.isfinite(v))
    print(f"trained {setup.name} ({setup.algorithm}, {setup.backend}) to iteration {done} on {run.ctx.world_size} "
          f"rank(s): {summary}; wrote {out}")


def _write_log(out: Path, log: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    checkpoints.atomic_write_bytes(out / LOG_NAME, json.dumps(_jsonable(log), indent=1, allow_nan=False).encode())
