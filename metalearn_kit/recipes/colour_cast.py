"""Recipe: per-task colour casts (:class:`~metalearn_kit.tasks.operators.ColourCast`) on colour photographs.

A green sky may be a green scene or a cast: one image does not say, the support pairs do. The restorer is
pointwise with a linear path in the opponent colour basis; Meta-SGD learns its init and per-weight inner learning
rates. The benchmark's (``evaluation/operator_references.py``) classical references: grey-world white balance
(blind, one image) and a least-squares affine colour matrix fitted on the support pairs; oracle: the inverse of
the true colour matrix.
"""

from __future__ import annotations

from .operator_recipe import OperatorRecipeConfig, family_config
from .operator_recipe import checkpoint_entry as _checkpoint_entry

FAMILY = "colour_cast"
CONFIGS = {
    "fast": OperatorRecipeConfig(family=FAMILY, channels=3, model="pointwise", width=32, depth=2, train_patch=16,
                                 meta_iterations=2000, joint_iterations=12000, inner_lr=0.05),
    "full": OperatorRecipeConfig(family=FAMILY, channels=3, model="pointwise", width=64, depth=3, train_patch=32,
                                 meta_iterations=4000, joint_iterations=24000, inner_lr=0.05, test_tasks=64),
}
WHY = ("colour cast: one picture cannot tell a green scene from a green cast; the support pairs show the cast, "
       "so the adapted model removes it")


def config(profile: str | None = None) -> OperatorRecipeConfig:
    """The config of ``profile`` (``"fast"`` or ``"full"``; default: the kit's profile)."""
    return family_config(CONFIGS, profile)


def checkpoint_entry(name: str, profile: str, description: str):
    """The checkpoint service's entry for this family's checkpoint ``name`` (see
    :func:`~metalearn_kit.recipes.operator_recipe.checkpoint_entry`)."""
    return _checkpoint_entry(FAMILY, name, profile, description)
