"""``metalearn-kit bench restoration``: run the restoration experiments on held-out photographs (the five original
ones and the operator families where the support set identifies the task), print one
table (experiment x method x steps -> PSNR / SSIM / seconds) and whether each target holds, and write the rows
(``experiment``, ``method``, ``steps``, ``metric``, ``value``, ...) with the machine description as JSON.
"""

from __future__ import annotations

import argparse
import time

from ..benchmark_tables import write_table
from ..config import PROFILE_HELP, PROFILES, describe_machine, get_profile
from ..recipes.operator_families import OPERATOR_FAMILIES
from ..recipes.restoration_configs import RESTORATION_EXPERIMENTS

__all__ = ["configure_parser", "main"]


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = " ".join(__doc__.split("\n\n")[0].split())
    parser.add_argument("--profile", choices=PROFILES, default=None, help=PROFILE_HELP)
    parser.add_argument("--json", default=None, metavar="PATH", help="write the rows and machine info here")
    parser.add_argument("--experiments", nargs="*", default=None,
                        choices=RESTORATION_EXPERIMENTS + tuple(OPERATOR_FAMILIES),
                        help="run only these experiments (default: the five original ones and the operator families "
                             "of evaluation.operator_experiments.OPERATOR_EXPERIMENTS)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of every model (default 0); every experiment draws its Kodak24 test tasks with the "
                             "pre-registered TEST_SEED of metalearn_kit.data.photo_sets")
    parser.add_argument("--no-classical", action="store_true", help="skip the classical references")
    parser.add_argument("--jobs", type=int, default=1,
                        help="experiments (and operator families) run at once, one process and one thread "
                             "each (default 1; 2 on a 2-core machine)")


def main(args: argparse.Namespace) -> int:
    profile = get_profile(args.profile)
    start = time.perf_counter()
    from ..evaluation.bench_restoration import check_targets, comparisons, format_table
    from ..evaluation.operator_experiments import OPERATOR_EXPERIMENTS, run_operator_experiments
    from ..evaluation.operator_report import operator_tables, operator_targets
    from ..evaluation.restoration import run_experiments
    from ..evaluation.restoration_targets import add_roles, issue_targets

    chosen = list(RESTORATION_EXPERIMENTS + OPERATOR_EXPERIMENTS) if args.experiments is None else args.experiments
    operators = tuple(e for e in chosen if e in OPERATOR_FAMILIES)
    rows = run_experiments([e for e in chosen if e in RESTORATION_EXPERIMENTS], profile=profile, seed=args.seed,
                           classical=not args.no_classical, jobs=args.jobs)
    add_roles(rows)
    operator_rows = run_operator_experiments(list(operators), profile=profile, seed=args.seed,
                                             classical=not args.no_classical, jobs=args.jobs)
    total = time.perf_counter() - start
    if rows:
        print(format_table(rows))
        print()
    print(operator_tables(operator_rows))
    print()
    earlier = check_targets(rows)
    checks = issue_targets(rows) + operator_targets(operator_rows, total)
    for check in earlier + checks:
        status = {True: "HOLDS", False: "DOES NOT HOLD", None: "not measured"}[check["holds"]]
        print(f"target {status:13s} {check['target']} -- {check['detail']}")
    lines = comparisons(rows)
    for line in lines:
        print(line)
    print(f"total wall time {total:.1f} s (profile {profile})")
    rows = rows + operator_rows
    if args.json:
        payload = {"benchmark": "restoration", "profile": profile, "seed": args.seed, "total_wall_time_s": total,
                   "jobs": args.jobs,
                   "machine": describe_machine(), "targets": checks, "earlier_targets": earlier,
                   "comparisons": lines, "rows": rows}
        write_table(args.json, payload)
        print(f"wrote {args.json}")
    return 0
