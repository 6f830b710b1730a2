"""Print docs/results.md's restoration tables (markdown) from a `bench restoration --json` file, so the figures
quoted there are the benchmark's, not typed by hand: the targets, then one table per experiment (and per support
size K where the rows have one: the operator families) with each method's PSNR after 0, 1, 5, 20 and 50 steps.

    python scripts/restoration_results_table.py docs/benchmarks/restoration_fast.json
    python scripts/restoration_results_table.py docs/benchmarks/restoration_operators_fast.json
"""

from __future__ import annotations

import json
import sys

from metalearn_kit.evaluation.restoration_targets import targets_markdown

HORIZON = (0, 1, 5, 20, 50)


def _cell(row: dict | None) -> str:
    if row is None:
        return ""
    return f"{row['value']:.2f} ± {row['stderr']:.2f}" if row.get("stderr") else f"{row['value']:.2f}"


def experiment_markdown(rows: list[dict], experiment: str, k: int | None = None) -> str:
    """One experiment's markdown table (at support size ``k`` where its rows have one): each method's PSNR after
    the HORIZON step counts, and the crossover line where the rows carry one."""
    part = [r for r in rows if r["experiment"] == experiment and r.get("support_size") == k and r["metric"] == "psnr"]
    where = f"{part[0].get('test_source')} test tasks" if part[0].get("test_source") else "test tasks"
    lines = [f"**{experiment}{'' if k is None else f', K = {k}'}** (PSNR dB, mean ± standard error over "
             f"{part[0]['tasks']} {where})", "",
             "| method | role | " + " | ".join(f"{s} steps" for s in HORIZON) + " | no steps |",
             "|---|---|" + "---|" * (len(HORIZON) + 1)]
    for method in dict.fromkeys(r["method"] for r in part):
        mine = {r["steps"]: r for r in part if r["method"] == method}
        role = next(iter(mine.values())).get("role", "")
        lines.append(f"| {method} | {role} | " + " | ".join(_cell(mine.get(s)) for s in (*HORIZON, None)) + " |")
    crossover = next((r for r in rows if r["experiment"] == experiment and r.get("support_size") == k
                      and r["metric"] == "crossover_step"), None)
    if crossover is not None:
        lines += ["", f"Crossover: {crossover['summary']}"]
    return "\n".join(lines)


def main(path: str) -> None:
    payload = json.loads(open(path).read())
    rows = payload["rows"]
    print(targets_markdown(payload["targets"]))
    for experiment, k in dict.fromkeys((r["experiment"], r.get("support_size")) for r in rows
                                       if r["metric"] == "psnr"):
        print()
        print(experiment_markdown(rows, experiment, k))
    wall = payload.get("total_wall_time_s", payload.get("wall_time_s"))
    print(f"\nwall time {wall:.0f} s, profile {payload['profile']}, split {payload.get('split', 'test')}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/benchmarks/restoration_fast.json")
