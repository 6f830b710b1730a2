"""The typed configs of the five restoration experiments, one dataclass per experiment, and their sizes per
profile. ``fast`` is sized for a laptop CPU / CI (minutes), ``full`` for a GPU. How the learning rates were
chosen is in ``docs/benchmarks/README.md``.

Every config's :meth:`~RestorationConfig.as_dict` is what a checkpoint records as its ``config``; the fields
in :data:`EVAL_FIELDS` only shape the evaluation, so a checkpoint trained with other values of them still
matches. Every field is checked on construction (and by ``dataclasses.replace``), naming the first bad one.
"""

from __future__ import annotations

import copy
from dataclasses import MISSING, asdict, dataclass, fields, replace
from typing import Any

from .._checks import check_choice, check_float, check_int
from ..config import profile_sizes
from ..data.photo_sets import TEST_TASKS
from ..meta.train import META_LR_SCHEDULES

__all__ = ["CONFIGS", "DeblurInpaintConfig", "DenoisingConfig", "EVAL_FIELDS", "ImageFittingConfig",
           "RESTORATION_EXPERIMENTS", "RestorationConfig", "SelfSupervisedConfig", "SuperResolutionConfig",
           "recorded_training_part", "restoration_config"]

RESTORATION_EXPERIMENTS = ("denoising", "super_resolution", "deblurring_inpainting", "image_fitting",
                           "self_supervised")
# fields that only shape the evaluation: a checkpoint trained with other values of these still matches
# (``zssr_lr`` is the single ZSSR rate that older super-resolution checkpoints record)
EVAL_FIELDS = frozenset({"steps", "test_tasks", "test_images", "test_patch", "test_masks", "zssr_steps",
                         "zssr_lrs", "zssr_lr", "scratch_steps"})


def _check_list(name: str, values: Any, item: type) -> None:
    """``values`` must be a non-empty list of ``item`` (ints: step counts >= 0; floats: > 0; strs: names)."""
    if not isinstance(values, list) or not values:
        raise ValueError(f"{name} must be a non-empty list of {item.__name__}, got {values!r}")
    for value in values:
        if item is int:
            check_int(name, value, minimum=0)
        elif item is float:
            check_float(name, value, minimum=0.0, strict_min=True)
        elif not isinstance(value, str):
            raise ValueError(f"{name} must be a list of names (str), got {values!r}")


def _check_name(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty str, got {value!r}")


# how __post_init__ checks a field, by its annotation: every int counts something (a size, a number of tasks or
# iterations), every float is a rate, size or scale, every list holds step counts, rates or mask names
_CHECKS = {
    "int": lambda name, v: check_int(name, v, minimum=1),
    "float": lambda name, v: check_float(name, v, minimum=0.0, strict_min=True),
    "float | None": lambda name, v: v is None or check_float(name, v, minimum=0.0, strict_min=True),
    "str": _check_name,
    "list[int]": lambda name, v: _check_list(name, v, int),
    "list[float]": lambda name, v: _check_list(name, v, float),
    "list[str]": lambda name, v: _check_list(name, v, str),
}


@dataclass(kw_only=True)
class RestorationConfig:
    """Fields every restoration experiment has: the model ``width``, the inner loop (``inner_steps`` SGD steps
    of ``inner_lr``, each gradient clipped to norm ``inner_grad_clip``, None: off), the outer loop
    (``meta_iterations`` of ``meta_batch`` tasks, Adam at ``meta_lr`` on a ``meta_lr_schedule``) and the step
    counts ``steps`` the benchmark reports. Configs are built by keyword (``restoration_config`` does it)."""

    width: int
    inner_steps: int
    inner_lr: float
    meta_iterations: int
    meta_batch: int
    meta_lr: float
    steps: list[int]
    inner_grad_clip: float | None = 1.0
    meta_lr_schedule: str = "constant"

    def __post_init__(self) -> None:
        """Raise ``ValueError``/``TypeError`` naming the first field whose value is out of range or of the wrong
        type (the rule per annotation is in ``_CHECKS``)."""
        for f in fields(self):
            if f.type not in _CHECKS:
                raise TypeError(f"{type(self).__name__}.{f.name} is annotated {f.type!r}, which has no check; "
                                f"add one to _CHECKS")
            _CHECKS[f.type](f.name, getattr(self, f.name))
        check_choice("meta_lr_schedule", self.meta_lr_schedule, META_LR_SCHEDULES)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form a checkpoint records (lists stay lists)."""
        return asdict(self)

    def training_part(self) -> dict[str, Any]:
        """The fields that determine the trained weights (all but :data:`EVAL_FIELDS`)."""
        return {k: v for k, v in self.as_dict().items() if k not in EVAL_FIELDS}


@dataclass(kw_only=True)
class DenoisingConfig(RestorationConfig):
    """Few-shot denoising: ``shots``/``queries`` ``patch``-pixel grey pairs per task, a ``depth``-layer CNN."""

    patch: int
    shots: int
    queries: int
    depth: int
    joint_iterations: int
    test_tasks: int


@dataclass(kw_only=True)
class SuperResolutionConfig(RestorationConfig):
    """Zero-shot x``scale`` SR (MZSR): bicubic pretraining, then meta-transfer; ZSSR's budget for scratch.
    ``kernel_sigma``: the ``[low, high]`` range of the blur kernel's width."""

    train_patch: int
    test_patch: int
    scale: int
    kernel_sigma: list[float]
    depth: int
    pretrain_iterations: int
    pretrain_batch: int
    test_images: int
    zssr_steps: list[int]
    zssr_lrs: list[float]

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("scale", self.scale, minimum=2)
        if len(self.kernel_sigma) != 2 or self.kernel_sigma[0] > self.kernel_sigma[1]:
            raise ValueError(f"kernel_sigma must be a range [low, high] with low <= high, got {self.kernel_sigma!r}")


@dataclass(kw_only=True)
class DeblurInpaintConfig(RestorationConfig):
    """Few-shot deblurring and inpainting with an unrolled restorer of ``iterations`` proximal steps."""

    patch: int
    shots: int
    queries: int
    depth: int
    iterations: int
    joint_iterations: int
    test_tasks: int
    train_masks: list[str]
    test_masks: list[str]


@dataclass(kw_only=True)
class ImageFittingConfig(RestorationConfig):
    """SIREN image fitting: ``hidden_layers`` sine layers of ``width`` at frequency ``omega``; its inner
    gradients are not clipped and its meta learning rate is cosine-annealed."""

    patch: int
    hidden_layers: int
    omega: float
    test_images: int
    inner_grad_clip: float | None = None
    meta_lr_schedule: str = "cosine"


@dataclass(kw_only=True)
class SelfSupervisedConfig(RestorationConfig):
    """Zero-shot Noise2Self denoising of one noisy ``test_patch`` image."""

    train_patch: int
    test_patch: int
    depth: int
    test_images: int
    scratch_steps: list[int]


CONFIGS: dict[str, type[RestorationConfig]] = {
    "denoising": DenoisingConfig, "super_resolution": SuperResolutionConfig,
    "deblurring_inpainting": DeblurInpaintConfig, "image_fitting": ImageFittingConfig,
    "self_supervised": SelfSupervisedConfig,
}

# The evaluation protocol (EVAL_FIELDS only, so no shipped checkpoint changes): every method's curve at these step
# counts (the long baselines add their own: SIREN's 100, Noise2Self's scratch 100, ZSSR's zssr_steps), on test tasks
# drawn with the pre-registered TEST_SEED. The full profile (a GPU) runs TEST_TASKS per experiment; the fast one 8:
# with every fine-tuned baseline at full strength (the profile's whole grid to 50 steps, ~20-40 s per curve on one
# core) 48 tasks of the five experiments would take hours on a 2-core CPU.
HORIZON = [0, 1, 2, 5, 10, 20, 50]
FAST_TEST_TASKS = 8

SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "denoising": {
        "fast": {"patch": 32, "shots": 4, "queries": 4, "width": 32, "depth": 5, "inner_steps": 2,
                 "inner_lr": 0.02, "meta_iterations": 400, "meta_batch": 4, "meta_lr": 1e-3,
                 "joint_iterations": 400, "test_tasks": FAST_TEST_TASKS, "steps": HORIZON},
        "full": {"patch": 48, "shots": 8, "queries": 8, "width": 64, "depth": 8, "inner_steps": 3,
                 "inner_lr": 0.02, "meta_iterations": 4000, "meta_batch": 8, "meta_lr": 5e-4,
                 "joint_iterations": 4000, "test_tasks": TEST_TASKS, "steps": HORIZON},
    },
    "super_resolution": {
        "fast": {"train_patch": 32, "test_patch": 64, "scale": 2, "kernel_sigma": [0.4, 1.6], "width": 32,
                 "depth": 5, "pretrain_iterations": 400, "pretrain_batch": 16, "inner_steps": 1,
                 "inner_lr": 0.01, "meta_iterations": 300, "meta_batch": 8, "meta_lr": 1e-4,
                 "test_images": FAST_TEST_TASKS, "steps": HORIZON, "zssr_steps": [10, 100, 300],
                 "zssr_lrs": [1e-4, 3e-4, 1e-3, 3e-3]},
        "full": {"train_patch": 64, "test_patch": 128, "scale": 2, "kernel_sigma": [0.4, 1.6], "width": 64,
                 "depth": 8, "pretrain_iterations": 5000, "pretrain_batch": 32, "inner_steps": 5,
                 "inner_lr": 0.01, "meta_iterations": 3000, "meta_batch": 8, "meta_lr": 1e-4,
                 "test_images": TEST_TASKS, "steps": HORIZON, "zssr_steps": [10, 100, 300, 1000],
                 "zssr_lrs": [3e-5, 1e-4, 3e-4, 1e-3, 3e-3]},
    },
    "deblurring_inpainting": {
        "fast": {"patch": 32, "shots": 4, "queries": 4, "width": 24, "depth": 3, "iterations": 3,
                 "inner_steps": 2, "inner_lr": 0.02, "meta_iterations": 300, "meta_batch": 4, "meta_lr": 1e-3,
                 "joint_iterations": 300, "test_tasks": FAST_TEST_TASKS, "steps": HORIZON,
                 "train_masks": ["random", "boxes"], "test_masks": ["strokes"]},
        "full": {"patch": 48, "shots": 8, "queries": 8, "width": 48, "depth": 5, "iterations": 5,
                 "inner_steps": 3, "inner_lr": 0.02, "meta_iterations": 3000, "meta_batch": 8, "meta_lr": 5e-4,
                 "joint_iterations": 3000, "test_tasks": TEST_TASKS, "steps": HORIZON,
                 "train_masks": ["random", "boxes"], "test_masks": ["strokes"]},
    },
    "image_fitting": {
        "fast": {"patch": 64, "width": 64, "hidden_layers": 3, "omega": 30.0, "inner_steps": 2, "inner_lr": 0.1,
                 "inner_grad_clip": None, "meta_iterations": 3000, "meta_batch": 4, "meta_lr": 1e-3,
                 "meta_lr_schedule": "cosine", "test_images": FAST_TEST_TASKS, "steps": HORIZON + [100]},
        # patch 96, not 128: the smallest training photograph is 102 pixels high
        "full": {"patch": 96, "width": 128, "hidden_layers": 4, "omega": 30.0, "inner_steps": 3,
                 "inner_lr": 0.1, "inner_grad_clip": None, "meta_iterations": 10000, "meta_batch": 8,
                 "meta_lr": 1e-3, "meta_lr_schedule": "cosine", "test_images": TEST_TASKS,
                 "steps": HORIZON + [100, 500]},
    },
    "self_supervised": {
        "fast": {"train_patch": 32, "test_patch": 48, "width": 32, "depth": 5, "inner_steps": 2, "inner_lr": 0.02,
                 "meta_iterations": 300, "meta_batch": 4, "meta_lr": 1e-3, "test_images": FAST_TEST_TASKS,
                 "steps": HORIZON, "scratch_steps": HORIZON + [100]},
        "full": {"train_patch": 48, "test_patch": 96, "width": 64, "depth": 8, "inner_steps": 3, "inner_lr": 0.02,
                 "meta_iterations": 3000, "meta_batch": 8, "meta_lr": 5e-4, "test_images": TEST_TASKS,
                 "steps": HORIZON + [100], "scratch_steps": HORIZON + [100, 300]},
    },
}


def recorded_training_part(experiment: str, record: dict[str, Any]) -> dict[str, Any]:
    """The part of a checkpoint's recorded ``config`` (a dict) that determines its weights, as
    :meth:`RestorationConfig.training_part` gives it: a field with a default that the record lacks was trained
    with that default (checkpoints recorded before ``inner_grad_clip`` and ``meta_lr_schedule`` were fields do not
    name them)."""
    if experiment not in CONFIGS:
        raise ValueError(f"experiment must be one of {list(CONFIGS)}, got {experiment!r}")
    defaults = {f.name: f.default for f in fields(CONFIGS[experiment]) if f.default is not MISSING}
    return {k: v for k, v in {**defaults, **record}.items() if k not in EVAL_FIELDS}


def restoration_config(experiment: str, profile: str | None = None, sizes: dict | None = None) -> RestorationConfig:
    """The config of ``experiment`` (one of :data:`RESTORATION_EXPERIMENTS`) for ``profile`` (default: the
    active one), with ``sizes`` overriding fields (unknown keys refused)."""
    if experiment not in CONFIGS:
        raise ValueError(f"experiment must be one of {list(CONFIGS)}, got {experiment!r}")
    config = CONFIGS[experiment](**copy.deepcopy(profile_sizes(SIZES[experiment], profile)))
    known = {f.name for f in fields(config)}
    for key in sizes or {}:
        if key not in known:
            raise ValueError(f"sizes has unknown key {key!r} for experiment {experiment!r}; known keys: "
                             f"{sorted(known)}")
    return replace(config, **(sizes or {}))
