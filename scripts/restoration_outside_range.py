"""Outside the training range: the operator families (whose support set identifies the task), tested on
parameters beyond every value meta-training saw, next to the usual held-out test bands (see
:mod:`metalearn_kit.evaluation.outside_range`). Prints the table and writes JSON (``--json``).

    python scripts/restoration_outside_range.py --json docs/benchmarks/restoration_outside_range_fast.json
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from metalearn_kit.evaluation.outside_range import OUTSIDE, outside_range

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", default=",".join(OUTSIDE), help=f"comma-separated, among {list(OUTSIDE)}")
    parser.add_argument("--json", default=None, help="write the rows and the summary to this JSON file")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    families = [f for f in args.families.split(",") if f]
    if not families or any(f not in OUTSIDE for f in families):
        parser.error(f"--families must be among {list(OUTSIDE)}, got {args.families!r}")
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")

    import torch

    from metalearn_kit.config import describe_machine

    torch.set_num_threads(args.threads)
    payload = outside_range(families)
    payload["machine"] = describe_machine()
    payload["command"] = "python scripts/restoration_outside_range.py " + " ".join(sys.argv[1:] if argv is None
                                                                                 else argv)
    print(f"wall time {payload['wall_time_s']:.0f} s")
    if args.json:
        from metalearn_kit.benchmark_tables import write_table

        write_table(args.json, payload)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
