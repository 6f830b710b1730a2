"""Screen of the CGAN settings (issue 17), as run for docs/benchmarks/README.md: trains a CGAN on the background
glyphs with the given loss/lr/betas/PCA init/AC weight, prints the feature net accuracy of its background samples
every --eval-every iterations and a few-shot new-class prototype accuracy. Needs a feature net state dict
(--featnet, a torch.save of the shipped generation_featnet weights). One thread; minutes per 1000 iterations."""

import argparse
import os
import time

import torch
import torch.nn.functional as F

from metalearn_kit.data import glyphs
from metalearn_kit.evaluation.features import FeatureNet, extract_features, prototype_accuracy
from metalearn_kit.models.conditional_gan import (
    CGAN,
    cgan_critic_loss,
    cgan_generator_loss,
    fit_class_embedding,
    meta_learn_embedding_init,
    sample_with_embedding,
)

torch.set_num_threads(1)
p = argparse.ArgumentParser()
p.add_argument("--iters", type=int, default=1000)
p.add_argument("--ac", type=float, default=1.0)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--critic-steps", type=int, default=1)
p.add_argument("--lr", type=float, default=2e-4)
p.add_argument("--emb", type=int, default=32)
p.add_argument("--loss", default="wgan")
p.add_argument("--b1", type=float, default=0.0)
p.add_argument("--r1", type=float, default=1.0)
p.add_argument("--pca", action="store_true")
p.add_argument("--eval-every", type=int, default=500)
p.add_argument("--featnet", default="featnet_4000.pt")
p.add_argument("--save", default=None)
a = p.parse_args()
torch.manual_seed(0)
b, e = glyphs("background"), glyphs("evaluation")
n = b.num_classes
x = torch.cat([b.images_of(c)[:18] for c in range(n)])
y = torch.arange(n).repeat_interleave(18)
model = CGAN(n, latent=32, embedding=a.emb, width=24, hidden=128)
if a.pca:
    means = torch.stack([b.images_of(c)[:18].mean(0).flatten() for c in range(n)])
    means = means - means.mean(0)
    U, S, V = torch.linalg.svd(means, full_matrices=False)
    codes = means @ V[: a.emb].T
    with torch.no_grad():
        model.generator.embed.weight.copy_(codes / codes.std(0))
state = torch.load(a.featnet)
fn = FeatureNet(n, feature_dim=64)
fn.load_state_dict(state)
fn.eval()


def bg_acc():
    with torch.no_grad():
        labels = torch.arange(n).repeat_interleave(2)
        imgs = model.generator(torch.randn(labels.shape[0], 32, generator=torch.Generator().manual_seed(5)), labels)
        return float((fn(imgs).argmax(1) == labels).double().mean())


og = torch.optim.Adam(model.generator.parameters(), lr=a.lr, betas=(a.b1, 0.9 if a.loss == "wgan" else 0.99))
oc = torch.optim.Adam(model.critic.parameters(), lr=a.lr, betas=(a.b1, 0.9 if a.loss == "wgan" else 0.99))
g = torch.Generator().manual_seed(0)
t = time.perf_counter()
for it in range(a.iters):
    for _ in range(a.critic_steps):
        idx = torch.randint(0, x.shape[0], (a.batch,), generator=g)
        z = torch.randn(a.batch, 32, generator=g)
        with torch.no_grad():
            fake = model.generator(z, y[idx])
        if a.loss == "wgan":
            lc = cgan_critic_loss(model.critic, x[idx], fake, y[idx], 10.0, a.ac, g)
        else:
            real = x[idx].clone().requires_grad_(True)
            rs, rl = model.critic(real, y[idx])
            fs, _ = model.critic(fake, y[idx])
            (gr,) = torch.autograd.grad(rs.sum(), real, create_graph=True)
            lc = (
                F.softplus(-rs).mean()
                + F.softplus(fs).mean()
                + a.ac * F.cross_entropy(rl, y[idx])
                + a.r1 / 2 * gr.pow(2).flatten(1).sum(1).mean()
            )
        oc.zero_grad()
        lc.backward()
        oc.step()
    labels = torch.randint(0, n, (a.batch,), generator=g)
    if a.loss != "wgan":
        fs, fl = model.critic(model.generator(torch.randn(a.batch, 32, generator=g), labels), labels)
        lg = F.softplus(-fs).mean() + a.ac * F.cross_entropy(fl, labels)
    else:
        lg = cgan_generator_loss(
            model.critic, model.generator(torch.randn(a.batch, 32, generator=g), labels), labels, a.ac
        )
    og.zero_grad()
    lg.backward()
    og.step()
    if (it + 1) % a.eval_every == 0:
        print("acc", it + 1, bg_acc(), flush=True)
    if it % 200 == 0 or it == a.iters - 1:
        print(it, round(float(lc), 3), round(float(lg), 3), round(time.perf_counter() - t, 1), flush=True)
if a.save:
    torch.save(model.state_dict(), a.save)
while not os.path.exists(a.featnet):
    time.sleep(10)
state = torch.load(a.featnet)
fn = FeatureNet(n, feature_dim=64)
fn.load_state_dict(state)
fn.eval()
model.eval()
with torch.no_grad():
    labels = torch.arange(n).repeat_interleave(4)
    imgs = model.generator(torch.randn(labels.shape[0], 32, generator=torch.Generator().manual_seed(5)), labels)
    acc = float((fn(imgs).argmax(1) == labels).double().mean())
    racc = float(
        (fn(torch.cat([b.images_of(c)[18:] for c in range(n)])).argmax(1) == torch.arange(n).repeat_interleave(2))
        .double()
        .mean()
    )
print("bg sample featnet accuracy", acc, "featnet holdout", racc, flush=True)
# few shot
gen = model.generator
for p_ in gen.parameters():
    p_.requires_grad_(False)
init = meta_learn_embedding_init(
    gen, b.images_of, torch.randperm(n, generator=torch.Generator().manual_seed(3))[:40].tolist(), 5, 100, 0.05
)
rng = torch.Generator().manual_seed(1)
accs = []
for target in torch.randperm(e.num_classes, generator=rng)[:16].tolist():
    ims = e.images_of(target)
    order = torch.randperm(20, generator=rng)
    query, support = ims[order[:10]], ims[order[10:15]]
    others = [c for c in torch.randperm(e.num_classes, generator=rng).tolist() if c != target][:4]
    qf = extract_features(fn, query)
    df = [extract_features(fn, e.images_of(c)[:10]) for c in others]
    embeddings, losses = fit_class_embedding(gen, support, init, 100, 0.05)
    emb = embeddings[-1]
    s = sample_with_embedding(gen, emb, 32, torch.Generator().manual_seed(0))
    accs.append(prototype_accuracy(extract_features(fn, s), [qf, *df]))
print("fewshot proto acc", sum(accs) / len(accs), "last loss", losses[-1], "total", time.perf_counter() - t)
