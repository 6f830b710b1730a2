"""``metalearn-kit db``: look into the meta-database.

    metalearn-kit db [--path P] list                          runs, newest first
    metalearn-kit db [--path P] show RUN                      everything about one run
    metalearn-kit db [--path P] best [--family F] [--metric M] [--step S] [--lower-is-better]
    metalearn-kit db [--path P] export CSV                    every result as CSV

``--path`` defaults to ``$METALEARN_KIT_DB`` or the file in the user's data folder.
"""

from __future__ import annotations

import argparse
import json

__all__ = ["configure_parser", "main"]

ACTIONS = ("list", "show", "best", "export")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = "Look into the meta-database: runs, their meta-labels, the best runs, a CSV export."
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "\n".join(__doc__.splitlines()[2:8])
    parser.add_argument("action", choices=ACTIONS, help="what to do")
    parser.add_argument("target", nargs="?", default=None, help="RUN id for 'show', CSV file for 'export'")
    parser.add_argument("--path", default=None, help="meta-database file (default: $METALEARN_KIT_DB or the "
                                                     "user data folder)")
    parser.add_argument("--family", default=None, help="'best': only tasks of this family")
    parser.add_argument("--metric", default="psnr", help="'best': metric to rank by (default psnr)")
    parser.add_argument("--step", type=int, default=None, help="'best': adaptation step (default: last)")
    parser.add_argument("--lower-is-better", action="store_true", help="'best': rank ascending (losses)")
    parser.add_argument("--limit", type=int, default=10, help="'best'/'list': rows to show (default 10)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _table(rows: list[dict], columns: list[str]) -> str:
    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "-" if value is None else str(value)

    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _run_id(target: str | None) -> int:
    if target is None:
        raise ValueError("'show' needs a RUN id: metalearn-kit db show 3 (see 'metalearn-kit db list')")
    try:
        value = int(target)
    except ValueError:
        raise ValueError(f"RUN must be an integer run id, got {target!r} (see 'metalearn-kit db list')") from None
    if value < 1:
        raise ValueError(f"RUN must be a positive run id, got {value}")
    return value


def main(args: argparse.Namespace) -> int:
    from ..store.db import MetaDatabase

    if args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if args.action == "export" and not args.target:
        raise ValueError("'export' needs a CSV file path: metalearn-kit db export results.csv")
    with MetaDatabase(args.path, create=False) as db:
        if args.action == "list":
            runs = db.runs()[: args.limit]
            if args.json:
                print(json.dumps(runs, indent=2, default=str))
            elif not runs:
                print(f"no runs in {db.path}")
            else:
                for r in runs:
                    r["created"] = _when(r["created"])
                print(_table(runs, ["id", "algorithm", "backbone", "seed", "status", "n_tasks", "n_results",
                                    "n_artefacts", "created"]))
        elif args.action == "show":
            record = db.run_record(_run_id(args.target))
            if args.json:
                print(json.dumps(record, indent=2, default=str))
            else:
                print(_format_record(record))
        elif args.action == "best":
            best = db.best_runs(family=args.family, metric=args.metric, step=args.step,
                                higher_is_better=not args.lower_is_better, limit=args.limit)
            if args.json:
                print(json.dumps(best, indent=2))
            elif not best:
                known = ", ".join(db.metrics()) or "none"
                print(f"no results for metric {args.metric!r}"
                      + (f" on family {args.family!r}" if args.family else "") + f" (metrics recorded: {known})")
            else:
                print(_table(best, ["run_id", "algorithm", "backbone", "seed", "step", "mean", "std", "n_tasks",
                                    "n_results"]))
        else:
            count = db.export_csv(args.target)
            print(f"wrote {count} results to {args.target}")
    return 0


def _when(timestamp: float | None) -> str:
    import datetime

    if timestamp is None:
        return "-"
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


def _format_record(record: dict) -> str:
    lines = [f"run {record['id']}: {record['algorithm']} on {record['backbone']} (seed {record['seed']}, "
             f"kit {record['kit_version']}, {record['status']}, started {_when(record['created'])})",
             f"config: {json.dumps(record['config'], sort_keys=True)}"]
    if record.get("final_metrics"):
        lines.append(f"final metrics: {json.dumps(record['final_metrics'], sort_keys=True)}")
    families = sorted({t["family"] or "-" for t in record["tasks"]})
    lines.append(f"tasks: {len(record['tasks'])} (families: {', '.join(families) or '-'}); "
                 f"results: {record['n_results']}; artefacts: {len(record['artefacts'])}")
    for metric, by_step in record["results"].items():
        curve = ", ".join(f"{step}: {s['mean']:.4g}" for step, s in by_step.items())
        lines.append(f"  {metric} by adaptation step (mean) -> {curve}")
    for a in record["artefacts"]:
        lines.append(f"  artefact {a['id']} (task {a['task_id'] if a['task_id'] is not None else 'run-level'}): "
                     f"{a['path']} sha256 {a['sha256'][:12]}...")
    machine = record.get("machine") or {}
    if machine:
        lines.append("machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()))
    return "\n".join(lines)
