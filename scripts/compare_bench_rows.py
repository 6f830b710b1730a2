"""Compare the rows of two benchmark JSON files (``metalearn-kit bench restoration|generation --json``): every
row keyed by its identity, values compared exactly (wall-time rows listed apart: they measure the machine).

    python scripts/compare_bench_rows.py before.json after.json
"""

from __future__ import annotations

import json
import sys


def _key(row: dict) -> tuple:
    return tuple((k, str(row.get(k))) for k in ("experiment", "method", "shots", "steps", "metric"))


def compare(before_path: str, after_path: str) -> int:
    before = {_key(r): r for r in json.load(open(before_path))["rows"]}
    after = {_key(r): r for r in json.load(open(after_path))["rows"]}
    timing = [k for k in before if dict(k)["metric"] == "wall_time_s"]
    values = [k for k in before if k not in timing]
    missing = sorted(set(before) - set(after))
    extra = sorted(set(after) - set(before))
    differ = [k for k in values if k in after and before[k]["value"] != after[k]["value"]]
    skip = ("value", "experiment_wall_time_s")  # the experiment's wall time measures the machine too
    other = [k for k in values if k in after and {f: v for f, v in before[k].items() if f not in skip}
             != {f: v for f, v in after[k].items() if f not in skip}]
    print(f"{len(values)} value rows: {len(values) - len(differ)} identical, {len(differ)} differ; "
          f"{len(timing)} wall-time rows not compared; missing {len(missing)}, extra {len(extra)}; "
          f"{len(other)} rows differ in another field")
    for k in differ:
        print("  differs:", dict(k), before[k]["value"], "->", after[k]["value"])
    for k in other[:10]:
        fields = set(before[k]) | set(after[k])
        print("  other field:", dict(k), {f: (before[k].get(f), after[k].get(f)) for f in fields
                                          if f not in skip and before[k].get(f) != after[k].get(f)})
    return int(bool(differ or missing or extra))


if __name__ == "__main__":
    raise SystemExit(compare(sys.argv[1], sys.argv[2]))
