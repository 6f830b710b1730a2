"""``metalearn-kit bench meta-step``: time one meta-step per backend and algorithm (the runner and its setup:
:mod:`metalearn_kit.evaluation.bench_meta_step`)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ..evaluation.bench_meta_step import (
    ALGORITHMS,
    BACKENDS,
    DEPTH,
    INNER_LR,
    INNER_STEPS,
    QUERIES,
    SHOTS,
    SIZE,
    WIDTH,
    benchmark,
    summarize,
)

__all__ = ["configure_parser", "main"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, default=None, help="write the rows (and the machine) to this JSON file")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: the kit's device)")
    parser.add_argument("--meta-batch", type=int, nargs="+", default=[8, 32], help="meta-batch sizes")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per configuration (default 10 on "
                        "CUDA, 3 on CPU)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation happens here)")
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS), choices=ALGORITHMS,
                        help=f"meta-learning algorithms to time (default: {', '.join(ALGORITHMS)})")
    parser.add_argument("--backends", nargs="+", default=None, choices=BACKENDS,
                        help="default: higher, func and func-loop on CPU; higher, func and func+compile on CUDA")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--interleave", action="store_true",
                        help="time the backends of each (algorithm, meta-batch) round-robin in one process, so a "
                             "machine shared with other work slows them alike (no memory figures then)")


def main(args: argparse.Namespace) -> int:
    from ..config import describe_machine, get_device

    device = get_device(args.device)
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda, got {device.type!r}")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if any(b < 1 for b in args.meta_batch):
        raise ValueError(f"--meta-batch values must be >= 1, got {args.meta_batch}")
    repeats = args.repeats if args.repeats is not None else (10 if device.type == "cuda" else 3)
    if repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {repeats}")
    backends = args.backends or (["higher", "func", "func+compile"] if device.type == "cuda"
                                 else ["higher", "func", "func-loop"])
    machine = describe_machine()
    print(f"machine: {json.dumps(machine)}")
    memory_text = ("not measured (interleaved)" if args.interleave else "torch.cuda.max_memory_allocated"
                   if device.type == "cuda" else "ru_maxrss growth (child process)")
    print(f"ConvRestorer {DEPTH}x{WIDTH}, {SIZE}x{SIZE}x1, {SHOTS} support + {QUERIES} query, {INNER_STEPS} inner "
          f"steps; {repeats} timed steps after {args.warmup} warm-up; memory: "
          f"{memory_text}")
    print(f"{'algo':8s} {'backend':13s} {'mb':>4s} {'tasks/s':>10s} {'ms/step':>10s} {'peak MB':>10s}")
    t0 = time.perf_counter()
    setup = {"model": f"ConvRestorer(channels=1, width={WIDTH}, depth={DEPTH})", "image": SIZE, "support": SHOTS,
             "query": QUERIES, "inner_steps": INNER_STEPS, "inner_lr": INNER_LR, "inner_optimizer": "sgd",
             "meta_optimizer": "adam", "repeats": repeats, "warmup": args.warmup,
             "interleaved": args.interleave,
             "memory_method": ("not measured (interleaved timing)" if args.interleave
                               else "torch.cuda.max_memory_allocated minus allocated before" if device.type == "cuda"
                               else "ru_maxrss growth over the steps, one child process per configuration")}

    def write(rows: list[dict], complete: bool) -> None:
        if args.json is None:
            return
        payload = {"benchmark": "meta-step", "machine": machine, "device": device.type, "setup": setup,
                   "rows": rows, "summary": summarize(rows), "complete": complete,
                   "total_s": time.perf_counter() - t0}
        from ..benchmark_tables import write_table

        # rewritten after every configuration: atomic, so a run killed mid-write keeps the rows so far
        write_table(args.json, payload)

    rows = benchmark(device, args.meta_batch, repeats, args.warmup, args.algorithms, backends, args.threads,
                     on_row=lambda rows: write(rows, False), interleave=args.interleave)
    for line in summarize(rows)["lines"]:
        print(line)
    write(rows, True)
    if args.json is not None:
        print(f"wrote {args.json}")
    return 0


