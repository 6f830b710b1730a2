"""WGAN-GP generators and critics (unconditional, and conditioned on a class label) with their losses: the
generator FIGR meta-learns with Reptile over generator *and* critic."""

from __future__ import annotations

import torch
from torch import nn

from .._checks import check_float, check_int, check_model_input
from .blocks import Deconv, check_image_size, conv_trunk

__all__ = ["ConditionalCritic", "ConditionalGenerator", "Critic", "Generator", "gradient_penalty",
           "wgan_generator_loss", "wgan_gp_critic_loss"]



class Generator(nn.Module):
    """DCGAN-style generator ``z [N, latent] -> images [N, C, S, S]`` in [0, 1] (sigmoid output).
    No normalisation layers: FIGR's Reptile averages weights across tasks, and BatchNorm statistics
    would leak between the examples of one task."""

    def __init__(self, latent: int = 32, channels: int = 1, image_size: int = 28, width: int = 32,
                 hidden: int = 128):
        super().__init__()
        self.latent = check_int("latent", latent, minimum=1)
        self.channels = check_int("channels", channels, minimum=1)
        self.image_size = check_image_size(image_size)
        self.net = Deconv(latent, channels, image_size, width, hidden)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != self.latent:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"z must have shape [N, {self.latent}] (latent={self.latent}), got {shape}")
        return torch.sigmoid(self.net(z))

    def sample(self, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``count`` images from ``z ~ N(0, I)`` (with gradients; wrap in ``no_grad`` to display)."""
        check_int("count", count, minimum=1)
        device = next(self.parameters()).device
        return self(torch.randn(count, self.latent, generator=generator).to(device))


class Critic(nn.Module):
    """WGAN critic ``images [N, C, S, S] -> scores [N]`` (unbounded reals, not probabilities), with
    LayerNorm (``GroupNorm(1, C)``): BatchNorm would make the gradient penalty wrong, since it couples
    the per-example gradients the penalty constrains."""

    def __init__(self, channels: int = 1, image_size: int = 28, width: int = 32):
        super().__init__()
        self.channels = check_int("channels", channels, minimum=1)
        self.image_size = check_image_size(image_size)
        self.trunk = conv_trunk(channels, width, norm=True)
        self.head = nn.Linear(2 * width * (image_size // 4) ** 2, 1)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        check_model_input("images", images, self.channels, self.image_size)
        return self.trunk(images).flatten(1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images)).squeeze(-1)


class ConditionalGenerator(nn.Module):
    """Class-conditional generator: ``(z [N, latent], labels [N]) -> images``; a learned class embedding
    is concatenated to ``z``. A new class gets a new embedding row (see :meth:`add_classes`)."""

    def __init__(self, num_classes: int, latent: int = 32, embedding: int = 16, channels: int = 1,
                 image_size: int = 28, width: int = 32, hidden: int = 128):
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, minimum=1)
        self.latent = check_int("latent", latent, minimum=1)
        self.embed = nn.Embedding(num_classes, check_int("embedding", embedding, minimum=1))
        self.net = Deconv(latent + embedding, check_int("channels", channels, minimum=1),
                           check_image_size(image_size), width, hidden)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_labels(labels, self.embed.num_embeddings, z.shape[0])
        return torch.sigmoid(self.net(torch.cat([z, self.embed(labels)], dim=-1)))


class ConditionalCritic(nn.Module):
    """Class-conditional critic with a projection head (Miyato & Koyama 2018):
    ``score = w . h(x) + e(y) . h(x)``; LayerNorm, no BatchNorm."""

    def __init__(self, num_classes: int, channels: int = 1, image_size: int = 28, width: int = 32):
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, minimum=1)
        self.trunk = conv_trunk(check_int("channels", channels, minimum=1), width, norm=True)
        flat = 2 * width * (check_image_size(image_size) // 4) ** 2
        self.head = nn.Linear(flat, 1)
        self.embed = nn.Embedding(num_classes, flat)
        nn.init.normal_(self.embed.weight, std=0.01)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _check_labels(labels, self.embed.num_embeddings, images.shape[0])
        h = self.trunk(images).flatten(1)
        return self.head(h).squeeze(-1) + (self.embed(labels) * h).sum(-1)


def _check_labels(labels, num_classes: int, count: int) -> None:
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.dim() != 1:
        got = f"{getattr(labels, 'dtype', type(labels).__name__)} {tuple(getattr(labels, 'shape', ()))}"
        raise TypeError(f"labels must be an int64 tensor [N], got {got}; use dtype=torch.long")
    if labels.shape[0] != count:
        raise ValueError(f"labels must have one entry per image ({count}), got {labels.shape[0]}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes - 1}], got range "
                         f"[{labels.min().item()}, {labels.max().item()}]")


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator | None = None,
                     *critic_args) -> torch.Tensor:
    """WGAN-GP gradient penalty (Gulrajani et al. 2017): ``E_xhat[(||grad_xhat D(xhat)||_2 - 1)^2]`` with
    ``xhat = eps * real + (1 - eps) * fake``, ``eps ~ U[0, 1]`` drawn once per example.

    The norm is taken per example over all of (C, H, W) (not over the batch, not per pixel), and the
    gradient keeps its graph (``create_graph=True``) so the penalty itself is differentiable in the
    critic's weights. A linear critic ``D(x) = <w, x>`` has gradient ``w`` everywhere, so its penalty
    is exactly ``(||w|| - 1)^2``. Extra ``critic_args`` (e.g. labels) are passed to the critic.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape, got {tuple(real.shape)} "
                         f"and {tuple(fake.shape)}")
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), generator=generator).to(real)
    mixed = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    scores = critic(mixed, *critic_args)
    (grads,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    return (grads.flatten(1).norm(dim=1) - 1).pow(2).mean()


def wgan_gp_critic_loss(critic, real: torch.Tensor, fake: torch.Tensor, gp_weight: float = 10.0,
                        generator: torch.Generator | None = None, *critic_args) -> torch.Tensor:
    """Critic loss of WGAN-GP, to *minimise*: ``E[D(fake)] - E[D(real)] + gp_weight * GP``.

    The critic estimates the Wasserstein-1 distance ``E[D(real)] - E[D(fake)]`` over 1-Lipschitz ``D``; it
    maximises that gap, i.e. minimises its negative; the gradient penalty (:func:`gradient_penalty`)
    softly enforces the Lipschitz constraint. Scores are raw reals: no sigmoid, no log.

    What the source material got wrong: its sample code called a TensorFlow function that does not exist
    for the penalty, and its discriminator loss did not match the critic it trained (a Wasserstein critic
    must output raw scores and minimise ``D(fake) - D(real)``; putting a sigmoid/log on it, or flipping the
    sign so it rewards fakes, trains something that is neither a GAN discriminator nor a critic). Here the
    sign is explicit (fake minus real) and the penalty uses ``torch.autograd.grad`` with ``create_graph``.
    ``fake`` is detached: the critic step must not move the generator.
    """
    check_float("gp_weight", gp_weight, minimum=0.0)
    fake = fake.detach()
    wasserstein_gap = critic(real, *critic_args).mean() - critic(fake, *critic_args).mean()
    loss = -wasserstein_gap
    if gp_weight > 0:
        loss = loss + gp_weight * gradient_penalty(critic, real, fake, generator, *critic_args)
    return loss


def wgan_generator_loss(critic, fake: torch.Tensor, *critic_args) -> torch.Tensor:
    """Generator loss of WGAN(-GP), to minimise: ``-E[D(G(z))]`` -- push the critic's score of fakes up.
    No gradient penalty and no log/sigmoid here: the penalty constrains the critic only, and a critic's
    score is not a probability."""
    return -critic(fake, *critic_args).mean()
