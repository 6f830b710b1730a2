"""How each few-shot generation method is adapted and measured on one cell of the benchmark grid.

:data:`RUNNERS` maps each method of :mod:`metalearn_kit.evaluation.generation` to its runner,
``runner(grid, cell)``: adapt on the cell's support set and record its metrics in ``grid`` (query NLL where the
model has a likelihood, sample quality after each ``k`` of the steps grid). A new method adds one runner here.
The trivial baselines (:data:`TRIVIAL_METHODS`, :mod:`~metalearn_kit.evaluation.trivial_generators`) are runners
of the same table, so every table carries them. Samples of likelihood models are measured as Bernoulli draws;
their mean images are a second, labelled view (metrics ending in :data:`MEAN_VIEW`).
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
from .generation_metrics import aligned_distance, bernoulli_draws, memorisation_ratio, precision_recall
from .inner_loop_protocol import InnerLoop
from .novelty import novelty_ratio
from .trivial_generators import TRIVIAL_GENERATORS

__all__ = ["HEADLINE_STEPS", "MEAN_VIEW", "PR_NEIGHBOURS", "REFERENCE_METHODS", "RUNNERS", "TRIVIAL_METHODS",
           "Cell", "Grid"]

MEAN_VIEW = "_mean_image"  # suffix of the metrics of Bernoulli mean images (a view, not samples)
PR_NEIGHBOURS = 3  # k of the k-NN manifolds of precision and recall
HEADLINE_STEPS = 10  # the k of the targets (else the grid's largest); the mean-image view is measured there and at 0
# the baselines that learn nothing (kind "trivial"): support_only gives no samples (the downstream reference)
TRIVIAL_METHODS = (*TRIVIAL_GENERATORS, "support_only")
# not a generator: other real drawings of the class as the "samples" (kind "reference": what real data scores)
REFERENCE_METHODS = ("real_drawings",)


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
    ``results`` ``{(method, K, k, metric): [value per task]}``, ``samples`` (first task only) and
    ``sample_features`` ``{(method, K, k, view): {task: [N, D]}}`` (for the downstream classifier)."""

    config: GenerationConfig
    models: dict[str, nn.Module]
    feature_net: FeatureNet
    device: torch.device
    steps: list[int]
    keep_samples: bool
    results: dict[tuple, list[float]] = field(default_factory=dict)
    samples: dict[tuple, torch.Tensor] = field(default_factory=dict)
    sample_features: dict[tuple, dict[int, torch.Tensor]] = field(default_factory=dict)
    inner_loops: dict[str, InnerLoop] = field(default_factory=dict)

    def record(self, cell: Cell, steps: int, metric: str, value: float) -> None:
        self.results.setdefault((cell.method, cell.shots, steps, metric), []).append(value)

    def quality(self, cell: Cell, steps: int, images: torch.Tensor, means: bool = False) -> None:
        """Record the sample metrics of ``images [N, 1, H, W]`` against the real images of ``cell``'s task.
        ``means``: the images are Bernoulli means; the metrics are then of binarised draws from them, and (at
        k = 0 and the targets' k, :data:`HEADLINE_STEPS`) of the means themselves under
        ``<metric>_mean_image`` (a labelled view, never the headline)."""
        images = images.detach().clamp(0, 1)
        if means:
            draws = torch.Generator().manual_seed(self.config.seed + 7919 * cell.index + 101 * cell.shots + steps)
            self._measure(cell, steps, bernoulli_draws(images, draws), "")
            headline = HEADLINE_STEPS if HEADLINE_STEPS in self.steps else max(self.steps)
            if steps in (0, headline):  # the view costs a second pass: measured where the targets look
                self._measure(cell, steps, images, MEAN_VIEW)
        else:
            self._measure(cell, steps, images, "")
        if cell.index == 0 and self.keep_samples:
            self.samples[(cell.method, cell.shots, steps)] = images.cpu().clone()

    def _measure(self, cell: Cell, steps: int, images: torch.Tensor, view: str) -> None:
        """Every sample metric of one view (``""``: draws, or :data:`MEAN_VIEW`) of ``images``."""
        task, support = cell.task, cell.task["pool"][:cell.shots]
        feats = extract_features(self.feature_net, images)
        self.sample_features.setdefault((cell.method, cell.shots, steps, view), {})[cell.index] = feats
        record = lambda metric, value: self.record(cell, steps, metric + view, value)  # noqa: E731
        if task["alphabet_features"]:  # an alphabet of one class has no same-alphabet distractor
            record("same_alphabet_accuracy", prototype_accuracy(feats, [task["query_features"],
                                                                        *task["alphabet_features"]], target=0))
        precision, recall = precision_recall(feats, task["query_features"], PR_NEIGHBOURS)
        record("precision", precision)
        record("recall", recall)
        if float(aligned_distance(task["query"], support).mean()) > 0:  # 0: real drawings are shifted copies
            record("memorisation_ratio", memorisation_ratio(images, support, task["query"]))
        record("prototype_accuracy",
               prototype_accuracy(feats, [task["query_features"], *task["distractor_features"]], target=0))
        record("frechet_distance", frechet_distance(feats, task["query_features"]))
        record("novelty_ratio", novelty_ratio(feats, task["pool_features"][:cell.shots], task["query_features"]))

    def record_adapted(self, cell: Cell, records: dict[int, dict[str, Any]]) -> None:
        """Record the query NLL and the sample metrics of ``records`` ``{k: {"nll", "samples"}}`` (Bernoulli
        means when the config's likelihood is ``bernoulli``)."""
        for k in self.steps:
            self.record(cell, k, "query_nll_nats", records[k]["nll"])
            self.quality(cell, k, records[k]["samples"], means=self.config.likelihood == "bernoulli")


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


def _run_finetuned(grid: Grid, cell: Cell) -> None:
    """A pretrained VAE (meta-learned or joint) fine-tuned on the support with its inner loop of
    :mod:`~metalearn_kit.evaluation.inner_loop_protocol` (chosen on dev classes; the meta-training SGD loop
    when no choice was made): the same code and protocol for every start."""
    from ..meta import finetune

    config, recorder = grid.config, _vae_recorder(grid, cell)
    loop = grid.inner_loops.get(cell.method, InnerLoop("sgd", config.inner_lr, config.inner_grad_clip))
    finetune(grid.models[cell.method], cell.support, vae_loss_fn, max(grid.steps), loop.lr, loop.optimizer,
             query=cell.query, metric=recorder, grad_clip=loop.grad_clip)
    grid.record_adapted(cell, recorder.records)


def _run_statistician(grid: Grid, cell: Cell) -> None:
    """Neural-Statistician-lite: conditioned on the support in one forward pass (k = 0 only)."""
    config, model = grid.config, grid.models["statistician"]
    bound = condition_on(model, cell.support[0])
    grid.record(cell, 0, "query_nll_nats",
                float(importance_weighted_nll(bound, cell.query[0], config.iw_samples).mean()))
    grid.quality(cell, 0, model.sample(bound.c, config.sample_count, cell.noise),
                 means=model.likelihood == "bernoulli")


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


def _run_trivial(grid: Grid, cell: Cell) -> None:
    """A baseline that learns nothing (:mod:`~metalearn_kit.evaluation.trivial_generators`): its samples at k = 0."""
    generate = TRIVIAL_GENERATORS[cell.method]
    grid.quality(cell, 0, generate(cell.support[0], grid.config.sample_count, cell.noise))


def _run_support_only(grid: Grid, cell: Cell) -> None:
    """No samples: the downstream classifier sees the support alone (its accuracy is the reference)."""
    dim = cell.task["pool_features"].shape[1]
    grid.sample_features.setdefault((cell.method, cell.shots, 0, ""), {})[cell.index] = torch.zeros(0, dim)


def _run_real_drawings(grid: Grid, cell: Cell) -> None:
    """The reference: the class's real drawings beyond the support (``pool[K:]``, never in the support or the
    query), measured like samples; only where there are more than :data:`PR_NEIGHBOURS` of them (fewer and
    smaller sets than the generators' samples, so compare its set-size-dependent metrics with care)."""
    unseen = cell.task["pool"][cell.shots:]
    if unseen.shape[0] > PR_NEIGHBOURS:
        grid.quality(cell, 0, unseen)


# method -> what adapts it on one cell and records its metrics (in the order of METHODS)
RUNNERS: dict[str, Callable[[Grid, Cell], None]] = {
    "maml": _run_finetuned, "fomaml": _run_finetuned, "reptile": _run_finetuned, "joint": _run_finetuned,
    "scratch": _run_scratch, "statistician": _run_statistician, "figr": _run_figr, "cavia": _run_cavia,
    "cgan": _run_cgan, **dict.fromkeys(TRIVIAL_GENERATORS, _run_trivial), "support_only": _run_support_only,
    "real_drawings": _run_real_drawings}
