"""Interactive explorers for notebooks: core ipywidgets plus matplotlib figures rendered to PNG bytes and
shown in ``ipywidgets.Image`` (so they work in JupyterLab 4, Binder and Colab's ipywidgets 7 without ipympl).

Heavy work runs on a button press or on slider release (``continuous_update=False``), and rendered frames
are cached, so scrubbing a step slider is instant. Importing this package imports neither ipywidgets nor
matplotlib; each name loads its module on first use.

- :class:`TaskExplorer`: degradation family / severity / shots -> the support and query sets of a task.
- :class:`AdaptationExplorer`: a step slider over precomputed adaptation results of several methods;
  :func:`adaptation_results` computes them with the engine's ``MAML.adapt`` / fine-tuning.
- :class:`FamilyAdaptationExplorer`: the same over task families (default: one where the support set identifies
  the task; white noise, where joint pretraining wins, is a choice), with a line saying why.
- :class:`SirenFitExplorer`: a photograph fitted step by step from a meta-learned and the standard SIREN init;
  :func:`siren_fit_results` runs the fits.
- :class:`LiveMetaTrainingPlot`: a ``meta_train(callbacks=[plot])`` callback that redraws a loss plot in place.
- :class:`GenerationExplorer`, :class:`RestorationExplorer`: generic front-ends for user-given functions;
  :func:`restoration_results` is notebook 05's ``restore_fn`` (one task of a degradation family and its methods,
  :func:`restoration_methods`, baselines' learning rates chosen on the support set only).
"""

from __future__ import annotations

from .._lazy import lazy_exports

# public name -> submodule that defines it; submodules load on first use.
_EXPORTS = {
    "TaskExplorer": ".explorers",
    "AdaptationExplorer": ".explorers",
    "GenerationExplorer": ".frontends",
    "RestorationExplorer": ".frontends",
    "LiveMetaTrainingPlot": ".live",
    "SirenFitExplorer": ".siren",
    "siren_fit_results": ".siren",
    "FamilyAdaptationExplorer": ".families",
    "family_methods": ".families",
    "RESTORATION_FAMILIES": ".explorer_tasks",
    "explorer_task": ".explorer_tasks",
    "restoration_methods": ".explorer_tasks",
    "restoration_results": ".explorer_tasks",
    "adaptation_results": ".results",
    "check_adaptation_results": ".results",
    "figure_to_png": ".render",
    "image_grid_png": ".render",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
