"""Named meta-training experiments: what ``metalearn-kit train NAME`` runs, each built from the one config its
other users read, so a name means the same model, tasks, loss and settings everywhere.

```python
from metalearn_kit.experiments import build_experiment, list_experiments
setup = build_experiment("denoise", profile="fast", algorithm="fomaml", backend="func", seed=0)
history = meta_train(setup.learner, setup.task_sampler, setup.loss_fn, val_sampler=setup.val_sampler,
                     **setup.settings.meta_train_kwargs())
```

Two kinds (``list_experiments()``), each with a ``fast`` (laptop CPU) and a ``full`` (GPU) size:

- The tutorial experiments of notebook 06, small enough to meta-train in seconds there:

  - ``denoise``: :class:`~metalearn_kit.models.conv.ConvRestorer` on Gaussian-noise tasks (one noise level per
    task) cut from the kit's training photographs; validation on held-out photographs.
  - ``sr``: the same restorer on x2 super-resolution tasks (one blur width per task; the input is the bicubic
    upsampling of the low-resolution patch).
  - ``glyph-vae``: :class:`~metalearn_kit.models.generation.ConvVAE` on one-class few-shot generation tasks from
    the glyph alphabets; validation on the unseen evaluation alphabets.

- The benchmark experiments, one per meta-learned shipped checkpoint, named after it
  (``restoration_denoise_maml``, ..., ``generation_maml``, ...). Their model, tasks, loss, inner loop and
  outer loop come from :func:`metalearn_kit.evaluation.restoration.meta_training_parts` and
  :func:`metalearn_kit.evaluation.generation.meta_training_parts`, the functions that train the shipped
  checkpoints and that ``metalearn-kit bench restoration|generation`` loads them by: ``metalearn-kit train
  restoration_denoise_maml --profile full`` meta-trains exactly what ``metalearn-kit pretrain
  restoration_denoise_maml --profile full`` does (same weights on one process with the default seed), plus a
  validation on held-out tasks, and can run under ``torchrun``.

Models whose forward draws random numbers (the VAEs' reparameterisation, Noise2Self's masks) match 1-process
runs in distribution only when run on several ranks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ._checks import check_choice, check_int
from .config import get_device, get_profile, profile_sizes

ALGORITHMS = ("maml", "fomaml", "reptile", "metasgd")
BACKENDS = ("auto", "func", "higher")


@dataclass
class TrainSettings:
    """Meta-training settings of an experiment (what :func:`~metalearn_kit.meta.train.meta_train` takes)."""

    iterations: int
    meta_batch: int
    meta_lr: float
    meta_optimizer: str = "adam"
    val_every: int = 50
    val_tasks: int = 16
    checkpoint_every: int = 50
    grad_clip: float | None = None
    query_before: bool = True
    meta_lr_schedule: str = "constant"

    def meta_train_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``meta_train`` (everything but the learner, sampler and loss)."""
        return asdict(self)


@dataclass
class ExperimentSetup:
    """Everything one run needs: ``model`` (inside ``learner``), ``task_sampler`` / ``val_sampler`` (task
    distributions with ``sample_batch(n, generator)``), ``loss_fn(model, batch)`` and ``settings``."""

    name: str
    summary: str
    kind: str
    profile: str
    algorithm: str
    backend: str
    seed: int
    model: nn.Module
    learner: Any
    task_sampler: Any
    val_sampler: Any
    loss_fn: Callable[..., torch.Tensor]
    settings: TrainSettings
    details: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """JSON-able description (logs, the meta-database)."""
        return {"experiment": self.name, "summary": self.summary, "kind": self.kind, "profile": self.profile,
                "algorithm": self.algorithm, "backend": self.backend, "seed": self.seed,
                "model": type(self.model).__name__, "learner": self.learner.config(),
                "settings": asdict(self.settings), "details": self.details,
                "task_sampler": repr(self.task_sampler),
                "val_sampler": repr(self.val_sampler) if self.val_sampler is not None else None}


@dataclass(frozen=True)
class Experiment:
    """A named experiment: ``builder(profile) -> dict`` returns the model, samplers, loss, inner-loop settings
    (``inner_lr``, ``inner_steps``) and :class:`TrainSettings`; :meth:`build` adds the learner."""

    name: str
    summary: str
    kind: str
    builder: Callable[[str], dict[str, Any]]
    default_algorithm: str = "maml"

    def build(self, profile: str | None = None, algorithm: str | None = None, backend: str = "auto",
              device: str | torch.device | None = None, seed: int = 0) -> ExperimentSetup:
        """Build the run. ``algorithm``: ``"maml"``, ``"fomaml"``, ``"reptile"``, ``"metasgd"`` (default: the
        experiment's); ``backend``: ``"func"``, ``"higher"`` or ``"auto"``; ``seed`` fixes the model's
        initial weights (the task seed is ``meta_train``'s ``generator``)."""
        profile = get_profile(profile)
        algorithm = self.default_algorithm if algorithm is None else algorithm
        check_choice("algorithm", algorithm, ALGORITHMS)
        check_choice("backend", backend, BACKENDS)
        check_int("seed", seed, minimum=0)
        # the initial weights depend on the seed only, not on what ran before in this process
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            parts = self.builder(profile)
        model = parts["model"].to(get_device(device))
        learner = make_learner(model, algorithm, backend, inner_lr=parts["inner_lr"],
                               inner_steps=parts["inner_steps"], inner_grad_clip=parts.get("inner_grad_clip"),
                               reptile_train_on=parts.get("reptile_train_on", "support"))
        return ExperimentSetup(self.name, self.summary, self.kind, profile, algorithm, learner.backend, seed, model,
                               learner, parts["task_sampler"], parts.get("val_sampler"), parts["loss_fn"],
                               parts["settings"], dict(parts.get("details", {})))


EXPERIMENTS: dict[str, Experiment] = {}


def register_experiment(name: str, summary: str, kind: str, default_algorithm: str = "maml"):
    """Decorator adding ``builder(profile) -> dict`` to the registry under ``name``."""
    check_choice("kind", kind, ("restoration", "generation"))
    check_choice("default_algorithm", default_algorithm, ALGORITHMS)

    def decorate(builder: Callable[[str], dict[str, Any]]) -> Callable[[str], dict[str, Any]]:
        if name in EXPERIMENTS:
            raise ValueError(f"experiment {name!r} is already registered; pick another name")
        EXPERIMENTS[name] = Experiment(name, summary, kind, builder, default_algorithm)
        return builder

    return decorate


def list_experiments() -> list[str]:
    return sorted(EXPERIMENTS)


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {list_experiments()}, got {name!r}")
    return EXPERIMENTS[name]


def build_experiment(name: str, profile: str | None = None, algorithm: str | None = None, backend: str = "auto",
                     device: str | torch.device | None = None, seed: int = 0) -> ExperimentSetup:
    """``get_experiment(name).build(...)``: see :meth:`Experiment.build`."""
    return get_experiment(name).build(profile=profile, algorithm=algorithm, backend=backend, device=device,
                                      seed=seed)


def make_learner(model: nn.Module, algorithm: str, backend: str = "auto", *, inner_lr: float, inner_steps: int,
                 inner_grad_clip: float | None = None, reptile_train_on: str = "support"):
    """The learner for ``algorithm``: MAML (second order), FOMAML, Reptile (adapting on ``reptile_train_on``) or
    Meta-SGD (per-element rates); ``inner_grad_clip`` clips each inner gradient's norm (None: no clipping)."""
    from .meta import MAML, MetaSGD, Reptile

    check_choice("algorithm", algorithm, ALGORITHMS)
    common = {"inner_lr": inner_lr, "inner_steps": inner_steps, "backend": backend, "inner_grad_clip": inner_grad_clip}
    if algorithm == "maml":
        return MAML(model, **common)
    if algorithm == "fomaml":
        return MAML(model, first_order=True, **common)
    if algorithm == "reptile":
        return Reptile(model, train_on=reptile_train_on, **common)
    return MetaSGD(model, **common)


def restoration_mse(model: Callable, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``loss_fn`` of the restoration experiments: mean squared error of ``model(degraded)`` against
    ``clean`` (``batch = (degraded [K, C, H, W], clean [K, C, H, W])``)."""
    degraded, clean = batch[0], batch[1]
    return (model(degraded) - clean).pow(2).mean()


def _restoration(profile: str, family: str) -> dict[str, Any]:
    from .data import photos
    from .models.conv import ConvRestorer
    from .tasks import RestorationTasks

    sizes = profile_sizes({
        "fast": {"patch": 16, "shots": 4, "queries": 4, "width": 16, "depth": 3, "inner_steps": 2,
                 "inner_lr": 0.1, "settings": TrainSettings(iterations=60, meta_batch=4, meta_lr=1e-3,
                                                            val_every=20, val_tasks=8, checkpoint_every=20)},
        "full": {"patch": 32, "shots": 10, "queries": 10, "width": 32, "depth": 4, "inner_steps": 5,
                 "inner_lr": 0.1, "settings": TrainSettings(iterations=3000, meta_batch=16, meta_lr=1e-3,
                                                            val_every=100, val_tasks=32, checkpoint_every=100)},
    }, profile)
    train = RestorationTasks(photos("train", patch_size=sizes["patch"]), family, sizes["shots"], sizes["queries"],
                             split="train")
    val = RestorationTasks(photos("test", patch_size=sizes["patch"]), family, sizes["shots"], sizes["queries"],
                           split="val")
    model = ConvRestorer(channels=1, width=sizes["width"], depth=sizes["depth"])
    details = {"family": family, "patch_size": sizes["patch"], "shots": sizes["shots"], "queries": sizes["queries"],
               "width": sizes["width"], "depth": sizes["depth"], "inner_lr": sizes["inner_lr"],
               "inner_steps": sizes["inner_steps"]}
    return {"model": model, "task_sampler": train, "val_sampler": val, "loss_fn": restoration_mse,
            "inner_lr": sizes["inner_lr"], "inner_steps": sizes["inner_steps"], "settings": sizes["settings"],
            "details": details}


@register_experiment("denoise", "ConvRestorer, Gaussian-noise tasks on photo patches (one sigma per task)",
                     "restoration")
def _denoise(profile: str) -> dict[str, Any]:
    return _restoration(profile, "gaussian_noise")


@register_experiment("sr", "ConvRestorer, x2 super-resolution tasks on photo patches (one blur width per task)",
                     "restoration")
def _super_resolution(profile: str) -> dict[str, Any]:
    return _restoration(profile, "super_resolution")


@register_experiment("glyph-vae", "ConvVAE, one-class few-shot generation tasks on glyph alphabets", "generation")
def _glyph_vae(profile: str) -> dict[str, Any]:
    from .data import glyphs
    from .models.generation import ConvVAE, vae_loss_fn
    from .tasks import FewShotGenerationTasks

    sizes = profile_sizes({
        "fast": {"latent": 8, "width": 16, "hidden": 64, "shots": 5, "queries": 5, "inner_steps": 2,
                 "inner_lr": 0.01, "settings": TrainSettings(iterations=60, meta_batch=4, meta_lr=1e-3,
                                                             val_every=20, val_tasks=8, checkpoint_every=20)},
        "full": {"latent": 16, "width": 32, "hidden": 128, "shots": 5, "queries": 10, "inner_steps": 5,
                 "inner_lr": 0.01, "settings": TrainSettings(iterations=3000, meta_batch=16, meta_lr=1e-3,
                                                             val_every=100, val_tasks=32, checkpoint_every=100)},
    }, profile)
    train = FewShotGenerationTasks(glyphs("background", image_size=28), sizes["shots"], sizes["queries"])
    val = FewShotGenerationTasks(glyphs("evaluation", image_size=28), sizes["shots"], sizes["queries"])
    model = ConvVAE(channels=1, image_size=28, latent=sizes["latent"], width=sizes["width"], hidden=sizes["hidden"])
    details = {k: sizes[k] for k in ("latent", "width", "hidden", "shots", "queries", "inner_lr", "inner_steps")}
    return {"model": model, "task_sampler": train, "val_sampler": val, "loss_fn": vae_loss_fn,
            "inner_lr": sizes["inner_lr"], "inner_steps": sizes["inner_steps"], "settings": sizes["settings"],
            "details": details}


# ----------------------------------------------------------------------------------------------------------
# The benchmark experiments: one per meta-learned shipped checkpoint, from the configs the benchmarks use
# ----------------------------------------------------------------------------------------------------------

def _settings(parts: dict[str, Any]) -> TrainSettings:
    iterations = parts["iterations"]
    return TrainSettings(iterations=iterations, meta_batch=parts["meta_batch"], meta_lr=parts["meta_lr"],
                         val_every=max(1, iterations // 10), val_tasks=8, checkpoint_every=max(1, iterations // 20),
                         grad_clip=parts["grad_clip"], query_before=parts.get("query_before", True),
                         meta_lr_schedule=parts.get("meta_lr_schedule", "constant"))


def _checkpoint_experiment(parts: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """A builder's result from a ``meta_training_parts`` dict and the config it was made from."""
    return {"model": parts["model"], "task_sampler": parts["task_sampler"], "val_sampler": parts["val_sampler"],
            "loss_fn": parts["loss_fn"], "inner_lr": parts["inner_lr"], "inner_steps": parts["inner_steps"],
            "inner_grad_clip": parts["inner_grad_clip"], "reptile_train_on": parts.get("train_on", "support"),
            "settings": _settings(parts), "details": {"config": config}}


def _restoration_checkpoint(name: str) -> Callable[[str], dict[str, Any]]:
    from .evaluation import restoration

    def builder(profile: str) -> dict[str, Any]:
        config = restoration.experiment_config(restoration.CHECKPOINT_EXPERIMENT[name], profile)
        return _checkpoint_experiment(restoration.meta_training_parts(name, config), config)
    return builder


def _generation_checkpoint(method: str) -> Callable[[str], dict[str, Any]]:
    from .evaluation import generation

    def builder(profile: str) -> dict[str, Any]:
        config = generation.generation_config(profile)
        return _checkpoint_experiment(generation.meta_training_parts(method, config), config)
    return builder


def _register_checkpoint_experiments() -> None:
    from .evaluation import restoration
    from .pretrained import REGISTRY

    for name, algorithm in restoration.META_TRAINED.items():
        EXPERIMENTS[name] = Experiment(name, REGISTRY[name].description, "restoration", _restoration_checkpoint(name),
                                       algorithm)
    for method in ("maml", "fomaml", "reptile"):
        name = f"generation_{method}"
        EXPERIMENTS[name] = Experiment(name, REGISTRY[name].description, "generation", _generation_checkpoint(method),
                                       method)


_register_checkpoint_experiments()


__all__ = ["ALGORITHMS", "BACKENDS", "EXPERIMENTS", "Experiment", "ExperimentSetup", "TrainSettings",
           "build_experiment", "get_experiment", "list_experiments", "make_learner", "register_experiment",
           "restoration_mse"]
