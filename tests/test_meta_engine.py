"""The meta-learning engine's gradients and API: finite differences, backend agreement, FOMAML, Reptile,
Meta-SGD, ANIL, adapt, batching, BatchNorm and NaN guards, bad inputs. Synthetic tasks only."""

import pytest
import torch
from torch import nn

from metalearn_kit.meta import (
    FOMAML,
    MAML,
    DivergenceError,
    FuncBackend,
    FunctionalAdam,
    HigherBackend,
    MetaSGD,
    Reptile,
    finetune,
    second_order_memory_estimate,
)
from metalearn_kit.models.conv import ConvRestorer
from metalearn_kit.tasks.task import Task, stack_tasks

BACKENDS = ("func", "func-loop", "higher")


def engine(backend):
    """Learner kwargs: the func backend with vmap over tasks, the same with a loop over tasks, or higher."""
    return {"func": {"backend": FuncBackend(vmap=True)}, "func-loop": {"backend": FuncBackend(vmap=False)},
            "higher": {"backend": "higher"}}[backend]


def mse(model, batch):
    degraded, clean = batch
    return ((model(degraded) - clean) ** 2).mean()


def make_tasks(n, shots=3, queries=2, size=6, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    tasks = []
    for _ in range(n):
        sigma = 0.05 + 0.3 * torch.rand((), generator=g, dtype=dtype)

        def pair(k, sigma=sigma):
            clean = torch.rand(k, 1, size, size, generator=g, dtype=dtype)
            return (clean + sigma * torch.randn(clean.shape, generator=g, dtype=dtype), clean)

        tasks.append(Task(pair(shots), pair(queries), {"sigma": float(sigma)}))
    return tasks


def small_net(seed=0, width=3, depth=2, activation="silu"):
    torch.manual_seed(seed)
    net = ConvRestorer(channels=1, width=width, depth=depth, activation=activation).double()
    with torch.no_grad():  # away from the near-identity init so every second-order term matters
        for p in net.parameters():
            p.normal_(0.0, 0.4)
    return net


def flat_grad(params):
    return torch.cat([p.grad.reshape(-1) for p in params])


def meta_grad(learner, tasks, params=None):
    params = list(learner.parameters()) if params is None else params
    learner.zero_grad(set_to_none=True)
    learner.meta_loss(tasks, mse).backward()
    return flat_grad(params)


def finite_difference(learner, tasks, eps=1e-6, directions=6):
    """Central differences of the meta-loss along random directions ``v``: ``(L(p + eps v) - L(p - eps v)) / 2eps``,
    returned with the directions (the gradient's projections ``g @ v`` must match them)."""
    params = [p for p in learner.parameters()]
    flat = torch.nn.utils.parameters_to_vector(params).detach().clone()
    v = torch.randn(directions, flat.numel(), dtype=flat.dtype, generator=torch.Generator().manual_seed(1))
    slopes = torch.zeros(directions, dtype=flat.dtype)
    with torch.no_grad():
        for i in range(directions):
            for sign in (1, -1):
                torch.nn.utils.vector_to_parameters(flat + sign * eps * v[i], params)
                slopes[i] += sign * learner.meta_loss(tasks, mse).item()
        torch.nn.utils.vector_to_parameters(flat, params)
    return slopes / (2 * eps), v


def inner_optimizer(name):
    # Adam's eps is raised so its update is smooth enough for finite differences at eps=1e-6 (with eps=1e-8 the
    # first Adam step is ~lr*sign(g), whose derivative spikes wherever a gradient component is near 0)
    return "sgd" if name == "sgd" else FunctionalAdam(eps=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_second_order_meta_gradient_matches_finite_differences(backend, opt):
    tasks = make_tasks(2)
    learner = MAML(small_net(), inner_lr=0.3 if opt == "sgd" else 0.05, inner_steps=3, **engine(backend),
                   inner_optimizer=inner_optimizer(opt))
    analytic = meta_grad(learner, tasks)
    numeric, directions = finite_difference(learner, tasks)
    rel = (directions @ analytic - numeric).norm() / numeric.norm()
    assert rel < 1e-4, f"{backend}/{opt}: relative error {rel:.2e}"
    # the second-order terms are not negligible here: first-order MAML is measurably different
    fo = meta_grad(MAML(learner.model, inner_lr=learner.inner_lr, inner_steps=3, first_order=True, **engine(backend),
                        inner_optimizer=inner_optimizer(opt)), tasks)
    assert (directions @ fo - numeric).norm() / numeric.norm() > 1e-3


@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("variant", ["maml", "fomaml", "anil", "metasgd", "momentum"])
def test_backends_agree(opt, variant):
    tasks = make_tasks(3, seed=1)
    grads, losses = {}, {}
    for backend in BACKENDS:
        net = small_net(seed=3, width=4, depth=3)
        kwargs = dict(inner_lr=0.1 if opt == "sgd" else 0.02, inner_steps=3, **engine(backend),
                      inner_optimizer=opt)
        if variant == "momentum":
            from metalearn_kit.meta import FunctionalSGD
            kwargs["inner_optimizer"] = FunctionalSGD(momentum=0.9) if opt == "sgd" else FunctionalAdam((0.5, 0.9))
        if variant == "metasgd":
            learner = MetaSGD(net, **kwargs)
            with torch.no_grad():  # distinct per-element rates so a mix-up of names would show
                for v in learner.inner_lrs.values():
                    v.mul_(torch.linspace(0.5, 1.5, v.numel(), dtype=v.dtype).reshape(v.shape))
        else:
            learner = MAML(net, first_order=variant == "fomaml", adapt_params=["head"] if variant == "anil" else None,
                           **kwargs)
        learner.zero_grad()
        loss = learner.meta_loss(tasks, mse)
        loss.backward()
        losses[backend] = loss.item()
        grads[backend] = flat_grad(list(learner.parameters()))
    for backend in ("func", "func-loop"):
        assert abs(losses[backend] - losses["higher"]) < 1e-10
        rel = (grads[backend] - grads["higher"]).norm() / grads["higher"].norm()
        assert rel < 1e-6, f"{variant}/{opt}: {backend} and higher differ by {rel:.2e}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_first_order_maml_is_query_gradient_at_adapted_weights(backend):
    tasks = make_tasks(3, seed=2)
    learner = FOMAML(small_net(seed=1), inner_lr=0.2, inner_steps=4, **engine(backend))
    fo = meta_grad(learner, tasks)
    expected = torch.zeros_like(fo)
    for task in tasks:
        adapted = learner.adapt(task.support, mse)
        params = {k: v.clone().requires_grad_(True) for k, v in adapted.params.items()}
        from metalearn_kit.meta.functional import FunctionalModel
        loss = mse(FunctionalModel(learner.model, params), task.query)
        names = [n for n, _ in learner.model.named_parameters()]
        grads = torch.autograd.grad(loss, [params[n] for n in names])
        expected += torch.cat([g.reshape(-1) for g in grads]) / len(tasks)
    assert torch.allclose(fo, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_reptile_update_is_step_size_times_adapted_minus_initial(backend):
    tasks = make_tasks(3, seed=4)
    net = small_net(seed=2)
    learner = Reptile(net, inner_lr=0.2, inner_steps=3, **engine(backend))
    initial = torch.nn.utils.parameters_to_vector(net.parameters()).detach().clone()
    adapted_mean = torch.stack([torch.nn.utils.parameters_to_vector(
        [learner.adapt(t.support, mse).params[n] for n, _ in net.named_parameters()]) for t in tasks]).mean(0)
    step_size = 0.5
    opt = torch.optim.SGD(learner.parameters(), lr=step_size)
    opt.zero_grad()
    loss = learner.meta_loss(tasks, mse)
    # the surrogate's value is the mean query loss after adaptation
    expected_query = sum(mse(learner.adapt(t.support, mse), t.query).item() for t in tasks) / len(tasks)
    assert abs(loss.item() - expected_query) < 1e-10
    loss.backward()
    opt.step()
    updated = torch.nn.utils.parameters_to_vector(net.parameters()).detach()
    assert torch.allclose(updated - initial, step_size * (adapted_mean - initial), rtol=1e-9, atol=1e-12)
    assert (updated - initial).abs().max() > 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
def test_meta_sgd_learning_rates_get_gradients(backend):
    tasks = make_tasks(2, seed=5)
    for lr_shape in ("element", "tensor"):
        learner = MetaSGD(small_net(seed=4), inner_lr=0.1, inner_steps=2, **engine(backend), lr_shape=lr_shape)
        learner.meta_loss(tasks, mse).backward()
        for name, lr in learner.inner_lrs.items():
            assert lr.grad is not None and torch.isfinite(lr.grad).all(), name
            assert lr.grad.abs().sum() > 0, name
        # the lrs' gradient matches finite differences too (on one rate tensor)
        key = next(iter(learner.inner_lrs))
        lr = learner.inner_lrs[key]
        direction = torch.randn(lr.shape, dtype=lr.dtype, generator=torch.Generator().manual_seed(0))
        analytic = (lr.grad * direction).sum().item()
        with torch.no_grad():
            eps = 1e-6
            lr += eps * direction
            plus = learner.meta_loss(tasks, mse).item()
            lr -= 2 * eps * direction
            minus = learner.meta_loss(tasks, mse).item()
            lr += eps * direction
        assert abs(analytic - (plus - minus) / (2 * eps)) < 1e-6 * max(1.0, abs(analytic))


def test_anil_adapts_only_named_parameters_but_meta_trains_all():
    tasks = make_tasks(2, seed=6)
    net = small_net(seed=5, width=4, depth=3)
    learner = MAML(net, inner_lr=0.2, inner_steps=2, adapt_params=["head"], backend="func")
    assert learner.adapt_names == ["head.weight", "head.bias"]
    adapted = learner.adapt(tasks[0].support, mse)
    for name, p in net.named_parameters():
        changed = not torch.equal(adapted.tensors[name], p.detach())
        assert changed == name.startswith("head"), name
    learner.meta_loss(tasks, mse).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


@pytest.mark.parametrize("backend", BACKENDS)
def test_adapt_leaves_model_unchanged_and_records_curves(backend):
    tasks = make_tasks(1, seed=7, dtype=torch.float32)
    net = ConvRestorer(channels=1, width=8, depth=3)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    learner = MAML(net, inner_lr=0.05, inner_steps=2, **engine(backend))
    adapted = learner.adapt(tasks[0].support, mse, steps=4, query=tasks[0].query, metric=mse)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert len(adapted.support_losses) == 4 and len(adapted.query_metrics) == 5
    assert adapted.support_losses[-1] < adapted.support_losses[0]
    out = adapted(tasks[0].query[0])
    assert out.shape == tasks[0].query[0].shape
    assert not torch.allclose(out, net(tasks[0].query[0]))
    standalone = adapted.to_module()
    assert torch.allclose(standalone(tasks[0].query[0]), out)
    # the query metric at step 0 is the unadapted model's
    assert abs(adapted.query_metrics[0] - mse(net, tasks[0].query).item()) < 1e-6
    # adapt(steps=0) is the model itself
    assert torch.equal(learner.adapt(tasks[0].support, mse, steps=0)(tasks[0].query[0]), net(tasks[0].query[0]))


def test_finetune_is_the_adapt_inner_loop():
    tasks = make_tasks(1, seed=8)
    net = small_net(seed=6)
    for opt in ("sgd", "adam"):
        learner = MAML(net, inner_lr=0.05, inner_steps=3, inner_optimizer=opt)
        a = learner.adapt(tasks[0].support, mse)
        b = finetune(net, tasks[0].support, mse, steps=3, lr=0.05, optimizer=opt)
        assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
        assert a.support_losses == b.support_losses


@pytest.mark.parametrize("backend", BACKENDS)
def test_meta_step_on_batch_is_mean_of_per_task_meta_steps(backend):
    tasks = make_tasks(4, seed=9)
    learner = MAML(small_net(seed=7), inner_lr=0.2, inner_steps=2, **engine(backend))
    batched = meta_grad(learner, stack_tasks(tasks))
    per_task = torch.stack([meta_grad(learner, [t]) for t in tasks]).mean(0)
    assert torch.allclose(batched, per_task, rtol=1e-9, atol=1e-13)
    if backend == "func":  # vmap in chunks of 3 tasks: same meta-gradient
        learner.backend = FuncBackend(vmap=True, chunk_size=3)
        assert torch.allclose(meta_grad(learner, stack_tasks(tasks)), batched, rtol=1e-12, atol=1e-15)


def test_tasks_of_different_shapes_run_one_by_one_under_func():
    tasks = make_tasks(2, seed=10) + make_tasks(1, shots=5, seed=11)
    grads = [meta_grad(MAML(small_net(seed=8), inner_lr=0.2, inner_steps=2, **engine(b)), tasks) for b in BACKENDS]
    assert torch.allclose(grads[0], grads[2], rtol=1e-9) and torch.allclose(grads[1], grads[2], rtol=1e-9)


class TinyVAE(nn.Module):
    """Returns a tuple and draws noise in forward, like the kit's VAEs."""

    def __init__(self, pixels=36, latent=3):
        super().__init__()
        self.enc = nn.Linear(pixels, 2 * latent)
        self.dec = nn.Linear(latent, pixels)

    def encode(self, x):
        return self.enc(x.flatten(1)).chunk(2, dim=1)

    def forward(self, x):
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.dec(z).view_as(x), mu, logvar


def elbo(model, batch):
    x = batch[0]
    recon, mu, logvar = model(x)
    kl = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(1).mean()
    return ((recon - x) ** 2).sum((1, 2, 3)).mean() + kl


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_forward_with_tuple_outputs(backend):
    images = torch.rand(4, 2, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    tasks = [Task((images[i, :1], torch.zeros(1, dtype=torch.long)), (images[i, 1:], torch.zeros(1, dtype=torch.long)))
             for i in range(4)]
    vae = TinyVAE()
    learner = MAML(vae, inner_lr=0.01, inner_steps=2, **engine(backend))
    learner.meta_loss(tasks, elbo).backward()
    assert all(torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0 for p in vae.parameters())
    adapted = learner.adapt(tasks[0].support, elbo)
    mu, _ = adapted.encode(images[0, :1])  # methods other than forward see the adapted weights
    assert not torch.allclose(mu, vae.encode(images[0, :1])[0])
    # "different": each task draws its own noise, so two identical tasks get different losses
    same = [tasks[0], tasks[0]]
    if backend == "func":
        out = MAML(vae, inner_lr=0.01, inner_steps=1,
                   backend=FuncBackend(vmap=True, randomness="different")).meta_objective(same, elbo)
        assert out.query_after[0] != out.query_after[1]
        out = MAML(vae, inner_lr=0.01, inner_steps=1,
                   backend=FuncBackend(vmap=True, randomness="same")).meta_objective(same, elbo)
        assert out.query_after[0] == out.query_after[1]


def test_batchnorm_is_refused_with_a_clear_message():
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Conv2d(4, 1, 3, padding=1))
    with pytest.raises(ValueError, match="BatchNorm") as info:
        MAML(net, backend="func")
    message = str(info.value)
    assert "vmap" in message and "GroupNorm" in message and "backend='higher'" in message
    with pytest.raises(ValueError, match="BatchNorm"):
        MAML(net, backend=FuncBackend(vmap=False))
    assert MAML(net, backend="auto").backend == HigherBackend()
    assert MAML(net, backend="auto").config()["backend"] == "higher"
    assert MAML(ConvRestorer(norm="group"), backend="auto").backend == FuncBackend()


def test_nan_guard_names_step_and_learning_rate():
    tasks = make_tasks(2, seed=12, dtype=torch.float32)
    for backend in BACKENDS:
        learner = MAML(small_net(seed=9).float(), inner_lr=1e8, inner_steps=5, **engine(backend))
        with pytest.raises(DivergenceError, match=r"inner step \d+ .*inner_lr=100000000.0") as info:
            learner.meta_loss(tasks, mse)
        assert isinstance(info.value, ValueError)
        with pytest.raises(DivergenceError, match="inner step 3"):
            learner.adapt(tasks[0].support, mse)
    bad = make_tasks(1, seed=13)
    bad[0].support[0][0, 0, 0, 0] = float("nan")
    with pytest.raises(DivergenceError, match="inner step 0"):
        MAML(small_net(), inner_lr=0.1).meta_loss(bad, mse)
    with pytest.raises(DivergenceError, match="inner step 0"):
        MAML(small_net(), inner_lr=0.1, backend="higher").meta_loss(bad, mse)


def test_bad_inputs_name_the_argument():
    net = small_net()
    cases = [
        (dict(inner_steps=-1), "inner_steps"), (dict(inner_lr=0.0), "inner_lr"), (dict(inner_lr=-0.1), "inner_lr"),
        (dict(backend="jax"), "backend"), (dict(inner_optimizer="lbfgs"), "inner_optimizer"),
        (dict(adapt_params=["nope"]), "adapt_params"),
    ]
    for kwargs, name in cases:
        with pytest.raises(ValueError, match=name):
            MAML(net, **kwargs)
    with pytest.raises(TypeError, match="inner_steps"):
        MAML(net, inner_steps=2.5)
    with pytest.raises(TypeError, match="backend must be"):
        MAML(net, backend=object())
    for kwargs, name in [(dict(randomness="x"), "randomness"), (dict(chunk_size=0), "chunk_size")]:
        with pytest.raises(ValueError, match=name):
            FuncBackend(**kwargs)
    with pytest.raises(TypeError, match="vmap must be"):
        FuncBackend(vmap="yes")
    learner = MAML(net)
    with pytest.raises(ValueError, match="tasks"):
        learner.meta_loss([], mse)
    with pytest.raises(TypeError, match="loss_fn"):
        learner.meta_loss(make_tasks(1), "mse")
    with pytest.raises(TypeError, match="support"):
        learner.adapt(make_tasks(1)[0], mse)
    with pytest.raises(ValueError, match="query and metric"):
        learner.adapt(make_tasks(1)[0].support, mse, query=make_tasks(1)[0].query)
    with pytest.raises(ValueError, match="steps"):
        learner.adapt(make_tasks(1)[0].support, mse, steps=-2)
    with pytest.raises(ValueError, match="first_order"):
        Reptile(net, first_order=False)


def test_second_order_memory_grows_linearly_with_inner_steps():
    net = ConvRestorer(channels=1, width=8, depth=3)
    support = tuple(torch.rand(5, 1, 16, 16) for _ in range(2))
    est = second_order_memory_estimate(net, support, mse, inner_steps=5, meta_batch=4)
    activation_bytes = 5 * 8 * 16 * 16 * 4  # one hidden activation of the support batch
    assert est["per_step_bytes"] > activation_bytes
    assert est["bytes_per_task"] == est["base_bytes"] + 5 * est["per_step_bytes"]
    assert est["total_bytes"] == 4 * est["bytes_per_task"]
    longer = second_order_memory_estimate(net, support, mse, inner_steps=10)
    assert longer["bytes_per_task"] > est["bytes_per_task"]


def test_pure_functional_meta_gradient_matches_the_learner():
    from metalearn_kit.meta import FunctionalSGD, functional_meta_grad

    batch = stack_tasks(make_tasks(3, seed=14))
    for first_order in (False, True):
        learner = MAML(small_net(seed=10), inner_lr=0.2, inner_steps=3, first_order=first_order)
        expected = meta_grad(learner, batch)
        params = {n: p.detach() for n, p in learner.model.named_parameters()}
        grads, loss = functional_meta_grad(learner.model, params, {}, batch.support, batch.query, mse,
                                           FunctionalSGD(), 3, 0.2, first_order)
        got = torch.cat([grads[n].reshape(-1) for n in params])
        assert torch.allclose(got, expected, rtol=1e-10, atol=1e-14)
        assert abs(loss.item() - learner.meta_loss(batch, mse).item()) < 1e-12


def test_conv_restorer_shapes_norms_and_bad_arguments():
    x = torch.rand(2, 3, 16, 16)
    for norm in (None, "group", "layer"):
        model = ConvRestorer(channels=3, width=16, depth=4, norm=norm)
        assert model(x).shape == x.shape
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    default = ConvRestorer()
    assert sum(isinstance(m, nn.Conv2d) for m in default.modules()) == 4 and default.head.in_channels == 32
    # residual: starts near the identity, and is exactly the identity when the head is zero
    assert (default(x[:, :1]) - x[:, :1]).abs().mean() < 0.1
    torch.nn.init.zeros_(default.head.weight)
    assert torch.equal(default(x[:, :1]), x[:, :1])
    plain = ConvRestorer(residual=False)
    assert (plain(x[:, :1]) - x[:, :1]).abs().mean() > 0.1
    for kwargs, name in ((dict(norm="batch"), "norm"), (dict(depth=1), "depth"), (dict(activation="elu"), "activation"),
                         (dict(width=0), "width")):
        with pytest.raises(ValueError, match=name):
            ConvRestorer(**kwargs)
