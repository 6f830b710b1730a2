"""The adaptation explorer over task families: pick a family, see the meta-learned init and joint pretraining
adapt to one held-out task step by step (64x64 patches or larger, colour where the family is about colour), with
one line under the plot that says what the support pairs can tell there and one picture cannot.

It defaults to a family where the support set identifies the task (the case meta-learning is built for; on the
48-task Kodak24 benchmark its lead there is small and short, see docs/results.md) and offers the homogeneous
white-noise family too, where one jointly trained model already serves every task. One task is one task.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets

from .._checks import check_choice, check_int
from . import render
from .explorers import AdaptationExplorer, _status

WHITE_NOISE = "white_noise"
WHITE_NOISE_WHY = ("white noise: one noisy picture already tells a blind denoiser the noise level, so one jointly "
                   "trained model serves every task and a meta-learned init has nothing to add")
DEFAULT_FAMILIES = ("tone_curve", "colour_cast", "stripe_noise", WHITE_NOISE)


def family_methods(family: str, seed: int = 0, steps: int = 10, patch: int = 64) -> dict[str, Any]:
    """One held-out task of ``family`` and the methods the explorer compares on it.

    Returns ``{"task", "methods" ({"meta-learned": learner, "joint pretrained": (model, lr, "adam")}), "loss_fn",
    "why", "joint_lr", "meta_learner"}``: the meta-learned init with its own inner loop (``meta_learner``: Meta-SGD,
    or MAML for white noise), and the jointly pretrained model fine-tuned with Adam at the learning rate
    ``joint_lr`` of the benchmark's grid with the lowest support loss after ``steps`` steps. Models come from the
    shipped checkpoints (trained now if a file is missing). ``family`` is an operator family of
    :data:`~metalearn_kit.recipes.operator_families.OPERATOR_FAMILIES` or ``"white_noise"``.
    """
    from dataclasses import replace

    from ..config import make_generator
    from ..evaluation.curves import support_lr
    from ..recipes import operator_families as families
    from ..recipes import operator_recipe as recipes

    check_choice("family", family, (*families.OPERATOR_FAMILIES, WHITE_NOISE))
    check_int("steps", steps, minimum=1)
    check_int("patch", patch, minimum=64)
    generator = make_generator(seed + 10_000)
    if family == WHITE_NOISE:
        from ..data import photos
        from ..meta import MAML
        from ..pretrained import load_or_train
        from ..recipes.restoration_configs import restoration_config
        from ..tasks.restoration import RestorationTasks

        config = restoration_config("denoising", "fast")
        meta_model, _ = load_or_train("restoration_denoise_maml", config)
        joint, _ = load_or_train("restoration_denoise_joint", config)
        learner = MAML(meta_model, inner_lr=config.inner_lr, inner_steps=config.inner_steps,
                       inner_grad_clip=config.inner_grad_clip)
        task = RestorationTasks(photos("test", patch, 1), "gaussian_noise", config.shots, config.queries,
                                split="test").sample(generator)
        name, why = "meta-learned", WHITE_NOISE_WHY
    else:
        row = families.operator_family(family)
        config = replace(row.config("fast"), test_patch=patch)
        names = recipes.checkpoint_names(family)
        learner, _ = families.load_model(names["meta"], "meta", config)
        joint, _ = families.load_model(names["joint"], "joint", config)
        task = recipes.task_distribution(config, "test").sample(generator)
        name, why = "meta-learned", row.why
    _, lr = support_lr(joint, task.support, recipes.restoration_loss, steps)  # Adam, BASELINE_LRS, support only
    return {"task": task, "methods": {name: learner, "joint pretrained": (joint, lr, "adam")},
            "loss_fn": recipes.restoration_loss, "why": why, "joint_lr": lr,
            "meta_learner": "MAML" if family == WHITE_NOISE else "Meta-SGD"}


class FamilyAdaptationExplorer(widgets.VBox):
    """A family Dropdown (default: the first of ``families``, one whose support set identifies the task), a ``new task``
    button, the :class:`~metalearn_kit.widgets.AdaptationExplorer` of that task, and the line under the plot
    that says why. :meth:`load` does what the controls do.

    Args:
        families: names among the operator families and ``"white_noise"``.
        steps: adaptation steps shown (>= 1).
        patch: side of the patches (>= 64).
        seed: seed of the first task; ``new task`` adds one.
    """

    def __init__(self, families: Sequence[str] = DEFAULT_FAMILIES, steps: int = 10, patch: int = 64, seed: int = 0,
                 dpi: int = render.DPI) -> None:
        super().__init__()
        from ..recipes.operator_families import OPERATOR_FAMILIES

        families = list(families)
        if not families:
            raise ValueError("families must name at least one family, e.g. ('tone_curve', 'white_noise')")
        for family in families:
            check_choice("families", family, (*OPERATOR_FAMILIES, WHITE_NOISE))
        self.steps = check_int("steps", steps, minimum=1)
        self.patch = check_int("patch", patch, minimum=64)
        self.seed = check_int("seed", seed, minimum=0)
        self.dpi = dpi
        self.family = widgets.Dropdown(options=families, value=families[0], description="family")
        self.new_task = widgets.Button(description="new task")
        self.status = widgets.HTML(value="")
        self.why = widgets.HTML(value="")
        self.explorer: AdaptationExplorer | None = None
        self.last_error: BaseException | None = None
        self.family.observe(lambda _: self._guarded_load(), names="value")
        self.new_task.on_click(lambda _: self._next())
        self.load()

    def _guarded_load(self) -> None:
        try:
            self.load()
            self.last_error = None
        except Exception as err:  # shown to the reader; the traceback would be lost in the browser console
            self.last_error = err
            self.status.value = _status(f"{type(err).__name__}: {err}", error=True)

    def _next(self) -> None:
        self.seed += 1
        self._guarded_load()

    def load(self) -> None:
        """Draw the task of the chosen family and seed, adapt both methods and show them."""
        from .results import adaptation_results

        self.status.value = _status(f"adapting on a {self.family.value} task ...")
        parts = family_methods(self.family.value, self.seed, self.steps, self.patch)
        results = adaptation_results(parts["methods"], parts["task"], parts["loss_fn"], self.steps)
        title = f"{self.family.value}: held-out photo, held-out task parameters"
        if self.explorer is None:
            self.explorer = AdaptationExplorer(results, step=0, title=title, dpi=self.dpi)
        else:
            self.explorer.title = title
            self.explorer.set_results(results, step=0)
        self.why.value = f'<span style="font-size:90%">Why: {html.escape(parts["why"])}</span>'
        self.status.value = _status(f"{self.family.value}, task seed {self.seed}: meta-learned = "
                                    f"{parts['meta_learner']} init with its own inner loop; joint pretrained = "
                                    f"fine-tuned with Adam lr {parts['joint_lr']:g} (lowest support loss)")
        self.children = [widgets.HBox([self.family, self.new_task]), self.status, self.explorer, self.why]
