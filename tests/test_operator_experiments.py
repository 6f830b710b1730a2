"""The operator-family recipes and their benchmark rows and targets, at sizes cut down to seconds."""

import math
from dataclasses import replace

import pytest
import torch

from metalearn_kit.evaluation.finetune_protocol import FinetuneGrid
from metalearn_kit.evaluation.operator_experiments import OPERATOR_EXPERIMENTS, ROLES, operator_experiment
from metalearn_kit.evaluation.operator_report import operator_tables, operator_targets
from metalearn_kit.evaluation.restoration_targets import add_roles, paired_difference, role_of
from metalearn_kit.models.operator_nets import FilterRestorer, PointwiseRestorer, opponent_basis
from metalearn_kit.recipes.operator_families import OPERATOR_FAMILIES, checkpoint_entry, operator_family
from metalearn_kit.recipes.operator_recipe import (
    OperatorRecipeConfig,
    build_checkpoint,
    checkpoint_names,
    task_distribution,
    train_joint,
    train_meta,
)

TINY = {"meta_iterations": 2, "joint_iterations": 12, "test_tasks": 2, "train_patch": 16, "steps": [0, 1, 5],
        "width": 8, "depth": 2}
SMALL_GRID = FinetuneGrid(adam=(1e-3, 1e-2), sgd=(0.1,), lbfgs=(1.0,))


@pytest.mark.parametrize("family", list(OPERATOR_FAMILIES))
def test_every_family_has_fast_and_full_configs_with_a_fair_joint_budget(family):
    row = operator_family(family)
    assert row.name == family
    for profile in ("fast", "full"):
        config = row.configs[profile]
        # the camera is calibrated from 48-pixel pairs (its classical pipeline needs no wider crop); the others 64
        assert config.family == family and config.test_patch >= (48 if family == "camera_pipeline" else 64)
        assert config.test_tasks >= 16
        assert config.joint_iterations >= config.meta_iterations * (config.inner_steps + 1)
        assert OperatorRecipeConfig.from_dict(config.as_dict()) == config
    assert row.why
    for name in checkpoint_names(family).values():
        assert checkpoint_entry(name, "full", "").config == row.configs["full"]


def test_config_refuses_an_unfair_joint_budget_and_bad_fields():
    config = operator_family("tone_curve").configs["fast"]
    with pytest.raises(ValueError, match="joint_iterations must be >= meta_iterations"):
        replace(config, joint_iterations=config.meta_iterations)
    with pytest.raises(ValueError, match="model"):
        replace(config, model="unet")
    with pytest.raises(ValueError, match="unknown config keys"):
        OperatorRecipeConfig.from_dict({**config.as_dict(), "lr": 1.0})
    with pytest.raises(ValueError, match="family must be one of"):
        operator_family("white_noise")


def test_task_distributions_use_held_out_photos_and_bands_for_test():
    config = operator_family("colour_cast").configs["fast"]
    train, test = task_distribution(config, "train"), task_distribution(config, "test")
    # the standard photographs where they can be had (the CBSD68 pool, Kodak24), else the embedded ones
    assert train.source.split == "train" and test.source.split in ("kodak24", "test")
    task = test.sample(0)
    assert task.support[0].shape == (config.shots, 3, config.test_patch, config.test_patch)
    hue = task.info["params"]["hue"]
    assert any(low <= hue <= high for low, high in test.degradation("colour_cast").ranges["hue"])


def test_models_have_no_batchnorm_and_start_near_the_identity():
    x = torch.rand(2, 3, 16, 16)
    for model in (PointwiseRestorer(3, 8, 2), FilterRestorer(3, 8, 3, 7)):
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
        assert model(x).shape == x.shape
    basis = opponent_basis(3)
    assert torch.allclose(basis @ basis.T, torch.eye(3), atol=1e-6)
    with pytest.raises(ValueError, match=r"x must be images \[N, 1, H, W\]"):
        PointwiseRestorer(1)(x)
    with pytest.raises(ValueError, match="filter_size must be odd"):
        FilterRestorer(1, filter_size=4)


def test_meta_and_joint_training_count_their_budget():
    config = replace(operator_family("tone_curve").configs["fast"],
                     **{k: v for k, v in TINY.items() if k != "test_tasks"})
    learner, meta_metrics = train_meta(config, seed=0)
    model, joint_metrics = train_joint(config, seed=0)
    assert joint_metrics["image_passes"] >= meta_metrics["image_passes"]
    assert joint_metrics["images_seen"] >= meta_metrics["images_seen"]
    assert set(build_checkpoint("meta", config).state_dict()) == set(learner.state_dict())
    assert set(build_checkpoint("joint", config).state_dict()) == set(model.state_dict())
    assert checkpoint_names("tone_curve") == {"meta": "restoration_tone_curve_metasgd",
                                              "joint": "restoration_tone_curve_joint",
                                              "joint_step_sizes": "restoration_tone_curve_joint_step_sizes"}


def test_operator_experiment_rows_have_roles_stderr_and_paired_values():
    rows = operator_experiment("tone_curve", "fast", sizes=TINY, support_sizes=(1, 2), grid=SMALL_GRID)
    assert {r["role"] for r in rows} == set(ROLES) | {"summary"}
    measured = [r for r in rows if r["role"] != "summary"]
    for row in measured:
        assert row["experiment"] == "tone_curve" and row["tasks"] == 2 and len(row["per_task"]) == 2
        assert row["stderr"] is None or row["stderr"] >= 0
        assert row["support_size"] in (1, 2) and row["test_source"] in ("kodak24", "test")
    meta = {r["steps"] for r in measured if r["role"] == "meta" and r["metric"] == "psnr"}
    assert meta == {0, 1, 5}
    tuned = [r for r in measured if r["role"] == "joint" and r["metric"] == "psnr" and r["steps"] == 5]
    assert len(tuned) == 2  # one per support size
    for row in tuned:  # what ran: the optimizer and rate chosen on each task's support, and the edge flag
        assert len(row["optimizer"]) == 2 and set(row["optimizer"]) <= {"adam", "sgd", "lbfgs"}
        assert all(lr in SMALL_GRID.adam + SMALL_GRID.sgd + SMALL_GRID.lbfgs for lr in row["lr"])
        assert row["grid_edge_tasks"] == sum(SMALL_GRID.is_edge(o, lr) for o, lr in zip(row["optimizer"], row["lr"]))
    summaries = [r for r in rows if r["role"] == "summary"]
    assert [r["support_size"] for r in summaries] == [1, 2]
    assert all(r["metric"] == "crossover_step" and r["last_step"] == 5 for r in summaries)
    table = operator_tables(rows)
    assert "tone_curve, K = 1" in table and "tone_curve, K = 2" in table and "crossover:" in table
    targets = operator_targets(rows, total_wall_time_s=1.0)
    assert len(targets) == 5 and targets[-1]["holds"] is True  # two per support size, and the wall time
    decline = next(t for t in targets if "meta@50" in t["target"])
    assert decline["holds"] is None  # no 50-step row at these sizes: not measured, never "holds"


def test_paired_difference_and_roles():
    a = {"per_task": [3.0, 4.0, 5.0]}
    b = {"per_task": [1.0, 1.0, 1.0]}
    diff = paired_difference(a, b, margin=1.0)
    assert diff["mean"] == pytest.approx(2.0) and diff["tasks"] == 3
    assert diff["ci95"][0] < 2.0 < diff["ci95"][1]
    assert paired_difference(a, {"per_task": [1.0]}) is None
    assert role_of("meta-init (MAML)") == "meta" and role_of("joint pretrained + finetune") == "joint"
    assert role_of("bicubic-pretrained + finetune") == "joint" and role_of("ZSSR-style scratch") == "scratch"
    assert role_of("standard init") == "scratch" and role_of("noisy input") == "input"
    assert role_of("BM3D") == "classical" and role_of("oracle: true inverse curve") == "oracle"
    rows = add_roles([{"method": "bicubic"}, {"method": "x", "role": "meta"}])
    assert [r["role"] for r in rows] == ["input", "meta"]


def test_the_benchmark_runs_three_families_of_two_kinds():
    from metalearn_kit.tasks.operators import ColourCast, DirectionalBlur, StripeNoise, ToneCurve

    spatial = {"directional_blur": DirectionalBlur, "stripe_noise": StripeNoise}
    intensity = {"tone_curve": ToneCurve, "colour_cast": ColourCast}
    assert len(OPERATOR_EXPERIMENTS) >= 3
    assert any(f in spatial for f in OPERATOR_EXPERIMENTS) and any(f in intensity for f in OPERATOR_EXPERIMENTS)


def test_references_live_in_evaluation_and_refuse_unknown_families():
    from pathlib import Path

    from metalearn_kit.evaluation import operator_references
    from metalearn_kit.recipes import operator_families, operator_recipe

    assert set(operator_references.CLASSICAL) == set(OPERATOR_FAMILIES) == set(operator_references.ORACLES)
    for module in (operator_families, operator_recipe):  # recipes build and train; the references are evaluation's
        code = Path(module.__file__).read_text().split('"""', 2)[2]
        assert "from ..evaluation" not in code and "metalearn_kit.evaluation" not in code, module.__name__
    with pytest.raises(ValueError, match="family must be one of"):
        operator_references.classical_methods("white_noise", (torch.zeros(1, 1, 8, 8),) * 2, torch.zeros(1, 1, 8, 8))


def test_test_ranges_move_the_test_tasks_outside_the_training_range():
    config = operator_family("tone_curve").configs["fast"]
    outside = task_distribution(config, "test", ranges={"log2_gamma": [(-2.0, -1.6), (1.6, 2.0)]})
    degradation = outside.degradation("tone_curve")
    assert degradation.ranges["contrast"] == task_distribution(config, "test").degradation("tone_curve").ranges[
        "contrast"]  # only the named parameter moves
    for seed in range(6):
        assert 1.6 <= abs(outside.sample(seed).info["params"]["log2_gamma"]) <= 2.0
    rows = operator_experiment("tone_curve", "fast", sizes=TINY, classical=False,
                               test_ranges={"log2_gamma": (1.6, 2.0)}, support_sizes=(2,), grid=SMALL_GRID)
    assert {r["experiment"] for r in rows} == {"tone_curve@log2_gamma"}
    assert all(r["test_ranges"]["log2_gamma"] == (1.6, 2.0) for r in rows if r["role"] != "summary")
    assert {r["role"] for r in rows} == {"meta", "meta_tuned", "joint", "joint_step_sizes", "scratch", "input",
                                         "summary"}


def test_test_ranges_refuse_bad_input():
    config = operator_family("tone_curve").configs["fast"]
    with pytest.raises(TypeError, match="ranges must be a dict"):
        task_distribution(config, "test", ranges=[(1.6, 2.0)])
    with pytest.raises(ValueError, match="gamma_typo"):
        task_distribution(config, "test", ranges={"gamma_typo": (1.6, 2.0)})


def test_outside_range_summarises_and_refuses_unknown_families():
    from metalearn_kit.evaluation.outside_range import OUTSIDE, outside_range, summarise

    assert set(OUTSIDE) == set(OPERATOR_EXPERIMENTS)  # every benchmarked family has its outside range
    rows = operator_experiment("tone_curve", "fast", sizes=TINY, classical=False, test_ranges=OUTSIDE["tone_curve"],
                               support_sizes=(2,), grid=SMALL_GRID)
    summary = summarise(rows, [1, 5])
    assert [line["steps"] for line in summary["by_steps"]] == [1, 5] and math.isfinite(summary["input_psnr"])
    for line in summary["by_steps"]:
        assert line["tasks"] == 2 and line["meta_minus_joint"] == pytest.approx(line["meta_psnr"] - line["joint_psnr"])
    with pytest.raises(ValueError, match="families must be among"):
        outside_range(["white_noise"])
    with pytest.raises(ValueError, match="families must be among"):
        outside_range([])


def test_bad_protocol_input_names_the_argument():
    config = replace(operator_family("tone_curve").configs["fast"], **TINY)
    with pytest.raises(ValueError, match="split"):
        operator_experiment("tone_curve", "fast", sizes=TINY, split="train")
    for bad in ((), (0,), (2.5,)):
        with pytest.raises(ValueError, match="support_sizes must be"):
            operator_experiment("tone_curve", "fast", sizes=TINY, support_sizes=bad)
    with pytest.raises(ValueError, match="joint=..."):
        from metalearn_kit.recipes.operator_recipe import train_checkpoint

        train_checkpoint("joint_step_sizes", config)
    with pytest.raises(ValueError, match="role"):
        build_checkpoint("meta_tuned", config)
