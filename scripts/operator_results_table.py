"""Print docs/results.md's operator-family tables (markdown) from a `bench restoration --json` file of the operator
families, so the figures quoted there are the benchmark's, not typed by hand.

    python scripts/operator_results_table.py docs/benchmarks/restoration_operators_fast.json
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


def family_markdown(rows: list[dict], family: str, k: int) -> str:
    """One family's markdown table at support size ``k``: each method's PSNR after the HORIZON step counts."""
    part = [r for r in rows if r["experiment"] == family and r.get("support_size") == k and r["metric"] == "psnr"]
    lines = [f"**{family}, K = {k}** (PSNR dB, mean ± standard error over {part[0]['tasks']} "
             f"{part[0].get('test_source')} test tasks)", "",
             "| method | role | " + " | ".join(f"{s} steps" for s in HORIZON) + " | no steps |",
             "|---|---|" + "---|" * (len(HORIZON) + 1)]
    for method in dict.fromkeys(r["method"] for r in part):
        mine = {r["steps"]: r for r in part if r["method"] == method}
        role = next(iter(mine.values()))["role"]
        lines.append(f"| {method} | {role} | " + " | ".join(_cell(mine.get(s)) for s in (*HORIZON, None)) + " |")
    crossover = next((r for r in rows if r["experiment"] == family and r.get("support_size") == k
                      and r["metric"] == "crossover_step"), None)
    if crossover is not None:
        lines += ["", f"Crossover: {crossover['summary']}"]
    return "\n".join(lines)


def main(path: str) -> None:
    payload = json.loads(open(path).read())
    rows = payload["rows"]
    print(targets_markdown(payload["targets"]))
    for family, k in dict.fromkeys((r["experiment"], r["support_size"]) for r in rows if r.get("support_size")):
        print()
        print(family_markdown(rows, family, k))
    wall = payload.get("total_wall_time_s", payload.get("wall_time_s"))
    print(f"\nwall time {wall:.0f} s, profile {payload['profile']}, split {payload.get('split', 'test')}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/benchmarks/restoration_operators_fast.json")
