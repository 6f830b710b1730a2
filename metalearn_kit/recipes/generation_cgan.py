"""Recipe: the conditional GAN on the background classes, and its few-shot extension to new classes.

:func:`train_cgan` trains :class:`~metalearn_kit.models.conditional_gan.CGAN` on the first
``train_images_per_class`` images of every background class (the rest are held out, the same split as the
feature network's), then meta-learns the new-class embedding init by Reptile over background classes.
:func:`~metalearn_kit.evaluation.generation.background_quality` measures it on its own classes.
:func:`fewshot_samples` is the few-shot version: a new class's embedding inverted from
``K`` images, then fresh samples.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch

from .._checks import check_choice, check_float, check_float_fields, check_int, check_int_fields

__all__ = ["CGANConfig", "LOSSES", "fewshot_samples", "make_cgan", "pca_class_codes", "train_cgan"]
from ..models.conditional_gan import (
    CGAN,
    cgan_critic_loss,
    cgan_generator_loss,
    fit_class_embedding,
    meta_learn_embedding_init,
    sample_with_embedding,
)

LOSSES = ("wgan_gp", "ns_r1")


@dataclass(frozen=True)
class CGANConfig:
    """What determines the ``cgan`` checkpoint. ``loss``: ``"wgan_gp"`` (Wasserstein critic, gradient
    penalty ``gp_weight``) or ``"ns_r1"`` (non-saturating GAN, R1 penalty ``gp_weight`` on real images);
    ``ac_weight``: the auxiliary-classifier cross-entropy; ``pca_embeddings``: start the class embeddings at
    the principal components of the class-mean images (so similar letters start with similar codes; with
    599 classes of 18 images a randomly initialised CGAN learns the class-conditioning far more slowly);
    ``embed_*``: the new-class inversion."""

    latent: int = 32
    embedding: int = 32
    width: int = 24
    # hidden 256 and ac_weight 3, not the generation config's hidden 96 and an equal-weight classifier: together
    # they lift the share of background samples the feature net classifies as the class asked for above the 80%
    # target (83.5% with the fast profile's 16000 iterations); each alone stays below it. The screen and its
    # figures: docs/benchmarks/README.md ("CGAN background accuracy: attempts")
    hidden: int = 256
    loss: str = "wgan_gp"
    iterations: int = 4000
    batch: int = 64
    critic_steps: int = 1
    lr: float = 5e-4
    betas: tuple[float, float] = (0.5, 0.9)
    pca_embeddings: bool = True
    gp_weight: float = 10.0
    ac_weight: float = 3.0
    holdout_per_class: int = 2
    embed_steps: int = 100
    embed_lr: float = 0.05
    embed_code_weight: float = 0.1
    reptile_classes: int = 40
    reptile_epsilon: float = 0.1
    # 0.999: at an equal number of iterations it classified more background samples correctly than the last
    # iterate or a slower 0.9995 average (docs/benchmarks/README.md)
    ema_decay: float = 0.999
    """Exponential moving average of the generator weights (``0``: off, the last iterate is shipped): after
    each generator step ``ema <- decay * ema + (1 - decay) * weights``; the average is what is shipped and
    sampled. It smooths the iterate's oscillation around the critic's moving target (no extra training)."""

    def __post_init__(self) -> None:
        check_choice("loss", self.loss, LOSSES)
        check_int_fields(self, ("latent", "embedding", "width", "hidden", "iterations", "batch", "critic_steps",
                                "embed_steps", "reptile_classes"), minimum=1)
        check_float_fields(self, ("lr", "embed_lr"), minimum=0.0, strict_min=True)
        check_int("holdout_per_class", self.holdout_per_class, minimum=1)
        check_float_fields(self, ("gp_weight", "ac_weight", "embed_code_weight"), minimum=0.0)
        check_float("reptile_epsilon", self.reptile_epsilon, minimum=0.0, maximum=1.0)
        check_float("ema_decay", self.ema_decay, minimum=0.0, maximum=1.0)
        if self.ema_decay == 1.0:
            raise ValueError("ema_decay must be < 1 (1 would never move the average); use e.g. 0.999, or 0 for off")

    @classmethod
    def from_generation_config(cls, config) -> CGANConfig:
        """The CGAN of a generation experiment config: its GAN sizes (``gan_latent``, ``width``),
        ``gp_weight`` and ``cgan_iterations``; ``hidden``, ``ac_weight``, the optimiser and ``ema_decay`` are the
        CGAN's own (chosen on background classes)."""
        return cls(latent=config.gan_latent, width=config.width, gp_weight=config.gp_weight,
                   iterations=config.cgan_iterations)

    def as_dict(self) -> dict:
        return {**asdict(self), "betas": list(self.betas)}


def make_cgan(recipe: CGANConfig, num_classes: int, image_size: int = 28, with_critic: bool = True) -> CGAN:
    """The CGAN of ``recipe``; ``with_critic=False`` is the shipped form (generator + embedding init)."""
    return CGAN(num_classes, latent=recipe.latent, embedding=recipe.embedding, image_size=image_size,
                width=recipe.width, hidden=recipe.hidden, with_critic=with_critic)


def _split(background, holdout: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The training images (all but the last ``holdout`` of each class, the feature network's split)."""
    per_class = background.images_per_class - holdout
    if per_class < 1:
        raise ValueError(f"holdout_per_class must be < images_per_class ({background.images_per_class}), "
                         f"got {holdout}")
    images = torch.cat([background.images_of(c)[:per_class] for c in range(background.num_classes)])
    return images, torch.arange(background.num_classes).repeat_interleave(per_class)


def pca_class_codes(images: torch.Tensor, labels: torch.Tensor, num_classes: int, dim: int) -> torch.Tensor:
    """``[num_classes, dim]`` codes: the class-mean images (``images [N, C, S, S]``, ``labels [N]``)
    projected on their first ``dim`` principal components, each component scaled to unit variance
    (zero-padded when there are fewer components than ``dim``)."""
    means = torch.zeros(num_classes, images[0].numel()).index_add_(0, labels, images.flatten(1))
    means = means / torch.bincount(labels, minlength=num_classes).clamp_min(1)[:, None]
    means = means - means.mean(0)
    _, _, vh = torch.linalg.svd(means, full_matrices=False)
    codes = means @ vh[:dim].T
    codes = codes / codes.std(0).clamp_min(1e-6)
    return torch.cat([codes, torch.zeros(num_classes, dim - codes.shape[1])], 1) if codes.shape[1] < dim else codes


@contextlib.contextmanager
def _frozen(module: torch.nn.Module) -> Iterator[None]:
    """Inside the block ``module``'s weights get no gradient (only embeddings and codes move); each weight's
    ``requires_grad`` is restored afterwards."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


def _initial_cgan(recipe: CGANConfig, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                  image_size: int, seed: int) -> CGAN:
    """The untrained CGAN, initialised from ``seed`` without moving the caller's RNG; its class embeddings start
    at the PCA codes of the class means when ``recipe.pca_embeddings``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make_cgan(recipe, num_classes, image_size)
        if recipe.pca_embeddings:
            with torch.no_grad():
                model.generator.embed.weight.copy_(pca_class_codes(images, labels, num_classes, recipe.embedding))
    return model


def _gan_step(model: CGAN, optimizers: tuple[torch.optim.Optimizer, torch.optim.Optimizer], images: torch.Tensor,
              labels: torch.Tensor, num_classes: int, recipe: CGANConfig, gen: torch.Generator
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """``recipe.critic_steps`` critic updates on random batches of ``images [N, C, S, S]`` (``labels [N]``), then
    one generator update on random classes. Returns the last (critic loss, generator loss)."""
    opt_c, opt_g = optimizers
    device = images.device
    for _ in range(recipe.critic_steps):
        index = torch.randint(0, images.shape[0], (recipe.batch,), generator=gen).to(device)
        z = torch.randn(recipe.batch, recipe.latent, generator=gen).to(device)
        with torch.no_grad():
            fake = model.generator(z, labels[index])
        loss_c = cgan_critic_loss(model.critic, images[index], fake, labels[index], recipe.gp_weight,
                                  recipe.ac_weight, gen, penalty=recipe.loss)
        opt_c.zero_grad(set_to_none=True)
        loss_c.backward()
        opt_c.step()
    fake_labels = torch.randint(0, num_classes, (recipe.batch,), generator=gen).to(device)
    z = torch.randn(recipe.batch, recipe.latent, generator=gen).to(device)
    loss_g = cgan_generator_loss(model.critic, model.generator(z, fake_labels), fake_labels, recipe.ac_weight,
                                 loss=recipe.loss)
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    return loss_c, loss_g


def _embedding_init(model: CGAN, background, recipe: CGANConfig, gen: torch.Generator, seed: int) -> None:
    """Meta-learn ``model.embedding_init`` by Reptile over ``recipe.reptile_classes`` random background classes,
    the generator frozen."""
    classes = torch.randperm(background.num_classes, generator=gen)[:recipe.reptile_classes].tolist()
    shots = min(5, background.images_per_class)
    with torch.random.fork_rng(devices=[]), _frozen(model.generator):
        model.embedding_init.copy_(meta_learn_embedding_init(
            model.generator, background.images_of, classes, shots=shots, steps=recipe.embed_steps, lr=recipe.embed_lr,
            epsilon=recipe.reptile_epsilon, seed=seed))


def train_cgan(recipe: CGANConfig, background, image_size: int = 28, seed: int = 0,
               device: torch.device | str | None = None,
               callback: Callable[[int, CGAN], None] | None = None) -> tuple[CGAN, dict]:
    """Train the CGAN on every background class, then meta-learn ``embedding_init``. Returns (the model on
    the CPU without its critic, history with ``critic_loss``/``generator_loss`` per iteration and
    ``wall_time_s``). With ``recipe.ema_decay > 0`` the returned generator is the weights' moving average.
    ``callback(iteration, model)``, if given, runs after each generator step (1-based ``iteration``; the
    model in training, its ``generator`` the last iterate): screens use it to score the run as it goes."""
    device = torch.device(device or "cpu")
    images, labels = _split(background, recipe.holdout_per_class)
    gen = torch.Generator().manual_seed(seed)
    model = _initial_cgan(recipe, images, labels, background.num_classes, image_size, seed).to(device)
    ema = copy.deepcopy(model.generator).requires_grad_(False) if recipe.ema_decay > 0 else None
    optimizers = (torch.optim.Adam(model.critic.parameters(), lr=recipe.lr, betas=recipe.betas),
                  torch.optim.Adam(model.generator.parameters(), lr=recipe.lr, betas=recipe.betas))
    images, labels = images.to(device), labels.to(device)
    history: dict[str, list] = {"critic_loss": [], "generator_loss": [], "wall_time_s": []}
    start = time.perf_counter()
    for iteration in range(1, recipe.iterations + 1):
        loss_c, loss_g = _gan_step(model, optimizers, images, labels, background.num_classes, recipe, gen)
        if ema is not None:
            with torch.no_grad():
                for average, weight in zip(ema.parameters(), model.generator.parameters()):
                    average.lerp_(weight, 1.0 - recipe.ema_decay)
        if callback is not None:
            callback(iteration, model)
        history["critic_loss"].append(float(loss_c.detach()))
        history["generator_loss"].append(float(loss_g.detach()))
        history["wall_time_s"].append(time.perf_counter() - start)
    if ema is not None:
        model.generator.load_state_dict(ema.state_dict())
    model = model.cpu().eval()
    _embedding_init(model, background, recipe, gen, seed)
    history["embedding_init_seconds"] = time.perf_counter() - start - history["wall_time_s"][-1]
    return model.without_critic(), history


def fewshot_samples(model: CGAN, support: torch.Tensor, steps: list[int], z_generator: torch.Generator,
                    sample_count: int, recipe: CGANConfig) -> dict[int, torch.Tensor]:
    """A new class from ``support [K, C, S, S]``: the embedding inverted for ``k`` Adam steps from the
    meta-learned init, for each ``k`` in ``steps``; ``{k: samples [sample_count, C, S, S]}`` (one noise
    draw shared by every ``k``)."""
    generator = model.generator
    with _frozen(generator):
        embeddings, _ = fit_class_embedding(generator, support, model.embedding_init, max(steps), recipe.embed_lr,
                                            recipe.embed_code_weight)
    state = z_generator.get_state()
    out = {}
    for k in steps:
        z_generator.set_state(state)
        out[k] = sample_with_embedding(generator, embeddings[k], sample_count, z_generator)
    return out
