"""Restoration and few-shot generation task distributions, on small in-test sources (fast), plus one run
on the kit's real sources, a user-defined degradation through a meta step, and plot_task pictures."""

import json
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from metalearn_kit.tasks import (
    Degradation,
    FewShotGenerationTasks,
    GaussianNoise,
    RestorationTasks,
    Task,
    TaskBatch,
    list_degradations,
    make_degradation,
)


class FakeClassSource:
    """The ClassImageSource protocol: ``num_classes`` classes of ``images_per_class`` images ``[N, 1, H, W]``.
    Every image of class ``c`` carries the value ``c / 100`` in its top-left pixel so tests can tell classes
    apart, and the value ``i / 1000`` in the pixel next to it so they can tell images apart."""

    def __init__(self, num_classes=6, images_per_class=8, image_size=16):
        self.num_classes = num_classes
        self.images_per_class = images_per_class
        self.image_size = image_size
        self.channels = 1
        self.classes = [f"class_{c}" for c in range(num_classes)]
        g = torch.Generator().manual_seed(123)
        self._images = []
        for c in range(num_classes):
            images = torch.rand(images_per_class, 1, image_size, image_size, generator=g) * 0.8 + 0.1
            images[:, 0, 0, 0] = c / 100
            images[:, 0, 0, 1] = torch.arange(images_per_class) / 1000
            self._images.append(images)

    def images_of(self, class_index):
        return self._images[class_index]


class FakePhotoSource:
    """The PhotoSource protocol: smooth random patches ``[n, C, p, p]`` in [0, 1]."""

    def __init__(self, patch_size=16, channels=1):
        self.patch_size = patch_size
        self.channels = channels

    def sample_patches(self, n, generator):
        coarse = torch.rand(n, self.channels, 4, 4, generator=generator)
        return F.interpolate(coarse, size=(self.patch_size,) * 2, mode="bilinear", align_corners=False)


def test_restoration_task_shapes_info_and_pairs():
    tasks = RestorationTasks(FakePhotoSource(16, 3), ["gaussian_blur", "inpainting", "jpeg"], shots=4, queries=3)
    for seed in range(6):
        task = tasks.sample(seed)
        degraded, clean = task.support
        assert degraded.shape == clean.shape == (4, 3, 16, 16)
        assert task.query[0].shape == task.query[1].shape == (3, 3, 16, 16)
        assert task.shots == 4 and task.queries == 3
        info = json.loads(json.dumps(task.info))
        assert info["family"] in tasks.families and info["kind"] == "restoration"
        # The degraded images are exactly the clean ones under the recorded parameters (no noise here).
        d = tasks.degradation(info["family"])
        both = torch.cat([clean, task.query[1]])
        assert torch.allclose(torch.cat([degraded, task.query[0]]), d.apply(both, info["params"]), atol=1e-6)
        assert not torch.equal(degraded, clean)
        op = tasks.operator(task)
        if info["family"] == "inpainting":
            assert torch.equal(degraded, clean * op["mask"])
        elif info["family"] == "gaussian_blur":
            assert abs(op["kernel"].sum().item() - 1) < 1e-5
        else:
            assert op is None  # JPEG has no known linear forward model


def test_families_are_chosen_uniformly_and_params_vary():
    tasks = RestorationTasks(FakePhotoSource(), {"gaussian_noise": {"sigma": (0.05, 0.2)}, "poisson_noise": {},
                                                 "gaussian_blur": {"sigma": (0.5, 2.0)}}, shots=1, queries=1)
    g = torch.Generator().manual_seed(0)
    infos = [tasks.sample(g).info for _ in range(300)]
    counts = {f: sum(i["family"] == f for i in infos) for f in tasks.families}
    assert all(70 <= c <= 130 for c in counts.values()), counts  # 100 expected each, ~8 std
    sigmas = [i["params"]["sigma"] for i in infos if i["family"] == "gaussian_noise"]
    assert 0.05 <= min(sigmas) and max(sigmas) <= 0.2 and len(set(sigmas)) == len(sigmas)


def test_noise_is_drawn_per_image_with_one_sigma_per_task():
    tasks = RestorationTasks(torch.full((64, 1, 32, 32), 0.5), GaussianNoise(sigma=(0.05, 0.15)), shots=32,
                             queries=32)
    task = tasks.sample(4)
    residual = torch.cat([task.support[0] - task.support[1], task.query[0] - task.query[1]])
    sigma = task.info["params"]["sigma"]
    assert abs(residual.std().item() - sigma) / sigma < 0.05
    assert not torch.equal(residual[0], residual[1])  # independent noise per image


def test_seeded_sampling_is_deterministic():
    for tasks in (RestorationTasks(FakeClassSource(), list_degradations_without_kernel(), shots=2, queries=2),
                  FewShotGenerationTasks(FakeClassSource(), shots=2, queries=3, ways=2)):
        a, b = tasks.sample(5), tasks.sample(torch.Generator().manual_seed(5))
        assert a.info == b.info and all(torch.equal(x, y) for x, y in zip(a.support + a.query, b.support + b.query))
        c = tasks.sample(6)
        assert c.info != a.info or not torch.equal(c.support[0], a.support[0])
        batch_a, batch_b = tasks.sample_batch(3, 9), tasks.sample_batch(3, 9)
        assert batch_a.infos == batch_b.infos
        assert all(torch.equal(x, y) for x, y in zip(batch_a.support + batch_a.query, batch_b.support + batch_b.query))


def list_degradations_without_kernel():
    # Every registered family that builds with defaults (kernel_blur needs kernels; test-defined ones may exist).
    return [n for n in ("gaussian_noise", "poisson_noise", "gaussian_blur", "motion_blur", "inpainting",
                        "super_resolution", "jpeg") if n in list_degradations()]


def test_sample_batch_stacks_tasks():
    tasks = RestorationTasks(FakePhotoSource(16), list_degradations_without_kernel(), shots=3, queries=2)
    batch = tasks.sample_batch(5, generator=0, device="cpu")
    assert isinstance(batch, TaskBatch) and len(batch) == 5
    assert batch.support[0].shape == batch.support[1].shape == (5, 3, 1, 16, 16)
    assert batch.query[0].shape == (5, 2, 1, 16, 16)
    assert isinstance(batch[2], Task) and batch[2].info == batch.infos[2]
    json.dumps(batch.infos)


def test_split_selects_unseen_test_levels():
    train = RestorationTasks(FakePhotoSource(), "gaussian_noise", shots=1, queries=1, split="train")
    test = RestorationTasks(FakePhotoSource(), "gaussian_noise", shots=1, queries=1, split="test")
    train_sigmas = [train.sample(s).info["params"]["sigma"] for s in range(50)]
    test_sigmas = [test.sample(s).info["params"]["sigma"] for s in range(50)]
    assert max(train_sigmas) < min(test_sigmas)
    assert test.sample(0).info["split"] == "test"


def test_super_resolution_needs_a_divisible_patch_size():
    with pytest.raises(ValueError, match="divisible by scale 4"):
        RestorationTasks(FakePhotoSource(patch_size=18), "super_resolution", shots=1, queries=1, split="test")
    tasks = RestorationTasks(FakePhotoSource(patch_size=16), "super_resolution", shots=2, queries=1, split="test")
    task = tasks.sample(0)
    assert task.support[0].shape == (2, 1, 16, 16) and task.info["params"]["scale"] == 4


def test_restoration_rejects_bad_arguments():
    source = FakePhotoSource()
    with pytest.raises(ValueError, match="shots must be >= 1"):
        RestorationTasks(source, "jpeg", shots=0, queries=1)
    with pytest.raises(ValueError, match="queries must be >= 1"):
        RestorationTasks(source, "jpeg", shots=1, queries=0)
    with pytest.raises(TypeError, match="shots must be an int"):
        RestorationTasks(source, "jpeg", shots=1.5, queries=1)
    with pytest.raises(ValueError, match="unknown degradation family 'blurr'.*gaussian_blur"):
        RestorationTasks(source, ["jpeg", "blurr"], shots=1, queries=1)
    with pytest.raises(ValueError, match="distinct"):
        RestorationTasks(source, ["jpeg", "jpeg"], shots=1, queries=1)
    with pytest.raises(ValueError, match="at least one"):
        RestorationTasks(source, [], shots=1, queries=1)
    with pytest.raises(ValueError, match="sigma must be >= 0"):
        RestorationTasks(source, {"gaussian_noise": {"sigma": -0.1}}, shots=1, queries=1)
    with pytest.raises(TypeError, match="source must be"):
        RestorationTasks([1, 2, 3], "jpeg", shots=1, queries=1)
    with pytest.raises(ValueError, match="split must be one of"):
        RestorationTasks(source, "jpeg", shots=1, queries=1, split="eval")
    with pytest.raises(ValueError, match="n must be >= 1"):
        RestorationTasks(source, "jpeg", shots=1, queries=1).sample_batch(0)
    with pytest.raises(TypeError, match="generator must be"):
        RestorationTasks(source, "jpeg", shots=1, queries=1).sample("seed")


def test_restoration_from_a_class_source_uses_its_images():
    source = FakeClassSource(image_size=16)
    tasks = RestorationTasks(source, "inpainting", shots=3, queries=2)
    task = tasks.sample(1)
    for clean in torch.cat([task.support[1], task.query[1]]):
        c = round(clean[0, 0, 0].item() * 100)
        assert any(torch.equal(clean, img) for img in source.images_of(c))


def test_generation_one_way_tasks():
    source = FakeClassSource(num_classes=5, images_per_class=8)
    tasks = FewShotGenerationTasks(source, shots=3, queries=4)
    for seed in range(5):
        task = tasks.sample(seed)
        images, labels = task.support
        assert images.shape == (3, 1, 16, 16) and labels.tolist() == [0, 0, 0] and labels.dtype == torch.int64
        assert task.query[0].shape == (4, 1, 16, 16) and task.query[1].tolist() == [0] * 4
        everything = torch.cat([images, task.query[0]])
        class_marks = {round(v * 100) for v in everything[:, 0, 0, 0].tolist()}
        assert class_marks == set(task.info["class_indices"])  # one class, the recorded one
        image_marks = everything[:, 0, 0, 1].tolist()
        assert len(set(image_marks)) == 7  # support and query images are distinct
        assert task.info["classes"] == [f"class_{task.info['class_indices'][0]}"]
        json.dumps(task.info)


def test_generation_n_way_tasks():
    source = FakeClassSource(num_classes=6, images_per_class=8)
    tasks = FewShotGenerationTasks(source, shots=2, queries=1, ways=3)
    task = tasks.sample(0)
    images, labels = task.support
    assert images.shape == (6, 1, 16, 16) and labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert task.query[1].tolist() == [0, 1, 2]
    classes = task.info["class_indices"]
    assert len(set(classes)) == 3
    for image, label in zip(torch.cat([images, task.query[0]]), labels.tolist() + task.query[1].tolist()):
        assert round(image[0, 0, 0].item() * 100) == classes[label]
    batch = tasks.sample_batch(4, generator=1)
    assert batch.support[0].shape == (4, 6, 1, 16, 16) and batch.support[1].shape == (4, 6)


def test_generation_rejects_bad_arguments():
    source = FakeClassSource(num_classes=4, images_per_class=8)
    with pytest.raises(ValueError, match=r"shots \+ queries = 5 \+ 4 = 9 exceeds the 8 images per class"):
        FewShotGenerationTasks(source, shots=5, queries=4)
    with pytest.raises(ValueError, match="shots must be >= 1"):
        FewShotGenerationTasks(source, shots=0, queries=1)
    with pytest.raises(ValueError, match="ways=5 exceeds the 4 classes"):
        FewShotGenerationTasks(source, shots=1, queries=1, ways=5)
    with pytest.raises(TypeError, match="class image source"):
        FewShotGenerationTasks(FakePhotoSource(), shots=1, queries=1)


# -- a user-defined family, end to end ---------------------------------------------------------------------

class SaltAndPepper(Degradation):
    """Each pixel turns black or white with probability ``amount / 2`` each."""

    name = "salt_and_pepper"
    default_ranges = {"train": {"amount": (0.02, 0.1)}, "test": {"amount": (0.15, 0.3)}}
    param_limits = {"amount": (0.0, 1.0)}

    def degrade(self, clean, params, generator):
        u = self.rand(clean.shape, generator, clean)
        out = clean.clone()
        out[u < params["amount"] / 2] = 0.0
        out[(u >= params["amount"] / 2) & (u < params["amount"])] = 1.0
        return out


def test_user_degradation_runs_through_tasks_and_a_meta_step():
    assert "salt_and_pepper" in list_degradations()
    source = FakePhotoSource(16)
    tasks = RestorationTasks(source, ["salt_and_pepper", "gaussian_noise"], shots=4, queries=4, split="test")
    batch = tasks.sample_batch(4, generator=0)
    assert {i["family"] for i in batch.infos} == {"salt_and_pepper", "gaussian_noise"}
    for task in batch:
        if task.info["family"] == "salt_and_pepper":
            changed = (task.support[0] != task.support[1]).float().mean().item()
            assert 0.5 * task.info["params"]["amount"] < changed <= task.info["params"]["amount"] + 0.02
            assert 0.15 <= task.info["params"]["amount"] <= 0.3

    from metalearn_kit.meta import MAML

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1))

    def loss_fn(model, data):
        degraded, clean = data
        return F.mse_loss(model(degraded), clean)

    learner = MAML(net, inner_lr=0.05, inner_steps=2)
    before = [p.detach().clone() for p in net.parameters()]
    meta_opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        meta_opt.zero_grad()
        loss = learner.meta_loss(batch, loss_fn)
        loss.backward()
        grads = [p.grad for p in net.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)
        meta_opt.step()
        losses.append(loss.item())
    assert any(not torch.equal(b, p) for b, p in zip(before, net.parameters()))
    assert losses[-1] < losses[0]  # the meta-objective on these tasks goes down


# -- pictures ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["gaussian_noise", "poisson_noise", "gaussian_blur", "motion_blur",
                                    "inpainting", "super_resolution", "jpeg", "salt_and_pepper"])
def test_plot_task_saves_a_picture_per_family(family, artifacts_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from metalearn_kit.viz import plot_task

    tasks = RestorationTasks(FakePhotoSource(32, 3), family, shots=4, queries=3, split="test")
    task = tasks.sample(0)
    fig = plot_task(task, max_images=4)
    (ax,) = fig.axes
    title = ax.get_title()
    assert title.startswith(family) and "test" in title
    assert [t.get_text() for t in ax.get_yticklabels()] == ["support\ndegraded", "support\nclean", "query\ndegraded",
                                                           "query\nclean"]
    # the picture is the task's images on a grid (2-pixel white gaps), one row per set, blank where a set ends
    picture = np.asarray(ax.images[0].get_array())
    picture = picture[..., None] if picture.ndim == 2 else picture  # [H, W, C], grey or colour
    step = task.support[0].shape[-1] + 2
    for row, (part, index) in enumerate([("support", 0), ("support", 1), ("query", 0), ("query", 1)]):
        images = getattr(task, part)[index].clamp(0, 1)
        for column in range(4):
            block = picture[row * step: row * step + step - 2, column * step: column * step + step - 2]
            if column < images.shape[0]:
                np.testing.assert_allclose(block, images[column].permute(1, 2, 0).numpy(), atol=1e-6,
                                           err_msg=f"{part}[{index}][{column}]")
            else:
                assert (block == 1).all(), f"{part} has {images.shape[0]} images, column {column} must be blank"
    path = os.path.join(artifacts_dir, f"tasks_{family}.png")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    assert os.path.getsize(path) > 2000


def test_plot_task_for_generation_and_into_given_axes(artifacts_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from metalearn_kit.viz import plot_task

    task = FewShotGenerationTasks(FakeClassSource(), shots=3, queries=2, ways=2).sample(0)
    fig, ax = plt.subplots()
    assert plot_task(task, ax=ax) is fig
    assert "2-way" in ax.get_title() and "class_" in ax.get_title()
    assert len(ax.get_yticks()) == 4  # a support and a query row per way
    fig.savefig(os.path.join(artifacts_dir, "tasks_generation.png"), dpi=80)
    plt.close(fig)
    with pytest.raises(TypeError, match="plot_task\\(batch\\[0\\]\\)"):
        plot_task(FewShotGenerationTasks(FakeClassSource(), shots=1, queries=1).sample_batch(2, 0))
    with pytest.raises(ValueError, match="max_images must be >= 1"):
        plot_task(task, max_images=0)


# -- the kit's real sources ---------------------------------------------------------------------------------

def _real_source(name):
    """``metalearn_kit.data.<name>`` (the function), whether or not ``data/__init__`` exports it yet."""
    import importlib

    data = importlib.import_module("metalearn_kit.data")
    factory = getattr(data, name, None)
    if not callable(factory):
        try:
            factory = getattr(importlib.import_module(f"metalearn_kit.data.{name}"), name)
        except (ImportError, AttributeError):
            pytest.skip(f"metalearn_kit.data.{name} is not available yet")
    return factory


def test_with_the_real_sources(artifacts_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from metalearn_kit.viz import plot_task

    source = _real_source("glyphs")("background", image_size=28)
    generation = FewShotGenerationTasks(source, shots=5, queries=5, ways=2)
    task = generation.sample(0)
    assert task.support[0].shape == (10, 1, 28, 28) and task.info["classes"][0] in source.classes
    fig = plot_task(task)
    fig.savefig(os.path.join(artifacts_dir, "tasks_generation_glyphs.png"), dpi=80)
    plt.close(fig)
    restoration = RestorationTasks(source, ["gaussian_noise", "super_resolution"], shots=3, queries=2, split="train")
    batch = restoration.sample_batch(2, generator=0)
    assert batch.support[0].shape == (2, 3, 1, 28, 28)

    photos = _real_source("photos")("train", patch_size=32, channels=1)
    tasks = RestorationTasks(photos, make_degradation("motion_blur", split="test"), shots=4, queries=3)
    task = tasks.sample(0)
    assert task.support[0].shape == (4, 1, 32, 32)
    fig = plot_task(task, max_images=4)
    fig.savefig(os.path.join(artifacts_dir, "tasks_motion_blur_photos.png"), dpi=80)
    plt.close(fig)
