"""Generative backbones for few-shot image generation and their losses.

Every model here maps images ``[N, C, H, W]`` in [0, 1] (ink = 1) to what its loss needs, with no
BatchNorm (BatchNorm mixes examples and tasks, which breaks per-task adaptation and ``vmap``):

- :class:`ConvVAE`: a convolutional VAE, ``f(x) = G(D(x))`` with encoder ``D`` and decoder ``G``.
  ``forward(x)`` draws its reparameterisation noise with ``torch.randn_like`` so it works under
  ``torch.func.vmap(..., randomness="different")``, and returns a :class:`VAEOutput`.
- :class:`Generator` / :class:`Critic`: DCGAN-style, LayerNorm (``GroupNorm(1, C)``) in the critic, as FIGR.
- :class:`ConditionalGenerator` / :class:`ConditionalCritic`: the class-conditional variant.
- :class:`NeuralStatisticianLite`: a set encoder pools the support images into a context ``c`` that
  conditions prior, encoder and decoder; adapting to a new class is one forward pass (no inner loop).

Losses: :func:`negative_elbo`, :func:`importance_weighted_nll`, :func:`vae_loss_fn` (the engine's
``loss_fn(model, batch)``), :func:`gradient_penalty`, :func:`wgan_gp_critic_loss`,
:func:`wgan_generator_loss`, :func:`statistician_loss`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_choice, check_images, check_int, check_model_input
from .blocks import Deconv, check_image_size, conv_trunk

__all__ = ["ContextConditionedVAE", "ConvVAE", "LIKELIHOODS", "LOG_2PI", "NeuralStatisticianLite", "VAEOutput",
           "condition_on", "importance_weighted_nll", "mean_image", "negative_elbo", "reconstruction_log_likelihood",
           "statistician_loss", "vae_loss_fn"]

LIKELIHOODS = ("bernoulli", "continuous_bernoulli")
LOG_2PI = math.log(2 * math.pi)


class VAEOutput(NamedTuple):
    """What :func:`negative_elbo` needs. Shapes: ``logits [N, C, H, W]``, ``mu/logvar/z [N, latent]``;
    ``prior_mu/prior_logvar`` are ``None`` for the standard normal prior."""

    logits: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor
    prior_mu: torch.Tensor | None = None
    prior_logvar: torch.Tensor | None = None


class ConvVAE(nn.Module):
    """Convolutional VAE on ``[N, channels, image_size, image_size]`` images in [0, 1].

    ``encode(x) -> (mu, logvar)``, ``decode(z) -> logits``, ``forward(x) -> VAEOutput`` with one
    reparameterised sample per image (noise from ``torch.randn_like``: vmap-safe). ``likelihood`` is
    ``"bernoulli"`` (pixels as coin flips; the standard choice for binarised glyphs) or
    ``"continuous_bernoulli"`` (a proper density on [0, 1] for grey values).
    """

    def __init__(self, channels: int = 1, image_size: int = 28, latent: int = 16, width: int = 32,
                 hidden: int = 128, likelihood: str = "bernoulli"):
        super().__init__()
        self.channels = check_int("channels", channels, minimum=1)
        self.image_size = check_image_size(image_size)
        self.latent = check_int("latent", latent, minimum=1)
        check_int("width", width, minimum=1)
        check_int("hidden", hidden, minimum=1)
        self.likelihood = check_choice("likelihood", likelihood, LIKELIHOODS)
        flat = 2 * width * (image_size // 4) ** 2
        self.encoder = nn.Sequential(conv_trunk(channels, width, norm=False), nn.Flatten(),
                                     nn.Linear(flat, hidden), nn.ELU(), nn.Linear(hidden, 2 * latent))
        self.decoder = Deconv(latent, channels, image_size, width, hidden)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_model_input("images", images, self.channels, self.image_size, model=self)
        mu, logvar = self.encoder(images).chunk(2, dim=-1)
        return mu, logvar.clamp(-8.0, 8.0)  # bounded variance keeps a few-step adaptation from diverging

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, images: torch.Tensor) -> VAEOutput:
        mu, logvar = self.encode(images)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return VAEOutput(self.decode(z), mu, logvar, z)

    @torch.no_grad()
    def sample(self, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``count`` images ``[count, C, H, W]``: mean of ``p(x | z)`` for ``z ~ N(0, I)``."""
        check_int("count", count, minimum=1)
        device = next(self.parameters()).device
        z = torch.randn(count, self.latent, generator=generator).to(device)
        return mean_image(self.decode(z), self.likelihood)


def mean_image(logits: torch.Tensor, likelihood: str = "bernoulli") -> torch.Tensor:
    """The mean of the pixel distribution with these logits (what a sample grid shows)."""
    if likelihood == "bernoulli":
        return torch.sigmoid(logits)
    # continuous Bernoulli mean: lam/(2 lam - 1) + 1/(2 artanh(1 - 2 lam)), -> 1/2 at lam = 1/2
    lam = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    near_half = (lam - 0.5).abs() < 1e-3
    safe = torch.where(near_half, torch.full_like(lam, 0.4), lam)
    mean = safe / (2 * safe - 1) + 1 / (2 * torch.atanh(1 - 2 * safe))
    return torch.where(near_half, torch.full_like(lam, 0.5), mean).clamp(0, 1)


def _cb_log_norm(logits: torch.Tensor) -> torch.Tensor:
    """log C(lam) of the continuous Bernoulli, C = 2 artanh(1 - 2 lam) / (1 - 2 lam), -> log 2 at 1/2."""
    lam = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    near_half = (lam - 0.5).abs() < 1e-2
    safe = torch.where(near_half, torch.full_like(lam, 0.4), lam)
    exact = torch.log(2 * torch.atanh(1 - 2 * safe).abs()) - torch.log((1 - 2 * safe).abs())
    x = lam - 0.5  # Taylor expansion around 1/2: log 2 + 4/3 x^2 + 104/45 x^4
    taylor = math.log(2.0) + 4.0 / 3.0 * x**2 + 104.0 / 45.0 * x**4
    return torch.where(near_half, taylor, exact)


def reconstruction_log_likelihood(logits: torch.Tensor, images: torch.Tensor,
                                  likelihood: str = "bernoulli") -> torch.Tensor:
    """``log p(x | z)`` in nats, summed over pixels: ``[N, C, H, W] -> [N]``."""
    log_p = -F.binary_cross_entropy_with_logits(logits, images, reduction="none")
    if likelihood == "continuous_bernoulli":
        log_p = log_p + _cb_log_norm(logits)
    return log_p.flatten(1).sum(1)


def _gaussian_log_density(z: torch.Tensor, mu: torch.Tensor | None,
                          logvar: torch.Tensor | None) -> torch.Tensor:
    if mu is None:
        return -0.5 * (z.pow(2) + LOG_2PI).sum(-1)
    return -0.5 * ((z - mu).pow(2) * torch.exp(-logvar) + logvar + LOG_2PI).sum(-1)


def _kl_to_prior(out: VAEOutput) -> torch.Tensor:
    """Closed-form ``KL(q(z|x) || p(z))`` per image ``[N]`` for diagonal Gaussians."""
    if out.prior_mu is None:
        return 0.5 * (out.mu.pow(2) + out.logvar.exp() - 1 - out.logvar).sum(-1)
    var_ratio = torch.exp(out.logvar - out.prior_logvar)
    mean_term = (out.mu - out.prior_mu).pow(2) * torch.exp(-out.prior_logvar)
    return 0.5 * (var_ratio + mean_term - 1 - out.logvar + out.prior_logvar).sum(-1)


def negative_elbo(out: VAEOutput, images: torch.Tensor, likelihood: str = "bernoulli",
                  beta: float = 1.0) -> torch.Tensor:
    """Per-image negative ELBO in nats ``[N]``: ``-E_q[log p(x|z)] + beta * KL(q(z|x) || p(z))``
    (one sample for the expectation, closed-form KL). ``beta = 1`` is the bound on ``-log p(x)``."""
    return -reconstruction_log_likelihood(out.logits, images, likelihood) + beta * _kl_to_prior(out)


def vae_loss_fn(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The engine's ``loss_fn(model, batch)`` for :class:`ConvVAE`: mean negative ELBO (nats per image)
    of ``batch[0]`` (images ``[K, C, H, W]``; labels, if present, are ignored). Only calls ``model(x)``."""
    images = batch[0]
    likelihood = getattr(model, "likelihood", "bernoulli")
    return negative_elbo(model(images), images, likelihood).mean()


def importance_weighted_nll(model, images: torch.Tensor, samples: int = 16,
                            likelihood: str | None = None, chunk: int = 256) -> torch.Tensor:
    """Per-image importance-weighted upper bound on ``-log p(x)`` in nats ``[N]`` (Burda et al. IWAE):
    ``-log (1/S) sum_s p(x, z_s) / q(z_s | x)``, ``z_s ~ q(z | x)``. ``samples = 1`` is the negative ELBO
    with a Monte-Carlo KL; larger ``samples`` tightens the bound. Uses only ``model(x)`` (each call draws
    fresh noise), so it works on adapted functional models; the images are repeated ``samples`` times.
    ``likelihood`` defaults to ``model.likelihood``.
    """
    check_images("images", images)
    check_int("samples", samples, minimum=1)
    likelihood = likelihood or getattr(model, "likelihood", "bernoulli")
    check_choice("likelihood", likelihood, LIKELIHOODS)
    count = images.shape[0]
    log_weights = []
    with torch.no_grad():
        repeated = images.repeat(samples, 1, 1, 1)  # [S*N, ...], sample s of image n at s*N + n
        for start in range(0, repeated.shape[0], chunk):
            part = repeated[start:start + chunk]
            out = model(part)
            log_px = reconstruction_log_likelihood(out.logits, part, likelihood)
            log_pz = _gaussian_log_density(out.z, out.prior_mu, out.prior_logvar)
            log_qz = _gaussian_log_density(out.z, out.mu, out.logvar)
            log_weights.append(log_px + log_pz - log_qz)
    log_w = torch.cat(log_weights).view(samples, count)
    return -(torch.logsumexp(log_w, dim=0) - math.log(samples))


# ----------------------------------------------------------------------- Neural Statistician (lite)


class ContextConditionedVAE(nn.Module):
    """The forward pass shared by the VAEs whose prior ``p(z | c)``, encoder ``q(z | x, c)`` and decoder
    ``p(x | z, c)`` are conditioned on a class context ``c``; subclasses build ``prior``, ``image_encoder``,
    ``posterior`` and ``decoder`` (and say where ``c`` comes from: a set encoder, or an inner loop)."""

    def __init__(self, channels: int, image_size: int, latent: int, context_dim: int, likelihood: str) -> None:
        super().__init__()
        self.channels = check_int("channels", channels, minimum=1)
        self.image_size = check_image_size(image_size)
        self.latent = check_int("latent", latent, minimum=1)
        self.context_dim = check_int("context_dim", context_dim, minimum=1)
        self.likelihood = check_choice("likelihood", likelihood, LIKELIHOODS)

    def _prior(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.prior(c).chunk(2, dim=-1)
        return mu, logvar.clamp(-8.0, 8.0)

    def forward(self, images: torch.Tensor, c: torch.Tensor) -> VAEOutput:
        """``images [N, C, H, W]``, ``c [context_dim]`` shared by all ``N`` (or ``[N, context_dim]``)."""
        c = c.expand(images.shape[0], -1) if c.dim() == 1 else c
        mu, logvar = self.posterior(torch.cat([self.image_encoder(images), c], -1)).chunk(2, dim=-1)
        logvar = logvar.clamp(-8.0, 8.0)  # bounded variance keeps inner steps and sampling from diverging
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        prior_mu, prior_logvar = self._prior(c)
        return VAEOutput(self.decoder(torch.cat([z, c], -1)), mu, logvar, z, prior_mu, prior_logvar)


class NeuralStatisticianLite(ContextConditionedVAE):
    """A Neural-Statistician-lite: context ``c = MLP(mean_k h(x_k))`` from a support set, then a VAE with
    conditional prior ``p(z | c)``, encoder ``q(z | x, c)`` and decoder ``p(x | z, c)``.

    ``context(support [K, C, H, W]) -> c [context_dim]`` (deterministic; mean pooling makes it
    permutation invariant and valid for any ``K >= 1``); ``forward(x, c) -> VAEOutput`` with the conditional
    prior filled in; ``sample(c, count)`` generates new images of the support's class. No inner loop.
    """

    def __init__(self, channels: int = 1, image_size: int = 28, latent: int = 16, context_dim: int = 32,
                 width: int = 32, hidden: int = 128, likelihood: str = "bernoulli"):
        super().__init__(channels, image_size, latent, context_dim, likelihood)
        flat = 2 * width * (image_size // 4) ** 2
        self.set_encoder = nn.Sequential(conv_trunk(channels, width, norm=False), nn.Flatten(),
                                         nn.Linear(flat, hidden), nn.ELU())
        self.context_head = nn.Sequential(nn.Linear(hidden, hidden), nn.ELU(), nn.Linear(hidden, context_dim))
        self.prior = nn.Sequential(nn.Linear(context_dim, hidden), nn.ELU(), nn.Linear(hidden, 2 * latent))
        self.image_encoder = nn.Sequential(conv_trunk(channels, width, norm=False), nn.Flatten(),
                                           nn.Linear(flat, hidden), nn.ELU())
        self.posterior = nn.Sequential(nn.Linear(hidden + context_dim, hidden), nn.ELU(),
                                       nn.Linear(hidden, 2 * latent))
        self.decoder = Deconv(latent + context_dim, channels, image_size, width, hidden)

    def context(self, support: torch.Tensor) -> torch.Tensor:
        """``support [K, C, H, W]`` (or ``[T, K, C, H, W]``) -> ``[context_dim]`` (``[T, context_dim]``)."""
        if support.dim() == 5:
            return torch.stack([self.context(s) for s in support])
        check_images("support", support)
        return self.context_head(self.set_encoder(support).mean(0))

    @torch.no_grad()
    def sample(self, c: torch.Tensor, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``count`` images ``[count, C, H, W]`` of the class summarised by context ``c [context_dim]``."""
        check_int("count", count, minimum=1)
        prior_mu, prior_logvar = self._prior(c.expand(count, -1))
        noise = torch.randn(prior_mu.shape, generator=generator).to(prior_mu)
        z = prior_mu + noise * torch.exp(0.5 * prior_logvar)
        return mean_image(self.decoder(torch.cat([z, c.expand(count, -1)], -1)), self.likelihood)


def statistician_loss(model: NeuralStatisticianLite, support: torch.Tensor,
                      query: torch.Tensor) -> torch.Tensor:
    """Mean negative conditional ELBO (nats per query image) of ``query`` given the context of ``support``.
    Shapes ``[K, C, H, W]`` and ``[Q, C, H, W]``, or stacked over tasks ``[T, K, ...]``/``[T, Q, ...]``."""
    if support.dim() == 5:
        losses = [statistician_loss(model, s, q) for s, q in zip(support, query, strict=True)]
        return torch.stack(losses).mean()
    c = model.context(support)
    return negative_elbo(model(query, c), query, model.likelihood).mean()


class _ContextBound(nn.Module):
    """A :class:`NeuralStatisticianLite` with its context fixed, callable as ``model(x) -> VAEOutput`` so
    :func:`importance_weighted_nll` and :func:`vae_loss_fn` apply unchanged."""

    def __init__(self, model: NeuralStatisticianLite, c: torch.Tensor):
        super().__init__()
        self.model = model
        self.c = c
        self.likelihood = model.likelihood

    def forward(self, images: torch.Tensor) -> VAEOutput:
        return self.model(images, self.c)


def condition_on(model: NeuralStatisticianLite, support: torch.Tensor) -> nn.Module:
    """``model`` conditioned on ``support [K, C, H, W]``: a module ``x -> VAEOutput``."""
    with torch.no_grad():
        c = model.context(support)
    return _ContextBound(model, c)
