"""Metrics, classical baselines and the benchmark runners (restoration, generation, meta-step). What trains the
models they evaluate is in :mod:`metalearn_kit.recipes`."""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["psnr", "ssim", "WallTimer"], ".metrics"),
    **dict.fromkeys(["extract_features", "prototype_accuracy", "frechet_distance"], ".features"),
    **dict.fromkeys(["StepMetric", "adaptation_curve", "learner_curve", "tuned_curve", "support_lr", "ResultTable",
                     "BASELINE_LRS"], ".curves"),
    **dict.fromkeys(["few_shot_denoising", "zero_shot_super_resolution", "few_shot_deblurring_inpainting",
                     "image_fitting", "self_supervised_denoising", "run_experiments"], ".restoration"),
    **dict.fromkeys(["evaluate_generation", "check_targets", "format_table", "save_sample_grid"],
                    ".generation"),
    **dict.fromkeys(["comparisons"], ".bench_restoration"),
    **dict.fromkeys(["add_roles", "find_row", "role_of"], ".restoration_targets"),
    **dict.fromkeys(["paired_verdict", "PairedComparison", "VERDICTS"], ".paired"),
    **dict.fromkeys(["FULL_STRENGTH_GRID", "FinetuneGrid", "Crossover", "crossover", "decade_grid",
                     "full_strength_curve"], ".finetune_protocol"),
}
_SUBMODULES = ("bench_meta_step", "bench_restoration", "classical", "curves", "features", "finetune_protocol",
               "generation", "metrics", "paired", "restoration", "restoration_targets")

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS, _SUBMODULES)
