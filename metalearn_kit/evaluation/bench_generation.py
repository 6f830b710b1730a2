"""``metalearn-kit bench generation``: the few-shot generation table on unseen glyph classes.

One table, method x shots (K) x adaptation steps (k) -> query NLL (nats, importance-weighted bound),
5-way prototype accuracy and Frechet distance of generated samples; then whether each target of the issue
holds. ``--json PATH`` writes ``{"rows": [{experiment, method, shots, steps, metric, value, std_error,
tasks}, ...], "targets": [...], "config": ..., "machine": ..., ...}``.

``--make-checkpoint NAME`` (re)trains one model with the profile's config and writes the shipped checkpoint
``metalearn_kit/checkpoints_data/generation_NAME_PROFILE.safetensors`` (config, seed, metrics and machine are
recorded in it), then exits.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from .generation import CHECKPOINT_NAMES, METHODS

    parser.add_argument("--profile", choices=("fast", "full"), default=None,
                        help="sizes: fast (CPU, minutes) or full (GPU); default: the active profile")
    parser.add_argument("--json", metavar="PATH", default=None, help="write rows, targets and config as JSON")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="methods to run")
    parser.add_argument("--grid", metavar="PNG", default=None, help="save a grid of generated samples")
    parser.add_argument("--eval-tasks", type=int, default=None, help="override the number of evaluation classes")
    parser.add_argument("--make-checkpoint", choices=(*CHECKPOINT_NAMES, "all"), default=None,
                        help="train this model and write its shipped checkpoint, then exit")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda, mps (default: $METALEARN_KIT_DEVICE, else CUDA if available, else CPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--progress", action="store_true", help="show training progress bars")


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(args: argparse.Namespace) -> int:
    from ..config import describe_machine, get_device
    from .generation import (
        CHECKPOINT_NAMES,
        SHIPPED_DIR,
        check_targets,
        evaluate_generation,
        format_table,
        generation_config,
        get_trained,
        save_sample_grid,
    )

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    device = get_device(args.device)
    overrides = {} if args.eval_tasks is None else {"eval_tasks": args.eval_tasks}
    config = generation_config(args.profile, **overrides)
    start = time.perf_counter()
    if args.make_checkpoint:
        names = CHECKPOINT_NAMES if args.make_checkpoint == "all" else (args.make_checkpoint,)
        for name in names:
            path = SHIPPED_DIR / f"generation_{name}_{config['profile']}.safetensors"
            _, info = get_trained(name, config, retrain=True, save_to=path, progress=args.progress, log=_log,
                                  device=device)
            size_mb = os.path.getsize(path) / 2**20
            _log(f"wrote {path} ({size_mb:.2f} MB) in {info['seconds']:.1f} s: {info['metrics']}")
        return 0

    _log(f"generation benchmark, profile {config['profile']}, device {device}, {os.cpu_count()} CPUs visible, "
         f"{torch.get_num_threads()} torch threads (the CPU may be shared: timings include contention)")
    result = evaluate_generation(config, args.methods, progress=args.progress, log=_log,
                                 keep_samples=args.grid is not None, device=device)
    wall = time.perf_counter() - start
    steps_note = ("" if config["steps"] == [0, 1, 5, 10, 50] else f" (subset of k: {config['steps']})")
    print(f"\nFew-shot generation on {len(result['info']['eval_classes'])} unseen glyph classes, "
          f"profile {config['profile']}{steps_note}; mean +- standard error over classes")
    print(format_table(result["rows"]))
    print("statistician has no inner loop (k = 0 only); figr is a GAN: no likelihood, samples only.")
    for name, info in result["info"]["checkpoints"].items():
        print(f"  {name}: {info['source']} ({info['seconds']:.1f} s)")
    targets = check_targets(result, shots=5, steps=10 if 10 in config["steps"] else max(config["steps"]))
    print("\nTargets:")
    for t in targets:
        verdict = {True: "HOLDS", False: "DOES NOT HOLD", None: "NOT MEASURED"}[t["holds"]]
        print(f"  [{verdict}] {t['target']}: {t['detail']}")
    print(f"\ntotal wall time {wall:.1f} s")
    if args.grid:
        grid_steps = [k for k in (0, 10, max(config["steps"])) if k in config["steps"]]
        _log(f"sample grid: {save_sample_grid(result['samples'], args.grid, shots=[5], steps=grid_steps)}")
    if args.json:
        payload = {"experiment": "generation", "profile": config["profile"], "device": str(device), "config": config,
                   "rows": result["rows"], "targets": targets, "wall_time_s": wall,
                   "eval_seconds": result["info"]["eval_seconds"], "eval_classes": result["info"]["eval_classes"],
                   "checkpoints": result["info"]["checkpoints"], "method_seconds": result["info"]["method_seconds"],
                   "per_task": result["info"]["per_task"], "machine": describe_machine(),
                   "command": "metalearn-kit " + " ".join(sys.argv[1:])}
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as handle:
            json.dump(payload, handle, indent=1, default=str)
        _log(f"wrote {args.json}")
    return 0
