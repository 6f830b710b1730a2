"""Restoration experiments end-to-end with tiny budgets, the pretrained registry and the benchmark's checks."""

import json
import math

import pytest
import torch
from torch import nn

from metalearn_kit import pretrained
from metalearn_kit.evaluation import restoration as R
from metalearn_kit.evaluation.bench_restoration import check_targets, format_table
from metalearn_kit.models.conv import ConvRestorer
from metalearn_kit.models.operator_nets import CameraRestorer, FilterRestorer, PointwiseRestorer
from metalearn_kit.models.restoration import UnrolledRestorer
from metalearn_kit.models.siren import Siren
from metalearn_kit.recipes import restoration as recipe
from metalearn_kit.recipes import restoration_config

ROW_KEYS = {"experiment", "method", "steps", "metric", "value", "tasks"}


def _well_formed(rows, experiment, methods):
    assert rows
    for row in rows:
        assert ROW_KEYS <= set(row)
        assert row["experiment"] == experiment
        assert row["metric"] in ("psnr", "ssim", "wall_time_s")
        assert row["steps"] is None or isinstance(row["steps"], int)
        assert math.isfinite(row["value"])
    assert methods <= {r["method"] for r in rows}


def test_image_fitting_tiny_run_returns_rows(monkeypatch, tmp_path):
    monkeypatch.setenv(pretrained.DIR_ENV, str(tmp_path))  # nothing shipped is read or written
    torch.set_num_threads(1)
    rows = R.image_fitting(profile="fast", sizes={"patch": 16, "width": 16, "hidden_layers": 2,
                                                  "meta_iterations": 2, "meta_batch": 2, "test_images": 1,
                                                  "steps": [0, 2]})
    _well_formed(rows, "image_fitting", {"meta-init (MAML)", "meta-init + learned step sizes (Meta-SGD)",
                                         "meta-init + full-strength fine-tuning",
                                         "standard init + full-strength fine-tuning"})
    steps = {r["steps"] for r in rows if r["metric"] == "psnr"}
    assert steps == {0, 2}
    roles = {r["method"]: r["role"] for r in rows}
    assert roles["standard init + full-strength fine-tuning"] == "scratch"
    assert roles["meta-init + full-strength fine-tuning"] == "meta_tuned" and roles["meta-init (MAML)"] == "meta"
    assert not list(tmp_path.iterdir())  # a non-shipped config is never saved as a shipped checkpoint


def test_denoising_tiny_run_with_classical_references(monkeypatch, tmp_path):
    monkeypatch.setenv(pretrained.DIR_ENV, str(tmp_path))
    torch.set_num_threads(1)
    rows = R.few_shot_denoising(profile="fast", sizes={"width": 4, "depth": 2, "shots": 1, "queries": 1,
                                                       "meta_iterations": 1, "joint_iterations": 1, "meta_batch": 1,
                                                       "test_tasks": 1, "steps": [0, 1]})
    _well_formed(rows, "denoising", {"noisy input", "meta-init (MAML)", "scratch + full-strength fine-tuning",
                                     "joint pretrained + full-strength fine-tuning",
                                     "meta-init + full-strength fine-tuning", "BM3D", "non-local means",
                                     "sparse dictionary (OMP)"})
    psnr = {(r["method"], r["steps"]): r["value"] for r in rows if r["metric"] == "psnr"}
    assert psnr[("BM3D", None)] > psnr[("noisy input", None)]
    assert {r["role"] for r in rows} == {"input", "meta", "meta_tuned", "joint", "scratch", "classical"}
    assert {r["test_source"] for r in rows} <= {"kodak24", "test"} and {r["support_size"] for r in rows} == {1}


TINY_DENOISING = {"width": 4, "depth": 2, "shots": 2, "queries": 1, "meta_iterations": 1, "joint_iterations": 1,
                  "meta_batch": 1, "test_tasks": 2, "steps": [0, 1, 3]}


def test_denoising_follows_the_protocol_test_tasks_grid_and_choices(monkeypatch, tmp_path):
    from metalearn_kit.evaluation.finetune_protocol import FinetuneGrid

    monkeypatch.setenv(pretrained.DIR_ENV, str(tmp_path))
    torch.set_num_threads(1)
    grid = FinetuneGrid(adam=(1e-3, 1e-2), sgd=(0.1,))
    rows = R.few_shot_denoising(profile="fast", sizes=TINY_DENOISING, classical=False, grid=grid)
    again = R.few_shot_denoising(profile="fast", seed=1, sizes=TINY_DENOISING, classical=False, grid=grid)

    def noisy(part):
        return next(r["per_task"] for r in part if r["method"] == "noisy input" and r["metric"] == "psnr")

    # the test tasks come from the pre-registered draw, not from the model seed
    assert noisy(rows) == noisy(again) and len(noisy(rows)) == 2
    for row in rows:
        assert row["support_size"] == 2 and row["sources"] == {"meta": "trained", "joint": "trained"}
        if row["metric"] == "psnr" and row["role"] in ("meta_tuned", "joint", "scratch"):
            # every fine-tuned row says what ran, task by task, from the grid given
            assert len(row["optimizer"]) == len(row["lr"]) == len(row["per_task"]) == 2
            assert row["grid"] == {"adam": [1e-3, 1e-2], "sgd": [0.1], "lbfgs": []}
            if row["steps"] == 0:
                assert row["optimizer"] == [None, None] and row["grid_edge"] is False
            else:
                assert all((o, lr) in grid.points() for o, lr in zip(row["optimizer"], row["lr"]))
                edges = sum(grid.is_edge(o, lr) for o, lr in zip(row["optimizer"], row["lr"]))
                assert row["grid_edge_tasks"] == edges and row["grid_edge"] == (edges > 0)
        elif row["role"] in ("meta", "input"):
            assert "optimizer" not in row


def test_test_split_is_the_pre_registered_photographs_and_training_never_sees_them():
    config = restoration_config("super_resolution", "fast")
    test = recipe.restoration_sampler(config, "sr", "test")
    assert test.source.split in ("kodak24", "test") and test.source.min_std > 0  # flat crops refused
    denoise = restoration_config("denoising", "fast")
    for split in ("train", "val"):
        assert recipe.restoration_sampler(denoise, "denoise", split).source.split in ("train", "test")
    # meta-training validates on dev photographs (the embedded ones), never on the test split
    model = recipe.build_model("restoration_sr_mzsr", config)
    parts = recipe.meta_training_parts("restoration_sr_mzsr", config, model=model)
    assert parts.val_sampler.source.split == "test" and parts.task_sampler.source.split == "train"
    with pytest.raises(ValueError, match="split must be one of"):
        recipe.restoration_sampler(denoise, "denoise", "dev")
    with pytest.raises(ValueError, match="jobs must be"):
        R.run_experiments(["denoising"], profile="fast", jobs=0)
    with pytest.raises(ValueError, match="names must be among"):
        R.run_experiments(["denoising", "dehazing"], profile="fast", jobs=2)


def test_experiment_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="sizes has unknown key 'bogus'"):
        restoration_config("denoising", "fast", {"bogus": 1})
    with pytest.raises(ValueError, match="experiment must be one of"):
        restoration_config("dehazing", "fast")
    with pytest.raises(ValueError, match="names must be among"):
        R.run_experiments(["dehazing"], profile="fast")


def test_noise2self_loss_ignores_the_centre_pixel():
    noisy = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    # the identity cannot cheat: the masked pixels it sees are neighbour averages, not the noisy values
    assert recipe.noise2self_loss(lambda x: x, noisy) > 1e-3
    flag = torch.zeros(1)
    mixed = recipe.self_supervised_loss(lambda x: x, (noisy, noisy, flag))
    assert torch.isclose(mixed, recipe.noise2self_loss(lambda x: x, noisy))


def test_shipped_checkpoints_load():
    present = pretrained.available()
    shipped = [name for name, ok in present.items() if ok and name.startswith("restoration_")]
    assert shipped, "no restoration checkpoint shipped in metalearn_kit/checkpoints_data"
    for name in shipped:
        model, meta = pretrained.load_pretrained(name)
        # Meta-SGD checkpoints hold the learner: the model and its learned inner rates
        if recipe.META_TRAINED.get(name) == "metasgd" or name.endswith(("_metasgd", "_joint_step_sizes")):
            model = model.model
        assert isinstance(model, (ConvRestorer, UnrolledRestorer, Siren, PointwiseRestorer, FilterRestorer,
                                  CameraRestorer))
        assert {"config", "seed", "metrics", "machine", "command"} <= set(meta)
        assert meta["command"] == f"metalearn-kit pretrain {name}"


def test_metasgd_checkpoint_holds_weights_and_learned_rates():
    from metalearn_kit.meta import MetaSGD

    config = restoration_config("image_fitting", "fast", sizes={"patch": 16, "width": 8, "hidden_layers": 2,
                                                                  "meta_iterations": 3, "meta_batch": 2})
    learner, metrics = recipe.train_checkpoint("restoration_siren_metasgd", config, seed=0)
    assert isinstance(learner, MetaSGD) and isinstance(learner.model, Siren) and metrics["iterations"] == 3
    rates = learner.inner_learning_rates()
    assert any(not torch.allclose(r, torch.full_like(r, config.inner_lr)) for r in rates.values())
    # the registry's architecture takes the whole state back: weights and rates
    fresh = pretrained.REGISTRY["restoration_siren_metasgd"].build(config, learner.state_dict())
    fresh.load_state_dict(learner.state_dict())
    assert all(torch.equal(fresh.inner_learning_rates()[n], r) for n, r in rates.items())


def test_full_profile_variants_are_the_benchmark_full_configs():
    for name, experiment in recipe.CHECKPOINT_EXPERIMENT.items():
        assert pretrained.REGISTRY[name].config == restoration_config(experiment, "fast")
        assert pretrained.REGISTRY[name].variants["full"].config == restoration_config(experiment, "full")
        assert pretrained.checkpoint_path(name, "full").name == f"{name}_full.safetensors"
    with pytest.raises(ValueError, match=r"profile must be one of \['fast', 'full'\].*got 'huge'"):
        pretrained.checkpoint_path("restoration_denoise_maml", "huge")


def test_full_profile_file_is_written_by_pretrain_and_loaded_by_the_benchmark(monkeypatch, tmp_path):
    monkeypatch.setenv(pretrained.DIR_ENV, str(tmp_path))
    torch.set_num_threads(1)
    with pytest.raises(FileNotFoundError, match="metalearn-kit pretrain restoration_denoise_maml --profile full"):
        pretrained.load_pretrained("restoration_denoise_maml", profile="full")
    # a small stand-in for the full sizes (the real ones are a GPU's work)
    config = restoration_config("denoising", "fast", sizes={"meta_iterations": 2, "width": 8, "depth": 2})
    trained, meta = pretrained.train_pretrained("restoration_denoise_maml", config=config, profile="full")
    assert meta["command"] == "metalearn-kit pretrain restoration_denoise_maml --profile full"
    assert meta["profile"] == "full" and (tmp_path / "restoration_denoise_maml_full.safetensors").exists()
    assert not (tmp_path / "restoration_denoise_maml.safetensors").exists()  # the shipped file is not touched
    loaded, info = pretrained.load_or_train("restoration_denoise_maml", config)
    assert info["source"] == str(tmp_path / "restoration_denoise_maml_full.safetensors")
    for key, value in trained.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_registry_errors_and_train_if_missing(monkeypatch, tmp_path):
    monkeypatch.setenv(pretrained.DIR_ENV, str(tmp_path))
    with pytest.raises(ValueError, match="name must be a registered checkpoint"):
        pretrained.load_pretrained("no_such_model")
    with pytest.raises(FileNotFoundError, match="metalearn-kit pretrain restoration_denoise_maml"):
        pretrained.load_pretrained("restoration_denoise_maml")

    def train(config, seed):
        torch.manual_seed(seed)
        return nn.Linear(config["features"], 1), {"loss": 0.5}

    entry = pretrained.PretrainedEntry(file="tiny_test.safetensors", build=lambda c, state: nn.Linear(c["features"], 1),
                                       train=train, config={"features": 3}, seed=7, description="test entry")
    monkeypatch.setitem(pretrained.REGISTRY, "tiny_test", entry)
    model, meta = pretrained.load_pretrained("tiny_test", train_if_missing=True)
    assert (tmp_path / "tiny_test.safetensors").exists() and meta["seed"] == 7
    again, meta2 = pretrained.load_pretrained("tiny_test")
    assert torch.equal(again.weight, model.weight) and meta2["metrics"] == {"loss": 0.5}


def test_result_table_records_roles_and_fine_tuning_choices():
    from metalearn_kit.evaluation.curves import ResultTable

    table = ResultTable("demo")
    for value, optimizer, edge in ((20.0, "adam", False), (22.0, "lbfgs", True)):
        table.add_curve("joint", {"psnr": {0: 10.0, 5: value}, "ssim": {0: 0.1, 5: 0.5}, "seconds": 1.0,
                                  "optimizer": {0: None, 5: optimizer}, "lr": {0: None, 5: 1e-3},
                                  "grid_edge": {0: False, 5: edge}}, role="joint")
    table.add_curve("meta", {"psnr": {0: 12.0, 5: 25.0}, "ssim": {0: 0.2, 5: 0.6}, "seconds": 0.5})
    rows = {(r["method"], r["steps"], r["metric"]): r for r in table.rows(support_size=4)}
    at5 = rows[("joint", 5, "psnr")]
    assert at5["per_task"] == [20.0, 22.0] and at5["value"] == 21.0 and at5["stderr"] == pytest.approx(1.0)
    assert at5["optimizer"] == ["adam", "lbfgs"] and at5["grid_edge"] is True and at5["grid_edge_tasks"] == 1
    assert at5["role"] == "joint" and at5["support_size"] == 4
    assert "optimizer" not in rows[("joint", 5, "ssim")] and "role" not in rows[("meta", 5, "psnr")]


def test_protocol_targets_compare_meta_with_the_best_baseline():
    from metalearn_kit.evaluation.restoration_targets import best_baseline, protocol_lines, protocol_targets

    def row(role, steps, values, method=None):
        return {"experiment": "denoising", "method": method or role, "role": role, "steps": steps,
                "metric": "psnr", "value": sum(values) / len(values), "per_task": values, "tasks": len(values)}

    rows = [row("meta", 5, [30.0, 31.0, 32.0]), row("meta", 50, [29.0, 30.0, 31.0]),
            row("joint", 5, [28.0, 28.5, 29.5]), row("scratch", 5, [10.0, 11.0, 12.0]),
            row("joint", 50, [33.0, 33.0, 34.0]), row("classical", None, [35.0, 35.0, 35.0], "BM3D")]
    assert best_baseline(rows, "denoising", 5)["role"] == "joint"
    beats, decline = protocol_targets(rows)
    assert beats["holds"] is True and beats["paired_difference"]["mean"] == pytest.approx(7 / 3)
    assert decline["holds"] is False and decline["detail"] == "31.00 -> 30.00 dB"  # a 1 dB decline
    (line,) = protocol_lines(rows)
    assert line.startswith("denoising (3 tasks): meta@5 31.00 vs joint@5 28.67 dB (+2.33")
    assert "meta@50 30.00 vs joint@50 33.33 dB (-3.33" in line
    assert "best classical BM3D 35.00 dB (meta@50 -5.00)" in line
    assert protocol_targets([]) == [] and protocol_lines([]) == []


def test_target_checks_and_table():
    def row(experiment, method, steps, value):
        return {"experiment": experiment, "method": method, "steps": steps, "metric": "psnr", "value": value,
                "tasks": 1}

    rows = [row("denoising", "meta-init (MAML)", 1, 30.0), row("denoising", "scratch", 1, 20.0),
            row("super_resolution", "meta-init (MZSR)", 1, 30.0),
            row("super_resolution", "bicubic-pretrained + finetune", 1, 29.8),
            row("image_fitting", "meta-init (MAML)", 2, 25.0), row("image_fitting", "standard init", 20, 24.0)]
    checks = {c["target"].split(":")[0] + ("@1" if "@1 " in c["target"] else ""): c["holds"]
              for c in check_targets(rows)}
    assert checks["denoising"] is True
    assert checks["deblurring"] is None  # not measured, not passed
    assert checks["super_resolution@1"] is False  # +0.2 dB < +0.5 dB
    assert checks["image_fitting"] is True
    assert "meta-init (MZSR)" in format_table(rows)


def test_pretrain_cli_writes_a_cost_table(monkeypatch, tmp_path, capsys):
    from metalearn_kit.cli import main

    monkeypatch.setenv(pretrained.DIR_ENV, str(tmp_path))

    def train(config, seed):
        torch.manual_seed(seed)
        return nn.Linear(config["features"], 1), {"iterations": 4, "loss": 0.5}

    entry = pretrained.PretrainedEntry(file="tiny_cost.safetensors", build=lambda c, state: nn.Linear(c["features"], 1),
                                       train=train, config={"features": 3, "meta_batch": 2}, seed=1)
    monkeypatch.setitem(pretrained.REGISTRY, "tiny_cost", entry)
    assert main(["pretrain", "tiny_cost", "--json", str(tmp_path / "cost.json")]) == 0
    assert "tiny_cost" in capsys.readouterr().out.splitlines()[-1]
    report = json.loads((tmp_path / "cost.json").read_text())
    assert report["command"] == "metalearn-kit pretrain tiny_cost --profile fast"
    (row,) = report["rows"]
    assert row["name"] == "tiny_cost" and row["iterations"] == 4 and row["wall_time_s"] > 0
    assert row["tasks_per_s"] == pytest.approx(8 / row["wall_time_s"])
    assert row["peak_gpu_memory_mb"] is None or row["peak_gpu_memory_mb"] >= 0
