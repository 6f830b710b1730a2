"""Print the README's restoration results (markdown) from a `bench restoration --json` file, so the figures quoted
there are the benchmark's, not typed by hand.

    python scripts/restoration_results_table.py docs/benchmarks/restoration_fast.json
"""

from __future__ import annotations

import json
import sys

from metalearn_kit.evaluation.restoration_targets import targets_markdown


def _fmt(value):
    return "—" if value is None else f"{value:.2f}"


def main(path: str) -> None:
    payload = json.loads(open(path).read())
    rows = payload["rows"]
    print(targets_markdown(payload["targets"]))
    print()
    operator = [e for e in dict.fromkeys(r["experiment"] for r in rows) if any(
        r["experiment"] == e and r.get("role") == "oracle" for r in rows)]
    for experiment in operator:
        part = [r for r in rows if r["experiment"] == experiment and r["metric"] == "psnr"]
        print(f"\n**{experiment}** (PSNR dB, mean ± standard error over {part[0]['tasks']} tasks)\n")
        print("| method | role | 0 steps | 1 | 2 | 5 | 10 | no steps |\n|---|---|---|---|---|---|---|---|")
        for method in dict.fromkeys(r["method"] for r in part):
            mine = {r["steps"]: r for r in part if r["method"] == method}
            role = next(iter(mine.values()))["role"]
            cells = []
            for k in (0, 1, 2, 5, 10, None):
                r = mine.get(k)
                cells.append("" if r is None else f"{r['value']:.2f} ± {r['stderr']:.2f}" if r["stderr"] else
                             f"{r['value']:.2f}")
            print(f"| {method} | {role} | " + " | ".join(cells) + " |")
    print(f"\ntotal wall time {payload['total_wall_time_s']:.0f} s, profile {payload['profile']}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/benchmarks/restoration_fast.json")
