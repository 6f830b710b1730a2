"""Generation backbones and losses: shapes, ELBO behaviour, vmap-safe noise, WGAN-GP formulas, NS-lite."""

import math

import pytest
import torch
from torch import nn

from metalearn_kit.models.gan import (
    ConditionalCritic,
    ConditionalGenerator,
    Critic,
    Generator,
    gradient_penalty,
    wgan_generator_loss,
    wgan_gp_critic_loss,
)
from metalearn_kit.models.generation import (
    ConvVAE,
    NeuralStatisticianLite,
    condition_on,
    importance_weighted_nll,
    negative_elbo,
    reconstruction_log_likelihood,
    statistician_loss,
    vae_loss_fn,
)

torch.set_num_threads(1)


def _strokes(count: int, seed: int = 0) -> torch.Tensor:
    """Glyph-like images: a thick bar at a random row plus one at a random column, ink = 1."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(count, 1, 28, 28)
    for i in range(count):
        r, c = torch.randint(4, 22, (2,), generator=g).tolist()
        images[i, 0, r:r + 3, 4:24] = 1.0
        images[i, 0, 4:24, c:c + 3] = 1.0
    return images


def test_vae_shapes_and_samples():
    vae = ConvVAE(latent=8, width=8, hidden=32)
    x = _strokes(6)
    out = vae(x)
    assert out.logits.shape == (6, 1, 28, 28)
    assert out.mu.shape == out.logvar.shape == out.z.shape == (6, 8)
    samples = vae.sample(5, torch.Generator().manual_seed(0))
    assert samples.shape == (5, 1, 28, 28) and samples.min() >= 0 and samples.max() <= 1
    again = vae.sample(5, torch.Generator().manual_seed(0))
    assert torch.equal(samples, again)  # same generator seed -> same samples


def test_vae_32px_and_continuous_bernoulli():
    vae = ConvVAE(image_size=32, latent=4, width=8, hidden=16, likelihood="continuous_bernoulli")
    x = torch.rand(3, 1, 32, 32)
    loss = vae_loss_fn(vae, (x,))
    assert loss.shape == () and torch.isfinite(loss)


@pytest.mark.parametrize("lam", [0.05, 0.3, 0.5, 0.501, 0.8, 0.97])
def test_continuous_bernoulli_density_integrates_to_one(lam):
    # exp(log p(x | lam)) over x in [0, 1] must integrate to 1 (the normaliser is right, incl. near 1/2)
    x = torch.linspace(0, 1, 20001, dtype=torch.float64).view(-1, 1, 1, 1)
    logits = torch.full_like(x, math.log(lam / (1 - lam)))
    density = reconstruction_log_likelihood(logits, x, "continuous_bernoulli").exp()
    assert torch.trapezoid(density, x.flatten()).item() == pytest.approx(1.0, abs=2e-3)


def test_elbo_finite_and_decreasing():
    torch.manual_seed(0)
    vae = ConvVAE(latent=8, width=8, hidden=32)
    x = _strokes(16)
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = vae_loss_fn(vae, (x, torch.zeros(16, dtype=torch.long)))
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def test_importance_weighted_bound_is_tighter_than_elbo():
    torch.manual_seed(0)
    vae = ConvVAE(latent=4, width=8, hidden=16)
    x = _strokes(4)
    with torch.no_grad():
        elbo = torch.stack([negative_elbo(vae(x), x) for _ in range(200)]).mean(0)  # E_q of the one-sample bound
    iw = importance_weighted_nll(vae, x, samples=64)
    assert iw.shape == (4,)
    assert (iw <= elbo + 0.5).all()  # the k-sample bound is at least as tight (up to Monte-Carlo noise)


def test_vae_noise_is_vmap_safe_under_maml():
    from metalearn_kit.meta import MAML
    from metalearn_kit.tasks import Task, stack_tasks

    torch.manual_seed(0)
    vae = ConvVAE(latent=4, width=8, hidden=16)
    labels = torch.zeros(3, dtype=torch.long)
    batch = stack_tasks([Task((_strokes(3, s), labels), (_strokes(3, s + 10), labels)) for s in range(2)])
    learner = MAML(vae, inner_lr=1e-4, inner_steps=2, backend="func")
    loss = learner.meta_loss(batch, vae_loss_fn)
    loss.backward()
    grads = [p.grad for p in vae.parameters()]
    assert torch.isfinite(loss) and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_gan_shapes_and_conditional():
    g, c = Generator(latent=8, width=8, hidden=16), Critic(width=8)
    fake = g.sample(4)
    assert fake.shape == (4, 1, 28, 28) and 0 <= fake.min() and fake.max() <= 1
    assert c(fake).shape == (4,)
    cg, cc = ConditionalGenerator(5, latent=8, width=8, hidden=16), ConditionalCritic(5, width=8)
    labels = torch.tensor([0, 1, 4, 2])
    images = cg(torch.randn(4, 8), labels)
    assert images.shape == (4, 1, 28, 28) and cc(images, labels).shape == (4,)
    z = torch.randn(1, 8).expand(2, 8)
    assert not torch.allclose(cg(z, torch.tensor([0, 1]))[0], cg(z, torch.tensor([0, 1]))[1])
    with pytest.raises(ValueError, match="labels"):
        cg(torch.randn(2, 8), torch.tensor([0, 5]))
    with pytest.raises(TypeError, match="labels"):
        cc(images, labels.float())


class _LinearCritic(nn.Module):
    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x):
        return (x.flatten(1) * self.w).sum(1)


def test_gradient_penalty_of_linear_critic_is_known():
    # D(x) = <w, x> has gradient w at every point, so the penalty is (||w|| - 1)^2 exactly
    w = torch.randn(784, generator=torch.Generator().manual_seed(1)) * 0.1
    critic = _LinearCritic(w)
    real, fake = torch.rand(8, 1, 28, 28), torch.rand(8, 1, 28, 28)
    gp = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(0))
    assert gp.item() == pytest.approx((w.norm().item() - 1) ** 2, rel=1e-5)
    # differentiable in the critic's weights: d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    (grad_w,) = torch.autograd.grad(gp, critic.w)
    expected = 2 * (w.norm() - 1) * w / w.norm()
    assert torch.allclose(grad_w, expected, atol=1e-5)
    unit = _LinearCritic(w / w.norm())
    assert gradient_penalty(unit, real, fake).item() == pytest.approx(0.0, abs=1e-10)


def test_critic_and_generator_loss_signs():
    class MeanCritic(nn.Module):  # scores images by their mean ink; a 'good' critic here says real > fake
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.tensor(1.0))

        def forward(self, x):
            return self.scale * x.flatten(1).mean(1)

    critic = MeanCritic()
    real, fake = torch.ones(4, 1, 28, 28), torch.zeros(4, 1, 28, 28)
    loss = wgan_gp_critic_loss(critic, real, fake, gp_weight=0.0)
    assert loss.item() == pytest.approx(-1.0)  # E[D(fake)] - E[D(real)] = 0 - 1: the critic minimises this
    loss.backward()
    assert critic.scale.grad.item() < 0  # gradient descent raises the scale: widens the real-fake gap
    assert wgan_generator_loss(critic, fake).item() == pytest.approx(0.0)
    assert wgan_generator_loss(critic, real).item() == pytest.approx(-1.0)  # fakes that score higher: lower loss
    # the critic step never moves the generator: fake is detached inside the critic loss
    g = Generator(latent=4, width=4, hidden=8)
    fake = g.sample(4)
    wgan_gp_critic_loss(Critic(width=4), torch.rand(4, 1, 28, 28), fake).backward()
    assert all(p.grad is None for p in g.parameters())
    with pytest.raises(ValueError, match="gp_weight"):
        wgan_gp_critic_loss(critic, real, real, gp_weight=-1.0)
    with pytest.raises(ValueError, match="real and fake"):
        gradient_penalty(critic, real, fake[:2])


def test_statistician_context_changes_with_support_and_ignores_order():
    torch.manual_seed(0)
    ns = NeuralStatisticianLite(latent=4, context_dim=8, width=8, hidden=16)
    a, b = _strokes(5, 1), torch.flip(_strokes(5, 2), dims=[-1, -2]) * 0.5
    ca, cb = ns.context(a), ns.context(b)
    assert ca.shape == (8,)
    assert not torch.allclose(ca, cb)
    assert torch.allclose(ns.context(a[torch.tensor([3, 1, 4, 0, 2])]), ca, atol=1e-6)
    assert ns.context(torch.stack([a, b])).shape == (2, 8)
    samples = ns.sample(ca, 6, torch.Generator().manual_seed(0))
    assert samples.shape == (6, 1, 28, 28)
    loss = statistician_loss(ns, a[:2], a[2:])
    assert torch.isfinite(loss)
    assert importance_weighted_nll(condition_on(ns, a[:2]), a[2:], samples=4).shape == (3,)


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="image_size"):
        ConvVAE(image_size=30)
    with pytest.raises(ValueError, match="likelihood"):
        ConvVAE(likelihood="gaussian")
    with pytest.raises(TypeError, match="latent"):
        Generator(latent=2.5)
    with pytest.raises(ValueError, match="samples"):
        importance_weighted_nll(ConvVAE(latent=2, width=4, hidden=8), torch.rand(2, 1, 28, 28), samples=0)
    with pytest.raises(ValueError, match="images"):
        importance_weighted_nll(ConvVAE(latent=2, width=4, hidden=8), torch.rand(2, 1, 28, 28) * 3)
    with pytest.raises(ValueError, match="count"):
        ConvVAE(latent=2, width=4, hidden=8).sample(0)


def test_cgan_ema_ships_the_moving_average_of_the_generator_iterates():
    from dataclasses import replace

    from test_generation_metrics import fake_class_source  # tests/ is on sys.path under pytest

    from metalearn_kit.recipes.generation_cgan import CGANConfig, make_cgan, pca_class_codes, train_cgan

    source = fake_class_source(4, 6, seed=0)
    recipe = CGANConfig(latent=4, embedding=3, width=8, hidden=16, iterations=5, batch=8, embed_steps=1,
                        reptile_classes=2, ema_decay=0.5)
    with torch.random.fork_rng(devices=[]):  # the trainer's start: its seeded init, PCA class codes
        torch.manual_seed(0)
        start = make_cgan(recipe, source.num_classes)
    images = torch.cat([source.images_of(c)[:4] for c in range(4)])  # 6 per class, the last 2 held out
    start.generator.embed.weight.data.copy_(pca_class_codes(images, torch.arange(4).repeat_interleave(4), 4, 3))
    average = {name: w.detach().clone() for name, w in start.generator.named_parameters()}
    seen: list[int] = []

    def callback(iteration, model):  # the average recomputed from the iterates the trainer reports
        seen.append(iteration)
        for name, weight in model.generator.named_parameters():
            average[name] = 0.5 * average[name] + 0.5 * weight.detach()

    shipped, _ = train_cgan(recipe, source, seed=0, callback=callback)
    assert seen == [1, 2, 3, 4, 5]
    for name, weight in shipped.generator.named_parameters():
        torch.testing.assert_close(weight, average[name])
    last, _ = train_cgan(replace(recipe, ema_decay=0.0), source, seed=0)  # the same run, last iterate shipped
    assert not torch.allclose(last.generator.embed.weight, shipped.generator.embed.weight)
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="ema_decay"):
            CGANConfig(ema_decay=bad)
