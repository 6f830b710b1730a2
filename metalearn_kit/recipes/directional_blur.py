"""Recipe: blind per-task motion blur (:class:`~metalearn_kit.tasks.operators.DirectionalBlur`) on grey photographs:
the direction and length of the streak are the task, and the restorer is not given the kernel.

A single blurred photograph hides its blur direction among the scene's own edges; the support pairs show it. The
restorer is a wide linear filter beside a small CNN (an inverse blur is close to linear); Meta-SGD learns its init
and per-weight inner learning rates. The benchmark's (``evaluation/operator_references.py``) classical reference:
Wiener deconvolution with the kernel estimated from the support pairs (ridge least squares), its balance tuned on
the support; oracle: non-blind Wiener with the true kernel.
"""

from __future__ import annotations

from .operator_recipe import OperatorRecipeConfig, family_config
from .operator_recipe import checkpoint_entry as _checkpoint_entry

FAMILY = "directional_blur"
CONFIGS = {
    "fast": OperatorRecipeConfig(family=FAMILY, channels=1, model="filter", width=16, depth=3, train_patch=32,
                                 meta_iterations=300, joint_iterations=1800, inner_lr=0.01),
    "full": OperatorRecipeConfig(family=FAMILY, channels=1, model="filter", width=32, depth=4, train_patch=48,
                                 meta_iterations=3000, joint_iterations=18000, inner_lr=0.01, test_tasks=64),
}
WHY = ("motion blur: one picture hides the blur direction among its edges; the support pairs show it, so the "
       "adapted filter undoes that streak")


def config(profile: str | None = None) -> OperatorRecipeConfig:
    """The config of ``profile`` (``"fast"`` or ``"full"``; default: the kit's profile)."""
    return family_config(CONFIGS, profile)


def checkpoint_entry(name: str, profile: str, description: str):
    """The checkpoint service's entry for this family's checkpoint ``name`` (see
    :func:`~metalearn_kit.recipes.operator_recipe.checkpoint_entry`)."""
    return _checkpoint_entry(FAMILY, name, profile, description)
