"""``metalearn-kit bench warmstart``: choose how to start each held-out task of a mixed stream from the
meta-database's meta-labels, against the single best default, descriptor-nearest, support-loss choice and an
oracle, all fine-tuned with the same budget (see :mod:`metalearn_kit.warmstart_benchmark`).

Prints PSNR after 0, 1, 5 and 20 steps and the oracle pick rate per chooser, the choice latency over a synthetic
database of 100,000 meta-labels, and whether each target holds; ``--json PATH`` writes the rows (``chooser``,
``steps``, ``metric``, ``value``, ``stderr``, ``per_task``) with the targets and the machine description.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["configure_parser", "main"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from ..config import PROFILE_HELP, PROFILES

    parser.description = " ".join(__doc__.split("\n\n")[0].split())
    parser.add_argument("--profile", choices=PROFILES, default=None, help=PROFILE_HELP)
    parser.add_argument("--json", default=None, metavar="PATH", help="write the rows, targets and machine info here")
    parser.add_argument("--workers", type=int, default=2, help="processes that fine-tune (default 2)")
    parser.add_argument("--db", default=None, metavar="PATH",
                        help="keep the meta-database of stored runs here (default: a temporary file)")


def _print_table(rows: list[dict], targets: list[dict], extra: dict) -> None:
    from ..warmstart_benchmark import CHOOSERS, REPORT_STEPS

    print(f"{'chooser':14s}" + "".join(f"  PSNR@{s:<2d}        " for s in REPORT_STEPS) + "  oracle picks")
    for name in CHOOSERS:
        cells = []
        for step in REPORT_STEPS:
            row = next(r for r in rows if r["chooser"] == name and r["metric"] == "psnr" and r["steps"] == step)
            cells.append(f"  {row['value']:6.2f} +- {row['stderr']:4.2f}")
        pick = next(r for r in rows if r["chooser"] == name and r["metric"] == "oracle_pick_rate")
        print(f"{name:14s}" + "".join(cells) + f"  {100 * pick['value']:5.1f}%")
    timing = next(r for r in rows if r["metric"] == "latency_ms")
    print(f"latency over {timing['stored_labels']} meta-labels: median {timing['value']:.2f} ms per choice "
          f"(table read once: {timing['build_ms']:.0f} ms)")
    print(f"meta-label fallbacks on test tasks: {extra['fallbacks']}; nearest stored task of the task's family: "
          f"{100 * extra['nearest_family_right']:.0f}%")
    for target in targets:
        status = "HOLDS" if target["holds"] else "DOES NOT HOLD"
        interval = f" [{target['interval'][0]:+.2f}, {target['interval'][1]:+.2f}]" if "interval" in target else ""
        print(f"target {status:13s} {target['target']} -- measured {target['value']:.3f}{interval}")


def main(args: argparse.Namespace) -> int:
    from .. import warmstart_benchmark as wb
    from ..benchmark_tables import write_table
    from ..config import describe_machine, get_profile
    from ..store.db import MetaDatabase

    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    profile = get_profile(args.profile)
    config = wb.bench_config(profile)
    started = time.perf_counter()
    models = wb.load_models()
    starts = wb.starts_of(models)
    stored = wb.stream("train", config.store_per_family, wb.STORE_SEED)
    stored_curves = wb.curves_of(stored, models, starts, config.steps, args.workers)
    with tempfile.TemporaryDirectory() as folder:
        db = MetaDatabase(Path(args.db) if args.db else Path(folder) / "warmstart.sqlite")
        wb.build_store(db, stored, models, starts, stored_curves)
        tasks = wb.test_tasks(config.test_per_family)
        curves = wb.curves_of(tasks, models, starts, config.steps, args.workers)
        chosen = wb.choose_all(db, tasks, starts, curves)
        db.close()
    timing = wb.latency(config.latency_labels, config.latency_queries)
    rows = wb.rows_of(chosen["picks"], curves, timing)
    targets = wb.targets_of(rows)
    total = time.perf_counter() - started
    extra = {"fallbacks": sum(f is not None for f in chosen["fallbacks"]),
             "nearest_family_right": chosen["nearest_family_right"]}
    _print_table(rows, targets, extra)
    print(f"total wall time {total:.1f} s (profile {profile}, {args.workers} workers)")
    if args.json:
        payload = {"benchmark": "warmstart", "profile": profile, "command": " ".join(["metalearn-kit", *sys.argv[1:]]),
                   "total_wall_time_s": total, "machine": describe_machine(), "config": vars(config),
                   "starts": starts, "stored_tasks": len(stored),
                   "tasks": [{"family": t.info["family"], "params": t.info["params"]} for t in tasks],
                   "picks": {name: [starts[j]["start"] for j in picks] for name, picks in chosen["picks"].items()},
                   "fallbacks": chosen["fallbacks"], **extra, "targets": targets, "rows": rows}
        write_table(args.json, payload)
        print(f"wrote {args.json}")
    return 0
