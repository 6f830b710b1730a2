"""The recipe shared by the task families whose support set identifies the task (:mod:`~metalearn_kit.tasks.
operators`): a typed config, the model, the loss, the task distributions, Meta-SGD meta-training and joint
pretraining with at least the same data and gradient evaluations, and the two checkpoints per family.

Each family is a row of :data:`~metalearn_kit.recipes.operator_families.OPERATOR_FAMILIES` (its
:class:`OperatorRecipeConfig` per profile and the line that says why it is such a family); this module is what
the rows share. Checkpoint names: ``restoration_<family>_metasgd`` (the Meta-SGD learner: the initial weights and
the learned per-weight inner learning rates) and ``restoration_<family>_joint``.

Fairness, as the benchmark checks it: joint pretraining samples ``meta_batch`` tasks of the same training
distribution per step and pools their support and query pairs (the images meta-training sees per step), for
``joint_iterations >= meta_iterations * (inner_steps + 1)`` steps -- at least the forward/backward passes of
meta-training: a Meta-SGD step passes each task's support images ``inner_steps`` times and its query images once
(``meta_batch * (inner_steps * shots + queries)`` image passes, plus second-order terms), a joint step passes
``meta_batch * (shots + queries)`` images once, so with the default 5 inner steps and 4 + 4 pairs joint pretraining
gets twice meta-training's image passes and six times its distinct images.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_choice, check_float_fields, check_int_fields
from ..data.photo_sets import TEST_TASKS

PROFILES = ("fast", "full")
MODELS = ("pointwise", "filter", "camera")
PHOTOGRAPHS = ("standard", "embedded")
ROLES = ("meta", "joint", "joint_step_sizes")
# fields that only shape the evaluation: a checkpoint trained with other values of these still matches
EVAL_FIELDS = frozenset({"test_patch", "test_tasks", "steps"})
META_GRAD_CLIP = 1.0


@dataclass(frozen=True)
class OperatorRecipeConfig:
    """One operator family's experiment.

    Attributes:
        family: the registered degradation family (``"tone_curve"``, ...).
        channels: 1 (grey photographs) or 3 (colour photographs).
        model: ``"pointwise"`` (:class:`~metalearn_kit.models.operator_nets.PointwiseRestorer`), ``"filter"``
            (:class:`~metalearn_kit.models.operator_nets.FilterRestorer`) or ``"camera"``
            (:class:`~metalearn_kit.models.operator_nets.CameraRestorer`); ``width``, ``depth`` its sizes.
        train_patch: side of the meta-training patches; ``test_patch`` of the benchmark's (>= 64).
        shots, queries: support and query pairs per task.
        inner_steps: Meta-SGD inner steps at meta-training time; ``inner_lr`` the starting inner rate.
        meta_iterations, meta_batch, meta_lr: the outer loop (Adam, cosine-decayed meta lr).
        joint_iterations: joint pretraining steps (>= ``meta_iterations * (inner_steps + 1)``).
        test_tasks: held-out tasks in the benchmark (>= 16: the paired verdicts need that many); ``steps`` its
            step counts.
        per_step_rates, positive_rates: Meta-SGD's learned rates, one set per inner step (the last set carries
            every step past ``inner_steps``) and kept non-negative; both so that adapting longer than meta-training
            did cannot run the weights uphill with a negative rate.
        photographs: ``"standard"`` (train on CBSD68's train split and the embedded training photographs, validate
            on the dev split, test on Kodak24: :data:`metalearn_kit.data.RESTORATION_SPLITS`) or ``"embedded"``
            (the kit's embedded photographs only, for offline use).
    """

    family: str
    channels: int
    model: str
    width: int
    depth: int
    train_patch: int
    meta_iterations: int
    joint_iterations: int
    inner_lr: float
    test_patch: int = 64
    shots: int = 4
    queries: int = 4
    inner_steps: int = 5
    meta_batch: int = 4
    meta_lr: float = 3e-3
    test_tasks: int = TEST_TASKS
    steps: list[int] = field(default_factory=lambda: [0, 1, 2, 5, 10, 20, 50])
    per_step_rates: bool = True
    positive_rates: bool = True
    photographs: str = "standard"

    def __post_init__(self) -> None:
        check_choice("model", self.model, MODELS)
        check_choice("photographs", self.photographs, PHOTOGRAPHS)
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels!r}")
        check_int_fields(self, ("width", "depth", "train_patch", "test_patch", "shots", "queries", "inner_steps",
                                "meta_iterations", "meta_batch", "joint_iterations", "test_tasks"), minimum=1)
        check_float_fields(self, ("inner_lr", "meta_lr"), minimum=0.0, strict_min=True)
        needed = self.meta_iterations * (self.inner_steps + 1)
        if self.joint_iterations < needed:
            raise ValueError(f"joint_iterations must be >= meta_iterations * (inner_steps + 1) = {needed} so joint "
                             f"pretraining gets at least meta-training's gradient evaluations, got "
                             f"{self.joint_iterations}")
        if not self.steps or any(not isinstance(s, int) or s < 0 for s in self.steps):
            raise ValueError(f"steps must be a non-empty list of step counts >= 0, got {self.steps!r}")

    def as_dict(self) -> dict[str, Any]:
        """The JSON form a checkpoint records."""
        return asdict(self)

    def training_part(self) -> dict[str, Any]:
        """The fields that determine the trained weights (all but :data:`EVAL_FIELDS`)."""
        return {k: v for k, v in self.as_dict().items() if k not in EVAL_FIELDS}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> OperatorRecipeConfig:
        """Rebuild a config from :meth:`as_dict` (unknown keys refused)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(record) - known)
        if unknown:
            raise ValueError(f"record has unknown config keys {unknown}; known: {sorted(known)}")
        return cls(**record)


# ----------------------------------------------------------------------------------------------------------
# Model, loss, tasks
# ----------------------------------------------------------------------------------------------------------

def build_model(config: OperatorRecipeConfig) -> nn.Module:
    """The restorer of ``config`` (no BatchNorm: the inner loop sees ``shots`` images)."""
    from ..models.operator_nets import CameraRestorer, FilterRestorer, PointwiseRestorer

    if config.model == "pointwise":
        return PointwiseRestorer(config.channels, config.width, config.depth)
    if config.model == "camera":
        return CameraRestorer(config.channels, config.width, config.depth)
    return FilterRestorer(config.channels, config.width, config.depth)


def restoration_loss(model: Any, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``batch = (degraded, clean)``: MSE of ``model(degraded)`` against ``clean`` (inner and outer loss)."""
    return F.mse_loss(model(batch[0]), batch[1])


def photo_source(split: str, patch: int, channels: int, photographs: str = "standard"):
    """The photographs of ``split`` (``"train"``, ``"val"`` or ``"test"``) as patches of ``patch`` pixels: with
    ``"standard"``, CBSD68 train + embedded training photographs, CBSD68 dev + the other embedded photographs, and
    Kodak24 (read from ``$METALEARN_KIT_CBSD68`` / ``$METALEARN_KIT_KODAK24`` or downloaded once). When those
    cannot be had (offline, no folder), it warns and falls back to the embedded photographs; the source's
    ``split`` attribute then says ``"train"``/``"test"`` instead of ``"kodak24"``, and the benchmark rows carry it
    as ``test_source``."""
    from ..data import photos

    check_choice("photographs", photographs, PHOTOGRAPHS)
    embedded = "train" if split == "train" else "test"
    if photographs == "embedded":
        return _refusing_flat(photos(embedded, patch_size=patch, channels=channels), split)
    from ..data.downloads import DatasetUnavailableError
    from ..data.photo_sets import kodak24, photo_pool

    try:
        if split == "test":
            source = kodak24(grey=channels == 1).patches(patch)
        else:
            source = photo_pool("train" if split == "train" else "dev", patch_size=patch, channels=channels)
    except DatasetUnavailableError as err:
        warnings.warn(f"the standard photographs of split {split!r} are unavailable ({err}); using the kit's "
                      f"embedded {embedded!r} photographs instead, so figures are not comparable with the "
                      f"shipped tables", stacklevel=2)
        source = photos(embedded, patch_size=patch, channels=channels)
    return _refusing_flat(source, split)


def _refusing_flat(source, split: str):
    """``source``, refusing flat crops on the evaluation splits (see ``FLAT_PATCH_STD``)."""
    from ..data.photo_source import FLAT_PATCH_STD

    if split != "train":
        source.min_std = FLAT_PATCH_STD
    return source


def task_distribution(config: OperatorRecipeConfig, split: str, ranges: dict[str, Any] | None = None,
                      shots: int | None = None):
    """Tasks of ``config.family``: ``"train"`` (training photographs, training parameter bands, training
    patches), ``"val"`` (dev photographs, training bands) or ``"test"`` (test photographs *and* the held-out
    parameter bands, ``test_patch`` pixels); the photographs as :func:`photo_source` gives them. ``ranges``
    (``{param: (low, high) or [bands]}``) replaces the split's ranges of those parameters, e.g. to test outside
    the training range; ``shots`` replaces ``config.shots`` (support pairs per task)."""
    from ..tasks.restoration import RestorationTasks

    check_choice("split", split, ("train", "val", "test"))
    if ranges is not None and not isinstance(ranges, dict):
        raise TypeError(f"ranges must be a dict {{param: (low, high)}}, got {type(ranges).__name__}")
    patch = config.test_patch if split == "test" else config.train_patch
    source = photo_source(split, patch, config.channels, config.photographs)
    family = {config.family: ranges} if ranges else config.family
    return RestorationTasks(source, family, config.shots if shots is None else shots, config.queries, split=split)


def make_learner(model: nn.Module, config: OperatorRecipeConfig, learn_init: bool = True):
    """The Meta-SGD learner around ``model``: per-weight inner learning rates starting at ``inner_lr`` (per step
    and non-negative as ``config`` says); ``learn_init=False`` meta-learns only the rates, ``model`` frozen (the
    joint + learned step sizes baseline)."""
    from ..meta import MetaSGD

    return MetaSGD(model, inner_lr=config.inner_lr, inner_steps=config.inner_steps, inner_grad_clip=None,
                   per_step=config.per_step_rates, positive=config.positive_rates, learn_init=learn_init)


def meta_training_parts(config: OperatorRecipeConfig, seed: int = 0, model: nn.Module | None = None) -> dict[str, Any]:
    """Everything that meta-trains the family's init: ``learner``, ``task_sampler``, ``val_sampler``,
    ``loss_fn`` and the outer loop ``train`` (a :class:`~metalearn_kit.meta.MetaTrainConfig`: cosine-annealed
    ``meta_lr``, clipped meta-gradient, four validations). Seeds torch's global RNG with ``seed`` for the initial
    weights. With ``model`` (trained weights, e.g. the joint model), only the learned rates are meta-trained
    around it, the weights frozen."""
    from ..meta import MetaTrainConfig

    torch.manual_seed(seed)
    train = MetaTrainConfig(iterations=config.meta_iterations, meta_batch=config.meta_batch, meta_lr=config.meta_lr,
                            meta_lr_schedule="cosine", grad_clip=META_GRAD_CLIP,
                            val_every=max(1, config.meta_iterations // 4), val_tasks=8)
    learner = (make_learner(build_model(config), config) if model is None
               else make_learner(model, config, learn_init=False))
    return {"learner": learner, "task_sampler": task_distribution(config, "train"),
            "val_sampler": task_distribution(config, "val"), "loss_fn": restoration_loss, "train": train}


def _summary(history: dict, key: str) -> dict[str, Any]:
    values = history[key]
    tail = values[-max(1, len(values) // 10):]
    return {f"first_{key}": float(values[0]), f"final_{key}": float(sum(tail) / len(tail)),
            "iterations": len(values), "train_wall_time_s": float(history["wall_time_s"][-1])}


def train_meta(config: OperatorRecipeConfig, seed: int = 0, progress: bool = False,
               model: nn.Module | None = None) -> tuple[nn.Module, dict]:
    """Meta-train the Meta-SGD learner of ``config`` (around the frozen ``model`` when given: only its rates
    learn); returns ``(learner, metrics)``."""
    from ..meta import meta_train

    parts = meta_training_parts(config, seed, model)
    learner = parts.pop("learner")
    history = meta_train(learner, parts["task_sampler"], parts["loss_fn"], replace(parts["train"], progress=progress),
                         val_sampler=parts["val_sampler"], generator=seed)
    metrics = _summary(history, "meta_loss")
    for key in ("val_query_loss_before", "val_query_loss_after"):
        if history.get(key):
            metrics[key] = float(history[key][-1])
    # one image through forward + backward = one pass (the second-order terms come on top, uncounted)
    metrics["image_passes"] = config.meta_iterations * config.meta_batch * (config.inner_steps * config.shots
                                                                          + config.queries)
    metrics["images_seen"] = config.meta_iterations * config.meta_batch * (config.shots + config.queries)
    return learner, metrics


def train_joint(config: OperatorRecipeConfig, seed: int = 0, progress: bool = False) -> tuple[nn.Module, dict]:
    """Jointly pretrain the same model on the same task distribution (pooled support + query pairs of
    ``meta_batch`` tasks per step, Adam at ``meta_lr``) for ``joint_iterations`` steps."""
    from ..meta import joint_pretrain

    torch.manual_seed(seed)
    model = build_model(config)
    history = joint_pretrain(model, task_distribution(config, "train"), restoration_loss, config.joint_iterations,
                             meta_batch=config.meta_batch, lr=config.meta_lr, generator=seed, progress=progress)
    metrics = _summary(history, "loss")
    metrics["image_passes"] = config.joint_iterations * config.meta_batch * (config.shots + config.queries)
    metrics["images_seen"] = config.joint_iterations * config.meta_batch * (config.shots + config.queries)
    return model, metrics


def checkpoint_names(family: str) -> dict[str, str]:
    """``{role: checkpoint name}`` of ``family``: the Meta-SGD learner (``"meta"``), the jointly pretrained model
    (``"joint"``) and the joint model with meta-learned step sizes (``"joint_step_sizes"``)."""
    return {"meta": f"restoration_{family}_metasgd", "joint": f"restoration_{family}_joint",
            "joint_step_sizes": f"restoration_{family}_joint_step_sizes"}


def build_checkpoint(role: str, config: OperatorRecipeConfig) -> nn.Module:
    """The untrained module a ``role`` checkpoint (one of :data:`ROLES`) loads into."""
    check_choice("role", role, ROLES)
    model = build_model(config)
    if role == "joint":
        return model
    return make_learner(model, config, learn_init=role == "meta")


def train_checkpoint(role: str, config: OperatorRecipeConfig, seed: int = 0,
                     joint: nn.Module | None = None) -> tuple[nn.Module, dict]:
    """Train a ``role`` checkpoint: the Meta-SGD learner (``"meta"``), the jointly pretrained model
    (``"joint"``), or step sizes meta-learned around the frozen ``joint`` model (``"joint_step_sizes"``)."""
    check_choice("role", role, ROLES)
    if role == "joint_step_sizes":
        if joint is None:
            raise ValueError("role 'joint_step_sizes' needs the trained joint model: pass joint=...")
        return train_meta(config, seed, model=copy.deepcopy(joint))
    return train_meta(config, seed) if role == "meta" else train_joint(config, seed)
