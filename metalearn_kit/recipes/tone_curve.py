"""Recipe: per-task tone curves (:class:`~metalearn_kit.tasks.operators.ToneCurve`) on grey photographs.

A dark picture may be a dark scene or a darkening curve: one image does not say, four support pairs do. The
restorer is pointwise (a tone curve's inverse is one function of the grey level); Meta-SGD learns its init and
per-weight inner learning rates. The benchmark's (``evaluation/operator_references.py``) classical reference: a
monotone look-up table fitted on the support pairs; oracle: the true inverse curve.
"""

from __future__ import annotations

from .operator_recipe import OperatorRecipeConfig, family_config
from .operator_recipe import checkpoint_entry as _checkpoint_entry

FAMILY = "tone_curve"
CONFIGS = {
    # fast: under a minute per checkpoint on the 2-core CPU (joint: 6x the steps, twice the image passes)
    "fast": OperatorRecipeConfig(family=FAMILY, channels=1, model="pointwise", width=32, depth=2, train_patch=16,
                                 meta_iterations=1000, joint_iterations=6000, inner_lr=0.05),
    "full": OperatorRecipeConfig(family=FAMILY, channels=1, model="pointwise", width=64, depth=3, train_patch=32,
                                 meta_iterations=3000, joint_iterations=18000, inner_lr=0.05, test_tasks=64),
}
WHY = ("tone curve: one picture cannot tell a dark scene from a darkening curve; the support pairs show the "
       "curve, so the adapted model inverts it")


def config(profile: str | None = None) -> OperatorRecipeConfig:
    """The config of ``profile`` (``"fast"`` or ``"full"``; default: the kit's profile)."""
    return family_config(CONFIGS, profile)


def checkpoint_entry(name: str, profile: str, description: str):
    """The checkpoint service's entry for this family's checkpoint ``name`` (see
    :func:`~metalearn_kit.recipes.operator_recipe.checkpoint_entry`)."""
    return _checkpoint_entry(FAMILY, name, profile, description)
