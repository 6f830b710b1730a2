"""On DEV data only: how an operator family's Meta-SGD learner does as it adapts for 0 ... 50 steps, the check
behind the recipe's choice of learned rates (per step and non-negative, so that adapting past meta-training's
horizon does not hurt). Dev tasks: the family's validation split (dev photographs, training parameter bands)
drawn with ``DEV_SEED``; the test split is never read here.

    python scripts/operator_dev_horizon.py --families tone_curve colour_cast stripe_noise --tasks 16 \
        --json docs/benchmarks/operator_dev_horizon_fast.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from metalearn_kit.config import describe_machine, make_generator
from metalearn_kit.data.photo_sets import DEV_SEED
from metalearn_kit.evaluation.curves import learner_curve
from metalearn_kit.evaluation.metrics import psnr
from metalearn_kit.recipes.operator_families import OPERATOR_FAMILIES, load_model, operator_family
from metalearn_kit.recipes.operator_recipe import checkpoint_names, restoration_loss, task_distribution


def family_horizon(family: str, tasks: int, steps: list[int], shots: int | None) -> dict:
    """Mean query PSNR of the family's learner after each of ``steps`` on ``tasks`` dev tasks, and the input's."""
    config = operator_family(family).config("fast")
    learner, source = load_model(checkpoint_names(family)["meta"], "meta", config)
    dev = task_distribution(config, "val", shots=shots)
    generator = make_generator(DEV_SEED)
    per_step: dict[int, list[float]] = {k: [] for k in steps}
    inputs = []
    for _ in range(tasks):
        task = dev.sample(generator)
        inputs.append(psnr(task.query[0].clamp(0, 1), task.query[1]))
        curve = learner_curve(learner, task.support, task.query, restoration_loss, steps)
        for k in steps:
            per_step[k].append(curve["psnr"][k])
    return {"family": family, "checkpoint": source, "shots": shots or config.shots, "tasks": tasks,
            "input_psnr": statistics.fmean(inputs),
            "psnr": {k: statistics.fmean(v) for k, v in per_step.items()},
            "stderr": {k: statistics.stdev(v) / len(v) ** 0.5 for k, v in per_step.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["tone_curve", "colour_cast", "stripe_noise"],
                        choices=sorted(OPERATOR_FAMILIES))
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 1, 2, 5, 10, 20, 50])
    parser.add_argument("--shots", type=int, default=None, help="support pairs per task (default: the config's)")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    if args.tasks < 2:
        parser.error(f"--tasks must be >= 2 (a standard error needs two tasks), got {args.tasks}")
    torch.set_num_threads(1)
    start = time.perf_counter()
    results = []
    for family in args.families:
        result = family_horizon(family, args.tasks, sorted(set(args.steps)), args.shots)
        results.append(result)
        curve = "  ".join(f"@{k} {v:.2f}" for k, v in result["psnr"].items())
        print(f"{family} (K={result['shots']}, {result['checkpoint']}): input {result['input_psnr']:.2f}  {curve}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": "python scripts/operator_dev_horizon.py", "split": "dev", "seed": DEV_SEED,
                       "machine": describe_machine(), "wall_time_s": time.perf_counter() - start,
                       "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
