"""Recipe: per-task periodic stripe noise (:class:`~metalearn_kit.tasks.operators.StripeNoise`) on grey photographs:
the stripes' direction, period and amplitude are the task, each image its own phase.

Stripes look like texture in one picture; the support pairs show which frequency is interference. The restorer is
a wide linear filter (a notch is linear) beside a small CNN; Meta-SGD learns its init and per-weight inner
learning rates. The benchmark's (``evaluation/operator_references.py``) classical reference: a Fourier notch at
the frequency read off the support residuals, its radius tuned on the support; oracle: the true direction and
period, each image's stripes fitted and subtracted.
"""

from __future__ import annotations

from .operator_recipe import OperatorRecipeConfig, family_config
from .operator_recipe import checkpoint_entry as _checkpoint_entry

FAMILY = "stripe_noise"
CONFIGS = {
    "fast": OperatorRecipeConfig(family=FAMILY, channels=1, model="filter", width=16, depth=3, train_patch=32,
                                 meta_iterations=600, joint_iterations=3600, inner_lr=0.01),
    "full": OperatorRecipeConfig(family=FAMILY, channels=1, model="filter", width=32, depth=4, train_patch=48,
                                 meta_iterations=3000, joint_iterations=18000, inner_lr=0.01, test_tasks=64),
}
WHY = ("stripe noise: in one picture stripes look like texture; the support pairs show which frequency is "
       "interference, so the adapted filter notches it")


def config(profile: str | None = None) -> OperatorRecipeConfig:
    """The config of ``profile`` (``"fast"`` or ``"full"``; default: the kit's profile)."""
    return family_config(CONFIGS, profile)


def checkpoint_entry(name: str, profile: str, description: str):
    """The checkpoint service's entry for this family's checkpoint ``name`` (see
    :func:`~metalearn_kit.recipes.operator_recipe.checkpoint_entry`)."""
    return _checkpoint_entry(FAMILY, name, profile, description)
