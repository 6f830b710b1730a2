"""Recipes: what trains each shipped model -- a typed config per experiment and profile, the model builder,
the loss, the task distribution and the meta-training parts. One module per experiment family
(``restoration``, ``generation``, ``tutorial``); add a family as a new module with a ``checkpoint_entry``
and list its checkpoints in :data:`metalearn_kit.pretrained.CHECKPOINTS`. The operator families of issue 16
(the support set identifies the task) share :mod:`.operator_recipe`, one module each (``tone_curve``,
``colour_cast``, ``stripe_noise``, ``directional_blur``, ``channel_shift``).
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["MetaTrainingParts", "TrainSettings", "make_learner", "ALGORITHMS"], ".parts"),
    **dict.fromkeys(["Experiment", "ExperimentSetup", "build_experiment", "get_experiment", "list_experiments"],
                    ".experiments"),
    **dict.fromkeys(["RestorationConfig", "restoration_config", "RESTORATION_EXPERIMENTS"], ".restoration_configs"),
    **dict.fromkeys(["GenerationConfig", "generation_config"], ".generation"),
    "restoration_mse": ".tutorial",
    **dict.fromkeys(["ThreadConfig", "thread_config", "thread_tasks", "build_thread_model", "thread_loss",
                     "train_thread_model", "save_thread_model", "load_or_train_thread_model"], ".thread"),
    **dict.fromkeys(["OperatorRecipeConfig", "FAMILY_RECIPES"], ".operator_recipe"),
}
_SUBMODULES = ("experiments", "generation", "parts", "restoration", "restoration_configs", "thread", "tutorial",
               "operator_recipe", "tone_curve", "colour_cast", "stripe_noise", "directional_blur", "channel_shift")

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS, _SUBMODULES)
