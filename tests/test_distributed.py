"""Distributed meta-training on CPU with gloo: 2 ranks x 4 tasks == 1 process x 8 tasks, every algorithm and
both backends; a killed rank stops the others with a clear message and the run resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from metalearn_kit import checkpoints
from metalearn_kit.meta import MAML, MetaSGD, MetaTrainConfig, Reptile, meta_train
from metalearn_kit.meta.distributed import (
    DistributedContext,
    ShardedLearner,
    check_meta_batch,
    distributed_meta_train,
    init_distributed,
    shard_range,
    shutdown_distributed,
    take_shard,
    world_from_env,
)
from metalearn_kit.models.conv import ConvRestorer
from metalearn_kit.tasks import RestorationTasks

# (algorithm, backend) pairs: every algorithm, both backends
CASES = [("maml", "func"), ("fomaml", "higher"), ("reptile", "func"), ("metasgd", "higher"), ("maml", "higher")]
STEPS = 3
META_BATCH = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mse(model, batch):
    # float64: Reptile's direction theta - mean(phi) cancels most digits, and Adam rescales it to the step
    # size, so in float32 the summation order alone moves its parameters by ~1e-5 after a few steps
    return (model(batch[0].double()) - batch[1].double()).pow(2).mean()


def make_run(algorithm: str, backend: str):
    """A tiny model and tiny tasks: seconds for a few meta-steps on one core."""
    torch.manual_seed(0)
    images = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    sampler = RestorationTasks(images, "gaussian_noise", shots=3, queries=3)
    net = ConvRestorer(channels=1, width=4, depth=2).double()
    kwargs = dict(inner_lr=0.3, inner_steps=2, backend=backend)
    learner = {"maml": lambda: MAML(net, **kwargs), "fomaml": lambda: MAML(net, first_order=True, **kwargs),
               "reptile": lambda: Reptile(net, **kwargs), "metasgd": lambda: MetaSGD(net, **kwargs)}[algorithm]()
    return learner, sampler


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank), METALEARN_KIT_DEVICE="cpu")
    torch.set_num_threads(1)
    ctx = init_distributed(timeout_s=30)
    try:
        for algorithm, backend in CASES:
            learner, sampler = make_run(algorithm, backend)
            config = MetaTrainConfig(iterations=STEPS, meta_batch=META_BATCH, meta_lr=0.01, progress=False)
            history = distributed_meta_train(learner, sampler, mse, config, ctx, generator=5)
            if ctx.is_main:
                checkpoints.save(Path(out_dir) / f"{algorithm}-{backend}.safetensors", learner.state_dict(),
                                 {"meta_loss": history["meta_loss"], "grad_norm": history["grad_norm"]})
    finally:
        shutdown_distributed(ctx)


def test_two_ranks_equal_one_process(tmp_path):
    """The acceptance check: parameters after a few meta-steps agree within 1e-6 for every algorithm/backend,
    and so do the logged meta-losses (gathered from both ranks) and meta-gradient norms."""
    mp.start_processes(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    torch.set_num_threads(1)
    for algorithm, backend in CASES:
        learner, sampler = make_run(algorithm, backend)
        history = meta_train(learner, sampler, mse,
                             MetaTrainConfig(iterations=STEPS, meta_batch=META_BATCH, meta_lr=0.01, progress=False),
                             generator=5)
        state, meta = checkpoints.load(tmp_path / f"{algorithm}-{backend}.safetensors")
        reference = learner.state_dict()
        assert set(state) == set(reference)
        for name, value in reference.items():
            diff = float((state[name] - value).abs().max())
            assert diff < 1e-6, f"{algorithm}/{backend}: {name} differs by {diff}"
        # the parameters moved: equality is not trivially "nothing happened"
        start_learner, _ = make_run(algorithm, backend)
        moved = max(float((start_learner.state_dict()[k] - v).abs().max()) for k, v in reference.items())
        assert moved > 1e-4, f"{algorithm}/{backend} did not train"
        assert meta["meta_loss"] == pytest.approx(history["meta_loss"], rel=1e-5)
        assert meta["grad_norm"] == pytest.approx(history["grad_norm"], rel=1e-4)


def test_sharding_and_single_process_wrapper_is_exact():
    """Shards tile the meta-batch; on one process the wrapper's gradient is the learner's own, bit for bit."""
    assert [shard_range(8, 4, r) for r in range(4)] == [(0, 2), (2, 4), (4, 6), (6, 8)]
    with pytest.raises(ValueError, match=r"meta_batch=6 is not divisible by the world size 4.*such as 4 or 8"):
        check_meta_batch(6, 4)
    learner, sampler = make_run("maml", "func")
    tasks = sampler.sample_batch(META_BATCH, torch.Generator().manual_seed(3))
    shard = take_shard(tasks, 2, 5)
    assert len(shard) == 3 and shard.infos == tasks.infos[2:5]
    assert torch.equal(shard.support[0], tasks.support[0][2:5])

    learner.zero_grad()
    learner.meta_loss(tasks, mse).backward()
    direct = [p.grad.clone() for p in learner.parameters()]
    learner.zero_grad()
    wrapped = ShardedLearner(learner, DistributedContext())
    out = wrapped.meta_objective(tasks, mse, query_before=True)
    out.loss.backward()
    for g, p in zip(direct, learner.parameters()):
        assert torch.equal(g, p.grad)
    assert out.query_after.shape == (META_BATCH,) and out.query_before.shape == (META_BATCH,)
    assert wrapped.config() == learner.config()  # checkpoints stay interchangeable with 1-process runs


def test_world_from_env_rejects_bad_values(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match=r"\$RANK must be in \[0, 1\]"):
        world_from_env()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match=r"\$WORLD_SIZE must be an integer, got 'two'"):
        world_from_env()
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("RANK")
    assert world_from_env() == (0, 1, 0)


def test_time_budget_refused_with_several_ranks():
    learner, sampler = make_run("maml", "func")
    ctx = DistributedContext(rank=0, world_size=2, backend="gloo")
    with pytest.raises(ValueError, match="time_budget_s cannot be used with several ranks"):
        distributed_meta_train(learner, sampler, mse, MetaTrainConfig(iterations=2, meta_batch=4, time_budget_s=5.0),
                               ctx)


# ---------------------------------------------------------------- a rank dies
def _cli(rank: int, world_size: int, port: int, out: Path, iterations: int, extra: list[str] = ()) -> subprocess.Popen:
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
           "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank), "METALEARN_KIT_DEVICE": "cpu",
           "METALEARN_KIT_PROFILE": "fast", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    if world_size == 1:
        for key in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
            env.pop(key)
    command = [sys.executable, "-m", "metalearn_kit.cli", "train", "denoise", "--iterations", str(iterations),
               "--meta-batch", "2", "--checkpoint-every", "2", "--out", str(out), "--dist-timeout", "20",
               "--no-progress", *extra]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_killed_rank_stops_the_job_and_it_resumes(tmp_path):
    out = tmp_path / "run"
    port = free_port()
    ranks = [_cli(r, 2, port, out, iterations=100000) for r in range(2)]
    try:
        deadline = time.monotonic() + 90
        checkpoint = out / "meta_train.safetensors"
        while not checkpoint.exists():
            assert time.monotonic() < deadline, "no checkpoint within 90 s: " + ranks[0].stderr.read()
            assert all(p.poll() is None for p in ranks), "a rank exited early: " + ranks[0].stderr.read()
            time.sleep(0.2)
        ranks[1].send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        _, stderr = ranks[0].communicate(timeout=60)
        waited = time.monotonic() - killed_at
    finally:
        for p in ranks:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert ranks[0].returncode not in (0, None)
    assert waited < 45, f"rank 0 needed {waited:.1f} s to notice"
    assert "rank 0 lost:" in stderr and "resume with --resume" in stderr, stderr
    assert "meta_train.safetensors" in stderr  # the message names the checkpoint to resume from
    log = json.loads((out / "train_log.json").read_text())
    assert log["status"] == "rank_lost"

    # resume (here on one process: checkpoints do not depend on the number of ranks) and finish
    saved = json.loads((out / "meta_train.json").read_text())["iteration"]
    assert saved >= 2
    resumed = _cli(0, 1, port, out, iterations=saved + 2, extra=["--resume"])
    stdout, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr
    log = json.loads((out / "train_log.json").read_text())
    assert log["status"] == "finished" and log["resumed_from"] == saved
    assert log["history"]["iteration"] == list(range(1, saved + 3))
