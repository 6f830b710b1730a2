"""Recipe: blind per-task motion blur (:class:`~metalearn_kit.tasks.operators.DirectionalBlur`) on grey
photographs: the direction and length of the streak are the task, and the restorer is not given the kernel.

A single blurred photograph hides its blur direction among the scene's own edges; the support pairs show it.
The restorer is a wide linear filter beside a small CNN (an inverse blur is close to linear); Meta-SGD learns its
init and per-weight inner learning rates. Classical reference: Wiener deconvolution with the kernel estimated
from the support pairs (ridge least squares), its balance tuned on the support; oracle: non-blind Wiener with
the true kernel.
"""

from __future__ import annotations

import torch

from ..evaluation import classical as reference
from ..evaluation import operator_classical as classical
from .operator_recipe import OperatorRecipeConfig, family_config
from .operator_recipe import checkpoint_entry as _checkpoint_entry

FAMILY = "directional_blur"
BALANCES = (0.003, 0.01, 0.03, 0.1)
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


def _wiener_tuned(support: tuple[torch.Tensor, ...], query_input: torch.Tensor, kernel: torch.Tensor
                  ) -> torch.Tensor:
    kernels_s = kernel.expand(support[0].shape[0], *kernel.shape)
    balance, _ = reference.tune_on_support(reference.wiener_deconvolve, support[0], support[1], "balance",
                                           BALANCES, kernels=kernels_s)
    return reference.wiener_deconvolve(query_input, kernel.expand(query_input.shape[0], *kernel.shape), balance)


def classical_methods(support: tuple[torch.Tensor, ...], query_input: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{label: restored query}``: Wiener with the kernel estimated from ``support`` (balance tuned there)."""
    kernel = classical.estimate_kernel(support[0], support[1], size=13)
    return {"Wiener, kernel estimated on support": _wiener_tuned(support, query_input, kernel)}


def oracle(params: dict, degradation, query_input: torch.Tensor, support: tuple[torch.Tensor, ...] | None = None
           ) -> dict[str, torch.Tensor]:
    """``{label: restored query}``: non-blind Wiener with the true kernel (balance tuned on ``support``)."""
    kernel = degradation.kernel(params)
    if support is None:
        return {"oracle: Wiener with the true kernel":
                reference.wiener_deconvolve(query_input, kernel.expand(query_input.shape[0], *kernel.shape), 0.01)}
    return {"oracle: Wiener with the true kernel": _wiener_tuned(support, query_input, kernel)}


def checkpoint_entry(name: str, profile: str, description: str):
    """The checkpoint service's entry for this family's checkpoint ``name`` (see
    :func:`~metalearn_kit.recipes.operator_recipe.checkpoint_entry`)."""
    return _checkpoint_entry(FAMILY, name, profile, description)
