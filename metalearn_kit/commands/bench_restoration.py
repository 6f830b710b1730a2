"""``metalearn-kit bench restoration``: run the five restoration experiments on held-out photographs, print one
table (experiment x method x steps -> PSNR / SSIM / seconds) and whether each target holds, and write the rows
(``experiment``, ``method``, ``steps``, ``metric``, ``value``, ...) with the machine description as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..checkpoints import atomic_write_bytes
from ..config import describe_machine, get_profile
from ..recipes.restoration_configs import RESTORATION_EXPERIMENTS

__all__ = ["configure_parser", "main"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("--profile", choices=("fast", "full"), default=None, help="sizes (default: by device)")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the rows and machine info here")
    parser.add_argument("--experiments", nargs="*", default=None, choices=RESTORATION_EXPERIMENTS,
                        help="run only these experiments (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-classical", action="store_true", help="skip the classical references")


def main(args: argparse.Namespace) -> int:
    profile = get_profile(args.profile)
    start = time.perf_counter()
    from ..evaluation.bench_restoration import check_targets, comparisons, format_table
    from ..evaluation.restoration import run_experiments

    rows = run_experiments(args.experiments, profile=profile, seed=args.seed, classical=not args.no_classical)
    total = time.perf_counter() - start
    print(format_table(rows))
    print()
    checks = check_targets(rows)
    for check in checks:
        status = {True: "HOLDS", False: "DOES NOT HOLD", None: "not measured"}[check["holds"]]
        print(f"target {status:13s} {check['target']} -- {check['detail']}")
    for line in comparisons(rows):
        print(line)
    print(f"total wall time {total:.1f} s (profile {profile})")
    if args.json:
        payload = {"benchmark": "restoration", "profile": profile, "seed": args.seed, "total_wall_time_s": total,
                   "machine": describe_machine(), "targets": checks, "comparisons": comparisons(rows), "rows": rows}
        atomic_write_bytes(Path(args.json), json.dumps(payload, indent=1, default=str).encode())
        print(f"wrote {args.json}")
    return 0
