"""Recipe: colour-plane misregistration (:class:`~metalearn_kit.tasks.operators.ChannelMisregistration`, lateral
chromatic aberration) on colour photographs: which way and how far the red and blue planes moved is the task.

One picture shows colour fringes at edges but not the displacement of each plane; the support pairs do. The
restorer is a bank of wide linear filters per colour plane (a sub-pixel shift is a linear filter) beside a small
CNN; Meta-SGD learns its init and per-weight inner learning rates. The benchmark's
(``evaluation/operator_references.py``) classical reference: each plane's shift estimated on the support pairs
(grid search), then undone; oracle: the true shifts undone.
"""

from __future__ import annotations

from .operator_recipe import OperatorRecipeConfig, family_config
from .operator_recipe import checkpoint_entry as _checkpoint_entry

FAMILY = "channel_shift"
CONFIGS = {
    "fast": OperatorRecipeConfig(family=FAMILY, channels=3, model="filter", width=16, depth=3, train_patch=32,
                                 meta_iterations=300, joint_iterations=1800, inner_lr=0.01),
    "full": OperatorRecipeConfig(family=FAMILY, channels=3, model="filter", width=32, depth=4, train_patch=48,
                                 meta_iterations=3000, joint_iterations=18000, inner_lr=0.01, test_tasks=64),
}
WHY = ("colour-plane shift: one picture shows colour fringes, not which way each plane moved; the support pairs "
       "show it, so the adapted filters move the planes back")


def config(profile: str | None = None) -> OperatorRecipeConfig:
    """The config of ``profile`` (``"fast"`` or ``"full"``; default: the kit's profile)."""
    return family_config(CONFIGS, profile)


def checkpoint_entry(name: str, profile: str, description: str):
    """The checkpoint service's entry for this family's checkpoint ``name`` (see
    :func:`~metalearn_kit.recipes.operator_recipe.checkpoint_entry`)."""
    return _checkpoint_entry(FAMILY, name, profile, description)
