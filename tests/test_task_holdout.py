"""Every task distribution of the kit keeps what its ``holdout`` promises (see TaskDistribution): property-based
tests with Hypothesis over sources, sizes, families and seeds.

- ``"images"``: no image of a task's query (input or target) is in its support, and the images inside the
  support and inside the query are distinct (sampling without replacement);
- ``"targets"``: the query target of a one-image task is never in its support;
- ``"none"``: the support is the query by design; the images inside it are still distinct.

A source with fewer images than ``shots + queries`` is refused with a ValueError naming both sizes.
"""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metalearn_kit import tasks as rx  # the task distributions beyond RestorationTasks live in tasks/
from metalearn_kit.tasks import FewShotGenerationTasks, RestorationTasks, make_degradation

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SIZE = 16


class TensorClasses:
    """A class image source whose ``num_classes * per_class`` images are all different."""

    def __init__(self, num_classes: int, per_class: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.num_classes, self.images_per_class, self.image_size, self.channels = num_classes, per_class, SIZE, 1
        self.classes = [f"c{i}" for i in range(num_classes)]
        self.class_sizes = [per_class] * num_classes
        self._images = [torch.rand(per_class, 1, SIZE, SIZE, generator=g) for _ in range(num_classes)]

    def images_of(self, index: int) -> torch.Tensor:
        return self._images[index]


class FewCrops:
    """A photo-like source that has only ``distinct`` different patches: most draws repeat one, which is what a
    small photo with a large patch size does; the sampler must redraw them."""

    def __init__(self, distinct: int, seed: int = 0, split: str | None = None):
        self.patch_size, self.channels = SIZE, 1
        self._patches = torch.rand(distinct, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
        if split is not None:
            self.split = split

    def sample_patches(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self._patches[torch.randint(len(self._patches), (n,), generator=generator)].clone()


class SmoothPatches:
    """Smooth random patches, like FakePhotoSource of test_task_distributions (hardly ever equal)."""

    def __init__(self, size: int = SIZE):
        self.patch_size, self.channels = size, 1

    def sample_patches(self, n: int, generator: torch.Generator) -> torch.Tensor:
        coarse = torch.rand(n, 1, 4, 4, generator=generator)
        return F.interpolate(coarse, size=(self.patch_size,) * 2, mode="bilinear", align_corners=False)


def keys(images: torch.Tensor) -> list[bytes]:
    return [image.contiguous().numpy().tobytes() for image in images]


def assert_distinct(images: torch.Tensor, what: str) -> None:
    found = keys(images)
    assert len(set(found)) == len(found), f"{what}: {len(found) - len(set(found))} repeated image(s)"


def assert_holds(task, holdout: str, image_parts: tuple[int, ...] = (0, 1)) -> None:
    """Check one task against its distribution's ``holdout``; ``image_parts`` index the image tensors of a set."""
    for part in image_parts:
        assert_distinct(task.support[part], f"support[{part}]")
        assert_distinct(task.query[part], f"query[{part}]")
    if holdout == "images":
        support = {k for part in image_parts for k in keys(task.support[part])}
        for part in image_parts:
            shared = support & set(keys(task.query[part]))
            assert not shared, f"query[{part}] repeats {len(shared)} support image(s)"
    elif holdout == "targets":
        target = keys(task.query[1])
        support = {k for t in task.support if t.dim() >= 3 for k in keys(t)}
        assert not support & set(target), "the query target is in the support"
    else:
        assert holdout == "none"


def pool(count: int, seed: int) -> torch.Tensor:
    return torch.rand(count, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


SOURCES = {
    "tensor": lambda need, seed: pool(need, seed),  # exactly as many images as a task needs: the hardest case
    "tensor_large": lambda need, seed: pool(need + 7, seed),
    "classes": lambda need, seed: TensorClasses(num_classes=3, per_class=max(1, -(-need // 3)), seed=seed),
    "few_crops": lambda need, seed: FewCrops(distinct=need, seed=seed),
    "smooth_patches": lambda need, seed: SmoothPatches(),
}


@SETTINGS
@given(source=st.sampled_from(sorted(SOURCES)), shots=st.integers(1, 6), queries=st.integers(1, 6),
       family=st.sampled_from(["gaussian_noise", "inpainting", "jpeg", "gaussian_blur", "super_resolution"]),
       split=st.sampled_from(["train", "test"]), seed=st.integers(0, 2**31 - 1))
def test_restoration_tasks_hold_out_their_query(source, shots, queries, family, split, seed):
    tasks = RestorationTasks(SOURCES[source](shots + queries, seed), family, shots, queries, split=split)
    for task in tasks.sample_batch(3, seed):
        assert_holds(task, "images")
    assert tasks.holdout == "images"


@SETTINGS
@given(shots=st.integers(1, 5), queries=st.integers(1, 5), kind=st.sampled_from(["blur", "mask"]),
       seed=st.integers(0, 2**31 - 1))
def test_operator_tasks_hold_out_their_query(shots, queries, kind, seed):
    family = ["gaussian_blur", "motion_blur"] if kind == "blur" else "inpainting"
    tasks = rx.OperatorTasks(RestorationTasks(pool(shots + queries, seed), family, shots, queries))
    assert tasks.holdout == "images"
    for task in tasks.sample_batch(2, seed):
        assert_holds(task, "images")


@SETTINGS
@given(ways=st.integers(1, 3), shots=st.integers(1, 5), queries=st.integers(1, 5), seed=st.integers(0, 2**31 - 1))
def test_generation_tasks_hold_out_their_query(ways, shots, queries, seed):
    tasks = FewShotGenerationTasks(TensorClasses(num_classes=4, per_class=shots + queries, seed=seed), shots, queries,
                                   ways=ways)
    assert tasks.holdout == "images"
    for task in tasks.sample_batch(3, seed):
        assert_holds(task, "images", image_parts=(0,))


@SETTINGS
@given(source=st.sampled_from(["few_crops", "smooth_patches"]), seed=st.integers(0, 2**31 - 1))
def test_one_image_tasks_never_show_the_query_target(source, seed):
    photos = SOURCES[source](4, seed)
    sr = rx.ZeroShotSRTasks(photos, make_degradation("super_resolution", scale=[2]))
    n2s = rx.SelfSupervisedDenoisingTasks(photos, make_degradation("gaussian_noise"))
    for tasks in (sr, n2s):
        assert tasks.holdout == "targets"
        for task in tasks.sample_batch(3, seed):
            assert_holds(task, "targets", image_parts=())


@SETTINGS
@given(batch=st.integers(1, 6), seed=st.integers(0, 2**31 - 1))
def test_pooled_and_fitting_tasks_draw_distinct_images(batch, seed):
    pretrain = rx.BicubicSRTasks(FewCrops(distinct=batch, seed=seed), scale=2, batch=batch)
    task = pretrain.sample(seed)
    assert_holds(task, "none", image_parts=(1,))
    assert pretrain.holdout == "none"
    fitting = rx.ImageFitTasks(SmoothPatches())
    assert fitting.holdout == "none"
    task = fitting.sample(seed)
    assert torch.equal(task.support[1], task.query[1])  # fitting the image is the task


def test_with_the_real_photos_and_glyphs():
    from metalearn_kit.data import glyphs, photos

    for source, split in ((photos("train", patch_size=16), "train"), (glyphs("evaluation"), "test")):
        tasks = RestorationTasks(source, "gaussian_noise", shots=8, queries=8, split=split)
        for task in tasks.sample_batch(20, 0):
            assert_holds(task, "images")
            assert task.info["split"] == split


@pytest.mark.parametrize("make", [
    lambda: RestorationTasks(torch.rand(7, 1, SIZE, SIZE), "gaussian_noise", 4, 4),
    lambda: RestorationTasks(TensorClasses(num_classes=2, per_class=3), "gaussian_noise", 4, 4),
    lambda: FewShotGenerationTasks(TensorClasses(num_classes=2, per_class=7), 4, 4),
])
def test_a_source_too_small_for_one_task_is_refused(make):
    with pytest.raises(ValueError, match=r"shots \+ queries = 4 \+ 4"):
        make()


def test_a_source_that_keeps_repeating_is_refused():
    from metalearn_kit.tasks import sample_distinct_images

    with pytest.raises(ValueError, match="identical patches"):
        RestorationTasks(FewCrops(distinct=3), "gaussian_noise", 2, 2).sample(0)
    with pytest.raises(ValueError, match="n must be >= 1"):
        sample_distinct_images(pool(3, 0), 0)
    assert sample_distinct_images(pool(3, 0), 3, 0).shape == (3, 1, SIZE, SIZE)


@SETTINGS
@given(queries=st.integers(1, 5), max_shots=st.integers(1, 5), ways=st.integers(2, 3), seed=st.integers(0, 2**31 - 1))
def test_generation_evaluation_episodes_hold_out_their_query(queries, max_shots, ways, seed):
    from metalearn_kit.evaluation.generation import evaluation_episodes

    source = TensorClasses(num_classes=5, per_class=queries + max_shots, seed=seed)
    episodes = evaluation_episodes(source, 4, queries, max_shots, ways, seed)
    assert len({e["class"] for e in episodes}) == 4
    for episode in episodes:
        assert episode["pool"].shape[0] == max_shots and episode["query"].shape[0] == queries
        assert_distinct(torch.cat([episode["pool"], episode["query"]]), "pool + query")
    with pytest.raises(ValueError, match=r"fewer than eval_queries \+ max\(shots\)"):
        evaluation_episodes(source, 2, queries + 1, max_shots, ways, seed)  # one image short
