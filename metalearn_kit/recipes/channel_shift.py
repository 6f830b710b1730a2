"""Recipe: colour-plane misregistration (:class:`~metalearn_kit.tasks.operators.ChannelMisregistration`, lateral
chromatic aberration) on colour photographs: which way and how far the red and blue planes moved is the task.

One picture shows colour fringes at edges but not the displacement of each plane; the support pairs do. The
restorer is a bank of wide linear filters per colour plane (a sub-pixel shift is a linear filter) beside a small
CNN; Meta-SGD learns its init and per-weight inner learning rates. Classical reference: each plane's shift
estimated on the support pairs (grid search), then undone; oracle: the true shifts undone.
"""

from __future__ import annotations

import torch

from ..evaluation import operator_classical as classical
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


def classical_methods(support: tuple[torch.Tensor, ...], query_input: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{label: restored query}``: each plane's shift estimated on ``support``, then undone."""
    shifts = {name: classical.estimate_plane_shift(support[0][:, c:c + 1], support[1][:, c:c + 1])
              for name, c in (("red", 0), ("blue", 2))}
    return {"plane shifts estimated on support": classical.realign_planes(query_input, shifts)}


def oracle(params: dict, degradation, query_input: torch.Tensor, support: tuple[torch.Tensor, ...] | None = None
           ) -> dict[str, torch.Tensor]:
    """``{label: restored query}``: the true shifts undone."""
    return {"oracle: true plane shifts undone": classical.realign_planes(query_input, degradation.shifts(params))}


def checkpoint_entry(name: str, profile: str, description: str):
    """The checkpoint service's entry for this family's checkpoint ``name`` (see
    :func:`~metalearn_kit.recipes.operator_recipe.checkpoint_entry`)."""
    return _checkpoint_entry(FAMILY, name, profile, description)
