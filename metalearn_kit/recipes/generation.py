"""What trains each shipped generation model: the typed config, the model builders, the three trainers
(meta-learned or joint VAE, Neural-Statistician-lite, FIGR; CAVIA and the CGAN in their own recipes) and the
meta-training parts, for the ``generation_*`` checkpoints; :mod:`metalearn_kit.evaluation.generation` runs them.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
from torch import nn

from .._checks import check_choice, check_float_fields, check_int, check_int_fields
from ..config import get_device, get_profile, profile_sizes
from ..meta.train import MetaTrainConfig
from .parts import MetaTrainingParts

__all__ = ["CHECKPOINT_NAMES", "GANPair", "GenerationConfig", "build_checkpoint", "checkpoint_entry",
           "gan_train_steps", "generation_config", "load_sources", "make_statistician", "make_vae",
           "meta_training_parts", "recipe_config", "seeded_rng", "train_checkpoint", "train_figr",
           "train_statistician", "train_vae", "training_record"]

CHECKPOINT_NAMES = ("featnet", "maml", "fomaml", "reptile", "joint", "statistician", "figr", "cavia", "cgan")


@dataclass
class GenerationConfig:
    """The generation experiment's settings (one config for every method, so they share data and budget).

    Model: ``latent``, ``width``, ``hidden``, ``likelihood``; inner loop: ``inner_steps`` SGD steps of
    ``inner_lr`` clipped to ``inner_grad_clip``; outer loop: ``meta_iterations`` x ``meta_batch`` tasks of
    ``train_shots`` + ``train_queries`` images, Adam at ``meta_lr`` clipped to ``meta_grad_clip``; FIGR's WGAN-GP
    (``gan_*``, ``gp_weight``, ``critic_steps``, ``figr_*``); evaluation: ``eval_tasks`` unseen classes,
    ``shots`` x ``steps`` grid, ``ways``-way prototype accuracy, ``iw_samples`` importance samples."""

    image_size: int
    data_seed: int
    seed: int
    latent: int
    width: int
    hidden: int
    likelihood: str
    inner_lr: float
    inner_grad_clip: float
    meta_grad_clip: float
    meta_lr: float
    scratch_lr: float
    joint_lr: float
    gan_latent: int
    gan_lr: float
    gan_betas: list[float]
    gp_weight: float
    critic_steps: int
    figr_epsilon: float
    ways: int
    eval_queries: int
    feature_steps: int
    meta_iterations: int
    meta_batch: int
    train_shots: int
    train_queries: int
    inner_steps: int
    statistician_iterations: int
    figr_iterations: int
    figr_inner_steps: int
    eval_tasks: int
    shots: list[int]
    steps: list[int]
    iw_samples: int
    sample_count: int
    cavia_iterations: int
    cgan_iterations: int
    profile: str

    def __post_init__(self) -> None:
        """Raise ``ValueError``/``TypeError`` naming the first bad field."""
        check_int_fields(self, ("feature_steps", "meta_iterations", "meta_batch", "train_shots", "train_queries",
                                "eval_tasks", "statistician_iterations", "figr_iterations", "figr_inner_steps",
                                "iw_samples", "sample_count", "critic_steps", "eval_queries", "cavia_iterations",
                                "cgan_iterations"), minimum=1)
        check_int("inner_steps", self.inner_steps, minimum=0)
        check_int("ways", self.ways, minimum=2)
        check_float_fields(self, ("inner_lr", "meta_lr", "scratch_lr", "joint_lr", "gan_lr", "inner_grad_clip",
                                  "meta_grad_clip"), minimum=0.0, strict_min=True)
        for key in ("shots", "steps"):
            values = getattr(self, key)
            if not isinstance(values, (list, tuple)) or not values:
                raise ValueError(f"{key} must be a non-empty list of ints, got {values!r}")
            for v in values:
                check_int(key, v, minimum=1 if key == "shots" else 0)


# Sizes per profile (the only place that differs between the CPU "fast" run and the GPU "full" run).
SIZES = {
    "fast": {
        "feature_steps": 4000, "meta_iterations": 300, "meta_batch": 4, "train_shots": 5, "train_queries": 5,
        "inner_steps": 5, "statistician_iterations": 1200, "figr_iterations": 300, "figr_inner_steps": 5,
        "eval_tasks": 64, "shots": [1, 5, 10], "steps": [0, 1, 5, 10, 50], "iw_samples": 16, "sample_count": 32,
        "cavia_iterations": 1500, "cgan_iterations": 16000,
    },
    "full": {
        "feature_steps": 12000, "meta_iterations": 3000, "meta_batch": 8, "train_shots": 5, "train_queries": 5,
        "inner_steps": 5, "statistician_iterations": 6000, "figr_iterations": 1500, "figr_inner_steps": 10,
        "eval_tasks": 64, "shots": [1, 5, 10], "steps": [0, 1, 5, 10, 50], "iw_samples": 64, "sample_count": 64,
        "cavia_iterations": 15000, "cgan_iterations": 40000,
    },
}
# Settings shared by both profiles. The inner gradient clip guards against the rare task whose inner steps
# overshoot (the ELBO in nats has large, sharply varying gradients; typical support-gradient norms ~100-300).
COMMON = {
    "image_size": 28, "data_seed": 0, "seed": 0, "latent": 16, "width": 24, "hidden": 96,
    "likelihood": "bernoulli", "inner_lr": 2e-4, "inner_grad_clip": 200.0, "meta_grad_clip": 500.0,
    "meta_lr": 1e-3, "scratch_lr": 1e-3, "joint_lr": 1e-3,
    "gan_latent": 32, "gan_lr": 2e-4, "gan_betas": [0.0, 0.9], "gp_weight": 10.0, "critic_steps": 2,
    "figr_epsilon": 0.1, "ways": 5, "eval_queries": 10,
}


def generation_config(profile: str | None = None, **overrides: Any) -> GenerationConfig:
    """The experiment's config for ``profile`` (``"fast"``/``"full"``; default: the active profile), with
    ``overrides`` applied (unknown keys raise ``ValueError``)."""
    profile = get_profile(profile)
    config = GenerationConfig(**copy.deepcopy(COMMON), **copy.deepcopy(profile_sizes(SIZES, profile)),
                              profile=profile)
    known = {f.name for f in fields(config)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown generation config keys {unknown}; known keys: {sorted(known)}")
    return replace(config, **overrides)


def training_record(name: str, config: GenerationConfig) -> dict[str, Any]:
    """The part of ``config`` that determines the weights of checkpoint ``name`` (what its file records)."""
    keys = ["image_size", "data_seed", "seed"]
    if name == "featnet":
        keys += ["feature_steps"]
    elif name in ("maml", "fomaml", "reptile", "joint"):
        keys += ["latent", "width", "hidden", "likelihood", "inner_lr", "meta_lr", "joint_lr", "meta_iterations",
                 "meta_batch", "train_shots", "train_queries", "inner_steps", "inner_grad_clip", "meta_grad_clip"]
    elif name == "statistician":
        keys += ["latent", "width", "hidden", "likelihood", "meta_lr", "statistician_iterations", "meta_batch"]
    elif name == "figr":
        keys += ["gan_latent", "width", "hidden", "gan_lr", "gan_betas", "gp_weight", "critic_steps",
                 "figr_epsilon", "figr_iterations", "figr_inner_steps", "train_shots", "train_queries"]
    values = asdict(config)
    record = {"name": name, **{k: values[k] for k in keys}}
    if name in ("cavia", "cgan"):  # the new recipes: their typed config decides the weights
        record.update(recipe_config(name, config).as_dict())
    return record


def recipe_config(name: str, config: GenerationConfig):
    """The typed recipe config of the ``cavia`` or ``cgan`` checkpoint built from ``config``."""
    from .generation_cavia import CaviaConfig
    from .generation_cgan import CGANConfig

    check_choice("name", name, ("cavia", "cgan"))
    return (CaviaConfig if name == "cavia" else CGANConfig).from_generation_config(config)


# ------------------------------------------------------------------------------------------ data


def load_sources(config: GenerationConfig) -> tuple[Any, Any]:
    """(background, evaluation) glyph sources at the config's image size and data seed."""
    from ..data import glyphs

    return (glyphs("background", image_size=config.image_size, seed=config.data_seed),
            glyphs("evaluation", image_size=config.image_size, seed=config.data_seed))


def _tasks(source, shots: int, queries: int):
    from ..tasks.generation import FewShotGenerationTasks

    return FewShotGenerationTasks(source, shots=shots, queries=queries)


@contextlib.contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """``with seeded_rng(seed):`` forks torch's global (CPU) RNG and seeds it: model inits and
    reparameterisation noise (which must use the global RNG to work under vmap) become reproducible, and the
    caller's RNG state is restored on exit."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# ----------------------------------------------------------------------------------- the models


def make_vae(config: GenerationConfig) -> nn.Module:
    """The conv VAE every VAE method (meta-learned, joint, scratch) starts from."""
    from ..models.generation import ConvVAE

    return ConvVAE(channels=1, image_size=config.image_size, latent=config.latent, width=config.width,
                   hidden=config.hidden, likelihood=config.likelihood)


def make_statistician(config: GenerationConfig) -> nn.Module:
    """Neural-Statistician-lite at the config's sizes."""
    from ..models.generation import NeuralStatisticianLite

    return NeuralStatisticianLite(channels=1, image_size=config.image_size, latent=config.latent,
                                  width=config.width, hidden=config.hidden, likelihood=config.likelihood)


class GANPair(nn.Module):
    """Generator and critic kept together so one checkpoint (and one Reptile update) covers both."""

    def __init__(self, config: GenerationConfig):
        from ..models.gan import Critic, Generator

        super().__init__()
        self.generator = Generator(latent=config.gan_latent, image_size=config.image_size,
                                   width=config.width, hidden=config.hidden)
        self.critic = Critic(image_size=config.image_size, width=config.width)


def build_checkpoint(name: str, config: GenerationConfig, state: dict | None = None) -> nn.Module:
    """The untrained architecture of checkpoint ``name`` (short name, e.g. ``"maml"``); the feature net's class
    count and feature size come from its weights ``state``."""
    check_choice("name", name, CHECKPOINT_NAMES)
    if name == "featnet":
        from ..models.feature_net import FeatureNet

        if state is None:
            raise ValueError("state is required to build featnet (its class count comes from the weights)")
        weight = state["classifier.weight"]
        return FeatureNet(weight.shape[0], feature_dim=weight.shape[1])
    if name == "statistician":
        return make_statistician(config)
    if name == "figr":
        return GANPair(config)
    if name == "cavia":
        from .generation_cavia import make_context_vae

        return make_context_vae(recipe_config(name, config), config.image_size)
    if name == "cgan":  # the class count comes from the weights
        from .generation_cgan import make_cgan

        classes = None if state is None else state["generator.embed.weight"].shape[0]
        return make_cgan(recipe_config(name, config), classes, config.image_size, with_critic=False)
    return make_vae(config)


# --------------------------------------------------------------------------------- the trainers


def meta_training_parts(method: str, config: GenerationConfig, background=None, evaluation=None,
                        model: nn.Module | None = None) -> MetaTrainingParts:
    """Everything that meta-trains the ``method`` VAE (``maml``, ``fomaml`` or ``reptile``) with ``config``:
    a fresh VAE unless ``model`` is given (seed torch first), background-class training tasks, evaluation-class
    validation tasks, the ELBO as loss, the inner and the outer loop."""
    from ..models.generation import vae_loss_fn

    check_choice("method", method, ("maml", "fomaml", "reptile"))
    if background is None or evaluation is None:
        loaded = load_sources(config)
        background, evaluation = background or loaded[0], evaluation or loaded[1]
    return MetaTrainingParts(
        model=make_vae(config) if model is None else model,
        task_sampler=_tasks(background, config.train_shots, config.train_queries),
        val_sampler=_tasks(evaluation, config.train_shots, config.train_queries),
        loss_fn=vae_loss_fn, algorithm=method, inner_lr=config.inner_lr, inner_steps=config.inner_steps,
        inner_grad_clip=config.inner_grad_clip,
        train=MetaTrainConfig(iterations=config.meta_iterations, meta_batch=config.meta_batch, meta_lr=config.meta_lr,
                              grad_clip=config.meta_grad_clip,
                              # the query loss before adaptation is a diagnostic only: skipping it saves a forward
                              # per task
                              query_before=False),
        # Reptile has no query set of its own: it adapts on both sets of each task
        train_on="support+query")


def train_vae(method: str, config: GenerationConfig, background, progress: bool = False,
              device: torch.device | str | None = None) -> tuple[nn.Module, dict]:
    """Meta-train (``maml``/``fomaml``/``reptile``) or jointly pretrain (``joint``) a VAE on background tasks
    for ``meta_iterations`` iterations of ``meta_batch`` tasks, on ``device`` (default CPU). Returns (model on
    the CPU, history)."""
    from ..meta import joint_pretrain, meta_train
    from ..models.generation import vae_loss_fn

    check_choice("method", method, ("maml", "fomaml", "reptile", "joint"))
    sampler = _tasks(background, config.train_shots, config.train_queries)
    with seeded_rng(config.seed):
        model = make_vae(config).to(device or "cpu")
        if method == "joint":
            history = joint_pretrain(model, sampler, vae_loss_fn, iterations=config.meta_iterations,
                                     meta_batch=config.meta_batch, lr=config.joint_lr,
                                     generator=config.seed, grad_clip=config.meta_grad_clip, progress=progress)
            return model.cpu(), history
        parts = meta_training_parts(method, config, background, model=model)
        history = meta_train(parts.learner(), parts.task_sampler, parts.loss_fn,
                             replace(parts.train, progress=progress), generator=config.seed)
        return model.cpu(), history


def train_statistician(config: GenerationConfig, background, progress: bool = False,
                       device: torch.device | str | None = None) -> tuple[nn.Module, dict]:
    """Train NS-lite on background tasks whose number of shots is drawn from ``config.shots`` each iteration
    (so one model serves every K). Returns (model, history with ``loss`` per iteration)."""
    from tqdm.auto import tqdm

    from ..models.generation import statistician_loss

    samplers = [_tasks(background, k, config.train_queries) for k in config.shots]
    generator = torch.Generator().manual_seed(config.seed)
    with seeded_rng(config.seed):
        model = make_statistician(config).to(device or "cpu")
        optimizer = torch.optim.Adam(model.parameters(), lr=config.meta_lr)
        history: dict[str, list] = {"loss": [], "shots": [], "wall_time_s": []}
        start = time.perf_counter()
        for _ in tqdm(range(config.statistician_iterations), disable=not progress, desc="statistician"):
            which = int(torch.randint(0, len(samplers), (1,), generator=generator))
            batch = samplers[which].sample_batch(config.meta_batch, generator, device=device)
            loss = statistician_loss(model, batch.support[0], batch.query[0])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history["loss"].append(float(loss.detach()))
            history["shots"].append(config.shots[which])
            history["wall_time_s"].append(time.perf_counter() - start)
        return model.cpu(), history


def gan_train_steps(pair: GANPair, images: torch.Tensor, steps: int, config: GenerationConfig,
                    generator: torch.Generator) -> dict[str, list[float]]:
    """``steps`` WGAN-GP steps on ``images [K, C, H, W]``, in place: each step takes ``critic_steps`` critic
    updates then one generator update, Adam with ``gan_lr``/``gan_betas`` (fresh optimizer state, as FIGR's
    inner loop). Returns the loss histories."""
    from ..models.gan import wgan_generator_loss, wgan_gp_critic_loss

    check_int("steps", steps, minimum=0)
    betas = tuple(config.gan_betas)
    opt_c = torch.optim.Adam(pair.critic.parameters(), lr=config.gan_lr, betas=betas)
    opt_g = torch.optim.Adam(pair.generator.parameters(), lr=config.gan_lr, betas=betas)
    history: dict[str, list[float]] = {"critic_loss": [], "generator_loss": []}
    count = images.shape[0]
    for _ in range(steps):
        for _ in range(config.critic_steps):
            z = torch.randn(count, pair.generator.latent, generator=generator).to(images.device)
            with torch.no_grad():
                fake = pair.generator(z)
            loss_c = wgan_gp_critic_loss(pair.critic, images, fake, config.gp_weight, generator)
            opt_c.zero_grad(set_to_none=True)
            loss_c.backward()
            opt_c.step()
        z = torch.randn(count, pair.generator.latent, generator=generator).to(images.device)
        loss_g = wgan_generator_loss(pair.critic, pair.generator(z))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        history["critic_loss"].append(float(loss_c.detach()))
        history["generator_loss"].append(float(loss_g.detach()))
    return history


def train_figr(config: GenerationConfig, background, progress: bool = False,
               device: torch.device | str | None = None) -> tuple[GANPair, dict]:
    """FIGR (Clouatre & Demers 2019): Reptile over generator *and* critic. Each iteration copies the weights,
    runs ``figr_inner_steps`` WGAN-GP steps on one background class (support + query images), then moves
    the initial weights toward the adapted ones: ``theta <- theta + figr_epsilon * (phi - theta)``.

    A two-player inner loop is not a single ``loss_fn``, so this loop is written out here rather than
    through the engine's :class:`~metalearn_kit.meta.Reptile`; the outer update is the same."""
    from tqdm.auto import tqdm

    sampler = _tasks(background, config.train_shots, config.train_queries)
    generator = torch.Generator().manual_seed(config.seed)
    with seeded_rng(config.seed):
        pair = GANPair(config).to(device or "cpu")
        fast = copy.deepcopy(pair)
        history: dict[str, list] = {"critic_loss": [], "generator_loss": [], "wall_time_s": []}
        start = time.perf_counter()
        epsilon = config.figr_epsilon
        for _ in tqdm(range(config.figr_iterations), disable=not progress, desc="figr"):
            task = sampler.sample(generator)
            fast.load_state_dict(pair.state_dict())
            inner = gan_train_steps(fast, torch.cat([task.support[0], task.query[0]]).to(device or "cpu"),
                                    config.figr_inner_steps, config, generator)
            with torch.no_grad():
                for theta, phi in zip(pair.parameters(), fast.parameters(), strict=True):
                    theta.add_(epsilon * (phi - theta))
            history["critic_loss"].append(inner["critic_loss"][-1])
            history["generator_loss"].append(inner["generator_loss"][-1])
            history["wall_time_s"].append(time.perf_counter() - start)
        return pair.cpu(), history


def _summary(history: dict) -> dict:
    out = {}
    for key, value in history.items():
        if isinstance(value, list) and value and isinstance(value[-1], (int, float)):
            out[f"{key}_last"] = value[-1]
        elif isinstance(value, (int, float)):
            out[key] = value
    return out


def train_checkpoint(name: str, config: GenerationConfig, background=None, progress: bool = False,
                     device: torch.device | str | None = None) -> tuple[nn.Module, dict]:
    """Train checkpoint ``name`` (short name) with ``config`` on ``device`` (default: the kit's device).
    Returns ``(model on the CPU, metrics)``."""
    from .feature_net import train_feature_net

    check_choice("name", name, CHECKPOINT_NAMES)
    background = background if background is not None else load_sources(config)[0]
    device = get_device(device)
    if name == "featnet":
        model, history = train_feature_net(background, steps=config.feature_steps, generator=config.seed,
                                           device=device)
    elif name == "statistician":
        model, history = train_statistician(config, background, progress, device)
    elif name == "figr":
        model, history = train_figr(config, background, progress, device)
    elif name in ("cavia", "cgan"):
        from .generation_cavia import train_context_vae
        from .generation_cgan import train_cgan

        trainer = train_context_vae if name == "cavia" else train_cgan
        model, history = trainer(recipe_config(name, config), background, config.image_size, config.seed, device)
    else:
        model, history = train_vae(name, config, background, progress, device)
    return model, {**_summary(history), "device": str(device)}


def checkpoint_entry(name: str, profile: str, description: str):
    """The :class:`~metalearn_kit.pretrained.PretrainedEntry` of ``generation_<short>`` at ``profile``: file
    ``generation_<short>_<profile>.safetensors``, recording :func:`training_record`."""
    from ..checkpoint_entry import PretrainedEntry

    short = name.removeprefix("generation_")
    config = generation_config(profile)
    return PretrainedEntry(
        file=f"{name}_{profile}.safetensors",
        build=lambda config, state: build_checkpoint(short, config, state),
        train=lambda config, seed, **options: train_checkpoint(short, replace(config, seed=seed), **options),
        config=config, seed=config.seed, description=description,
        to_record=lambda config: training_record(short, config))
