"""A VAE whose task is a context vector adapted by gradient steps on the support set (CAVIA-style).

CAVIA (Zintgraf et al. 2019) splits a model's parameters in two: the network ``theta``, shared by every
task and meta-learned in the outer loop, and a small *context* ``c`` that is the only thing the inner loop
adapts. Here the network is a conditional VAE: prior ``p(z | c)``, encoder ``q(z | x, c)`` and decoder
``p(x | z, c)``. For a new class, ``c`` starts at the meta-learned ``c0`` and takes ``k`` gradient steps on
the support images' negative ELBO, with a meta-learned learning rate per context dimension (as Meta-SGD).

Why the samples follow the support set: ``c`` is shared by all images of a task and costs nothing in the
ELBO, while every bit put in an image's ``z`` costs KL; so the class's shape goes into ``c`` and the
per-image style into ``z``. Samples are ``G(z, c_k)`` with ``z ~ p(z | c_k)``: new styles of the adapted
class, not reconstructions of the support images (compare the source's ``f = G(D(x))``, which only
reconstructs).

Everything is batched over tasks: ``c [T, context_dim]``, images ``[T, N, C, H, W]``; the tasks' losses are
summed, so one gradient with respect to ``c`` holds every task's own inner-loop gradient.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._checks import check_images, check_int
from .blocks import Deconv, conv_trunk
from .generation import ContextConditionedVAE, VAEOutput, mean_image, negative_elbo

__all__ = ["ContextBound", "ContextVAE", "context_meta_loss"]


class ContextVAE(ContextConditionedVAE):
    """Conditional VAE on ``[N, channels, S, S]`` images in [0, 1], conditioned on a task context ``c``.

    Parameters adapted per task: none of the modules; only the context, which starts at ``context_init``
    (``[context_dim]``) and moves with step sizes ``exp(log_inner_lr)`` (``[context_dim]``), both
    meta-learned. ``forward(x [N, C, S, S], c [N, context_dim]) -> VAEOutput`` with the conditional prior.
    """

    def __init__(self, channels: int = 1, image_size: int = 28, latent: int = 16, context_dim: int = 32,
                 width: int = 32, hidden: int = 128, likelihood: str = "bernoulli", inner_lr: float = 0.1):
        super().__init__(channels, image_size, latent, context_dim, likelihood)
        if not isinstance(inner_lr, (int, float)) or not inner_lr > 0:
            raise ValueError(f"inner_lr must be a positive number, got {inner_lr!r}")
        flat = 2 * width * (image_size // 4) ** 2
        self.context_init = nn.Parameter(torch.zeros(context_dim))
        self.log_inner_lr = nn.Parameter(torch.full((context_dim,), math.log(inner_lr)))
        self.image_encoder = nn.Sequential(conv_trunk(channels, width, norm=False), nn.Flatten(),
                                           nn.Linear(flat, hidden), nn.ELU())
        self.posterior = nn.Sequential(nn.Linear(hidden + context_dim, hidden), nn.ELU(),
                                       nn.Linear(hidden, 2 * latent))
        self.prior = nn.Sequential(nn.Linear(context_dim, hidden), nn.ELU(), nn.Linear(hidden, 2 * latent))
        self.decoder = Deconv(latent + context_dim, channels, image_size, width, hidden)

    def task_loss(self, images: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Negative ELBO summed over images, mean nats per image per task: ``images [T, N, C, S, S]``,
        ``c [T, context_dim]`` -> ``[T]``."""
        tasks, count = images.shape[:2]
        flat = images.reshape(tasks * count, *images.shape[2:])
        out = self(flat, c.repeat_interleave(count, dim=0))
        return negative_elbo(out, flat, self.likelihood).view(tasks, count).mean(1)

    def adapt_context(self, support: torch.Tensor, steps: int, create_graph: bool = False,
                      grad_clip: float | None = 100.0) -> list[torch.Tensor]:
        """The inner loop: ``steps`` gradient steps on the context from ``context_init``, on ``support``
        ``[K, C, S, S]`` (one task) or ``[T, K, C, S, S]``. Returns the contexts after 0, 1, ..., ``steps``
        steps (each ``[T, context_dim]``, ``T = 1`` for one task). ``create_graph=True`` keeps the graph
        for the second-order outer gradient. ``grad_clip`` caps each task's gradient norm (a guard against
        a rare overshooting task; typical norms are far below)."""
        check_int("steps", steps, minimum=0)
        if support.dim() == 4:
            support = support.unsqueeze(0)
        if support.dim() != 5:
            raise ValueError(f"support must be [K, C, H, W] or [T, K, C, H, W], got {tuple(support.shape)}")
        check_images("support", support[0])
        c = self.context_init.expand(support.shape[0], -1)
        if not create_graph:
            c = c.detach().requires_grad_(True)
        contexts = [c]
        lr = self.log_inner_lr.exp() if create_graph else self.log_inner_lr.exp().detach()
        for _ in range(steps):
            with torch.enable_grad():
                if not c.requires_grad:
                    c = c.requires_grad_(True)
                loss = self.task_loss(support, c).sum()
                (grad,) = torch.autograd.grad(loss, c, create_graph=create_graph)
            if grad_clip is not None:
                norm = grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
                grad = grad * (grad_clip / norm).clamp(max=1.0)
            c = c - lr * grad
            if not create_graph:
                c = c.detach()
            contexts.append(c)
        return contexts

    @torch.no_grad()
    def sample(self, c: torch.Tensor, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``count`` images ``[count, C, S, S]`` of the class whose adapted context is ``c [context_dim]``
        (or ``[1, context_dim]``): ``z ~ p(z | c)``, the mean of ``p(x | z, c)``."""
        check_int("count", count, minimum=1)
        c = c.reshape(1, -1).expand(count, -1)
        prior_mu, prior_logvar = self._prior(c)
        noise = torch.randn(prior_mu.shape, generator=generator).to(prior_mu)
        z = prior_mu + noise * torch.exp(0.5 * prior_logvar)
        return mean_image(self.decoder(torch.cat([z, c], -1)), self.likelihood)


class ContextBound(nn.Module):
    """A :class:`ContextVAE` with its context fixed, callable as ``model(x) -> VAEOutput`` so
    :func:`~metalearn_kit.models.generation.importance_weighted_nll` applies unchanged."""

    def __init__(self, model: ContextVAE, c: torch.Tensor):
        super().__init__()
        self.model = model
        self.c = c.detach().reshape(-1)
        self.likelihood = model.likelihood

    def forward(self, images: torch.Tensor) -> VAEOutput:
        return self.model(images, self.c)


def context_meta_loss(model: ContextVAE, support: torch.Tensor, query: torch.Tensor, inner_steps: int,
                      first_order: bool = False) -> torch.Tensor:
    """CAVIA's outer loss: adapt the context on ``support [T, K, C, S, S]`` for ``inner_steps`` steps, then
    the mean negative ELBO (nats per image) of ``query [T, Q, C, S, S]`` under the adapted context.
    Second-order through the inner loop unless ``first_order``."""
    contexts = model.adapt_context(support, inner_steps, create_graph=not first_order)
    c = contexts[-1]
    if first_order:
        # first-order CAVIA: the query gradient reaches the init through c_k = c0 + (c_k - c0), detached
        c = model.context_init + (c - model.context_init).detach()
    return model.task_loss(query, c).mean()
