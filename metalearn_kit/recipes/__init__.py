"""Recipes: what trains each shipped model -- a typed config per experiment and profile, the model builder,
the loss, the task distribution and the meta-training parts. One module per experiment family
(``restoration``, ``generation``, ``tutorial``); add a family as a new module with a ``checkpoint_entry``
and list its checkpoints in :data:`metalearn_kit.checkpoint_entry.CHECKPOINTS`. The operator families (the
support set identifies the task) are rows of one table, :mod:`.operator_families`, over the shared
:mod:`.operator_recipe`. :mod:`.notebook_denoiser` is the small MAML denoiser notebook 02 trains and notebook 03
meta-tests.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["MetaTrainingParts", "make_learner", "ALGORITHMS"], ".parts"),
    **dict.fromkeys(["Experiment", "ExperimentSetup", "build_experiment", "get_experiment", "list_experiments"],
                    ".experiments"),
    **dict.fromkeys(["RestorationConfig", "restoration_config", "RESTORATION_EXPERIMENTS"], ".restoration_configs"),
    **dict.fromkeys(["GenerationConfig", "generation_config"], ".generation"),
    "restoration_mse": ".tutorial",
    **dict.fromkeys(["NotebookDenoiserConfig", "notebook_denoiser_config", "notebook_denoiser_tasks",
                     "build_notebook_denoiser", "notebook_denoiser_loss", "train_notebook_denoiser",
                     "save_notebook_denoiser", "load_or_train_notebook_denoiser"], ".notebook_denoiser"),
    "train_feature_net": ".feature_net",
    "OperatorRecipeConfig": ".operator_recipe",
    **dict.fromkeys(["OPERATOR_FAMILIES", "OperatorFamily", "operator_family"], ".operator_families"),
}
_SUBMODULES = ("experiments", "feature_net", "generation", "notebook_denoiser", "operator_families", "operator_recipe",
               "parts", "restoration", "restoration_configs", "tutorial")

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS, _SUBMODULES)
