"""Every experiment of the GPU ``full`` profile end to end on any machine, with its iteration and evaluation counts
cut to a minimum (:data:`CUT`) and every other size left at full: the check that the full profile builds, trains,
adapts and evaluates (patches fit the photographs, models fit their inputs) before a GPU is spent on it
(``scripts/full_profile_smoke.py`` runs it)."""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback

__all__ = ["CUT", "run_cut", "smoke_full_profile"]

_OPERATOR_CUT = {"meta_iterations": 2, "joint_iterations": 12, "test_tasks": 1, "steps": [0, 1]}
CUT = {  # the counts that make the full profile long; everything else stays at its full size
    "denoising": {"meta_iterations": 2, "joint_iterations": 2, "test_tasks": 1, "steps": [0, 1]},
    "super_resolution": {"pretrain_iterations": 2, "meta_iterations": 2, "test_images": 1, "steps": [0, 1],
                         "zssr_steps": [1], "zssr_lrs": [1e-3]},
    "deblurring_inpainting": {"meta_iterations": 2, "joint_iterations": 2, "test_tasks": 1, "steps": [0, 1]},
    "image_fitting": {"meta_iterations": 2, "test_images": 1, "steps": [0, 2]},
    "self_supervised": {"meta_iterations": 2, "test_images": 1, "steps": [0, 1], "scratch_steps": [0, 1]},
    # the operator families: joint_iterations >= meta_iterations * (inner_steps + 1) is enforced
    **{family: _OPERATOR_CUT for family in ("tone_curve", "colour_cast", "stripe_noise", "directional_blur",
                                            "channel_shift")},
    "generation": {"feature_steps": 2, "meta_iterations": 2, "statistician_iterations": 2, "figr_iterations": 2,
                   "eval_tasks": 2, "iw_samples": 2, "sample_count": 4, "steps": [0, 1]},
}


def run_cut(name: str) -> int:
    """Run experiment ``name`` (a key of :data:`CUT`) at the full profile with its cut counts; returns its row
    count."""
    if name == "generation":
        from ..recipes import generation_config
        from .generation import evaluate_generation

        return len(evaluate_generation(generation_config("full", **CUT[name]), keep_samples=True)["rows"])
    from ..recipes import OPERATOR_FAMILIES, RESTORATION_EXPERIMENTS
    from . import restoration

    if name in OPERATOR_FAMILIES:
        from .operator_experiments import operator_experiment

        return len(operator_experiment(name, "full", sizes=CUT[name]))

    functions = dict(zip(RESTORATION_EXPERIMENTS, (
        restoration.few_shot_denoising, restoration.zero_shot_super_resolution,
        restoration.few_shot_deblurring_inpainting, restoration.image_fitting,
        restoration.self_supervised_denoising), strict=True))
    return len(functions[name](profile="full", sizes=CUT[name]))


def smoke_full_profile(names: list[str]) -> int:
    """Run ``names`` (default: all of :data:`CUT`), printing one line per experiment (rows, seconds); checkpoints
    and caches go to a throw-away folder (``$METALEARN_KIT_CHECKPOINT_DIR`` and ``$METALEARN_KIT_CACHE_DIR`` are
    pointed there). Returns the exit code: 0, 1 if any experiment failed, 2 for an unknown name."""
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
            rows = run_cut(name)
        except Exception:  # report every experiment, then fail
            traceback.print_exc()
            failed.append(name)
            print(f"{name:<22} FAILED after {time.perf_counter() - start:.1f} s", flush=True)
            continue
        print(f"{name:<22} {rows:4d} rows in {time.perf_counter() - start:6.1f} s", flush=True)
    return 1 if failed else 0
