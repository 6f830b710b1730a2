"""The meta-step is written once: every learner (MAML, FOMAML, Meta-SGD, ANIL, Reptile) computes its
meta-gradient through the per-task function ``adapt_then_query``, in the vmap and the loop mode, and the
``higher`` backend, run independently on the same per-task contract, agrees with it. float64, synthetic tasks."""

import pytest
import torch

from metalearn_kit.meta import (
    ANIL,
    FOMAML,
    MAML,
    FuncBackend,
    FunctionalSGD,
    InnerLoop,
    MetaSGD,
    Reptile,
    adapt_then_query,
    step,
)
from metalearn_kit.meta.functional import FunctionalModel
from metalearn_kit.models.conv import ConvRestorer
from metalearn_kit.tasks.task import Task


def mse(model, batch):
    degraded, clean = batch
    return ((model(degraded) - clean) ** 2).mean()


def make_tasks(n, seed=0, shots=3, queries=2, size=6):
    g = torch.Generator().manual_seed(seed)
    tasks = []
    for _ in range(n):
        sigma = 0.05 + 0.3 * torch.rand((), generator=g, dtype=torch.float64)
        pairs = []
        for k in (shots, queries):
            clean = torch.rand(k, 1, size, size, generator=g, dtype=torch.float64)
            pairs.append((clean + sigma * torch.randn(clean.shape, generator=g, dtype=torch.float64), clean))
        tasks.append(Task(pairs[0], pairs[1], {}))
    return tasks


def small_net(seed=0):
    torch.manual_seed(seed)
    net = ConvRestorer(channels=1, width=4, depth=3).double()
    with torch.no_grad():  # away from the near-identity init so every second-order term matters
        for p in net.parameters():
            p.normal_(0.0, 0.4)
    return net


def make_learner(variant, net, **engine):
    common = dict(inner_lr=0.1, inner_steps=3, **engine)
    if variant == "maml":
        return MAML(net, **common)
    if variant == "fomaml":
        return FOMAML(net, **common)
    if variant == "anil":
        return ANIL(net, head="head", **common)
    learner = MetaSGD(net, **common)
    with torch.no_grad():  # distinct per-element rates, so a mix-up of names would show
        for rate in learner.inner_lrs.values():
            rate.mul_(torch.linspace(0.5, 1.5, rate.numel(), dtype=rate.dtype).reshape(rate.shape))
    return learner


def gradient(loss, learner):
    learner.zero_grad(set_to_none=True)
    loss.backward()
    return torch.cat([torch.zeros(p.numel(), dtype=p.dtype) if p.grad is None else p.grad.reshape(-1)
                      for p in learner.parameters()])


def direct_meta_loss(learner, tasks):
    """The mean over tasks of ``adapt_then_query``'s query loss, called by hand with the learner's settings."""
    named = dict(learner.model.named_parameters())
    params = {n: named[n] for n in learner.adapt_names}
    fixed = {n: p for n, p in named.items() if n not in params}
    inner = InnerLoop(learner.inner_optimizer, learner.inner_steps, learner.first_order, learner.inner_grad_clip)
    losses = [adapt_then_query(learner.model, fixed, params, t.support, t.query, mse, inner,
                               learner.inner_learning_rates()).query_loss for t in tasks]
    return torch.stack(losses).mean()


@pytest.mark.parametrize("variant", ["maml", "fomaml", "metasgd", "anil"])
def test_every_learner_is_a_configuration_of_the_per_task_step(variant, monkeypatch):
    tasks = make_tasks(3, seed=1)
    reference = make_learner(variant, small_net(seed=3), backend=FuncBackend(vmap=False))
    by_hand = gradient(direct_meta_loss(reference, tasks), reference)

    calls = []
    original = step.adapt_then_query

    def counted(*args, **kwargs):
        calls.append(kwargs.get("vectorized", False))
        return original(*args, **kwargs)

    monkeypatch.setattr(step, "adapt_then_query", counted)
    grads = {}
    for mode, engine in {"loop": dict(backend=FuncBackend(vmap=False)),
                         "vmap": dict(backend=FuncBackend(vmap=True))}.items():
        calls.clear()
        learner = make_learner(variant, small_net(seed=3), **engine)
        grads[mode] = gradient(learner.meta_loss(tasks, mse), learner)
        # the loop calls the per-task function once per task, vmap once for the stacked meta-batch
        assert calls == ([False] * 3 if mode == "loop" else [True]), (mode, calls)
    monkeypatch.undo()
    assert torch.equal(grads["loop"], by_hand), variant
    assert torch.allclose(grads["vmap"], by_hand, rtol=1e-10, atol=1e-13), variant

    # the independent reference: higher's differentiable optimizers on the same per-task contract
    higher = make_learner(variant, small_net(seed=3), backend="higher")
    expected = gradient(higher.meta_loss(tasks, mse), higher)
    rel = (by_hand - expected).norm() / expected.norm()
    assert rel < 1e-6, f"{variant}: the per-task step and higher differ by {rel:.2e}"
    if variant == "anil":  # only the head adapts, the meta-gradient still reaches the body
        assert higher.adapt_names == ["head.weight", "head.bias"]
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in higher.model.parameters())


def test_reptile_moves_toward_the_per_task_adapted_weights():
    tasks = make_tasks(2, seed=4)
    learner = Reptile(small_net(seed=2), inner_lr=0.2, inner_steps=3, backend=FuncBackend(vmap=False))
    inner = InnerLoop(learner.inner_optimizer, 3, first_order=True)
    named = dict(learner.model.named_parameters())
    with torch.no_grad():
        adapted = [adapt_then_query(learner.model, {}, named, t.support, t.query, mse, inner, 0.2).adapted
                   for t in tasks]
    out = learner.meta_objective(tasks, mse)
    for name in named:
        assert torch.equal(out.adapted[name], torch.stack([a[name] for a in adapted])), name
    grads = dict(zip(named, torch.autograd.grad(out.loss, list(named.values()))))
    for name, theta in named.items():
        expected = theta.detach() - torch.stack([a[name] for a in adapted]).mean(0)
        assert torch.allclose(grads[name], expected, rtol=1e-12, atol=1e-15), name


def test_first_order_is_straight_through_at_the_adapted_weights():
    """FOMAML's query loss is evaluated at θ + stop_grad(φ − θ): the value of φ, the gradient ∇L_Q(φ) on θ."""
    task = make_tasks(1, seed=5)[0]
    net = small_net(seed=6)
    named = dict(net.named_parameters())
    inner = InnerLoop(FunctionalSGD(), 2, first_order=True)
    result = adapt_then_query(net, {}, named, task.support, task.query, mse, inner, 0.1)
    with torch.no_grad():
        plain = adapt_then_query(net, {}, named, task.support, task.query, mse, inner, 0.1)
    for name in named:
        assert torch.allclose(result.adapted[name], plain.adapted[name], rtol=0, atol=1e-15)
    got = torch.autograd.grad(result.query_loss, list(named.values()))
    phi = {n: v.clone().requires_grad_(True) for n, v in plain.adapted.items()}
    want = torch.autograd.grad(mse(FunctionalModel(net, phi), task.query), list(phi.values()))
    assert all(torch.allclose(g, w, rtol=1e-12, atol=1e-15) for g, w in zip(got, want))
    assert result.support_losses.shape == (2,) and not result.support_losses.requires_grad


def test_anil_needs_head_not_adapt_params():
    with pytest.raises(TypeError, match="head"):
        ANIL(small_net(), adapt_params=["head"])
    with pytest.raises(ValueError, match="adapt_params"):
        ANIL(small_net(), head="neck")
