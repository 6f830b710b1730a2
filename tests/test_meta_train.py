"""meta_train (history, validation, callbacks, store hook, guards, exact resume) and the baselines."""

import inspect
import json
import math
from dataclasses import replace

import pytest
import torch

from metalearn_kit import checkpoints
from metalearn_kit.meta import (
    MAML,
    DivergenceError,
    MetaSGD,
    MetaTrainConfig,
    Reptile,
    finetune,
    joint_pretrain,
    meta_train,
    scratch_baseline,
)
from metalearn_kit.models.conv import ConvRestorer
from metalearn_kit.tasks.task import Task, TaskBatch, stack_tasks


def mse(model, batch):
    degraded, clean = batch
    return ((model(degraded) - clean) ** 2).mean()


class NoiseTasks:
    """Denoising tasks: each task has its own noise level; ``sample_batch(n, generator)`` like the kit's
    task distributions."""

    def __init__(self, shots=4, queries=4, size=8, sigma=(0.05, 0.3)):
        self.shots, self.queries, self.size, self.sigma = shots, queries, size, sigma

    def sample_batch(self, n, generator):
        tasks = []
        for _ in range(n):
            lo, hi = self.sigma
            sigma = lo + (hi - lo) * torch.rand((), generator=generator)

            def pair(k, sigma=sigma):
                base = torch.rand(k, 1, 1, 1, generator=generator)
                clean = (base + 0.2 * torch.rand(k, 1, self.size, self.size, generator=generator)).clamp(0, 1)
                return (clean + sigma * torch.randn(clean.shape, generator=generator), clean)

            tasks.append(Task(pair(self.shots), pair(self.queries), {"sigma": float(sigma)}))
        return stack_tasks(tasks)


def net(seed=0):
    torch.manual_seed(seed)
    return ConvRestorer(channels=1, width=8, depth=3)


def params_of(module):
    return torch.nn.utils.parameters_to_vector(module.parameters()).detach().clone()


@pytest.mark.parametrize("backend", ["func", "higher"])
def test_meta_train_history_validation_callbacks_and_store(backend):
    calls, stored = [], []

    class Store:
        def record(self, **fields):
            stored.append(fields)

    learner = MAML(net(), inner_lr=0.1, inner_steps=2, backend=backend)
    config = MetaTrainConfig(iterations=6, meta_batch=3, meta_lr=3e-3, val_every=4, val_tasks=3, progress=False)
    history = meta_train(learner, NoiseTasks(), mse, config, val_sampler=NoiseTasks(),
                         callbacks=[lambda i, r: calls.append((i, r))], store=Store())
    assert history["iteration"] == [1, 2, 3, 4, 5, 6]
    assert history["val_iteration"] == [4, 6]
    for key in ("meta_loss", "query_loss_before", "query_loss_after", "grad_norm", "wall_time_s",
                "support_loss_first", "support_loss_last"):
        assert len(history[key]) == 6 and all(math.isfinite(v) for v in history[key]), key
    assert history["meta_loss"] == history["query_loss_after"]
    assert history["wall_time_s"] == sorted(history["wall_time_s"])
    assert [i for i, _ in calls] == [1, 2, 3, 4, 5, 6]
    assert "val_query_loss_after" in calls[3][1] and "val_query_loss_after" not in calls[2][1]
    # adaptation helps on the validation tasks
    assert history["val_query_loss_after"][-1] < history["val_query_loss_before"][-1]
    assert len(stored) == 1 and stored[0]["kind"] == "meta_train"
    assert stored[0]["config"]["learner"]["backend"] == backend and stored[0]["final"]["iteration"] == 6
    # the loop's record keeps its keys, so checkpoints and meta-database rows stay comparable across versions
    assert stored[0]["config"]["loop"] == {
        "meta_batch": 3, "meta_lr": 3e-3, "meta_optimizer": "adam", "grad_clip": None, "iterations": 6,
        "time_budget_s": None, "val_every": 4, "val_tasks": 3, "val_steps": None, "meta_lr_schedule": "constant"}
    json.dumps(history)  # the history is plain data


def test_meta_train_lowers_the_query_loss():
    learner = MAML(net(), inner_lr=0.1, inner_steps=2)
    sampler = NoiseTasks()
    val = sampler.sample_batch(8, torch.Generator().manual_seed(99))
    before = learner.evaluate(val, mse)["query_loss_after"]
    meta_train(learner, sampler, mse, MetaTrainConfig(iterations=25, meta_batch=4, meta_lr=1e-2, progress=False))
    after = learner.evaluate(val, mse)["query_loss_after"]
    assert after < 0.8 * before


def test_resume_is_bit_identical(tmp_path):
    def run(iterations, checkpoint_dir=None, resume=False, learner=None):
        learner = learner or MetaSGD(net(seed=1), inner_lr=0.05, inner_steps=2)
        config = MetaTrainConfig(iterations=iterations, meta_batch=2, meta_lr=1e-2, checkpoint_dir=checkpoint_dir,
                                 checkpoint_every=3, resume=resume, val_every=5, val_tasks=2, progress=False)
        history = meta_train(learner, NoiseTasks(), mse, config, val_sampler=NoiseTasks(), generator=7)
        return learner, history

    straight, straight_history = run(8)
    run(4, checkpoint_dir=tmp_path)  # stopped half-way
    state, meta = checkpoints.load(tmp_path / "meta_train.safetensors")
    assert meta["iteration"] == 4 and any(k.startswith("optimizer.state.") for k in state)
    assert state["rng.sampler"].dtype == torch.uint8
    resumed, resumed_history = run(8, checkpoint_dir=tmp_path, resume=True)
    assert torch.equal(params_of(straight), params_of(resumed))
    assert straight_history["meta_loss"] == resumed_history["meta_loss"]
    assert resumed_history["iteration"] == list(range(1, 9))
    # a different learner cannot resume this run
    with pytest.raises(ValueError, match="learner differs"):
        run(8, checkpoint_dir=tmp_path, resume=True, learner=MAML(net(seed=1), inner_lr=0.05, inner_steps=2))


def test_reptile_through_meta_train_with_sgd_is_the_reptile_update():
    sampler = NoiseTasks()
    learner = Reptile(net(seed=2), inner_lr=0.1, inner_steps=3)
    initial = params_of(learner.model)
    tasks = sampler.sample_batch(3, torch.Generator().manual_seed(5))
    names = [n for n, _ in learner.model.named_parameters()]
    adapted = torch.stack([torch.nn.utils.parameters_to_vector([learner.adapt(t.support, mse).params[n] for n in names])
                           for t in tasks]).mean(0)
    meta_train(learner, lambda n, g: tasks, mse,
               MetaTrainConfig(iterations=1, meta_batch=3, meta_lr=0.5, meta_optimizer="sgd", progress=False))
    assert torch.allclose(params_of(learner.model), initial + 0.5 * (adapted - initial), atol=1e-6)


def test_time_budget_and_divergence_guard():
    learner = MAML(net(), inner_lr=0.05, inner_steps=1)
    history = meta_train(learner, NoiseTasks(), mse, MetaTrainConfig(time_budget_s=0.5, meta_batch=2, progress=False))
    assert history["stopped"] == "time_budget" and len(history["iteration"]) >= 1
    assert history["wall_time_s"][-1] < 5
    diverging = MAML(net(), inner_lr=1e9, inner_steps=3)
    with pytest.raises(DivergenceError, match=r"meta iteration 1 .*inner step \d.*inner_lr=1000000000.0"):
        meta_train(diverging, NoiseTasks(), mse, MetaTrainConfig(iterations=3, progress=False))
    with pytest.raises(DivergenceError, match=r"meta iteration 2 \(meta_lr=1e\+20\)"):
        meta_train(MAML(net(), inner_lr=0.05, inner_steps=1), NoiseTasks(), mse,
                   MetaTrainConfig(iterations=3, meta_lr=1e20, meta_optimizer="sgd", progress=False))


def test_meta_train_bad_inputs():
    learner = MAML(net(), inner_steps=1)
    with pytest.raises(ValueError, match="iterations or time_budget_s"):
        MetaTrainConfig()
    with pytest.raises(ValueError, match="meta_batch"):
        MetaTrainConfig(iterations=1, meta_batch=0)
    with pytest.raises(ValueError, match="meta_optimizer"):
        MetaTrainConfig(iterations=1, meta_optimizer="rmsprop")
    with pytest.raises(ValueError, match="checkpoint_dir"):
        MetaTrainConfig(iterations=1, resume=True)
    with pytest.raises(TypeError, match="task_sampler"):
        meta_train(learner, object(), mse, MetaTrainConfig(iterations=1))
    with pytest.raises(ValueError, match=r"resume=True but checkpoint_dir .* does not exist"):
        meta_train(learner, NoiseTasks(), mse, MetaTrainConfig(iterations=1, checkpoint_dir="no/such/run", resume=True))
    # the loop settings live in the config: loose keyword arguments are refused with the call that works
    with pytest.raises(TypeError, match=r"MetaTrainConfig\(iterations=\.\.\., meta_batch=\.\.\.\)"):
        meta_train(learner, NoiseTasks(), mse, iterations=1, meta_batch=2)
    with pytest.raises(TypeError, match=r"config must be a MetaTrainConfig.*got int"):
        meta_train(learner, NoiseTasks(), mse, 100)


def test_meta_train_takes_one_settings_object():
    assert len(inspect.signature(meta_train).parameters) <= 8
    assert set(MetaTrainConfig(iterations=1).describe()) == {
        "meta_batch", "meta_lr", "meta_optimizer", "grad_clip", "iterations", "time_budget_s", "val_every",
        "val_tasks", "val_steps", "meta_lr_schedule"}


@pytest.mark.parametrize("field, value", [
    ("iterations", 0), ("time_budget_s", -1.0), ("meta_batch", 0), ("meta_lr", 0.0), ("meta_optimizer", "rmsprop"),
    ("meta_lr_schedule", "step"), ("grad_clip", 0.0), ("query_before", "yes"), ("val_every", 0), ("val_tasks", 0),
    ("val_steps", -1), ("val_seed", -1), ("checkpoint_every", 0), ("resume", "maybe"), ("progress", None),
])
def test_meta_train_config_refuses_a_bad_value_naming_the_field(field, value):
    with pytest.raises((TypeError, ValueError), match=field):
        replace(MetaTrainConfig(iterations=10), **{field: value})


def test_grad_clip_bounds_the_meta_gradient():
    learner = MAML(net(), inner_lr=0.1, inner_steps=1)
    seen = []

    def callback(i, record):
        seen.append(max(p.grad.norm() for p in learner.parameters()))

    meta_train(learner, NoiseTasks(), mse, MetaTrainConfig(iterations=2, grad_clip=1e-3, progress=False),
               callbacks=callback)
    total = torch.sqrt(sum(p.grad.norm() ** 2 for p in learner.parameters()))
    assert total <= 1e-3 * 1.0001


def test_joint_pretrain_then_finetune_and_scratch_baseline():
    sampler = NoiseTasks()
    model = net(seed=3)
    initial = params_of(model)
    history = joint_pretrain(model, sampler, mse, iterations=15, meta_batch=4, lr=1e-2, progress=False)
    assert len(history["loss"]) == 15 and history["loss"][-1] < history["loss"][0]
    assert not torch.equal(initial, params_of(model))
    task = sampler.sample_batch(1, torch.Generator().manual_seed(11))[0]
    tuned = finetune(model, task.support, mse, steps=5, lr=1e-3, optimizer="adam", query=task.query, metric=mse)
    assert len(tuned.query_metrics) == 6 and tuned.support_losses[-1] < tuned.support_losses[0]
    scratch_a = scratch_baseline(lambda: ConvRestorer(1, 8, 3), task.support, mse, steps=5, lr=1e-2, seed=4)
    scratch_b = scratch_baseline(lambda: ConvRestorer(1, 8, 3), task.support, mse, steps=5, lr=1e-2, seed=4)
    assert scratch_a.support_losses == scratch_b.support_losses  # seeded init
    assert scratch_a.support_losses[-1] < scratch_a.support_losses[0]
    with pytest.raises(ValueError, match="adapt_params"):
        finetune(model, task.support, mse, steps=1, lr=0.1, adapt_params=["missing"])
    with pytest.raises(ValueError, match="lr"):
        finetune(model, task.support, mse, steps=1, lr=0.0)
    assert isinstance(sampler.sample_batch(2, torch.Generator()), TaskBatch)


def test_cosine_meta_lr_schedule_steps_and_resumes(tmp_path):
    used = []

    class RecordingSGD(torch.optim.SGD):
        def step(self, closure=None):
            used.append(self.param_groups[0]["lr"])
            return super().step(closure)

    class Interrupted(Exception):
        pass

    def stop_at_3(iteration, record):
        if iteration == 3:
            raise Interrupted

    def run(iterations, checkpoint_dir=None, resume=False, callbacks=()):
        learner = MAML(net(seed=3), inner_lr=0.05, inner_steps=1)
        config = MetaTrainConfig(iterations=iterations, meta_batch=2, meta_lr=0.1, meta_optimizer=RecordingSGD,
                                 meta_lr_schedule="cosine", checkpoint_dir=checkpoint_dir, checkpoint_every=2,
                                 resume=resume, progress=False)
        meta_train(learner, NoiseTasks(), mse, config, generator=4, callbacks=callbacks)
        return learner

    def schedule(steps):
        return pytest.approx([0.1 * 0.5 * (1 + math.cos(math.pi * i / 4)) for i in steps])

    straight = run(4)
    assert used == schedule(range(4)) and used[0] == pytest.approx(0.1) and used[-1] < 0.02
    # a run killed after step 3 (last checkpoint: step 2) and resumed follows the same schedule exactly
    with pytest.raises(Interrupted):
        run(4, checkpoint_dir=tmp_path, callbacks=[stop_at_3])
    used.clear()
    resumed = run(4, checkpoint_dir=tmp_path, resume=True)
    assert used == schedule((2, 3))
    assert torch.equal(params_of(straight), params_of(resumed))
    # resuming with another length would bend the schedule half-way: refused, naming both
    with pytest.raises(ValueError, match=r"meta_lr_schedule='cosine' over iterations=4, now 'cosine' over "
                                         r"iterations=6"):
        run(6, checkpoint_dir=tmp_path, resume=True)


def test_meta_lr_schedule_bad_inputs():
    with pytest.raises(ValueError, match=r"meta_lr_schedule must be one of \('constant', 'cosine'\), got 'step'"):
        MetaTrainConfig(iterations=2, meta_lr_schedule="step")
    with pytest.raises(ValueError, match=r"meta_lr_schedule='cosine' needs iterations"):
        MetaTrainConfig(time_budget_s=1.0, meta_lr_schedule="cosine")
