"""``metalearn-kit pretrain``: train shipped checkpoints and write them (with config, seed, metrics, machine).

    metalearn-kit pretrain restoration_denoise_maml      # one checkpoint
    metalearn-kit pretrain --all                         # every registered checkpoint
    metalearn-kit pretrain --list
    metalearn-kit pretrain restoration_denoise_maml --profile full      # one full-size checkpoint, one GPU
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from ..checkpoints import atomic_write_bytes
from ..config import PROFILE_HELP, PROFILES, describe_machine, get_profile
from ..pretrained import DIR_ENV, REGISTRY, available, checkpoint_path, train_pretrained

__all__ = ["configure_parser", "main"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = "Train shipped checkpoints and write them (with config, seed, metrics, machine)."
    parser.add_argument("names", nargs="*", help="checkpoint names (see --list)")
    parser.add_argument("--all", action="store_true", help="train every registered checkpoint")
    parser.add_argument("--prefix", default=None, help="train every checkpoint whose name starts with this")
    parser.add_argument("--list", action="store_true", help="list the registered checkpoints and exit")
    parser.add_argument("--out", default=None, help=f"folder to write to (default: ${DIR_ENV} or the package)")
    parser.add_argument("--missing-only", action="store_true", help="skip checkpoints whose file exists")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="also write one row per trained checkpoint (wall time, meta-steps, tasks/s, peak GPU "
                             "memory, machine) to this JSON file")
    parser.add_argument("--profile", default=None, choices=PROFILES,
                        help=f"{PROFILE_HELP}. fast: the shipped checkpoints; full: the GPU-sized variants that "
                             "`bench ... --profile full` loads, written as NAME_full files")


def main(args: argparse.Namespace) -> int:
    args.profile = get_profile(args.profile)
    if args.out:
        os.environ[DIR_ENV] = str(args.out)
    if args.list:
        present = available(args.profile)
        for name, entry in sorted(REGISTRY.items()):
            print(f"{name:32s} {args.profile:5s} {'present' if present[name] else 'missing':8s} {entry.description}")
        return 0
    names = list(args.names)
    if args.all:
        names = sorted(REGISTRY)
    elif args.prefix:
        names += [n for n in sorted(REGISTRY) if n.startswith(args.prefix) and n not in names]
    if not names:
        raise ValueError("names is empty: give checkpoint names, --prefix PREFIX or --all (see --list)")
    for name in names:
        checkpoint_path(name, args.profile)  # refuses an unknown name or profile
    rows = []
    for name in names:
        if args.missing_only and checkpoint_path(name, args.profile).exists():
            print(f"{name}: present, skipped")
            continue
        _, meta = train_pretrained(name, profile=args.profile)
        rows.append(training_row(meta))
        print(f"{name}: trained in {meta['train_wall_time_s']:.1f} s -> {checkpoint_path(name, args.profile)}  "
              f"metrics {meta['metrics']}", flush=True)
        if args.json:  # rewritten after every checkpoint: a run cut short keeps what it finished
            atomic_write_bytes(Path(args.json), json.dumps(
                {"command": f"metalearn-kit pretrain {' '.join(names)} --profile {args.profile}",
                 "profile": args.profile, "machine": describe_machine(), "rows": rows}, indent=1).encode())
    if rows:
        print(format_training_table(rows))
    return 0


def training_row(meta: dict) -> dict[str, Any]:
    """What a training run cost: wall time, meta-steps (iterations), tasks/s where the config has a meta-batch,
    peak GPU memory and the device."""
    config, metrics = meta["config"], meta["metrics"]
    iterations = metrics.get("iterations", metrics.get("iteration_last"))
    batch = config.get("meta_batch")
    wall = meta["train_wall_time_s"]
    return {"name": meta["name"], "profile": meta["profile"], "wall_time_s": wall, "iterations": iterations,
            "tasks_per_s": iterations * batch / wall if iterations and batch and wall > 0 else None,
            "peak_gpu_memory_mb": meta.get("peak_gpu_memory_mb"), "device": metrics.get("device"),
            "gpu": meta["machine"].get("gpu")}


def format_training_table(rows: list[dict]) -> str:
    def cell(value, fmt):
        return "-" if value is None else format(value, fmt)

    header = f"{'checkpoint':32s} {'profile':7s} {'wall s':>9s} {'iters':>7s} {'tasks/s':>9s} {'peak GPU MB':>12s}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['name']:32s} {r['profile']:7s} {cell(r['wall_time_s'], '9.1f')} "
                     f"{cell(r['iterations'], '7d')} {cell(r['tasks_per_s'], '9.1f')} "
                     f"{cell(r['peak_gpu_memory_mb'], '12.0f')}")
    return "\n".join(lines)
