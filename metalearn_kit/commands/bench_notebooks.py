"""``metalearn-kit bench notebooks``: run every notebook on a fresh kernel and report time and peak memory
against the budgets (fast profile, 2 CPU cores: each notebook under 3 minutes, the series under 12, the
kernel's peak memory under 1.5 GB, since Binder allows 2 GB)."""

from __future__ import annotations

import argparse

from ..config import PROFILE_HELP, PROFILES, describe_machine, get_profile
from .notebooks import dump_json, execute_notebook, list_notebooks, runs_json, runs_table

__all__ = ["configure_parser", "main"]

BUDGET_NOTEBOOK_S = 180.0
BUDGET_SERIES_S = 720.0
BUDGET_PEAK_MB = 1536.0


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", help="write the measurements to this JSON file")
    parser.add_argument("--profile", default=None, choices=PROFILES, help=PROFILE_HELP)


def main(args: argparse.Namespace) -> int:
    args.profile = get_profile(args.profile)
    runs = [execute_notebook(path, profile=args.profile) for path in list_notebooks()]
    print(runs_table(runs))
    total = sum(run.seconds for run in runs)
    peak = max((run.peak_memory_mb or 0.0) for run in runs)
    checks = {
        f"each notebook < {BUDGET_NOTEBOOK_S:.0f} s": all(run.seconds < BUDGET_NOTEBOOK_S for run in runs),
        f"series < {BUDGET_SERIES_S:.0f} s (took {total:.0f} s)": total < BUDGET_SERIES_S,
        f"kernel peak < {BUDGET_PEAK_MB:.0f} MB (max {peak:.0f} MB)": peak < BUDGET_PEAK_MB,
        "no error outputs": all(run.ok for run in runs),
    }
    for text, holds in checks.items():
        print(f"[{'holds' if holds else 'FAILS'}] {text}")
    if args.json:
        dump_json(args.json, {"profile": args.profile, "machine": describe_machine(), "notebooks": runs_json(runs),
                              "total_seconds": total, "checks": checks})
    return 0 if all(checks.values()) else 1
