"""Recipe: per-task tone curves (:class:`~metalearn_kit.tasks.operators.ToneCurve`) on grey photographs.

A dark picture may be a dark scene or a darkening curve: one image does not say, four support pairs do. The
restorer is pointwise (a tone curve's inverse is one function of the grey level); Meta-SGD learns its init and
per-weight inner learning rates. Classical reference: a monotone look-up table fitted on the support pairs;
oracle: the true inverse curve.
"""

from __future__ import annotations

import torch

from ..evaluation import operator_classical as classical
from ..tasks.operators import inverse_tone_curve
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


def classical_methods(support: tuple[torch.Tensor, ...], query_input: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{label: restored query}`` of the classical references fitted on ``support`` only."""
    table = classical.fit_tone_lut(support[0], support[1])
    return {"monotone LUT fitted on support": classical.apply_tone_lut(query_input, table)}


def oracle(params: dict, degradation, query_input: torch.Tensor, support: tuple[torch.Tensor, ...] | None = None
           ) -> dict[str, torch.Tensor]:
    """``{label: restored query}`` with the task's true curve (an upper reference)."""
    return {"oracle: true inverse curve": inverse_tone_curve(query_input, params["log2_gamma"],
                                                             params["contrast"]).clamp(0, 1)}


def checkpoint_entry(name: str, profile: str, description: str):
    """The checkpoint service's entry for this family's checkpoint ``name`` (see
    :func:`~metalearn_kit.recipes.operator_recipe.checkpoint_entry`)."""
    return _checkpoint_entry(FAMILY, name, profile, description)
