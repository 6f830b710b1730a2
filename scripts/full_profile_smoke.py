"""Run every experiment of the GPU ``full`` profile end to end on any machine, with its iteration and evaluation
counts cut to a minimum and every other size left at full: the check that the full profile builds, trains,
adapts and evaluates (patches fit the photographs, models fit their inputs) before a GPU is spent on it.

    python scripts/full_profile_smoke.py                  # all restoration experiments and generation
    python scripts/full_profile_smoke.py image_fitting    # some of them

Prints one line per experiment (rows produced, seconds) and exits non-zero if any failed. Nothing is written
outside a temporary folder: checkpoints trained here go to a throw-away checkpoint and cache folder.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback

CUT = {  # the counts that make the full profile long; everything else stays at its full size
    "denoising": {"meta_iterations": 2, "joint_iterations": 2, "test_tasks": 1, "steps": [0, 1]},
    "super_resolution": {"pretrain_iterations": 2, "meta_iterations": 2, "test_images": 1, "steps": [0, 1],
                         "zssr_steps": [1], "zssr_lrs": [1e-3]},
    "deblurring_inpainting": {"meta_iterations": 2, "joint_iterations": 2, "test_tasks": 1, "steps": [0, 1]},
    "image_fitting": {"meta_iterations": 2, "test_images": 1, "steps": [0, 2]},
    "self_supervised": {"meta_iterations": 2, "test_images": 1, "steps": [0, 1], "scratch_steps": [0, 1]},
    # the operator families (issue 16): joint_iterations >= meta_iterations * (inner_steps + 1) is enforced
    **{family: {"meta_iterations": 2, "joint_iterations": 12, "test_tasks": 1, "steps": [0, 1]}
       for family in ("tone_curve", "colour_cast", "stripe_noise", "directional_blur", "channel_shift")},
    "generation": {"feature_steps": 2, "meta_iterations": 2, "statistician_iterations": 2, "figr_iterations": 2,
                   "eval_tasks": 2, "iw_samples": 2, "sample_count": 4, "steps": [0, 1]},
}


def run(name: str) -> int:
    if name == "generation":
        from metalearn_kit.evaluation.generation import evaluate_generation
        from metalearn_kit.recipes import generation_config

        return len(evaluate_generation(generation_config("full", **CUT[name]), keep_samples=True)["rows"])
    from metalearn_kit.evaluation import restoration
    from metalearn_kit.recipes import FAMILY_RECIPES, RESTORATION_EXPERIMENTS

    if name in FAMILY_RECIPES:
        from metalearn_kit.evaluation.operator_experiments import operator_experiment

        return len(operator_experiment(name, "full", sizes=CUT[name]))

    functions = dict(zip(RESTORATION_EXPERIMENTS, (
        restoration.few_shot_denoising, restoration.zero_shot_super_resolution,
        restoration.few_shot_deblurring_inpainting, restoration.image_fitting,
        restoration.self_supervised_denoising), strict=True))
    return len(functions[name](profile="full", sizes=CUT[name]))


def main(names: list[str]) -> int:
    unknown = sorted(set(names) - set(CUT))
    if unknown:
        print(f"unknown experiments {unknown}; choose from {list(CUT)}", file=sys.stderr)
        return 2
    scratch = tempfile.mkdtemp(prefix="metalearn-full-smoke-")
    os.environ["METALEARN_KIT_CHECKPOINT_DIR"] = os.path.join(scratch, "checkpoints")
    os.environ["METALEARN_KIT_CACHE_DIR"] = os.path.join(scratch, "cache")
    import torch

    if not torch.cuda.is_available():
        torch.set_num_threads(1)  # tiny runs: one thread is fastest on a small CPU
    failed = []
    for name in names or list(CUT):
        start = time.perf_counter()
        try:
            rows = run(name)
        except Exception:  # report every experiment, then fail
            traceback.print_exc()
            failed.append(name)
            print(f"{name:<22} FAILED after {time.perf_counter() - start:.1f} s", flush=True)
            continue
        print(f"{name:<22} {rows:4d} rows in {time.perf_counter() - start:6.1f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
