"""Notebook 05's explorer plumbing in the library: one task per degradation family (64x64, the known operator
built for that size), the baselines' learning rate chosen on the support set only, and the benchmark curves."""

import math

import pytest
import torch

from metalearn_kit.evaluation import BASELINE_LRS, find_row, support_lr
from metalearn_kit.recipes.restoration import mse_loss

pytest.importorskip("ipywidgets")

from metalearn_kit.widgets import (  # noqa: E402
    RESTORATION_FAMILIES,
    check_adaptation_results,
    explorer_task,
    restoration_methods,
    restoration_results,
)


@pytest.fixture(scope="module")
def images():
    from metalearn_kit.data import photos

    return photos("test", 64).sample_patches(6, torch.Generator().manual_seed(5))


@pytest.mark.parametrize("family", sorted(RESTORATION_FAMILIES))
def test_explorer_task_is_64px_with_the_operator_for_that_size(family, images):
    task = explorer_task(family, images, 2, shots=4)
    assert task.support[0].shape == (4, 1, 64, 64) and task.query[0].shape == (1, 1, 64, 64)
    assert torch.equal(task.query[1], images[2:3]), "the chosen image is the query target"
    assert not any(torch.equal(task.support[1][i], images[2]) for i in range(4)), "the query is not in the support"
    if family == "gaussian_noise":
        assert len(task.support) == 2
    elif family == "gaussian_blur":
        assert task.support[2].dim() == 3 and task.support[2].shape[0] == 4  # kernels [K, k, k]
    else:
        assert task.support[2].shape == (4, 1, 64, 64) and task.info["params"]["mode"] == "strokes"
    again = explorer_task(family, images, 2, shots=4)
    assert torch.equal(again.query[0], task.query[0]), "seeded: the same task again"


def test_explorer_task_refuses_bad_input(images):
    with pytest.raises(ValueError, match="family"):
        explorer_task("jpeg", images, 0, 4)
    with pytest.raises(ValueError, match="shots"):
        explorer_task("gaussian_noise", images[:3], 0, 4)
    with pytest.raises(ValueError, match="image_index"):
        explorer_task("gaussian_noise", images, 6, 4)


def test_support_lr_never_looks_at_a_query_and_picks_the_lowest_support_loss():
    from metalearn_kit.meta import finetune
    from metalearn_kit.models import ConvRestorer

    torch.manual_seed(0)
    model = ConvRestorer(1, width=8, depth=2)
    g = torch.Generator().manual_seed(1)
    clean = torch.rand(4, 1, 16, 16, generator=g)
    support = ((clean + 0.1 * torch.randn(4, 1, 16, 16, generator=g)).clamp(0, 1), clean)
    chosen = support_lr(model, support, mse_loss, 3, extra=[("sgd", 0.02)])
    losses = {(opt, lr): float(finetune(model, support, mse_loss, 4, lr, opt).support_losses[3])
              for opt, lr in [("adam", lr) for lr in BASELINE_LRS] + [("sgd", 0.02)]}
    assert chosen == min(losses, key=losses.get)
    assert all(math.isfinite(v) for v in losses.values())
    with pytest.raises(ValueError, match="steps"):
        support_lr(model, support, mse_loss, 0)
    with pytest.raises(ValueError, match="lrs"):
        support_lr(model, support, mse_loss, 1, lrs=())


def test_restoration_methods_tune_the_baselines_on_the_support(images):
    parts = restoration_methods("gaussian_blur", images, 1, steps=2)
    assert set(parts["methods"]) == {"meta-learned", "joint pretrained", "scratch"}
    config_lr = parts["methods"]["meta-learned"].inner_lr
    for name in ("joint pretrained", "scratch"):
        optimizer, lr = parts["lrs"][name]
        assert (optimizer, lr) in [("adam", x) for x in BASELINE_LRS] + [("sgd", config_lr)]
        assert parts["methods"][name][1:] == (lr, optimizer)
    assert parts["predict"] is not None, "the unrolled model gets the known kernel"
    state = {k: v.clone() for k, v in parts["methods"]["joint pretrained"][0].state_dict().items()}
    results = restoration_results("gaussian_blur", images, 1, steps=2)
    data = check_adaptation_results(results)
    assert data["steps"] == 2 and data["degraded"].shape == (1, 64, 64)
    assert all(math.isfinite(p) for m in data["methods"].values() for p in m["psnr"])
    after = restoration_methods("gaussian_blur", images, 1, steps=2)["methods"]["joint pretrained"][0]
    assert all(torch.equal(state[k], v) for k, v in after.state_dict().items()), "no checkpoint is changed"


def test_find_row_and_benchmark_curves():
    import metalearn_kit as mk
    from metalearn_kit.viz import plot_benchmark_curves

    rows = mk.benchmark_table("restoration_fast")["rows"]
    row = find_row(rows, "deblurring", "meta", 5)
    assert row is not None and row["experiment"] == "deblurring" and len(row["per_task"]) == row["tasks"]
    assert find_row(rows, "deblurring", "meta", 7) is None
    # an oracle line beside the shipped rows (the operator families' oracles ship in their own table)
    rows = rows + [{"experiment": "deblurring", "method": "oracle: Wiener with the true kernel", "role": "oracle",
                    "steps": None, "metric": "psnr", "value": 30.0, "stderr": None}]
    fig = plot_benchmark_curves(rows, ["denoising", "deblurring"])
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["denoising", "deblurring"]  # whole titles, nothing cut
    labels = axes[1].get_legend_handles_labels()[1]
    assert any("[meta]" in t for t in labels) and any("[joint]" in t for t in labels)
    assert any("[oracle]" in t for t in labels) and any("[classical]" in t for t in labels)
    with pytest.raises(ValueError, match="experiments"):
        plot_benchmark_curves(rows, ["no_such_experiment"])
    with pytest.raises(ValueError, match="rows"):
        plot_benchmark_curves([])
