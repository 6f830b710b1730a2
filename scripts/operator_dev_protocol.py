"""The operator families' benchmark protocol on DEV tasks (dev photographs, training parameter bands, DEV_SEED):
every method of `bench restoration`'s operator experiments, full-strength baselines and parametric fits included,
where choices may be made and figures may be read as often as needed. The test split is never read here.

One family per process lets both cores work:

    python scripts/operator_dev_protocol.py --families tone_curve --json /tmp/dev_tone.json &
    python scripts/operator_dev_protocol.py --families stripe_noise --json /tmp/dev_stripes.json
    python scripts/operator_dev_protocol.py --merge /tmp/dev_*.json \
        --json docs/benchmarks/operator_dev_protocol_fast.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from metalearn_kit.benchmark_tables import write_table
from metalearn_kit.config import describe_machine
from metalearn_kit.data.photo_sets import DEV_SEED
from metalearn_kit.evaluation.operator_experiments import OPERATOR_EXPERIMENTS, crossover_rows, operator_experiment
from metalearn_kit.evaluation.operator_report import operator_tables, operator_targets


def run(families: list[str], tasks: int, support_sizes: tuple[int, ...]) -> dict:
    """The dev rows of ``families`` and their targets."""
    start = time.perf_counter()
    rows = []
    for family in families:
        rows += operator_experiment(family, "fast", sizes={"test_tasks": tasks}, support_sizes=support_sizes,
                                    split="val")
    return {"benchmark": "operator_protocol_dev", "split": "dev", "seed": DEV_SEED, "profile": "fast",
            "families": families, "wall_time_s": time.perf_counter() - start, "machine": describe_machine(),
            "rows": rows}


def merge(paths: list[str]) -> dict:
    """One payload from several runs' JSON files (their rows joined; wall time: the longest run's)."""
    parts = [json.load(open(path)) for path in paths]
    return {**parts[0], "families": [f for p in parts for f in p["families"]],
            "wall_time_s": max(p["wall_time_s"] for p in parts), "parallel_runs": len(parts),
            "rows": [r for p in parts for r in p["rows"]]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=list(OPERATOR_EXPERIMENTS), choices=OPERATOR_EXPERIMENTS)
    parser.add_argument("--tasks", type=int, default=16, help="dev tasks per family and support size")
    parser.add_argument("--support-sizes", type=int, nargs="+", default=[2, 5])
    parser.add_argument("--merge", nargs="+", default=None, help="join these runs' JSON files instead of running")
    parser.add_argument("--json", required=True, help="write the payload here")
    args = parser.parse_args(argv)
    if args.tasks < 2:
        parser.error(f"--tasks must be >= 2 (the paired intervals need two tasks), got {args.tasks}")
    torch.set_num_threads(1)
    payload = merge(args.merge) if args.merge else run(args.families, args.tasks, tuple(args.support_sizes))
    measured = [r for r in payload["rows"] if r["role"] != "summary"]
    payload["rows"] = measured + crossover_rows(measured)  # recomputed, so a merge follows the current definition
    payload["targets"] = operator_targets(payload["rows"])
    print(operator_tables(payload["rows"]))
    for target in payload["targets"]:
        status = {True: "HOLDS", False: "DOES NOT HOLD", None: "not measured"}[target["holds"]]
        print(f"target {status:13s} {target['target']} -- {target['detail']}")
    write_table(args.json, payload)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
