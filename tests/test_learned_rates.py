"""Meta-SGD's learned inner rates: the defaults reproduce the original learner bit for bit; per-step rates
(MAML++) get finite-difference-exact gradients and carry their last step past the trained horizon; positive
rates never turn negative; learn_init=False trains the rates on a frozen initialisation; both backends agree
on every option. Synthetic float64 tasks only."""

import pytest
import torch

from metalearn_kit.meta import FuncBackend, FunctionalSGD, MetaSGD, MetaTrainConfig, meta_train
from metalearn_kit.meta.inner import rate_at
from metalearn_kit.models.conv import ConvRestorer
from metalearn_kit.tasks.task import Task

BACKENDS = {"func": FuncBackend(vmap=True), "func-loop": FuncBackend(vmap=False), "higher": "higher"}


def mse(model, batch):
    degraded, clean = batch
    return ((model(degraded) - clean) ** 2).mean()


def make_tasks(n, shots=3, queries=2, size=6, seed=0):
    """The same synthetic denoising tasks as tests/test_meta_engine.py (float64)."""
    g = torch.Generator().manual_seed(seed)
    tasks = []
    for _ in range(n):
        sigma = 0.05 + 0.3 * torch.rand((), generator=g, dtype=torch.float64)

        def pair(k, sigma=sigma):
            clean = torch.rand(k, 1, size, size, generator=g, dtype=torch.float64)
            return (clean + sigma * torch.randn(clean.shape, generator=g, dtype=torch.float64), clean)

        tasks.append(Task(pair(shots), pair(queries), {"sigma": float(sigma)}))
    return tasks


def small_net(seed=0, width=3, depth=2):
    torch.manual_seed(seed)
    net = ConvRestorer(channels=1, width=width, depth=depth, activation="silu").double()
    with torch.no_grad():  # away from the near-identity init so every second-order term matters
        for p in net.parameters():
            p.normal_(0.0, 0.4)
    return net


def flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def reference_meta_sgd_loss(learner, tasks):
    """Meta-SGD written out by hand (Li et al. 2017): ``phi <- phi - alpha * grad`` on the support with the
    graph kept, the query loss at the adapted weights, averaged over tasks; an independent check of the engine."""
    from torch.func import functional_call

    rates = learner.inner_learning_rates()
    total = 0.0
    for task in tasks:
        phi = dict(learner.model.named_parameters())
        for _ in range(learner.inner_steps):
            loss = mse(lambda x, phi=phi: functional_call(learner.model, phi, (x,)), task.support)
            grads = torch.autograd.grad(loss, list(phi.values()), create_graph=True)
            phi = {name: p - rates[name] * g for (name, p), g in zip(phi.items(), grads)}
        total = total + mse(lambda x, phi=phi: functional_call(learner.model, phi, (x,)), task.query)
    return total / len(tasks)


# ---------------------------------------------------------------- (a) the defaults are the original Meta-SGD
@pytest.mark.parametrize("backend,lr_shape", [("func-loop", "element"), ("func-loop", "tensor"),
                                              ("func", "element"), ("higher", "element")])
def test_defaults_are_meta_sgd_as_written(backend, lr_shape):
    learner = MetaSGD(small_net(seed=4), inner_lr=0.1, inner_steps=2, lr_shape=lr_shape, backend=BACKENDS[backend])
    with torch.no_grad():  # rates that differ per element, so a mix-up of rates and weights would show
        for rate in learner.inner_lrs.values():
            rate.mul_(torch.linspace(0.5, 1.5, rate.numel(), dtype=rate.dtype).reshape(rate.shape))
    tasks = make_tasks(2, seed=5)
    loss = learner.meta_loss(tasks, mse)
    engine_grads = torch.autograd.grad(loss, list(learner.parameters()))
    expected = reference_meta_sgd_loss(learner, tasks)
    expected_grads = torch.autograd.grad(expected, list(learner.parameters()))
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(flat(engine_grads), flat(expected_grads), rtol=1e-10, atol=1e-13)
    # the parameter names shipped checkpoints hold, and a recorded config without the new settings means defaults
    assert {n for n, _ in learner.named_parameters() if n.startswith("inner_lrs.")} == {
        "inner_lrs." + n.replace(".", "__") for n, _ in learner.model.named_parameters()}
    config = learner.config()
    assert (config["per_step"], config["positive"], config["learn_init"]) == (False, False, True)
    assert isinstance(learner.inner_learning_rates(), dict)


def test_bad_settings_are_named():
    with pytest.raises(TypeError, match="per_step"):
        MetaSGD(small_net(), per_step=1)
    with pytest.raises(ValueError, match="inner_steps"):
        MetaSGD(small_net(), inner_steps=0, per_step=True)


# ---------------------------------------------------------------- (b) per-step rates
def distinct_rates(learner):
    """Different rates at every step and element, so a mix-up of steps or names shows."""
    store = learner.inner_lr_log_scales if learner.positive else learner.inner_lrs
    with torch.no_grad():
        for v in store.values():
            spread = torch.linspace(-0.4, 0.4, v.numel(), dtype=v.dtype).reshape(v.shape)
            v.copy_(spread if learner.positive else v * (1 + spread))


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_per_step_rate_gradients_match_finite_differences(backend):
    tasks = make_tasks(2, seed=5)
    learner = MetaSGD(small_net(seed=4), inner_lr=0.1, inner_steps=3, per_step=True, backend=BACKENDS[backend])
    distinct_rates(learner)
    rates = learner.inner_lrs["head__weight"]
    assert rates.shape == (3, *learner.model.head.weight.shape)
    learner.meta_loss(tasks, mse).backward()
    for step in range(3):  # every step's rates, one random direction each
        direction = torch.zeros_like(rates)
        direction[step] = torch.randn(rates.shape[1:], dtype=rates.dtype, generator=torch.Generator().manual_seed(step))
        analytic = (rates.grad * direction).sum().item()
        with torch.no_grad():
            eps = 1e-6
            rates += eps * direction
            plus = learner.meta_loss(tasks, mse).item()
            rates -= 2 * eps * direction
            minus = learner.meta_loss(tasks, mse).item()
            rates += eps * direction
        numeric = (plus - minus) / (2 * eps)
        assert abs(numeric) > 1e-6, f"step {step}'s rates must matter"
        assert abs(analytic - numeric) < 1e-6 * max(1.0, abs(analytic)), f"step {step}"


def test_rate_at_uses_the_last_step_past_the_trained_horizon():
    rates = [{"w": torch.tensor(1.0)}, {"w": torch.tensor(2.0)}]
    assert [float(rate_at(rates, k)["w"]) for k in range(5)] == [1.0, 2.0, 2.0, 2.0, 2.0]
    assert rate_at(0.1, 7) == 0.1


def test_adapting_past_the_trained_steps_reuses_the_last_rates():
    support = make_tasks(1, seed=6)[0].support
    learner = MetaSGD(small_net(seed=4), inner_lr=0.1, inner_steps=3, per_step=True)
    with torch.no_grad():
        for v in learner.inner_lrs.values():
            v[:2] = 0.0  # steps 0 and 1 stand still; step 2 (and every later one) moves at 0.1
    plain = MetaSGD(small_net(seed=4), inner_lr=0.1, inner_steps=3)
    for steps, moving in ((1, 0), (2, 0), (3, 1), (7, 5)):
        adapted = learner.adapt(support, mse, steps=steps)
        expected = plain.adapt(support, mse, steps=moving)
        assert all(torch.equal(adapted.params[n], expected.params[n]) for n in expected.params), steps
        assert len(adapted.support_losses) == steps
    # the last step's rates set to zero: adapting longer than trained changes nothing further
    with torch.no_grad():
        for v in learner.inner_lrs.values():
            v[:2], v[2] = 0.1, 0.0
    two, ten = learner.adapt(support, mse, steps=2), learner.adapt(support, mse, steps=10)
    assert all(torch.equal(two.params[n], ten.params[n]) for n in two.params)


@pytest.mark.parametrize("backend", ["func-loop", "higher"])
def test_evaluating_past_the_trained_steps_runs_on_both_backends(backend):
    learner = MetaSGD(small_net(seed=4), inner_lr=0.1, inner_steps=2, per_step=True, backend=BACKENDS[backend])
    with torch.no_grad():
        for v in learner.inner_lrs.values():
            v[1] = 0.0
    tasks = make_tasks(2, seed=5)
    assert learner.evaluate(tasks, mse, steps=6) == learner.evaluate(tasks, mse, steps=1)


# ---------------------------------------------------------------- (c) positive rates
@pytest.mark.parametrize("per_step", [False, True])
def test_positive_rates_start_at_inner_lr_and_never_turn_negative(per_step):
    tasks = make_tasks(2, seed=5)
    rates = {}
    for positive in (False, True):
        learner = MetaSGD(small_net(seed=4), inner_lr=0.1, inner_steps=2, per_step=per_step, positive=positive)
        start = flat(learner.learned_rates().values())
        assert torch.equal(start, torch.full_like(start, 0.1))
        optimizer = torch.optim.SGD([p for n, p in learner.named_parameters() if not n.startswith("model.")],
                                    lr=1e4 if positive else 30.0)  # a step far past zero for some rates
        learner.meta_loss(tasks, mse).backward()
        optimizer.step()
        rates[positive] = flat(learner.learned_rates().values()).detach()
    assert (rates[False] < 0).any(), "the step must push some unconstrained rates negative"
    assert (rates[True] >= 0).all() and (rates[True] != 0.1).any()
    assert "inner_lr_log_scales" in dict(learner.named_children()) and not hasattr(learner, "inner_lrs")


# ---------------------------------------------------------------- (d) learned rates on a frozen initialisation
def test_frozen_init_trains_only_the_rates_and_still_adapts_the_weights():
    class Tasks:
        def __call__(self, n, generator):
            return make_tasks(n, seed=int(torch.randint(1000, (), generator=generator)))

    learner = MetaSGD(small_net(seed=4), inner_lr=0.05, inner_steps=2, learn_init=False)
    assert learner.config()["learn_init"] is False
    weights = {n: p.detach().clone() for n, p in learner.model.named_parameters()}
    rates = flat(learner.learned_rates().values()).detach().clone()
    meta_train(learner, Tasks(), mse, MetaTrainConfig(iterations=3, meta_batch=2, meta_lr=1e-2, progress=False))
    assert all(torch.equal(p, weights[n]) for n, p in learner.model.named_parameters())
    assert not torch.equal(flat(learner.learned_rates().values()), rates)
    adapted = learner.adapt(make_tasks(1, seed=9)[0].support, mse, steps=5)
    assert adapted.support_losses[-1] < adapted.support_losses[0]
    assert any(not torch.equal(adapted.params[n], weights[n]) for n in weights)


@pytest.mark.parametrize("backend", list(BACKENDS))
@pytest.mark.parametrize("first_order", [False, True])
def test_frozen_init_rate_gradient_equals_the_full_learners(backend, first_order):
    """Freezing the weights removes their gradient only: the rates' meta-gradient is unchanged."""
    tasks = make_tasks(2, seed=5)
    grads = {}
    for learn_init in (True, False):
        learner = MetaSGD(small_net(seed=4), inner_lr=0.1, inner_steps=2, learn_init=learn_init,
                          first_order=first_order, backend=BACKENDS[backend])
        learner.meta_loss(tasks, mse).backward()
        assert all((p.grad is None) != learn_init for p in learner.model.parameters())
        grads[learn_init] = flat([v.grad for v in learner.inner_lrs.values()])
    assert grads[False].abs().sum() > 0
    assert torch.allclose(grads[False], grads[True], rtol=1e-10, atol=1e-14)


# ---------------------------------------------------------------- (e) both backends agree on every option
OPTIONS = {"per_step": {"per_step": True}, "positive": {"positive": True},
           "per_step+positive+tensor": {"per_step": True, "positive": True, "lr_shape": "tensor"},
           "frozen_init": {"learn_init": False}, "frozen_init+per_step": {"learn_init": False, "per_step": True}}


@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("option", list(OPTIONS))
def test_backends_agree_on_learned_rate_options(option, opt):
    tasks = make_tasks(3, seed=1)
    losses, grads = {}, {}
    for backend in BACKENDS:
        inner_optimizer = FunctionalSGD(momentum=0.5) if opt == "sgd" else "adam"
        learner = MetaSGD(small_net(seed=3, width=4, depth=3), inner_lr=0.1 if opt == "sgd" else 0.02,
                          inner_steps=3, backend=BACKENDS[backend], inner_optimizer=inner_optimizer,
                          **OPTIONS[option])
        distinct_rates(learner)
        loss = learner.meta_loss(tasks, mse)
        loss.backward()
        losses[backend] = loss.item()
        grads[backend] = flat([p.grad for p in learner.parameters() if p.requires_grad])
        assert grads[backend].abs().sum() > 0
    for backend in ("func", "func-loop"):
        assert abs(losses[backend] - losses["higher"]) < 1e-10
        rel = (grads[backend] - grads["higher"]).norm() / grads["higher"].norm()
        assert rel < 1e-6, f"{option}/{opt}: {backend} and higher differ by {rel:.2e}"
