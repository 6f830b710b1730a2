"""The restoration experiments where the support set identifies the task: one per family of
:mod:`metalearn_kit.tasks.operators` with a recipe in :mod:`metalearn_kit.recipes`.

Per family, on ``test_tasks`` tasks of held-out photographs *and* held-out task parameters (``test_patch``
pixels), every method restores the same query images after adapting on the same support pairs:

- ``meta``: the Meta-SGD init, adapted with its learned per-weight inner learning rates;
- ``joint``: the same model jointly pretrained on the same task distribution (at least meta-training's data
  and gradient evaluations), fine-tuned with Adam at each of ``BASELINE_LRS`` or plain SGD at the meta-init's
  starting rate, the setting picked per step count by the *support* loss (never the query);
- ``scratch``: the same model from a random init, tuned the same way;
- ``classical``: the family's best classical methods fitted on the support pairs;
- ``oracle``: given the task's true operator (labelled as such, an upper reference);
- ``input``: the degraded query itself.

Rows are those of :mod:`metalearn_kit.evaluation.restoration` plus ``role``, ``stderr`` (standard error over
tasks) and ``per_task`` (the task-by-task values, in the same task order for every method, so differences
between methods can be paired).
"""

from __future__ import annotations

import statistics
from typing import Any

import torch

from ..config import get_profile
from .metrics import psnr, ssim

# the families the benchmark runs (each a row of metalearn_kit.recipes.operator_families.OPERATOR_FAMILIES)
OPERATOR_EXPERIMENTS = ("tone_curve", "colour_cast", "stripe_noise")
ROLES = ("meta", "joint", "scratch", "classical", "oracle", "input")


class _Results:
    """Per-task values per (method, role, steps, metric), in task order."""

    def __init__(self, experiment: str) -> None:
        self.experiment = experiment
        self.values: dict[tuple[str, str, int | None, str], list[float]] = {}

    def add(self, method: str, role: str, steps: int | None, metric: str, value: float) -> None:
        self.values.setdefault((method, role, steps, metric), []).append(float(value))

    def add_images(self, method: str, role: str, steps: int | None, prediction: torch.Tensor,
                   target: torch.Tensor) -> None:
        self.add(method, role, steps, "psnr", psnr(prediction.clamp(0, 1), target))
        self.add(method, role, steps, "ssim", ssim(prediction.clamp(0, 1), target))

    def add_curve(self, method: str, role: str, curve: dict) -> None:
        for k in curve["psnr"]:
            self.add(method, role, k, "psnr", curve["psnr"][k])
            self.add(method, role, k, "ssim", curve["ssim"][k])
        self.add(method, role, max(curve["psnr"]), "wall_time_s", curve["seconds"])

    def rows(self, **extra: Any) -> list[dict[str, Any]]:
        out = []
        for (method, role, steps, metric), values in self.values.items():
            out.append({"experiment": self.experiment, "method": method, "role": role, "steps": steps,
                        "metric": metric, "value": statistics.fmean(values), "stderr": standard_error(values),
                        "tasks": len(values), "per_task": values, **extra})
        return out


def standard_error(values: list[float]) -> float | None:
    """Standard error of the mean over tasks (``None`` for a single task)."""
    return statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else None


def operator_experiment(family: str, profile: str | None = None, seed: int = 0, sizes: dict | None = None,
                        classical: bool = True, test_ranges: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run one family's experiment (see the module docs); ``sizes`` overrides config fields (e.g.
    ``{"test_tasks": 4}``); ``test_ranges`` (``{param: (low, high) or [bands]}``) replaces the test split's
    parameter ranges, e.g. with values outside the training range (the rows then carry the test split's
    ``test_ranges`` and the experiment is named ``<family>@<params>``, e.g. ``tone_curve@log2_gamma``). Returns
    its rows."""
    from dataclasses import replace

    from ..config import make_generator
    from ..recipes.operator_families import load_model, operator_family
    from ..recipes.operator_recipe import build_model, checkpoint_names, restoration_loss, task_distribution
    from . import operator_references as references
    from .curves import BASELINE_LRS, learner_curve, tuned_curve

    config = operator_family(family).config(profile)
    if sizes:
        config = replace(config, **sizes)
    names = checkpoint_names(family)
    learner, meta_source = load_model(names["meta"], "meta", config, seed)
    joint, joint_source = load_model(names["joint"], "joint", config, seed)
    test = task_distribution(config, "test", ranges=test_ranges)
    degradation = test.degradation(family)
    same_as_meta = [("sgd", config.inner_lr)]  # the baselines may also use the meta-init's starting inner rate
    results = _Results(f"{family}@{','.join(sorted(test_ranges))}" if test_ranges else family)
    generator = make_generator(seed + 10_000)  # test draws never share a seed with training draws
    steps = list(config.steps)
    for i in range(config.test_tasks):
        task = test.sample(generator)
        support, query = task.support, task.query
        results.add_images("degraded input", "input", None, query[0], query[1])
        results.add_curve("meta-init (Meta-SGD)", "meta",
                          learner_curve(learner, support, query, restoration_loss, steps))
        results.add_curve("joint pretrained + finetune", "joint",
                          tuned_curve(joint, support, query, restoration_loss, steps, lrs=BASELINE_LRS,
                                      extra=same_as_meta))
        torch.manual_seed(seed + i)
        results.add_curve("scratch", "scratch", tuned_curve(build_model(config), support, query, restoration_loss,
                                                            steps, lrs=BASELINE_LRS, extra=same_as_meta))
        if not classical:
            continue
        for label, restored in references.classical_methods(family, support, query[0]).items():
            results.add_images(label, "classical", None, restored, query[1])
        for label, restored in references.oracles(family, task.info["params"], degradation, query[0],
                                                  support).items():
            results.add_images(label, "oracle", None, restored, query[1])
    extra = {"test_ranges": degradation.ranges} if test_ranges else {}
    return results.rows(sources={"meta": meta_source, "joint": joint_source}, channels=config.channels,
                        test_patch=config.test_patch, **extra)


def run_operator_experiments(names: list[str] | None = None, profile: str | None = None, seed: int = 0,
                             classical: bool = True) -> list[dict[str, Any]]:
    """Run the named operator experiments (default: all) and return their rows, each with ``profile`` and the
    experiment's wall time."""
    from ..recipes.operator_families import OPERATOR_FAMILIES
    from .curves import run_timed

    profile = get_profile(profile)
    return run_timed(list(OPERATOR_EXPERIMENTS if names is None else names), list(OPERATOR_FAMILIES), profile,
                     lambda name: operator_experiment(name, profile, seed, classical=classical))
