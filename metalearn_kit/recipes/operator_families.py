"""The operator families -- task families whose support set identifies the task -- as rows of one table.

Each row of :data:`OPERATOR_FAMILIES` is an :class:`OperatorFamily`: the registered degradation family, its
:class:`~metalearn_kit.recipes.operator_recipe.OperatorRecipeConfig` per profile and the line that says why one
picture does not tell the task and the support pairs do. Everything else (model, loss, tasks, Meta-SGD
meta-training, joint pretraining) is shared in :mod:`~metalearn_kit.recipes.operator_recipe`; this module adds the
checkpoint service's entries (``restoration_<family>_metasgd`` and ``restoration_<family>_joint``).

**Adding a family is adding a row** here, beside its ``Degradation`` subclass in :mod:`metalearn_kit.tasks.
operators`, its classical reference and oracle in :mod:`metalearn_kit.evaluation.operator_references`, and (to
ship it) two lines in :data:`metalearn_kit.checkpoint_entry.CHECKPOINTS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from torch import nn

from .._checks import check_choice
from ..checkpoint_entry import CHECKPOINTS, SHIPPED_PROFILE, PretrainedEntry, load_or_train_entry, with_variants
from .operator_recipe import (
    EVAL_FIELDS,
    ROLES,
    OperatorRecipeConfig,
    build_checkpoint,
    checkpoint_names,
    train_checkpoint,
)

__all__ = ["OPERATOR_FAMILIES", "OperatorFamily", "checkpoint_entry", "load_model", "operator_family"]


@dataclass(frozen=True)
class OperatorFamily:
    """One operator family: ``name`` (its registered degradation), ``configs`` (``{"fast": ..., "full": ...}``)
    and ``why`` (one line: what the support pairs show that one picture does not)."""

    name: str
    configs: dict[str, OperatorRecipeConfig]
    why: str

    def config(self, profile: str | None = None) -> OperatorRecipeConfig:
        """The config of ``profile`` (``"fast"`` or ``"full"``; default: the kit's, ``METALEARN_KIT_PROFILE``)."""
        from ..config import get_profile

        profile = get_profile(profile)
        check_choice("profile", profile, tuple(self.configs))
        return self.configs[profile]


class Sizes(NamedTuple):
    """One profile's model size and meta-training length."""

    width: int
    depth: int
    train_patch: int
    meta_iterations: int


# Joint pretraining gets 6x meta-training's steps: each meta-step sees a meta-batch of 4 tasks of 4 + 4 pairs
# twice (inner steps and query), so 6x gives joint pretraining at least as many image passes. The full profile
# measures on 64 test tasks, the fast one on the config's default.
JOINT_STEPS_PER_META_STEP = 6
FULL_TEST_TASKS = 64


def _family(name: str, channels: int, model: str, inner_lr: float, fast: Sizes, full: Sizes,
            why: str, **fields: Any) -> OperatorFamily:
    """A row: the family's channels, model and inner learning rate, the sizes of each profile, and ``fields`` of
    :class:`~metalearn_kit.recipes.operator_recipe.OperatorRecipeConfig` that differ from its defaults."""
    def config(sizes: Sizes, **extra: Any) -> OperatorRecipeConfig:
        return OperatorRecipeConfig(family=name, channels=channels, model=model, inner_lr=inner_lr,
                                    joint_iterations=JOINT_STEPS_PER_META_STEP * sizes.meta_iterations,
                                    **sizes._asdict(), **fields, **extra)

    return OperatorFamily(name, {"fast": config(fast), "full": config(full, test_tasks=FULL_TEST_TASKS)}, why)


_ROWS = (
    # Per-task tone curves (tasks.operators.ToneCurve) on grey photographs. The restorer is pointwise (a tone
    # curve's inverse is one function of the grey level); fast trains in under a minute per checkpoint on the
    # 2-core CPU. Classical reference: a monotone look-up table fitted on the support pairs; oracle: the true
    # inverse curve.
    _family("tone_curve", 1, "pointwise", 0.05, fast=Sizes(32, 2, 16, 1000), full=Sizes(64, 3, 32, 3000),
            why=("tone curve: one picture cannot tell a dark scene from a darkening curve; the support pairs show the "
                 "curve, so the adapted model inverts it")),
    # Per-task colour casts (tasks.operators.ColourCast) on colour photographs. The restorer is pointwise with a
    # linear path in the opponent colour basis. Classical references: grey-world white balance (blind, one image)
    # and a least-squares affine colour matrix fitted on the support pairs; oracle: the true colour matrix inverted.
    _family("colour_cast", 3, "pointwise", 0.05, fast=Sizes(32, 2, 16, 2000), full=Sizes(64, 3, 32, 4000),
            why=("colour cast: one picture cannot tell a green scene from a green cast; the support pairs show the "
                 "cast, so the adapted model removes it")),
    # Blind per-task motion blur (tasks.operators.DirectionalBlur) on grey photographs: the streak's direction and
    # length are the task; the restorer is not given the kernel. It is a wide linear filter beside a small CNN (an
    # inverse blur is close to linear). Classical reference: Wiener deconvolution with the kernel estimated from
    # the support pairs (ridge least squares), its balance tuned on the support; oracle: non-blind Wiener.
    _family("directional_blur", 1, "filter", 0.01, fast=Sizes(16, 3, 32, 300), full=Sizes(32, 4, 48, 3000),
            why=("motion blur: one picture hides the blur direction among its edges; the support pairs show it, so "
                 "the adapted filter undoes that streak")),
    # Per-task periodic stripe noise (tasks.operators.StripeNoise) on grey photographs: direction, period and
    # amplitude are the task, each image its own phase. The restorer is a wide linear filter (a notch is linear)
    # beside a small CNN. Classical reference: a Fourier notch at the frequency read off the support residuals,
    # its radius tuned on the support; oracle: the true direction and period, each image's stripes fitted.
    _family("stripe_noise", 1, "filter", 0.01, fast=Sizes(16, 3, 32, 600), full=Sizes(32, 4, 48, 3000),
            why=("stripe noise: in one picture stripes look like texture; the support pairs show which frequency is "
                 "interference, so the adapted filter notches it")),
    # Colour-plane misregistration (tasks.operators.ChannelMisregistration, lateral chromatic aberration) on colour
    # photographs: which way and how far the red and blue planes moved is the task. The restorer is a bank of wide
    # linear filters per plane (a sub-pixel shift is a linear filter) beside a small CNN. Classical reference:
    # each plane's shift estimated on the support pairs (grid search), then undone; oracle: the true shifts undone.
    _family("channel_shift", 3, "filter", 0.01, fast=Sizes(16, 3, 32, 300), full=Sizes(32, 4, 48, 3000),
            why=("colour-plane shift: one picture shows colour fringes, not which way each plane moved; the support "
                 "pairs show it, so the adapted filters move the planes back")),
    # An unknown camera (tasks.camera_pipeline.CameraPipeline): a spline tone curve with no small parametric form,
    # a colour matrix, an anisotropic blur and Poisson-Gaussian noise, calibrated from K = 2 pairs of 48-pixel
    # colour patches. The restorer (CameraRestorer) undoes tone and colour pixel by pixel, then blur and noise with
    # a 3x3 CNN (receptive field 11 pixels at depth 5, beyond the 9-pixel kernel). Sizes fixed before any test
    # run from the pilot described in the family's issue (5-layer, 32-channel CNN; more photographs mattered most;
    # per-step rates instead of per-tensor). Classical reference: the staged pipeline fitted on the support
    # (anchored LUT, ridge colour map, ridge kernel, tuned Wiener, CBM3D); oracle: the true camera inverted.
    _family("camera_pipeline", 3, "camera", 0.01, fast=Sizes(32, 5, 48, 1500), full=Sizes(64, 6, 48, 6000),
            why=("camera pipeline: one picture cannot tell the scene's tones and colours from the camera's curve and "
                 "matrix, nor its texture from the blur and noise; two support pairs calibrate the camera, so the "
                 "adapted restorer inverts it"),
            shots=2, test_patch=48),
)
# family name -> its row
OPERATOR_FAMILIES: dict[str, OperatorFamily] = {row.name: row for row in _ROWS}


def operator_family(family: str) -> OperatorFamily:
    """The row of ``family`` in :data:`OPERATOR_FAMILIES`."""
    if family not in OPERATOR_FAMILIES:
        raise ValueError(f"family must be one of {list(OPERATOR_FAMILIES)}, got {family!r}")
    return OPERATOR_FAMILIES[family]


def _family_of(name: str) -> tuple[str, str]:
    """``(family, role)`` of checkpoint ``name`` (``restoration_<family>_metasgd``, ``_joint`` or
    ``_joint_step_sizes``)."""
    for family in OPERATOR_FAMILIES:
        for role, checkpoint_name in checkpoint_names(family).items():
            if checkpoint_name == name:
                return family, role
    names = sorted(n for family in OPERATOR_FAMILIES for n in checkpoint_names(family).values())
    raise ValueError(f"name must be one of {names} (an operator family's checkpoint), got {name!r}")


def checkpoint_entry(name: str, profile: str, description: str) -> PretrainedEntry:
    """The checkpoint service's entry of an operator family's checkpoint ``name`` (its
    ``restoration_<family>_metasgd``, ``_joint`` or ``_joint_step_sizes``) at ``profile``: file
    ``NAME.safetensors`` (fast, shipped) or ``NAME_PROFILE.safetensors``; the config is recorded as
    :meth:`OperatorRecipeConfig.as_dict`."""
    family, role = _family_of(name)
    suffix = "" if profile == SHIPPED_PROFILE else f"_{profile}"
    return PretrainedEntry(
        file=f"{name}{suffix}.safetensors",
        build=lambda config, state: build_checkpoint(role, config),
        train=lambda config, seed, **options: train_checkpoint(role, config, seed, joint=_joint_for(role, config,
                                                                                                 seed)),
        config=operator_family(family).configs[profile], seed=0, description=description,
        to_record=lambda config: config.as_dict(), from_record=OperatorRecipeConfig.from_dict,
        weights_key=lambda record: {k: v for k, v in record.items() if k not in EVAL_FIELDS},
        cache=False)  # a minute or so to train: a model for another config is trained again, not cached


def _joint_for(role: str, config: OperatorRecipeConfig, seed: int) -> nn.Module | None:
    """The trained joint model the ``joint_step_sizes`` role starts from (None for the other roles)."""
    if role != "joint_step_sizes":
        return None
    return load_model(checkpoint_names(config.family)["joint"], "joint", config, seed)[0]


def load_model(name: str, role: str, config: OperatorRecipeConfig, seed: int = 0) -> tuple[nn.Module, str]:
    """Checkpoint ``name`` (a ``role`` checkpoint of ``config.family``) trained with ``config``'s training fields
    and ``seed``: the shipped file when it matches, else trained now (see
    :func:`metalearn_kit.pretrained.load_or_train`). Returns ``(module, "loaded" | "trained")``."""
    check_choice("role", role, ROLES)
    if name not in CHECKPOINTS:  # a family measured in the benchmark but not shipped
        module, _ = train_checkpoint(role, config, seed, joint=_joint_for(role, config, seed))
        return module.eval(), "trained"
    entry = with_variants(checkpoint_entry, name, CHECKPOINTS[name][1])
    module, info = load_or_train_entry(name, entry, config, seed)
    return module.eval(), "trained" if info["source"] == "trained" else "loaded"
