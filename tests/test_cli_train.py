"""``metalearn-kit train``: runs in-process, writes a checkpoint, the meta-learned weights and a JSON log,
resumes exactly, records into the meta-database, and turns bad arguments into exit code 2 naming the flag."""

from __future__ import annotations

import json

import pytest
import torch

from metalearn_kit import checkpoints
from metalearn_kit.cli import main
from metalearn_kit.recipes import build_experiment, list_experiments

FAST = ["--profile", "fast", "--no-progress"]


@pytest.fixture(autouse=True)
def one_process(monkeypatch):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("METALEARN_KIT_DEVICE", "cpu")
    torch.set_num_threads(1)


def train(*args: str) -> int:
    return main(["train", *args, *FAST])


def test_train_writes_checkpoint_model_and_log_then_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    assert train("denoise", "--iterations", "3", "--meta-batch", "2", "--out", str(out)) == 0
    assert "to iteration 3 on 1 rank(s)" in capsys.readouterr().out
    log = json.loads((out / "train_log.json").read_text())
    assert log["status"] == "finished" and log["iterations_done"] == 3 and log["world_size"] == 1
    assert log["experiment"]["experiment"] == "denoise" and log["experiment"]["algorithm"] == "maml"
    assert log["experiment"]["settings"]["meta_batch"] == 2
    assert log["history"]["iteration"] == [1, 2, 3]
    assert all(v > 0 for v in log["history"]["meta_loss"])
    _, meta = checkpoints.load(out / "meta_train.safetensors")
    assert meta["iteration"] == 3
    weights, model_meta = checkpoints.load(out / "model.safetensors")
    assert model_meta["kind"] == "meta_learned_init" and model_meta["iteration"] == 3
    assert set(weights) == set(build_experiment("denoise", profile="fast").model.state_dict())
    assert not (out / "inner_lrs.safetensors").exists()  # MAML's inner rate is a setting, not learnt

    # a second run into the same folder must say --resume instead of silently overwriting
    assert train("denoise", "--iterations", "5", "--meta-batch", "2", "--out", str(out)) == 2
    assert "--resume" in capsys.readouterr().err

    assert train("denoise", "--iterations", "5", "--meta-batch", "2", "--out", str(out), "--resume") == 0
    log = json.loads((out / "train_log.json").read_text())
    assert log["resumed_from"] == 3 and log["iterations_done"] == 5
    assert log["history"]["iteration"] == [1, 2, 3, 4, 5]

    # resuming gives the same weights as one uninterrupted run of 5 iterations
    straight = tmp_path / "straight"
    assert train("denoise", "--iterations", "5", "--meta-batch", "2", "--out", str(straight)) == 0
    resumed, _ = checkpoints.load(out / "model.safetensors")
    direct, _ = checkpoints.load(straight / "model.safetensors")
    for name in direct:
        assert torch.equal(resumed[name], direct[name]), name


def test_metasgd_run_keeps_its_learned_learning_rates(tmp_path):
    from metalearn_kit.meta import MetaSGD

    out = tmp_path / "metasgd"
    assert train("denoise", "--algorithm", "metasgd", "--iterations", "2", "--meta-batch", "2", "--out", str(out)) == 0
    rates, meta = checkpoints.load(out / "inner_lrs.safetensors")
    assert meta["kind"] == "meta_learned_inner_lrs" and meta["algorithm"] == "metasgd"
    learner = MetaSGD(build_experiment("denoise", profile="fast").model, inner_lr=0.1, inner_steps=2)
    expected = learner.inner_learning_rates()
    assert set(rates) == set(expected) and all(rates[n].shape == expected[n].shape for n in rates)
    assert any(not torch.allclose(r, torch.full_like(r, 0.1)) for r in rates.values())  # they were trained
    # the learned rates are also in the resumable checkpoint, with the rest of the learner
    state, _ = checkpoints.load(out / "meta_train.safetensors")
    assert any(k.startswith("learner.inner_lrs.") for k in state)


def test_algorithm_and_backend_override(tmp_path):
    out = tmp_path / "reptile"
    assert train("denoise", "--algorithm", "reptile", "--backend", "higher", "--iterations", "2", "--meta-batch",
                 "2", "--out", str(out)) == 0
    learner = json.loads((out / "train_log.json").read_text())["experiment"]["learner"]
    assert learner["algorithm"] == "reptile" and learner["backend"] == "higher"


def test_store_records_run_tasks_and_model(tmp_path):
    from metalearn_kit.store import MetaDatabase

    db_path = tmp_path / "meta.sqlite"
    out = tmp_path / "run"
    assert train("denoise", "--iterations", "4", "--meta-batch", "2", "--out", str(out), "--store", str(db_path),
                 "--store-every", "2") == 0
    run_id = json.loads((out / "train_log.json").read_text())["store"]["run_id"]
    with MetaDatabase(db_path) as db:
        run = db.run(run_id)
        assert run["algorithm"] == "maml" and run["status"] == "finished"
        assert run["final_metrics"]["iteration"] == 4 and run["final_metrics"]["meta_loss"] > 0
        assert db.counts()["tasks"] >= 1  # meta-batches of iterations 2 and 4 (2 tasks each, maybe repeated)
        assert len(db.artefacts(run_id=run_id)) == 1  # the meta-learned initialisation


@pytest.mark.parametrize("argv, flag", [
    (["nope"], "experiment"),
    (["denoise", "--iterations", "0"], "--iterations"),
    (["denoise", "--meta-batch", "0"], "--meta-batch"),
    (["denoise", "--algorithm", "sgd"], "--algorithm"),
    (["denoise", "--backend", "jax"], "--backend"),
    (["denoise", "--profile", "huge"], "--profile"),
    (["denoise", "--seed", "-1"], "--seed"),
    (["denoise", "--dist-timeout", "0"], "--dist-timeout"),
])
def test_bad_arguments_exit_2_naming_the_argument(argv, flag, tmp_path, capsys):
    assert main(["train", *argv, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("metalearn-kit: error: ") and flag in err, err
    assert not (tmp_path / "x").exists()


def test_meta_batch_not_divisible_by_world_size(monkeypatch, tmp_path, capsys):
    # checked before joining the process group, so no rendezvous is needed to get the error
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(["train", "denoise", "--meta-batch", "3", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "--meta-batch 3 is not divisible by the world size 2" in err and "use 2 or 4" in err


def test_checkpoint_experiment_trains_exactly_what_pretrain_trains(tmp_path):
    from metalearn_kit.recipes import restoration, restoration_config

    out = tmp_path / "run"
    assert train("restoration_denoise_maml", "--iterations", "2", "--out", str(out)) == 0
    weights, _ = checkpoints.load(out / "model.safetensors")
    config = restoration_config("denoising", "fast", sizes={"meta_iterations": 2})
    model, _ = restoration.train_checkpoint("restoration_denoise_maml", config, seed=0)
    for name, value in model.state_dict().items():
        assert torch.equal(weights[name], value), name
    log = json.loads((out / "train_log.json").read_text())
    assert log["experiment"]["details"]["config"] == restoration_config("denoising", "fast").as_dict()


def test_checkpoint_experiments_use_the_benchmark_configs():
    from metalearn_kit.recipes import generation, restoration, restoration_config

    names = set(list_experiments())
    assert set(restoration.META_TRAINED) | {"generation_maml", "generation_fomaml", "generation_reptile"} <= names
    for profile in ("fast", "full"):
        setup = build_experiment("restoration_siren_maml", profile=profile)
        config = restoration_config("image_fitting", profile)
        assert setup.details["config"] == config.as_dict()
        assert (setup.learner.inner_lr, setup.learner.inner_steps) == (config.inner_lr, config.inner_steps)
        assert setup.train.iterations == config.meta_iterations
        assert setup.train.meta_batch == config.meta_batch and setup.train.meta_lr == config.meta_lr
        assert len(setup.model.body) == config.hidden_layers and setup.model.head.in_features == config.width
    # every full-size experiment builds (its patches fit the photographs, its samplers draw), not only the fast ones
    for name in sorted(set(restoration.META_TRAINED) - {"restoration_sr_mzsr"}):  # SR would pretrain first
        setup = build_experiment(name, profile="full")
        tasks = setup.task_sampler.sample_batch(1, torch.Generator().manual_seed(0))
        assert all(torch.isfinite(t).all() for t in tasks.support), name
    sr_config = restoration_config("super_resolution", "full")
    for split in ("train", "test"):
        restoration.restoration_sampler(sr_config, "sr", split).sample_batch(1, 0)
    assert build_experiment("generation_maml", profile="full").details["config"]["profile"] == "full"
    setup = build_experiment("generation_reptile", profile="fast")
    config = generation.generation_config("fast")
    assert setup.algorithm == "reptile" and setup.learner.train_on == "support+query"
    assert setup.learner.inner_grad_clip == config.inner_grad_clip
    assert setup.train.grad_clip == config.meta_grad_clip and setup.train.query_before is False
    assert build_experiment("restoration_n2s_maml", profile="fast").algorithm == "fomaml"


def test_experiment_registry():
    assert {"denoise", "sr", "glyph-vae"} <= set(list_experiments())
    with pytest.raises(ValueError, match=r"experiment must be one of .*got 'nope'"):
        build_experiment("nope")
    with pytest.raises(ValueError, match="algorithm must be one of"):
        build_experiment("denoise", profile="fast", algorithm="adam")
    a = build_experiment("sr", profile="fast", algorithm="metasgd", seed=3)
    b = build_experiment("sr", profile="fast", algorithm="metasgd", seed=3)
    for (name, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(x, y), name  # the seed alone fixes the initial weights
    tasks = a.task_sampler.sample_batch(2, torch.Generator().manual_seed(0))
    assert tasks.infos[0]["family"] == "super_resolution"
    loss = a.learner.meta_loss(tasks, a.loss_fn)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert a.describe()["learner"]["algorithm"] == "metasgd"
