"""Outside the training range: the restoration families where meta-learning wins, tested on task parameters
beyond every value meta-training (and joint pretraining) saw, next to the usual held-out test bands.

The shipped fast checkpoints of each family are tested twice on held-out photographs: on the test split's bands
(interleaved with the training bands, as in ``bench restoration``) and on ``OUTSIDE`` ranges that lie beyond the
whole training interval of one parameter (the other parameters keep their test ranges). Each run reports the
degraded input's PSNR and, per step count, the paired difference meta-init - joint pretraining after the same
fine-tuning steps, with its standard error over tasks. Writes JSON (``--json``).

    python scripts/restoration_outside_range.py --json docs/benchmarks/restoration_outside_range_fast.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

# one parameter per family, pushed beyond the interval its training bands cover
OUTSIDE = {
    "tone_curve": {"log2_gamma": [(-2.0, -1.6), (1.6, 2.0)]},  # trained within [-1.5, 1.5] (gamma 0.35-2.8)
    "colour_cast": {"hue": [(-180.0, -130.0), (130.0, 180.0)]},  # trained within [-120, 120] degrees
    "stripe_noise": {"period": (11.0, 16.0)},  # trained on periods 3-10 pixels
}
def summarise(rows: list[dict], steps: list[int]) -> dict:
    """The degraded input's PSNR and, per step count, meta and joint PSNR and their paired difference
    (meta - joint)."""
    from metalearn_kit.evaluation.paired import paired_verdict

    psnr = {(r["role"], r["steps"]): r for r in rows if r["metric"] == "psnr"}
    out = []
    for k in steps:
        meta, joint = psnr[("meta", k)], psnr[("joint", k)]
        diff = paired_verdict(meta["per_task"], joint["per_task"])
        out.append({"steps": k, "meta_psnr": meta["value"], "joint_psnr": joint["value"],
                    "meta_minus_joint": diff.mean, "std_error": diff.se, "tasks": diff.n,
                    "verdict": f"meta-init {diff.verdict} joint"})
    return {"input_psnr": psnr[("input", None)]["value"], "by_steps": out}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", default=",".join(OUTSIDE), help=f"comma-separated, among {list(OUTSIDE)}")
    parser.add_argument("--json", default=None, help="write the rows and the summary to this JSON file")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    families = [f for f in args.families.split(",") if f]
    unknown = [f for f in families if f not in OUTSIDE]
    if unknown or not families:
        parser.error(f"--families must be among {list(OUTSIDE)}, got {args.families!r}")
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")

    import torch

    from metalearn_kit.config import describe_machine
    from metalearn_kit.evaluation.operator_experiments import operator_experiment
    from metalearn_kit.recipes.operator_recipe import recipe

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    payload: dict = {"profile": "fast", "device": "cpu", "outside": OUTSIDE, "families": {}, "rows": []}
    print(f"{'family':<14}{'test tasks':<34}{'input dB':>9}{'k':>4}{'meta dB':>10}{'joint dB':>10}"
          f"{'meta - joint':>22}")
    for family in families:
        steps = [k for k in recipe(family).config("fast").steps if k > 0]
        payload["families"][family] = {}
        for where, ranges in (("inside", None), ("outside", OUTSIDE[family])):
            rows = operator_experiment(family, "fast", classical=False, test_ranges=ranges)
            summary = summarise(rows, steps)
            payload["families"][family][where] = summary
            payload["rows"] += [{**r, "where": where} for r in rows]
            label = "held-out bands in the range" if ranges is None else f"outside: {ranges}"
            for line in summary["by_steps"]:
                print(f"{family:<14}{label[:33]:<34}{summary['input_psnr']:>9.2f}{line['steps']:>4}"
                      f"{line['meta_psnr']:>10.2f}"
                      f"{line['joint_psnr']:>10.2f}{line['meta_minus_joint']:>+13.2f} +- {line['std_error']:.2f}")
    payload["wall_time_s"] = time.perf_counter() - start
    payload["machine"] = describe_machine()
    payload["command"] = "python scripts/restoration_outside_range.py " + " ".join(sys.argv[1:] if argv is None
                                                                                 else argv)
    print(f"wall time {payload['wall_time_s']:.0f} s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(payload, handle, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
