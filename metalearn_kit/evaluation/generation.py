"""Few-shot generation experiments on unseen glyph classes, and their sample-quality metrics.

Methods compared with the same meta-training budget (outer iterations x meta-batch of tasks):

- ``maml`` / ``fomaml`` / ``reptile``: a :class:`~metalearn_kit.models.generation.ConvVAE` whose initial
  weights are meta-learned with the ELBO as ``loss_fn``; adapted with ``k`` SGD steps on the support set.
- ``joint``: the same VAE trained on pooled background tasks (no inner loop), then the *same* fine-tuning.
- ``scratch``: a freshly initialised VAE trained only on the support set (Adam, ``k`` steps).
- ``statistician``: Neural-Statistician-lite, conditioned on the support set in one forward pass (``k = 0``).
- ``figr``: FIGR -- Reptile over a WGAN-GP generator and critic; adapted by ``k`` alternating GAN steps
  (samples only: a GAN has no likelihood).
- ``cavia``: a context VAE (:mod:`~metalearn_kit.recipes.generation_cavia`): only a task-context vector is
  adapted, by ``k`` gradient steps on the support ELBO from a meta-learned init; samples from ``p(z | c_k)``.
- ``cgan``: the conditional GAN of the background classes (:mod:`~metalearn_kit.recipes.generation_cgan`); a
  new class's embedding is inverted from the support by ``k`` steps from a meta-learned init.

Each row has a ``kind`` (:data:`KINDS`): ``inner_loop`` (adapted by gradient steps from meta-learned
weights), ``amortised`` (one forward pass), ``joint``, ``scratch``, ``gan`` (FIGR), ``conditional`` (CGAN).

Metrics on evaluation-alphabet classes (never seen in training): ``query_nll_nats`` (importance-weighted
bound on ``-log p(x)`` of the query images, nats per image), ``prototype_accuracy`` (5-way nearest-prototype
accuracy of generated samples in the background-trained feature space), ``frechet_distance``
(generated vs real query features) and ``novelty_ratio`` (:mod:`~metalearn_kit.evaluation.novelty`: the
samples' mean feature distance to the nearest support image over the real query images'; ~1 = as new as
real drawings, 0 = copies of the support). Trained weights are loaded from ``checkpoints_data/generation_*`` when
their recorded config matches, else trained (and cached).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import checkpoints
from .._checks import check_choice, check_float, check_int
from ..config import describe_machine, get_device, get_profile, profile_sizes
from ..models.generation import (
    ConvVAE,
    Critic,
    Generator,
    NeuralStatisticianLite,
    condition_on,
    importance_weighted_nll,
    mean_image,
    statistician_loss,
    vae_loss_fn,
    wgan_generator_loss,
    wgan_gp_critic_loss,
)
from ..recipes.generation_cavia import CaviaConfig, adapt_and_sample, make_context_vae, train_context_vae
from ..recipes.generation_cgan import CGANConfig, background_quality, fewshot_samples, make_cgan, train_cgan
from .features import FeatureNet, extract_features, frechet_distance, prototype_accuracy, train_feature_net
from .novelty import novelty_ratio

EXPERIMENT = "generation"
VAE_METHODS = ("maml", "fomaml", "reptile", "joint", "scratch")
METHODS = (*VAE_METHODS, "statistician", "figr", "cavia", "cgan")
KINDS = {"maml": "inner_loop", "fomaml": "inner_loop", "reptile": "inner_loop", "cavia": "inner_loop",
         "joint": "joint", "scratch": "scratch", "statistician": "amortised", "figr": "gan", "cgan": "conditional"}
METRICS = ("query_nll_nats", "prototype_accuracy", "frechet_distance", "novelty_ratio")
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "checkpoints_data"
# the checkpoints whose training settings are a typed recipe config built from the experiment config
RECIPE_CONFIGS: dict[str, Callable[[dict], Any]] = {"cavia": CaviaConfig.from_generation_config,
                                                    "cgan": CGANConfig.from_generation_config}

# Sizes per profile (the only place that differs between the CPU "fast" run and the GPU "full" run).
SIZES = {
    "fast": {
        "feature_steps": 4000, "meta_iterations": 300, "meta_batch": 4, "train_shots": 5, "train_queries": 5,
        "inner_steps": 5, "statistician_iterations": 1200, "figr_iterations": 300, "figr_inner_steps": 5,
        "eval_tasks": 16, "shots": [1, 5, 10], "steps": [0, 1, 5, 10, 50], "iw_samples": 16, "sample_count": 32,
        "cavia_iterations": 1500, "cgan_iterations": 5000,
    },
    "full": {
        "feature_steps": 12000, "meta_iterations": 3000, "meta_batch": 8, "train_shots": 5, "train_queries": 5,
        "inner_steps": 5, "statistician_iterations": 6000, "figr_iterations": 1500, "figr_inner_steps": 10,
        "eval_tasks": 40, "shots": [1, 5, 10], "steps": [0, 1, 5, 10, 50], "iw_samples": 64, "sample_count": 64,
        "cavia_iterations": 15000, "cgan_iterations": 40000,
    },
}
# Settings shared by both profiles.
COMMON = {
    "image_size": 28, "data_seed": 0, "seed": 0, "latent": 16, "width": 24, "hidden": 96,
    "likelihood": "bernoulli", "inner_lr": 2e-4, "inner_grad_clip": 200.0, "meta_grad_clip": 500.0,
    "meta_lr": 1e-3, "scratch_lr": 1e-3, "joint_lr": 1e-3,
    "gan_latent": 32, "gan_lr": 2e-4, "gan_betas": [0.0, 0.9], "gp_weight": 10.0, "critic_steps": 2,
    "figr_epsilon": 0.1, "ways": 5, "eval_queries": 10,
}


def recipe_configs(config: dict) -> dict[str, dict]:
    """The typed recipe configs (as dicts) of the checkpoints built from ``config`` (for the JSON)."""
    return {name: make(config).as_dict() for name, make in RECIPE_CONFIGS.items()}


def generation_config(profile: str | None = None, **overrides: Any) -> dict[str, Any]:
    """The experiment's full config for ``profile`` (``"fast"``/``"full"``; default: the active profile),
    with ``overrides`` applied (unknown keys raise ``ValueError``)."""
    profile = get_profile(profile)
    config = {**COMMON, **copy.deepcopy(profile_sizes(SIZES, profile)), "profile": profile}
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise ValueError(f"unknown generation config keys {unknown}; known keys: {sorted(config)}")
    config.update(overrides)
    _check_config(config)
    return config


def _check_config(config: dict) -> None:
    for key in ("feature_steps", "meta_iterations", "meta_batch", "train_shots", "train_queries", "eval_tasks",
                "statistician_iterations", "figr_iterations", "figr_inner_steps", "iw_samples", "sample_count",
                "critic_steps", "eval_queries", "cavia_iterations", "cgan_iterations"):
        check_int(key, config[key], minimum=1)
    check_int("inner_steps", config["inner_steps"], minimum=0)
    check_int("ways", config["ways"], minimum=2)
    for key in ("inner_lr", "meta_lr", "scratch_lr", "joint_lr", "gan_lr", "inner_grad_clip", "meta_grad_clip"):
        check_float(key, config[key], minimum=0.0, strict_min=True)
    for key in ("shots", "steps"):
        values = config[key]
        if not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"{key} must be a non-empty list of ints, got {values!r}")
        for v in values:
            check_int(key, v, minimum=1 if key == "shots" else 0)


# ------------------------------------------------------------------------------------------ data


def load_sources(config: dict) -> tuple[Any, Any]:
    """(background, evaluation) glyph sources at the config's image size and data seed."""
    from ..data import glyphs

    return (glyphs("background", image_size=config["image_size"], seed=config["data_seed"]),
            glyphs("evaluation", image_size=config["image_size"], seed=config["data_seed"]))


def _tasks(source, shots: int, queries: int):
    from ..tasks.generation import FewShotGenerationTasks

    return FewShotGenerationTasks(source, shots=shots, queries=queries)


# ---------------------------------------------------------------------------------- checkpoints


def _cache_path(name: str) -> Path:
    from ..data import cache_dir

    return cache_dir("checkpoints") / f"generation_{name}.safetensors"


def _training_config(name: str, config: dict) -> dict:
    """The part of ``config`` that determines the weights of checkpoint ``name``."""
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
    elif name in RECIPE_CONFIGS:  # the new recipes' checkpoints: their typed config decides
        return {"name": name, **{k: config[k] for k in keys}, **RECIPE_CONFIGS[name](config).as_dict()}
    return {"name": name, **{k: config[k] for k in keys}}


def _find_checkpoint(name: str, config: dict) -> Path | None:
    """The shipped (or cached) checkpoint for ``name`` whose recorded training config equals ``config``'s: in
    ``$METALEARN_KIT_CHECKPOINT_DIR`` (where ``metalearn-kit pretrain --out`` writes), the package, the cache."""
    from ..pretrained import checkpoint_dir

    wanted = _training_config(name, config)
    file = f"generation_{name}_{config['profile']}.safetensors"
    for path in dict.fromkeys((checkpoint_dir() / file, SHIPPED_DIR / file, _cache_path(name))):
        if path.exists():
            _, meta = checkpoints.load(path)
            if meta.get("config") == wanted:
                return path
    return None


def data_fingerprint(source) -> dict[str, Any]:
    """What identifies the training data of a checkpoint: source name, class count and a hash of the class
    names (the glyph renderer may change between versions of the kit)."""
    import hashlib

    digest = hashlib.sha1("\n".join(map(str, source.classes)).encode()).hexdigest()[:12]
    return {"source": source.name, "classes": source.num_classes, "images_per_class": source.images_per_class,
            "class_names_sha1": digest}


def _save_checkpoint(name: str, model: nn.Module, config: dict, history: dict, path: Path | None,
                     background=None) -> Path:
    meta = {"config": _training_config(name, config), "seed": config["seed"], "metrics": _summary(history),
            "data": data_fingerprint(background) if background is not None else None,
            "machine": describe_machine(), "profile": config["profile"],
            "command": f"metalearn-kit bench generation --profile {config['profile']} --make-checkpoint {name}"}
    return checkpoints.save(path or _cache_path(name), model, meta)


def _summary(history: dict) -> dict:
    out = {}
    for key, value in history.items():
        if isinstance(value, list) and value and isinstance(value[-1], (int, float)):
            out[f"{key}_last"] = value[-1]
        elif isinstance(value, (int, float)):
            out[key] = value
    return out


def _seeded(seed: int):
    """Fork torch's global RNG and seed it: model inits and reparameterisation noise (which must use the
    global RNG to work under vmap) become reproducible without disturbing the caller's RNG."""
    fork = torch.random.fork_rng(devices=[])
    fork.__enter__()
    torch.manual_seed(seed)
    return fork


# ----------------------------------------------------------------------------------- the models


def make_vae(config: dict) -> ConvVAE:
    return ConvVAE(channels=1, image_size=config["image_size"], latent=config["latent"], width=config["width"],
                   hidden=config["hidden"], likelihood=config["likelihood"])


def make_statistician(config: dict) -> NeuralStatisticianLite:
    return NeuralStatisticianLite(channels=1, image_size=config["image_size"], latent=config["latent"],
                                  width=config["width"], hidden=config["hidden"], likelihood=config["likelihood"])


class GANPair(nn.Module):
    """Generator and critic kept together so one checkpoint (and one Reptile update) covers both."""

    def __init__(self, config: dict):
        super().__init__()
        self.generator = Generator(latent=config["gan_latent"], image_size=config["image_size"],
                                   width=config["width"], hidden=config["hidden"])
        self.critic = Critic(image_size=config["image_size"], width=config["width"])


def train_vae(method: str, config: dict, background, progress: bool = False,
              device: torch.device | str | None = None) -> tuple[ConvVAE, dict]:
    """Meta-train (``maml``/``fomaml``/``reptile``) or jointly pretrain (``joint``) a VAE on background tasks
    for ``config["meta_iterations"]`` iterations of ``config["meta_batch"]`` tasks, on ``device`` (default
    CPU). Returns (model on the CPU, history)."""
    from ..meta import MAML, Reptile, joint_pretrain, meta_train

    check_choice("method", method, ("maml", "fomaml", "reptile", "joint"))
    sampler = _tasks(background, config["train_shots"], config["train_queries"])
    fork = _seeded(config["seed"])
    try:
        model = make_vae(config).to(device or "cpu")
        if method == "joint":
            history = joint_pretrain(model, sampler, vae_loss_fn, iterations=config["meta_iterations"],
                                     meta_batch=config["meta_batch"], lr=config["joint_lr"],
                                     generator=config["seed"], grad_clip=config["meta_grad_clip"], progress=progress)
            return model.cpu(), history
        parts = meta_training_parts(method, config, background, model=model)
        if method == "reptile":
            learner = Reptile(model, inner_lr=parts["inner_lr"], inner_steps=parts["inner_steps"],
                              train_on=parts["train_on"], inner_grad_clip=parts["inner_grad_clip"])
        else:
            learner = MAML(model, inner_lr=parts["inner_lr"], inner_steps=parts["inner_steps"],
                           first_order=parts["algorithm"] == "fomaml", inner_grad_clip=parts["inner_grad_clip"])
        history = meta_train(learner, parts["task_sampler"], parts["loss_fn"], iterations=parts["iterations"],
                             meta_batch=parts["meta_batch"], meta_lr=parts["meta_lr"], generator=config["seed"],
                             grad_clip=parts["grad_clip"], progress=progress, query_before=parts["query_before"])
        return model.cpu(), history
    finally:
        fork.__exit__(None, None, None)


def meta_training_parts(method: str, config: dict, background=None, evaluation=None,
                        model: nn.Module | None = None) -> dict[str, Any]:
    """Everything that meta-trains the ``method`` VAE (``maml``, ``fomaml`` or ``reptile``) with ``config``:
    ``model`` (a fresh VAE unless given: seed torch first), ``task_sampler`` (background classes),
    ``val_sampler`` (evaluation classes), ``loss_fn`` (the ELBO), the inner loop (``inner_lr``,
    ``inner_steps``, ``inner_grad_clip``, ``algorithm``, Reptile's ``train_on``) and the outer loop
    (``iterations``, ``meta_batch``, ``meta_lr``, ``grad_clip``, ``query_before``).

    The one source of these settings: the shipped checkpoints (:func:`train_vae`) and the ``metalearn-kit
    train generation_<method>`` experiments both build from it."""
    check_choice("method", method, ("maml", "fomaml", "reptile"))
    if background is None or evaluation is None:
        loaded = load_sources(config)
        background, evaluation = background or loaded[0], evaluation or loaded[1]
    # clipping guards against the rare task whose inner steps overshoot (the ELBO in nats has large,
    # sharply varying gradients); typical support-gradient norms are ~100-300
    return {"model": make_vae(config) if model is None else model,
            "task_sampler": _tasks(background, config["train_shots"], config["train_queries"]),
            "val_sampler": _tasks(evaluation, config["train_shots"], config["train_queries"]),
            "loss_fn": vae_loss_fn, "inner_lr": config["inner_lr"], "inner_steps": config["inner_steps"],
            "inner_grad_clip": config["inner_grad_clip"], "algorithm": method,
            # Reptile has no query set of its own: it adapts on both sets of each task
            "train_on": "support+query", "iterations": config["meta_iterations"],
            "meta_batch": config["meta_batch"], "meta_lr": config["meta_lr"], "grad_clip": config["meta_grad_clip"],
            # the query loss before adaptation is a diagnostic only: skipping it saves a forward per task
            "query_before": False}


def train_statistician(config: dict, background, progress: bool = False,
                       device: torch.device | str | None = None) -> tuple[NeuralStatisticianLite, dict]:
    """Train NS-lite on background tasks whose number of shots is drawn from ``config["shots"]`` each
    iteration (so one model serves every K). Returns (model, history with ``loss`` per iteration)."""
    from tqdm.auto import tqdm

    samplers = [_tasks(background, k, config["train_queries"]) for k in config["shots"]]
    generator = torch.Generator().manual_seed(config["seed"])
    fork = _seeded(config["seed"])
    try:
        model = make_statistician(config).to(device or "cpu")
        optimizer = torch.optim.Adam(model.parameters(), lr=config["meta_lr"])
        history: dict[str, list] = {"loss": [], "shots": [], "wall_time_s": []}
        start = time.perf_counter()
        for _ in tqdm(range(config["statistician_iterations"]), disable=not progress, desc="statistician"):
            which = int(torch.randint(0, len(samplers), (1,), generator=generator))
            batch = samplers[which].sample_batch(config["meta_batch"], generator, device=device)
            loss = statistician_loss(model, batch.support[0], batch.query[0])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history["loss"].append(float(loss.detach()))
            history["shots"].append(config["shots"][which])
            history["wall_time_s"].append(time.perf_counter() - start)
        return model.cpu(), history
    finally:
        fork.__exit__(None, None, None)


def gan_train_steps(pair: GANPair, images: torch.Tensor, steps: int, config: dict,
                    generator: torch.Generator) -> dict[str, list[float]]:
    """``steps`` WGAN-GP steps on ``images [K, C, H, W]``, in place: each step takes ``critic_steps`` critic
    updates (:func:`wgan_gp_critic_loss`) then one generator update (:func:`wgan_generator_loss`), Adam with
    ``gan_lr``/``gan_betas`` (fresh optimizer state, as FIGR's inner loop). Returns the loss histories."""
    check_int("steps", steps, minimum=0)
    betas = tuple(config["gan_betas"])
    opt_c = torch.optim.Adam(pair.critic.parameters(), lr=config["gan_lr"], betas=betas)
    opt_g = torch.optim.Adam(pair.generator.parameters(), lr=config["gan_lr"], betas=betas)
    history: dict[str, list[float]] = {"critic_loss": [], "generator_loss": []}
    count = images.shape[0]
    for _ in range(steps):
        for _ in range(config["critic_steps"]):
            z = torch.randn(count, pair.generator.latent, generator=generator).to(images.device)
            with torch.no_grad():
                fake = pair.generator(z)
            loss_c = wgan_gp_critic_loss(pair.critic, images, fake, config["gp_weight"], generator)
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


def train_figr(config: dict, background, progress: bool = False,
               device: torch.device | str | None = None) -> tuple[GANPair, dict]:
    """FIGR (Clouatre & Demers 2019): Reptile over generator *and* critic. Each iteration copies the weights,
    runs ``figr_inner_steps`` WGAN-GP steps on one background class (support + query images), then moves
    the initial weights toward the adapted ones: ``theta <- theta + figr_epsilon * (phi - theta)``.

    A two-player inner loop is not a single ``loss_fn``, so this loop is written out here rather than
    through the engine's :class:`Reptile`; the outer update is the same."""
    from tqdm.auto import tqdm

    sampler = _tasks(background, config["train_shots"], config["train_queries"])
    generator = torch.Generator().manual_seed(config["seed"])
    fork = _seeded(config["seed"])
    try:
        pair = GANPair(config).to(device or "cpu")
        fast = copy.deepcopy(pair)
        history: dict[str, list] = {"critic_loss": [], "generator_loss": [], "wall_time_s": []}
        start = time.perf_counter()
        epsilon = config["figr_epsilon"]
        for _ in tqdm(range(config["figr_iterations"]), disable=not progress, desc="figr"):
            task = sampler.sample(generator)
            fast.load_state_dict(pair.state_dict())
            inner = gan_train_steps(fast, torch.cat([task.support[0], task.query[0]]).to(device or "cpu"),
                                    config["figr_inner_steps"], config, generator)
            with torch.no_grad():
                for theta, phi in zip(pair.parameters(), fast.parameters(), strict=True):
                    theta.add_(epsilon * (phi - theta))
            history["critic_loss"].append(inner["critic_loss"][-1])
            history["generator_loss"].append(inner["generator_loss"][-1])
            history["wall_time_s"].append(time.perf_counter() - start)
        return pair.cpu(), history
    finally:
        fork.__exit__(None, None, None)


def _make(name: str, config: dict, num_classes: int | None = None) -> nn.Module:
    if name == "featnet":
        raise ValueError("featnet is built by train_feature_net")
    if name == "cavia":
        return make_context_vae(CaviaConfig.from_generation_config(config), config["image_size"])
    if name == "cgan":
        if num_classes is None:
            raise ValueError("the cgan's num_classes (background classes) is needed to build it")
        return make_cgan(CGANConfig.from_generation_config(config), num_classes, config["image_size"],
                         with_critic=False)
    if name == "statistician":
        return make_statistician(config)
    if name == "figr":
        return GANPair(config)
    return make_vae(config)


def _train(name: str, config: dict, background, progress: bool, device=None) -> tuple[nn.Module, dict]:
    if name == "featnet":
        return train_feature_net(background, steps=config["feature_steps"], generator=config["seed"], device=device)
    if name == "statistician":
        return train_statistician(config, background, progress, device)
    if name == "figr":
        return train_figr(config, background, progress, device)
    if name == "cavia":
        return train_context_vae(CaviaConfig.from_generation_config(config), background, config["image_size"],
                                 config["seed"], device)
    if name == "cgan":
        return train_cgan(CGANConfig.from_generation_config(config), background, config["image_size"],
                          config["seed"], device)
    return train_vae(name, config, background, progress, device)


CHECKPOINT_NAMES = ("featnet", "maml", "fomaml", "reptile", "joint", "statistician", "figr", "cavia", "cgan")


def _classes_in(state: dict, name: str) -> int | None:
    """The class count a classifier-like checkpoint was trained with, read from its weights."""
    key = {"featnet": "classifier.weight", "cgan": "generator.embed.weight"}.get(name)
    return None if key is None else state[key].shape[0]


def get_trained(name: str, config: dict, background=None, *, retrain: bool = False, save_to: Path | None = None,
                progress: bool = False, log: Callable[[str], None] | None = None,
                device: torch.device | str | None = None) -> tuple[nn.Module, dict]:
    """The trained model ``name`` (one of :data:`CHECKPOINT_NAMES`) for ``config``: loaded from a shipped or
    cached checkpoint whose recorded training config matches, else trained (and cached; or written to
    ``save_to``). Returns ``(model in eval mode, info)``; ``info`` has ``source`` (path or ``"trained"``),
    ``seconds`` and the checkpoint/history summary. Training runs on ``device`` (default CPU); the model
    comes back on the CPU."""
    check_choice("name", name, CHECKPOINT_NAMES)
    path = None if retrain else _find_checkpoint(name, config)
    start = time.perf_counter()
    if path is not None:
        state, meta = checkpoints.load(path)
        if name == "featnet":
            num_classes = state["classifier.weight"].shape[0]
            model = FeatureNet(num_classes, feature_dim=state["classifier.weight"].shape[1])
        else:
            model = _make(name, config, _classes_in(state, name))
        model.load_state_dict(state)
        info = {"source": str(path), "metrics": meta.get("metrics", {}), "seconds": time.perf_counter() - start}
        if background is not None and meta.get("data") is not None:
            info["data_matches"] = meta["data"] == data_fingerprint(background)
            if not info["data_matches"] and log:
                log(f"warning: {name} was trained on other background data ({meta['data']}) than this "
                    f"source ({data_fingerprint(background)}); retrain with --make-checkpoint {name}")
    else:
        if background is None:
            background, _ = load_sources(config)
        if log:
            log(f"training {name} ({config['profile']} profile) ...")
        model, history = _train(name, config, background, progress, device)
        written = _save_checkpoint(name, model, config, history, save_to, background)
        info = {"source": "trained", "saved": str(written), "metrics": _summary(history),
                "seconds": time.perf_counter() - start}
    model.eval()
    return model, info


# ------------------------------------------------------------------------------------- evaluation


class _Recorder:
    """A ``metric(model, query)`` for ``adapt``/``finetune`` that, after each of the steps in ``steps``,
    records the query NLL bound and (optionally) samples; other steps return NaN at no cost."""

    def __init__(self, steps: Sequence[int], iw_samples: int, sample_z: torch.Tensor | None, likelihood: str):
        self.steps = set(steps)
        self.iw_samples = iw_samples
        self.sample_z = sample_z
        self.likelihood = likelihood
        self.calls = 0
        self.nll: dict[int, float] = {}
        self.samples: dict[int, torch.Tensor] = {}

    def __call__(self, model, query) -> float:
        step = self.calls
        self.calls += 1
        if step not in self.steps:
            return math.nan
        value = float(importance_weighted_nll(model, query[0], self.iw_samples, self.likelihood).mean())
        self.nll[step] = value
        if self.sample_z is not None:
            with torch.no_grad():
                self.samples[step] = mean_image(model.decode(self.sample_z), self.likelihood)
        return value


def _mean_se(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    se = float(t.std() / math.sqrt(len(values))) if len(values) > 1 else 0.0
    return float(t.mean()), se


def evaluate_generation(config: dict, methods: Sequence[str] = METHODS, *, models: dict | None = None,
                        feature_net: FeatureNet | None = None, sources=None, progress: bool = False,
                        log: Callable[[str], None] | None = None, keep_samples: bool = False,
                        device: torch.device | str | None = "cpu") -> dict[str, Any]:
    """Run the evaluation grid: for each method, each ``K`` in ``config["shots"]`` and ``eval_tasks`` unseen
    classes, adapt on ``K`` support images and record metrics after each ``k`` in ``config["steps"]``.

    ``models`` (name -> trained model) and ``feature_net`` skip :func:`get_trained`. ``device``: where models
    train (when missing) and adapt; ``None`` picks :func:`~metalearn_kit.config.get_device`. Returns ``{"rows": [...],
    "samples": {(method, shots, steps): images [N, 1, H, W]} (first task; with keep_samples), "info": {...}}``;
    each row: ``experiment, method, shots, steps, metric, value, std_error, tasks``.
    """
    from ..meta import MAML, finetune, scratch_baseline

    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"methods must be a non-empty subset of {METHODS}, got {list(methods)}")
    _check_config(config)
    device = get_device(device)
    background, evaluation = sources if sources is not None else load_sources(config)
    max_shots = max(config["shots"])
    queries = config["eval_queries"]
    if max_shots + queries > evaluation.images_per_class:
        raise ValueError(f"max(shots) + eval_queries = {max_shots} + {queries} exceeds the "
                         f"{evaluation.images_per_class} images per class; lower eval_queries or shots")
    if config["ways"] > evaluation.num_classes:
        raise ValueError(f"ways = {config['ways']} exceeds the {evaluation.num_classes} evaluation classes")
    models = dict(models or {})
    info: dict[str, Any] = {"checkpoints": {}}
    if feature_net is None:
        feature_net, info["checkpoints"]["featnet"] = get_trained("featnet", config, background, log=log,
                                                                  device=device)
    feature_net = feature_net.to(device)
    for name in methods:
        if name != "scratch" and name not in models:
            models[name], info["checkpoints"][name] = get_trained(name, config, background, progress=progress,
                                                                  log=log, device=device)
    models = {name: model.to(device) for name, model in models.items()}
    results: dict[tuple, list[float]] = {}
    samples: dict[tuple, torch.Tensor] = {}
    steps_grid = sorted(set(config["steps"]))
    max_steps = max(steps_grid)
    # One fixed set of evaluation tasks: target class, its images split into a query set (shared by every K)
    # and a support pool, plus ways-1 distractor classes for the prototype accuracy.
    rng = torch.Generator().manual_seed(config["seed"] + 1)
    n_tasks = min(config["eval_tasks"], evaluation.num_classes)
    targets = torch.randperm(evaluation.num_classes, generator=rng)[:n_tasks].tolist()
    task_list = []
    for target in targets:
        images = evaluation.images_of(target)
        order = torch.randperm(images.shape[0], generator=rng)
        others = [c for c in torch.randperm(evaluation.num_classes, generator=rng).tolist() if c != target]
        distractors = [evaluation.images_of(c)[:queries] for c in others[: config["ways"] - 1]]
        task_list.append({"class": evaluation.classes[target], "query": images[order[:queries]].to(device),
                          "pool": images[order[queries:queries + max_shots]].to(device),
                          "distractors": [d.to(device) for d in distractors]})
    if keep_samples:  # the first class's real images, for reference in sample grids
        samples[("real query", 0, 0)] = task_list[0]["query"].cpu()
        for shots in config["shots"]:
            samples[("support", shots, 0)] = task_list[0]["pool"][:shots].cpu()
    with torch.no_grad():
        for task in task_list:
            task["query_features"] = extract_features(feature_net, task["query"])
            task["pool_features"] = extract_features(feature_net, task["pool"])
            task["distractor_features"] = [extract_features(feature_net, d) for d in task["distractors"]]


    def record(method: str, shots: int, steps: int, metric: str, value: float) -> None:
        results.setdefault((method, shots, steps, metric), []).append(value)

    def quality(method: str, shots: int, steps: int, images: torch.Tensor, task: dict, first: bool) -> None:
        feats = extract_features(feature_net, images.clamp(0, 1))
        record(method, shots, steps, "prototype_accuracy",
               prototype_accuracy(feats, [task["query_features"], *task["distractor_features"]], target=0))
        record(method, shots, steps, "frechet_distance", frechet_distance(feats, task["query_features"]))
        record(method, shots, steps, "novelty_ratio",
               novelty_ratio(feats, task["pool_features"][:shots], task["query_features"]))
        if first and keep_samples:
            samples[(method, shots, steps)] = images.detach().cpu().clone()

    latent = config["latent"]
    fork = _seeded(config["seed"] + 2)
    start = time.perf_counter()
    method_seconds: dict[str, float] = {}
    try:
        for method in methods:
            # each method draws from its own seeded stream, so its rows do not depend on which other
            # methods ran before it (a subset run reproduces the full table's rows)
            torch.manual_seed(config["seed"] + 2 + METHODS.index(method))
            t_method = time.perf_counter()
            for shots in config["shots"]:
                for index, task in enumerate(task_list):
                    support = (task["pool"][:shots], torch.zeros(shots, dtype=torch.int64, device=device))
                    query = (task["query"], torch.zeros(queries, dtype=torch.int64, device=device))
                    z_gen = torch.Generator().manual_seed(config["seed"] + 1000 * index + shots)
                    if method in VAE_METHODS:
                        z = torch.randn(config["sample_count"], latent, generator=z_gen).to(device)
                        recorder = _Recorder(steps_grid, config["iw_samples"], z, config["likelihood"])
                        if method == "scratch":
                            scratch_baseline(lambda: make_vae(config), support, vae_loss_fn, max_steps,
                                             config["scratch_lr"], "adam", query=query, metric=recorder,
                                             seed=config["seed"] + index)
                        elif method == "joint":
                            finetune(models["joint"], support, vae_loss_fn, max_steps, config["inner_lr"], "sgd",
                                     query=query, metric=recorder, grad_clip=config["inner_grad_clip"])
                        else:  # the same SGD fine-tuning as joint, from the meta-learned start
                            learner = MAML(models[method], inner_lr=config["inner_lr"], inner_steps=max_steps,
                                           inner_grad_clip=config["inner_grad_clip"])
                            learner.adapt(support, vae_loss_fn, max_steps, query=query, metric=recorder)
                        for k in steps_grid:
                            record(method, shots, k, "query_nll_nats", recorder.nll[k])
                            quality(method, shots, k, recorder.samples[k], task, index == 0)
                    elif method == "cavia":
                        adapted = adapt_and_sample(models["cavia"], support[0], query[0], steps_grid, z_gen,
                                                   config["sample_count"], config["iw_samples"])
                        for k in steps_grid:
                            record(method, shots, k, "query_nll_nats", adapted[k]["nll"])
                            quality(method, shots, k, adapted[k]["samples"], task, index == 0)
                    elif method == "cgan":  # a GAN: samples only
                        adapted = fewshot_samples(models["cgan"], support[0], steps_grid, z_gen,
                                                  config["sample_count"], CGANConfig.from_generation_config(config))
                        for k in steps_grid:
                            quality(method, shots, k, adapted[k], task, index == 0)
                    elif method == "statistician":
                        model = models["statistician"]
                        bound = condition_on(model, support[0])
                        record(method, shots, 0, "query_nll_nats", float(importance_weighted_nll(
                            bound, query[0], config["iw_samples"]).mean()))
                        quality(method, shots, 0, model.sample(bound.c, config["sample_count"], z_gen), task,
                                index == 0)
                    else:  # figr: alternate GAN steps on the support, samples after each k in the grid
                        pair = copy.deepcopy(models["figr"]).train()
                        z = torch.randn(config["sample_count"], config["gan_latent"], generator=z_gen).to(device)
                        done = 0
                        for k in steps_grid:
                            gan_train_steps(pair, support[0], k - done, config, z_gen)
                            done = k
                            with torch.no_grad():
                                quality(method, shots, k, pair.generator(z), task, index == 0)
            method_seconds[method] = time.perf_counter() - t_method
            if log:
                log(f"evaluated {method} in {method_seconds[method]:.1f} s")
    finally:
        fork.__exit__(None, None, None)
    rows = []
    for (method, shots, steps, metric), values in sorted(results.items(), key=lambda kv: (
            METHODS.index(kv[0][0]), kv[0][1], kv[0][2], METRICS.index(kv[0][3]))):
        mean, se = _mean_se(values)
        rows.append({"experiment": EXPERIMENT, "method": method, "kind": KINDS[method], "shots": shots,
                     "steps": steps, "metric": metric, "value": mean, "std_error": se, "tasks": len(values)})
    if "cgan" in methods:  # the CGAN's own classes: class-conditional samples of every background class
        info["cgan_background"] = background_quality(models["cgan"].cpu(), feature_net.cpu(), background,
                                                     seed=config["seed"])
    info.update({"eval_seconds": time.perf_counter() - start, "method_seconds": method_seconds,
                 "eval_classes": [t["class"] for t in task_list],
                 "per_task": {"|".join(map(str, key)): values for key, values in results.items()}})
    return {"rows": rows, "samples": samples, "info": info}


def _value(rows: list[dict], method: str, shots: int, steps: int, metric: str) -> float | None:
    for row in rows:
        if (row["method"], row["shots"], row["steps"], row["metric"]) == (method, shots, steps, metric):
            return row["value"]
    return None


def check_targets(result: dict, shots: int = 5, steps: int = 10) -> list[dict[str, Any]]:
    """Whether the issue's targets hold, each as ``{"target", "holds" (True/False/None = not measured),
    "detail"}``. "No worse than" is a paired test: the mean per-task difference is within 1.96 standard
    errors. Nothing is tuned here; whatever fails is reported as failing."""
    rows = result["rows"]
    per_task = result["info"]["per_task"]

    def paired(a: str, b: str, metric: str) -> tuple[float, float] | None:
        xa = per_task.get(f"{a}|{shots}|{steps}|{metric}")
        xb = per_task.get(f"{b}|{shots}|{steps}|{metric}")
        if not xa or not xb or len(xa) != len(xb):
            return None
        return _mean_se([x - y for x, y in zip(xa, xb, strict=True)])

    out = []
    for algo in ("maml", "fomaml", "reptile"):
        vs_scratch, vs_joint = paired(algo, "scratch", "query_nll_nats"), paired(algo, "joint", "query_nll_nats")
        holds = None
        if vs_scratch is not None and vs_joint is not None:
            holds = vs_scratch[0] < 0 and vs_joint[0] <= 1.96 * vs_joint[1]
        detail = ("not measured" if holds is None else
                  f"NLL({algo}) - NLL(scratch) = {vs_scratch[0]:+.2f} +- {vs_scratch[1]:.2f} nats, "
                  f"NLL({algo}) - NLL(joint+ft) = {vs_joint[0]:+.2f} +- {vs_joint[1]:.2f} nats")
        out.append({"target": f"{algo} VAE, {shots} shots, {steps} steps: query NLL < scratch and no worse than "
                              f"joint pretraining + fine-tuning", "holds": holds, "detail": detail})
    ns = [_value(rows, "statistician", k, 0, "query_nll_nats") for k in (1, 5, 10)]
    holds = None if None in ns else bool(ns[0] > ns[1] > ns[2])
    out.append({"target": "NS-lite query NLL decreases as shots go 1 -> 5 -> 10", "holds": holds,
                "detail": "not measured" if holds is None else " -> ".join(f"{v:.2f}" for v in ns) + " nats"})
    meta_methods = ("maml", "fomaml", "reptile", "figr", "cavia")
    candidates = [(m, _value(rows, m, shots, steps, "prototype_accuracy")) for m in meta_methods]
    candidates = [(m, v) for m, v in candidates if v is not None]
    scratch_fd = _value(rows, "scratch", shots, steps, "frechet_distance")
    if not candidates or scratch_fd is None:
        out.append({"target": "best meta-learned samples: prototype accuracy >= 60% and Frechet < scratch",
                    "holds": None, "detail": "not measured"})
    else:
        best, acc = max(candidates, key=lambda mv: mv[1])
        fd = _value(rows, best, shots, steps, "frechet_distance")
        out.append({"target": f"best meta-learned samples ({best}, {shots} shots, {steps} steps): 5-way prototype "
                              f"accuracy >= 60% and Frechet < scratch",
                    "holds": bool(acc >= 0.6 and fd < scratch_fd),
                    "detail": f"accuracy {acc:.1%}, Frechet {fd:.2f} vs scratch {scratch_fd:.2f}"})
    out.append(_inner_loop_target(rows, paired, shots, steps))
    background = result["info"].get("cgan_background")
    out.append({"target": "conditional GAN: samples of the background classes classified correctly >= 80% by the "
                          "feature network", "holds": None if background is None else background["accuracy"] >= 0.8,
                "detail": "not measured" if background is None else
                f"accuracy {background['accuracy']:.1%} over {background['classes']} classes (real held-out images: "
                f"{background['holdout_accuracy']:.1%}), novelty ratio {background['novelty_ratio']:.2f}"})
    return out


def _inner_loop_target(rows: list[dict], paired, shots: int, steps: int) -> dict[str, Any]:
    """Issue 17's target: some ``inner_loop`` method with prototype accuracy >= 60% and novelty ratio >= 0.8
    at the same ``(shots, steps)``, and query NLL no worse than joint + fine-tuning (paired, 1.96 s.e.)."""
    verdicts = []
    for method in (m for m in METHODS if KINDS[m] == "inner_loop"):
        acc = _value(rows, method, shots, steps, "prototype_accuracy")
        novelty = _value(rows, method, shots, steps, "novelty_ratio")
        vs_joint = paired(method, "joint", "query_nll_nats")
        if acc is None or novelty is None or vs_joint is None:
            continue
        holds = acc >= 0.6 and novelty >= 0.8 and vs_joint[0] <= 1.96 * vs_joint[1]
        verdicts.append((holds, acc, method, f"{method}: accuracy {acc:.1%}, novelty ratio {novelty:.2f}, "
                                             f"NLL - NLL(joint+ft) = {vs_joint[0]:+.2f} +- {vs_joint[1]:.2f} nats"))
    target = (f"an inner-loop method ({shots} shots, {steps} steps): prototype accuracy >= 60% with novelty ratio "
              f">= 0.8, query NLL no worse than joint pretraining + fine-tuning")
    if not verdicts:
        return {"target": target, "holds": None, "detail": "not measured"}
    verdicts.sort(key=lambda v: (v[0], v[1]), reverse=True)
    return {"target": target, "holds": bool(verdicts[0][0]), "detail": "; ".join(v[3] for v in verdicts)}


def format_table(rows: list[dict]) -> str:
    """One text table: method x K x k -> NLL (nats), prototype accuracy, Frechet distance (mean +- s.e.)."""
    cells: dict[tuple, dict[str, str]] = {}
    for row in rows:
        text = (f"{row['value']:.1%}" if row["metric"] == "prototype_accuracy" else f"{row['value']:.2f}")
        cells.setdefault((row["method"], row.get("kind", KINDS.get(row["method"], "")), row["shots"], row["steps"]),
                         {})[row["metric"]] = (
            f"{text} +- {row['std_error'] * (100 if row['metric'] == 'prototype_accuracy' else 1):.2f}")
    header = (f"{'method':<13}{'kind':<11}{'K':>3}{'k':>4}  {'query NLL (nats)':>20}  {'proto acc (%)':>16}  "
              f"{'Frechet':>16}  {'novelty':>12}")
    lines = [header, "-" * len(header)]
    for (method, kind, shots, steps), metrics in cells.items():
        lines.append(f"{method:<13}{kind:<11}{shots:>3}{steps:>4}  {metrics.get('query_nll_nats', '-'):>20}  "
                     f"{metrics.get('prototype_accuracy', '-'):>16}  {metrics.get('frechet_distance', '-'):>16}  "
                     f"{metrics.get('novelty_ratio', '-'):>12}")
    return "\n".join(lines)


def save_sample_grid(samples: dict, path: str | Path, columns: int = 8, shots: Sequence[int] | None = None,
                     steps: Sequence[int] | None = None) -> Path:
    """Save a PNG with one row of ``columns`` images per (method, K, k) entry of ``samples`` (only the given
    ``shots``/``steps`` if set; the real query and support rows are always kept), labelled."""
    # a pyplot-free Figure: saving a file must not switch the backend of the user's Jupyter session
    from matplotlib.figure import Figure

    if not samples:
        raise ValueError("samples is empty; run evaluate_generation(..., keep_samples=True)")
    keys = [key for key in samples if key[0] in ("real query", "support") or (
        (shots is None or key[1] in shots) and (steps is None or key[2] in steps))]
    keys = [k for k in keys if k[0] != "support" or shots is None or k[1] in shots]
    fig = Figure(figsize=(columns * 0.6 + 1.8, 0.7 * len(keys) + 0.3))
    axes = fig.subplots(len(keys), 1, squeeze=False)
    for ax, key in zip(axes[:, 0], keys, strict=True):
        images = samples[key][:columns, 0].cpu()
        if images.shape[0] < columns:  # pad short rows (a 1-shot support set) with blanks
            images = torch.cat([images, torch.zeros(columns - images.shape[0], *images.shape[1:])])
        strip = torch.cat(list(images), dim=1).numpy()
        ax.imshow(strip, cmap="gray_r", vmin=0, vmax=1)
        ax.set_yticks([])
        ax.set_xticks([])
        label = key[0] if key[0] == "real query" else (
            f"{key[0]}\nK={key[1]}" if key[0] == "support" else f"{key[0]}\nK={key[1]} k={key[2]}")
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


# ------------------------------------------------------------------------ the pretrained registry

PRETRAINED_DESCRIPTIONS = {
    "featnet": "glyph classifier trained on background classes; its features score generated samples",
    "maml": "MAML-learned initialisation of a conv VAE for few-shot glyph generation",
    "fomaml": "first-order-MAML-learned initialisation of the same conv VAE",
    "reptile": "Reptile-learned initialisation of the same conv VAE",
    "joint": "the same conv VAE jointly pretrained on background glyph tasks (baseline)",
    "statistician": "Neural-Statistician-lite: set-conditioned VAE, adapts by one forward pass",
    "figr": "FIGR: Reptile over a WGAN-GP generator and critic",
    "cavia": "CAVIA-style context VAE: a task context adapted by gradient steps, samples follow the support",
    "cgan": "conditional GAN (projection + auxiliary-classifier critic) of the background glyph classes",
}


def _build_from_file(name: str, profile: str) -> nn.Module:
    """The untrained architecture of checkpoint ``name``; the feature net's class count comes from the file."""
    config = generation_config(profile)
    if name not in ("featnet", "cgan"):
        return _make(name, config)
    state, _ = checkpoints.load(SHIPPED_DIR / f"generation_{name}_{profile}.safetensors")
    if name == "cgan":
        return _make(name, config, _classes_in(state, name))
    weight = state["classifier.weight"]
    return FeatureNet(weight.shape[0], feature_dim=weight.shape[1])


def _train_for_registry(name: str, profile: str) -> tuple[nn.Module, dict]:
    config = generation_config(profile)
    background, _ = load_sources(config)
    device = get_device()  # train where the kit runs: the GPU when there is one
    model, history = _train(name, config, background, progress=False, device=device)
    return model, {**_summary(history), "device": str(device)}


def pretrained_entries(entry_cls, profile: str = "fast") -> dict[str, Any]:
    """Entries ``generation_<name>`` for :data:`metalearn_kit.pretrained.REGISTRY` (``entry_cls`` is its
    ``PretrainedEntry``): the same files and training configs that :func:`get_trained` looks for, so
    ``metalearn-kit pretrain generation_maml`` and ``metalearn-kit bench generation --make-checkpoint maml``
    write the same checkpoint."""
    config = generation_config(profile)
    return {f"generation_{name}": entry_cls(
        file=f"generation_{name}_{profile}.safetensors",
        build=lambda _config, name=name: _build_from_file(name, profile),
        train=lambda _config, _seed, name=name: _train_for_registry(name, profile),
        config=_training_config(name, config), seed=config["seed"], description=PRETRAINED_DESCRIPTIONS[name])
        for name in CHECKPOINT_NAMES}
