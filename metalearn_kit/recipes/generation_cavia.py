"""Recipe: CAVIA-style context VAE for few-shot generation (the kit's ``cavia`` generation method).

Meta-training (:func:`train_context_vae`): each iteration draws ``meta_batch`` background classes, adapts
each task's context on ``train_shots`` support images for ``inner_steps`` gradient steps, and takes one
Adam step on the network, the context init and the per-dimension inner learning rates with the query
images' negative ELBO under the adapted contexts (second-order through the inner loop unless
``first_order``). Adaptation to a new class (:func:`adapt_and_sample`): the same inner loop on its ``K``
images, then samples ``G(z, c_k)``, ``z ~ p(z | c_k)``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from .._checks import check_float_fields, check_int_fields
from ..models.context_vae import ContextBound, ContextVAE, context_meta_loss
from ..models.generation import importance_weighted_nll

__all__ = ["CaviaConfig", "adapt_and_sample", "make_context_vae", "train_context_vae"]


@dataclass(frozen=True)
class CaviaConfig:
    """Everything that determines the ``cavia`` checkpoint (shared data keys come from the generation config).

    ``inner_lr`` is the initial per-dimension step size of the context (then meta-learned); the loss it
    steps on is in nats per image."""

    latent: int = 16
    context_dim: int = 32
    width: int = 24
    hidden: int = 96
    likelihood: str = "bernoulli"
    inner_lr: float = 0.1
    inner_steps: int = 5
    inner_grad_clip: float = 100.0
    first_order: bool = False
    iterations: int = 1500
    meta_batch: int = 4
    train_shots: int = 5
    train_queries: int = 5
    meta_lr: float = 1e-3
    meta_grad_clip: float = 500.0

    def __post_init__(self) -> None:
        check_int_fields(self, ("latent", "context_dim", "width", "hidden", "iterations", "meta_batch", "train_shots",
                                "train_queries", "inner_steps"), minimum=1)
        check_float_fields(self, ("inner_lr", "inner_grad_clip", "meta_lr", "meta_grad_clip"), minimum=0.0,
                           strict_min=True)

    @classmethod
    def from_generation_config(cls, config) -> CaviaConfig:
        """The context VAE of a generation experiment config: the same VAE sizes, tasks and outer loop as
        the meta-learned VAEs (``latent``, ``width``, ``hidden``, ``likelihood``, ``inner_steps``,
        ``meta_batch``, ``train_shots``, ``train_queries``, ``meta_lr``, ``meta_grad_clip``), and
        ``cavia_iterations``."""
        return cls(latent=config.latent, width=config.width, hidden=config.hidden, likelihood=config.likelihood,
                   inner_steps=max(1, config.inner_steps), meta_batch=config.meta_batch,
                   train_shots=config.train_shots, train_queries=config.train_queries, meta_lr=config.meta_lr,
                   meta_grad_clip=config.meta_grad_clip, iterations=config.cavia_iterations)

    def as_dict(self) -> dict:
        return asdict(self)


def make_context_vae(recipe: CaviaConfig, image_size: int = 28) -> ContextVAE:
    return ContextVAE(channels=1, image_size=image_size, latent=recipe.latent, context_dim=recipe.context_dim,
                      width=recipe.width, hidden=recipe.hidden, likelihood=recipe.likelihood,
                      inner_lr=recipe.inner_lr)


def train_context_vae(recipe: CaviaConfig, background, image_size: int = 28, seed: int = 0,
                      device: torch.device | str | None = None) -> tuple[ContextVAE, dict]:
    """Meta-train a :class:`ContextVAE` on ``background`` (a ``ClassImageSource``) for
    ``recipe.iterations`` iterations. Returns (model on the CPU, history with ``loss`` per iteration and
    ``wall_time_s``)."""
    from ..tasks.generation import FewShotGenerationTasks

    sampler = FewShotGenerationTasks(background, shots=recipe.train_shots, queries=recipe.train_queries)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # init and reparameterisation noise (randn_like) from a seeded stream
        model = make_context_vae(recipe, image_size).to(device or "cpu")
        optimizer = torch.optim.Adam(model.parameters(), lr=recipe.meta_lr)
        history: dict[str, list] = {"loss": [], "wall_time_s": []}
        start = time.perf_counter()
        for _ in range(recipe.iterations):
            batch = sampler.sample_batch(recipe.meta_batch, generator, device=device)
            loss = context_meta_loss(model, batch.support[0], batch.query[0], recipe.inner_steps,
                                     first_order=recipe.first_order)
            if not torch.isfinite(loss):
                raise ValueError(f"the CAVIA meta-loss became {float(loss)} at iteration {len(history['loss'])}; "
                                 f"lower inner_lr ({recipe.inner_lr}) or meta_lr ({recipe.meta_lr})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.meta_grad_clip)
            optimizer.step()
            history["loss"].append(float(loss.detach()))
            history["wall_time_s"].append(time.perf_counter() - start)
    return model.cpu(), history


def adapt_and_sample(model: ContextVAE, support: torch.Tensor, query: torch.Tensor, steps: list[int],
                     z_generator: torch.Generator, sample_count: int, iw_samples: int,
                     grad_clip: float = CaviaConfig.inner_grad_clip) -> dict[int, dict]:
    """Adapt the context on ``support [K, C, S, S]`` and, after each ``k`` in ``steps``, record the query
    NLL bound (nats per image, ``query [Q, C, S, S]``) and ``sample_count`` samples. Returns
    ``{k: {"nll": float, "samples": [N, C, S, S]}}``. The samples of every ``k`` share one noise draw."""
    contexts = model.adapt_context(support, max(steps), grad_clip=grad_clip)
    state = z_generator.get_state()
    out = {}
    for k in steps:
        c = contexts[k][0]
        nll = float(importance_weighted_nll(ContextBound(model, c), query, iw_samples).mean())
        z_generator.set_state(state)
        out[k] = {"nll": nll, "samples": model.sample(c, sample_count, z_generator)}
    return out

