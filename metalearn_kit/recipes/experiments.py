"""Named meta-training experiments: what ``metalearn-kit train NAME`` runs, each built from the recipe its other
users read, so a name means the same model, tasks, loss and settings everywhere.

```python
from metalearn_kit.recipes import build_experiment, list_experiments
setup = build_experiment("denoise", profile="fast", algorithm="fomaml", backend="func", seed=0)
history = meta_train(setup.learner, setup.task_sampler, setup.loss_fn, setup.train, val_sampler=setup.val_sampler)
```

Two kinds (``list_experiments()``), each with a ``fast`` (laptop CPU) and a ``full`` (GPU) size:

- the tutorial experiments of notebook 06 (``denoise``, ``sr``, ``glyph-vae``: :mod:`.tutorial`);
- one per meta-learned shipped checkpoint, named after it (``restoration_denoise_maml``, ...,
  ``generation_maml``, ...), from the ``meta_training_parts`` of its recipe: ``metalearn-kit train
  restoration_denoise_maml --profile full`` meta-trains exactly what ``metalearn-kit pretrain
  restoration_denoise_maml --profile full`` does (same weights on one process with the default seed), plus a
  validation on held-out tasks, and can run under ``torchrun``.

Nothing is registered at import: the table is built on first use from the recipes' own tables. Models whose
forward draws random numbers (the VAEs' reparameterisation, Noise2Self's masks) match 1-process runs in
distribution only when run on several ranks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from .._checks import check_choice, check_int
from ..config import get_device, get_profile
from ..meta import BACKENDS
from ..meta.train import MetaTrainConfig
from .parts import ALGORITHMS, MetaTrainingParts, make_learner


@dataclass
class ExperimentSetup:
    """Everything one run needs: ``model`` (inside ``learner``), ``task_sampler`` / ``val_sampler`` (task
    distributions with ``sample_batch(n, generator)``), ``loss_fn(model, batch)`` and ``train``, the outer loop's
    :class:`~metalearn_kit.meta.train.MetaTrainConfig`."""

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
    train: MetaTrainConfig
    details: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """JSON-able description (logs, the meta-database)."""
        return {"experiment": self.name, "summary": self.summary, "kind": self.kind, "profile": self.profile,
                "algorithm": self.algorithm, "backend": self.backend, "seed": self.seed,
                "model": type(self.model).__name__, "learner": self.learner.config(),
                "settings": {**self.train.describe(), "checkpoint_every": self.train.checkpoint_every,
                             "query_before": self.train.query_before},
                "details": self.details,
                "task_sampler": repr(self.task_sampler),
                "val_sampler": repr(self.val_sampler) if self.val_sampler is not None else None}


@dataclass(frozen=True)
class Experiment:
    """A named experiment: ``builder(profile) -> (MetaTrainingParts, details)``; :meth:`build` adds the
    learner."""

    name: str
    summary: str
    kind: str
    builder: Callable[[str], tuple[MetaTrainingParts, dict[str, Any]]]
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
            parts, details = self.builder(profile)
        model = parts.model.to(get_device(device))
        learner = make_learner(model, algorithm, backend, inner_lr=parts.inner_lr, inner_steps=parts.inner_steps,
                               inner_grad_clip=parts.inner_grad_clip, reptile_train_on=parts.train_on)
        return ExperimentSetup(self.name, self.summary, self.kind, profile, algorithm, learner.backend.name, seed,
                               model, learner, parts.task_sampler, parts.val_sampler, parts.loss_fn, parts.train,
                               dict(details))


def _with_checkpoint_validation(parts: MetaTrainingParts) -> MetaTrainingParts:
    """A checkpoint's parts with ten validations on 8 held-out tasks and twenty checkpoints per run."""
    iterations = parts.train.iterations
    return replace(parts, train=replace(parts.train, val_every=max(1, iterations // 10), val_tasks=8,
                                        checkpoint_every=max(1, iterations // 20)))


def _restoration_checkpoint(name: str):
    def builder(profile: str):
        from . import restoration
        from .restoration_configs import restoration_config

        config = restoration_config(restoration.CHECKPOINT_EXPERIMENT[name], profile)
        parts = restoration.meta_training_parts(name, config)
        return _with_checkpoint_validation(parts), {"config": config.as_dict()}
    return builder


def _generation_checkpoint(method: str):
    def builder(profile: str):
        from dataclasses import asdict

        from . import generation

        config = generation.generation_config(profile)
        parts = generation.meta_training_parts(method, config)
        return _with_checkpoint_validation(parts), {"config": asdict(config)}
    return builder


_TABLE: dict[str, Experiment] = {}


def _experiments() -> dict[str, Experiment]:
    """The table, built on first use: the tutorial experiments and one per meta-trained checkpoint."""
    if not _TABLE:
        from ..checkpoint_entry import CHECKPOINTS
        from . import tutorial
        from .restoration import META_TRAINED

        for name, (summary, kind, builder) in tutorial.TUTORIAL_EXPERIMENTS.items():
            _TABLE[name] = Experiment(name, summary, kind, builder)
        for name, algorithm in META_TRAINED.items():
            _TABLE[name] = Experiment(name, CHECKPOINTS[name][1], "restoration", _restoration_checkpoint(name),
                                      algorithm)
        for method in ("maml", "fomaml", "reptile"):
            name = f"generation_{method}"
            _TABLE[name] = Experiment(name, CHECKPOINTS[name][1], "generation", _generation_checkpoint(method),
                                      method)
    return _TABLE


def list_experiments() -> list[str]:
    return sorted(_experiments())


def get_experiment(name: str) -> Experiment:
    if name not in _experiments():
        raise ValueError(f"experiment must be one of {list_experiments()}, got {name!r}")
    return _experiments()[name]


def build_experiment(name: str, profile: str | None = None, algorithm: str | None = None, backend: str = "auto",
                     device: str | torch.device | None = None, seed: int = 0) -> ExperimentSetup:
    """``get_experiment(name).build(...)``: see :meth:`Experiment.build`."""
    return get_experiment(name).build(profile=profile, algorithm=algorithm, backend=backend, device=device,
                                      seed=seed)


__all__ = ["ALGORITHMS", "BACKENDS", "Experiment", "ExperimentSetup", "build_experiment", "get_experiment",
           "list_experiments"]
