"""The conditional GAN of the source material (CGAN), trained correctly, and its few-shot extension.

A CGAN (Mirza & Osindero 2014) gives the generator and the critic the class label: ``G(z, y)`` draws an
image of class ``y``; the critic scores ``(x, y)`` pairs. Here the critic is a projection critic
(:class:`~metalearn_kit.models.generation.ConditionalCritic`, Miyato & Koyama 2018) with a class head
(the auxiliary classifier of AC-GAN, Odena et al. 2017): a Wasserstein score with gradient penalty, plus a
cross-entropy that teaches the critic to name the class of real images and the generator to draw images
the critic names correctly. No BatchNorm anywhere (the penalty needs per-example gradients).

Few-shot: a *new* class has no embedding row. :func:`fit_class_embedding` finds one from ``K`` images by
inverting the frozen generator: an embedding ``e`` and one code ``z_k`` per support image are fitted so
that ``G(z_k, e)`` reconstructs image ``k`` — the source's ``f = G(D(x))`` with ``D`` the inversion (a few
gradient steps instead of an encoder network). New samples are ``G(z, e)`` with fresh ``z ~ N(0, I)``:
``e`` carries the class, ``z`` the style. The inversion starts from a meta-learned embedding ``e0``
(:func:`meta_learn_embedding_init`: Reptile over background classes on ``e`` alone).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_choice, check_float, check_images, check_int
from .gan import ConditionalCritic, ConditionalGenerator, gradient_penalty

__all__ = ["ACCritic", "CGAN", "cgan_critic_loss", "cgan_generator_loss", "fit_class_embedding",
           "meta_learn_embedding_init", "sample_with_embedding"]


class ACCritic(nn.Module):
    """A :class:`ConditionalCritic` (projection score ``[N]``) plus a class head on the same trunk
    (``logits [N, num_classes]``): ``forward(x, y) -> (score, logits)``."""

    def __init__(self, num_classes: int, channels: int = 1, image_size: int = 28, width: int = 32):
        super().__init__()
        self.projection = ConditionalCritic(num_classes, channels, image_size, width)
        self.classifier = nn.Linear(self.projection.head.in_features, num_classes)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.projection.trunk(images).flatten(1)
        score = self.projection.head(h).squeeze(-1) + (self.projection.embed(labels) * h).sum(-1)
        return score, self.classifier(h)


class CGAN(nn.Module):
    """Generator and critic kept together while training. ``generator: ConditionalGenerator``,
    ``critic: ACCritic`` (``None`` with ``with_critic=False``: sampling and new-class inversion need only the
    generator, and the critic's per-class projection is most of the weights); the buffer
    ``embedding_init [embedding]`` is the meta-learned start of a new class's embedding
    (:func:`meta_learn_embedding_init`)."""

    def __init__(self, num_classes: int, latent: int = 32, embedding: int = 32, image_size: int = 28,
                 width: int = 32, hidden: int = 128, with_critic: bool = True):
        super().__init__()
        self.sizes = {"num_classes": num_classes, "latent": latent, "embedding": embedding, "image_size": image_size,
                      "width": width, "hidden": hidden}
        self.generator = ConditionalGenerator(num_classes, latent=latent, embedding=embedding, image_size=image_size,
                                              width=width, hidden=hidden)
        self.critic = ACCritic(num_classes, image_size=image_size, width=width) if with_critic else None
        self.register_buffer("embedding_init", torch.zeros(embedding))

    def without_critic(self) -> CGAN:
        """This model's generator and embedding init, without the critic (what is shipped)."""
        if self.critic is None:
            return self
        out = CGAN(**self.sizes, with_critic=False)
        out.load_state_dict({k: v for k, v in self.state_dict().items() if not k.startswith("critic.")})
        return out


def _r1_penalty(critic: ACCritic, real: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): ``E_real[||grad_x D(x, y)||^2]``, kept in the graph."""
    real = real.detach().requires_grad_(True)
    score, _ = critic(real, labels)
    (grad,) = torch.autograd.grad(score.sum(), real, create_graph=True)
    return grad.flatten(1).pow(2).sum(1).mean()


def cgan_critic_loss(critic: ACCritic, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor,
                     gp_weight: float = 10.0, ac_weight: float = 1.0, generator: torch.Generator | None = None,
                     penalty: str = "wgan_gp") -> torch.Tensor:
    """Critic loss to minimise, plus ``ac_weight * CE(class head(real), y)`` (only real images train the
    class head: fakes would teach it the generator's mistakes).

    ``penalty="wgan_gp"``: ``E[D(fake, y)] - E[D(real, y)] + gp_weight * GP`` (raw scores, gradient
    penalty at interpolates). ``"ns_r1"``: the non-saturating GAN's ``softplus(-D(real)) + softplus(D(fake))``
    (``-log sigmoid``, the logistic discriminator) ``+ gp_weight / 2 * R1``."""
    check_choice("penalty", penalty, ("wgan_gp", "ns_r1"))
    check_float("gp_weight", gp_weight, minimum=0.0)
    fake = fake.detach()  # the critic step must not move the generator
    real_score, real_logits = critic(real, labels)
    fake_score, _ = critic(fake, labels)
    loss = ac_weight * F.cross_entropy(real_logits, labels)
    if penalty == "wgan_gp":
        loss = loss + fake_score.mean() - real_score.mean()
        if gp_weight > 0:
            loss = loss + gp_weight * gradient_penalty(lambda x, y: critic(x, y)[0], real, fake, generator, labels)
    else:
        loss = loss + F.softplus(-real_score).mean() + F.softplus(fake_score).mean()
        if gp_weight > 0:
            loss = loss + gp_weight / 2 * _r1_penalty(critic, real, labels)
    return loss


def cgan_generator_loss(critic: ACCritic, fake: torch.Tensor, labels: torch.Tensor, ac_weight: float = 1.0,
                        loss: str = "wgan_gp") -> torch.Tensor:
    """Generator loss to minimise: ``-E[D(G(z, y), y)]`` (``wgan_gp``) or ``softplus(-D(G(z, y), y))``
    (``ns_r1``), plus ``ac_weight * CE(class head(G(z, y)), y)``."""
    check_choice("loss", loss, ("wgan_gp", "ns_r1"))
    score, logits = critic(fake, labels)
    adversarial = -score.mean() if loss == "wgan_gp" else F.softplus(-score).mean()
    return adversarial + ac_weight * F.cross_entropy(logits, labels)


def fit_class_embedding(generator: ConditionalGenerator, support: torch.Tensor, init: torch.Tensor,
                        steps: int = 100, lr: float = 0.05, code_weight: float = 0.1,
                        seed: int = 0) -> tuple[list[torch.Tensor], list[float]]:
    """A new class's embedding ``[embedding]`` from ``support [K, C, S, S]`` by inverting the frozen
    ``generator``: Adam for ``steps`` steps on the embedding ``e`` (from ``init``) and one code per image
    (from small random codes), minimising the reconstruction cross-entropy (nats per image) plus
    ``code_weight * ||z||^2 / 2`` (codes stay where ``N(0, I)`` samples live). Returns
    ``(embeddings, losses)``: the embedding after 0, 1, ..., ``steps`` steps and the loss of each step."""
    check_images("support", support)
    check_int("steps", steps, minimum=0)
    check_float("lr", lr, minimum=0.0, strict_min=True)
    check_float("code_weight", code_weight, minimum=0.0)
    gen = torch.Generator().manual_seed(seed)
    embedding = init.detach().clone().requires_grad_(True)
    codes = (0.1 * torch.randn(support.shape[0], generator.latent, generator=gen)).requires_grad_(True)
    optimizer = torch.optim.Adam([embedding, codes], lr=lr)
    losses, embeddings = [], [embedding.detach().clone()]
    for _ in range(steps):
        logits = generator.net(torch.cat([codes, embedding.expand(codes.shape[0], -1)], -1))
        recon = F.binary_cross_entropy_with_logits(logits, support, reduction="none").flatten(1).sum(1)
        loss = recon.mean() + code_weight * 0.5 * codes.pow(2).sum(1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        embeddings.append(embedding.detach().clone())
    return embeddings, losses


@torch.no_grad()
def sample_with_embedding(generator: ConditionalGenerator, embedding: torch.Tensor, count: int,
                          generator_rng: torch.Generator | None = None) -> torch.Tensor:
    """``count`` images ``[count, C, S, S]`` from ``G(z, embedding)``, ``z ~ N(0, I)``."""
    check_int("count", count, minimum=1)
    z = torch.randn(count, generator.latent, generator=generator_rng)
    return torch.sigmoid(generator.net(torch.cat([z, embedding.reshape(1, -1).expand(count, -1)], -1)))


def meta_learn_embedding_init(generator: ConditionalGenerator, images_of, classes: list[int], shots: int,
                              steps: int, lr: float, epsilon: float = 0.1, seed: int = 0) -> torch.Tensor:
    """Reptile on the embedding alone: from the mean trained embedding, for each background class in
    ``classes`` fit an embedding on ``shots`` of its images (``images_of(c) -> [N, C, S, S]``) for
    ``steps`` steps, then move the init ``epsilon`` of the way toward it. Returns ``e0 [embedding]``."""
    check_float("epsilon", epsilon, minimum=0.0, maximum=1.0)
    init = generator.embed.weight.detach().mean(0)
    for index, c in enumerate(classes):
        fitted, _ = fit_class_embedding(generator, images_of(c)[:shots], init, steps, lr, seed=seed + index)
        init = init + epsilon * (fitted[-1] - init)
    return init
