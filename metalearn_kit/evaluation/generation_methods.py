"""How each few-shot generation method is adapted and measured on one cell of the benchmark grid.

:data:`RUNNERS` maps each method of :mod:`metalearn_kit.evaluation.generation` to its runner,
``runner(grid, cell)``: adapt on the cell's support set and record its metrics in ``grid`` (query NLL where the
model has a likelihood, sample quality after each ``k`` of the steps grid). A new method adds one runner here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..models.feature_net import FeatureNet
from ..models.generation import condition_on, importance_weighted_nll, mean_image, vae_loss_fn
from ..recipes.generation import GenerationConfig, gan_train_steps, make_vae
from ..recipes.generation_cavia import adapt_and_sample
from ..recipes.generation_cgan import CGANConfig, fewshot_samples
from .curves import StepMetric
from .features import extract_features, frechet_distance, prototype_accuracy
from .novelty import novelty_ratio

__all__ = ["RUNNERS", "Cell", "Grid"]


@dataclass
class Cell:
    """One ``(method, K, task)`` cell of the grid: ``support`` and ``query`` are ``(images [N, 1, H, W],
    labels [N])``; ``noise`` draws the samples (seeded by ``(K, task)``, so every method gets the same noise)."""

    method: str
    shots: int
    index: int
    task: dict[str, Any]
    support: tuple[torch.Tensor, torch.Tensor]
    query: tuple[torch.Tensor, torch.Tensor]
    noise: torch.Generator


@dataclass
class Grid:
    """What the runners share: the config, the trained models, the feature network and, filled as they run,
    ``results`` ``{(method, K, k, metric): [value per task]}`` and ``samples`` (first task only)."""

    config: GenerationConfig
    models: dict[str, nn.Module]
    feature_net: FeatureNet
    device: torch.device
    steps: list[int]
    keep_samples: bool
    results: dict[tuple, list[float]] = field(default_factory=dict)
    samples: dict[tuple, torch.Tensor] = field(default_factory=dict)

    def record(self, cell: Cell, steps: int, metric: str, value: float) -> None:
        self.results.setdefault((cell.method, cell.shots, steps, metric), []).append(value)

    def quality(self, cell: Cell, steps: int, images: torch.Tensor) -> None:
        """Record the sample metrics of ``images [N, 1, H, W]`` against the real images of ``cell``'s task."""
        task = cell.task
        feats = extract_features(self.feature_net, images.clamp(0, 1))
        self.record(cell, steps, "prototype_accuracy",
                    prototype_accuracy(feats, [task["query_features"], *task["distractor_features"]], target=0))
        self.record(cell, steps, "frechet_distance", frechet_distance(feats, task["query_features"]))
        self.record(cell, steps, "novelty_ratio",
                    novelty_ratio(feats, task["pool_features"][:cell.shots], task["query_features"]))
        if cell.index == 0 and self.keep_samples:
            self.samples[(cell.method, cell.shots, steps)] = images.detach().cpu().clone()

    def record_adapted(self, cell: Cell, records: dict[int, dict[str, Any]]) -> None:
        """Record the query NLL and the sample metrics of ``records`` ``{k: {"nll", "samples"}}``."""
        for k in self.steps:
            self.record(cell, k, "query_nll_nats", records[k]["nll"])
            self.quality(cell, k, records[k]["samples"])


def _vae_measure(iw_samples: int, sample_z: torch.Tensor | None, likelihood: str):
    """What the VAE methods record after each wanted step: the query NLL bound and (optionally) samples."""
    def measure(model, query) -> dict[str, Any]:
        out: dict[str, Any] = {"nll": float(importance_weighted_nll(model, query[0], iw_samples, likelihood).mean())}
        if sample_z is not None:
            with torch.no_grad():
                out["samples"] = mean_image(model.decode(sample_z), likelihood)
        return out
    return measure


def _vae_recorder(grid: Grid, cell: Cell) -> StepMetric:
    """What a VAE records while it adapts: the query NLL and samples of one noise draw, after each wanted k."""
    config = grid.config
    z = torch.randn(config.sample_count, config.latent, generator=cell.noise).to(grid.device)
    return StepMetric(grid.steps, _vae_measure(config.iw_samples, z, config.likelihood))


def _run_scratch(grid: Grid, cell: Cell) -> None:
    """A fresh VAE trained with Adam on the support set only."""
    from ..meta import scratch_baseline

    config, recorder = grid.config, _vae_recorder(grid, cell)
    scratch_baseline(lambda: make_vae(config), cell.support, vae_loss_fn, max(grid.steps), config.scratch_lr, "adam",
                     query=cell.query, metric=recorder, seed=config.seed + cell.index)
    grid.record_adapted(cell, recorder.records)


def _run_joint(grid: Grid, cell: Cell) -> None:
    """The jointly pretrained VAE, fine-tuned by SGD on the support set."""
    from ..meta import finetune

    config, recorder = grid.config, _vae_recorder(grid, cell)
    finetune(grid.models["joint"], cell.support, vae_loss_fn, max(grid.steps), config.inner_lr, "sgd",
             query=cell.query, metric=recorder, grad_clip=config.inner_grad_clip)
    grid.record_adapted(cell, recorder.records)


def _run_meta_vae(grid: Grid, cell: Cell) -> None:
    """The same SGD fine-tuning as ``joint``, from the meta-learned start."""
    from ..meta import MAML

    config, models, method, max_steps = grid.config, grid.models, cell.method, max(grid.steps)
    recorder = _vae_recorder(grid, cell)
    learner = MAML(models[method], inner_lr=config.inner_lr, inner_steps=max_steps,
                   inner_grad_clip=config.inner_grad_clip)
    learner.adapt(cell.support, vae_loss_fn, max_steps, query=cell.query, metric=recorder)
    grid.record_adapted(cell, recorder.records)


def _run_statistician(grid: Grid, cell: Cell) -> None:
    """Neural-Statistician-lite: conditioned on the support in one forward pass (k = 0 only)."""
    config, model = grid.config, grid.models["statistician"]
    bound = condition_on(model, cell.support[0])
    grid.record(cell, 0, "query_nll_nats",
                float(importance_weighted_nll(bound, cell.query[0], config.iw_samples).mean()))
    grid.quality(cell, 0, model.sample(bound.c, config.sample_count, cell.noise))


def _run_figr(grid: Grid, cell: Cell) -> None:
    """FIGR: alternating GAN steps on the support, samples after each k (a GAN: no likelihood)."""
    config = grid.config
    pair = copy.deepcopy(grid.models["figr"]).train()
    z = torch.randn(config.sample_count, config.gan_latent, generator=cell.noise).to(grid.device)
    done = 0
    for k in grid.steps:
        gan_train_steps(pair, cell.support[0], k - done, config, cell.noise)
        done = k
        with torch.no_grad():
            grid.quality(cell, k, pair.generator(z))


def _run_cavia(grid: Grid, cell: Cell) -> None:
    """The context VAE: only its task context is adapted."""
    config = grid.config
    grid.record_adapted(cell, adapt_and_sample(grid.models["cavia"], cell.support[0], cell.query[0], grid.steps,
                                               cell.noise, config.sample_count, config.iw_samples))


def _run_cgan(grid: Grid, cell: Cell) -> None:
    """The conditional GAN with a new class's embedding inverted from the support (samples only)."""
    config = grid.config
    adapted = fewshot_samples(grid.models["cgan"], cell.support[0], grid.steps, cell.noise, config.sample_count,
                              CGANConfig.from_generation_config(config))
    for k in grid.steps:
        grid.quality(cell, k, adapted[k])


# method -> what adapts it on one cell and records its metrics (in the order of METHODS)
RUNNERS: dict[str, Callable[[Grid, Cell], None]] = {
    "maml": _run_meta_vae, "fomaml": _run_meta_vae, "reptile": _run_meta_vae, "joint": _run_joint,
    "scratch": _run_scratch, "statistician": _run_statistician, "figr": _run_figr, "cavia": _run_cavia,
    "cgan": _run_cgan}
