"""Issue 20's guarantees beyond the bad-input table (tests/test_bad_inputs.py): what the checks let through, what
they record, and where they run -- split labels that do not lie, degradation checks at registration and first
use, resume-if-present, and the argument checks of adaptation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metalearn_kit.meta import MAML, MetaTrainConfig, finetune, meta_train
from metalearn_kit.models.conv import ConvRestorer
from metalearn_kit.tasks import (
    Degradation,
    GaussianNoise,
    NondeterministicDegradationError,
    PoissonNoise,
    RestorationTasks,
    Task,
    check_determinism,
    list_degradations,
    make_degradation,
)
from metalearn_kit.tasks.degradations import BUILTIN_FAMILIES

torch.set_num_threads(1)


class Photos:
    """A photo-like source of one split (the PhotoSource protocol, with its ``split``)."""

    def __init__(self, split: str, patch_size: int = 16):
        self.split, self.patch_size, self.channels, self.name = split, patch_size, 1, f"fake/{split}"

    def sample_patches(self, n, generator):
        coarse = torch.rand(n, 1, 4, 4, generator=generator)
        return F.interpolate(coarse, size=(self.patch_size,) * 2, mode="bilinear", align_corners=False)


# ------------------------------------------------------------------ item 2: the recorded split
def test_the_recorded_split_is_the_split_of_the_images_and_the_parameters():
    test = RestorationTasks(Photos("test"), "gaussian_noise", 2, 2, split="test").sample(0)
    assert test.info["split"] == "test" and test.info["source_split"] == "test"
    assert 0.18 <= test.info["params"]["sigma"] <= 0.3  # the test range
    # "val" repeats the training ranges on new images: photos have no validation split, either one serves
    for source_split in ("train", "test"):
        val = RestorationTasks(Photos(source_split), "gaussian_noise", 2, 2, split="val").sample(0)
        assert val.info["split"] == "val" and val.info["source_split"] == source_split
    # without a split the task says what it is, and None when images and parameters disagree
    assert RestorationTasks(Photos("train"), GaussianNoise("train"), 2, 2).sample(0).info["split"] == "train"
    assert RestorationTasks(Photos("test"), GaussianNoise("train"), 2, 2).sample(0).info["split"] is None
    assert RestorationTasks(torch.rand(4, 1, 16, 16), GaussianNoise("test"), 2, 2).sample(0).info["split"] == "test"
    # glyph splits map onto task splits: background -> train, evaluation -> test
    glyph_like = type("Glyphs", (), {"split": "evaluation", "num_classes": 2, "image_size": 16, "channels": 1,
                                     "class_sizes": [4, 4], "images_of": lambda self, i: torch.rand(4, 1, 16, 16)})()
    assert RestorationTasks(glyph_like, "jpeg", 2, 2, split="test").sample(0).info["source_split"] == "evaluation"
    with pytest.raises(ValueError, match="the source holds 'evaluation' images"):
        RestorationTasks(glyph_like, "jpeg", 2, 2, split="train")


# ------------------------------------------------------------------ item 3: degradations checked where applied
def test_kit_families_pass_the_probe_and_strong_noise_is_not_refused():
    # the probe at registration is for users' families; every family of the kit is probed here instead
    from metalearn_kit.tasks import degradation_base

    kit = [cls for cls in degradation_base._REGISTRY.values() if cls.__module__.startswith("metalearn_kit.")]
    assert set(BUILTIN_FAMILIES) <= set(kit) and len(kit) > len(BUILTIN_FAMILIES)  # the operator families too
    for family in kit:
        for split in ("train", "test"):
            try:
                degradation = family(split=split)
            except (TypeError, ValueError):  # needs arguments (KernelBlur's kernels)
                continue
            channels = 3 if (getattr(family, "required_channels", None) == 3 or "colour" in family.__name__.lower()
                             or "channel" in family.__name__.lower()) else 1
            check_determinism(degradation, image_size=(32, 32), channels=channels)
    # noise far beyond the default ranges stays inside each family's own tolerance
    clean = torch.full((4, 1, 32, 32), 0.5)
    for degradation, params in ((GaussianNoise(sigma=2.0), {"sigma": 2.0}), (PoissonNoise(peak=0.05), {"peak": 0.05})):
        out = degradation.apply(clean, params, 0)
        assert out.min() >= 0 and out.max() <= 1


def test_a_nondeterministic_family_is_refused_at_registration_and_at_first_use(monkeypatch):
    from metalearn_kit.tasks import degradation_base

    # the families defined here stay out of the registry the other tests see
    monkeypatch.setattr(degradation_base, "_REGISTRY", dict(degradation_base._REGISTRY))
    with pytest.raises(NondeterministicDegradationError, match="Jitter.degrade gave different outputs"):
        class Jitter(Degradation):  # noqa: F841
            name = "jitter_reliability"
            default_ranges = {"train": {"amount": (0.05, 0.1)}}

            def degrade(self, clean, params, generator):
                return clean + params["amount"] * torch.rand(clean.shape)  # global generator
    assert "jitter_reliability" not in list_degradations()  # a refused class is not registered

    class NeedsArgs(Degradation, register=False):  # cannot be built with its defaults: probed at first use
        name = "needs_args_reliability"

        def __init__(self, strength: float, split: str = "train"):
            super().__init__(split)
            self.strength = strength

        def degrade(self, clean, params, generator):
            return clean * (1 - self.strength * torch.rand(clean.shape))

    with pytest.raises(NondeterministicDegradationError, match="NeedsArgs.degrade gave different outputs"):
        RestorationTasks(torch.rand(6, 1, 16, 16), NeedsArgs(0.2), 2, 2)

    class Seeded(Degradation):  # the generator it is given: accepted, and the same seed gives the same task
        name = "seeded_reliability"
        default_ranges = {"train": {"amount": (0.05, 0.1)}}

        def degrade(self, clean, params, generator):
            return clean + params["amount"] * self.randn(clean.shape, generator, clean)

    tasks = RestorationTasks(torch.rand(6, 1, 16, 16), "seeded_reliability", 2, 2)
    assert torch.equal(tasks.sample(3).support[0], tasks.sample(3).support[0])
    assert make_degradation("seeded_reliability").split == "train"


# ------------------------------------------------------------------ item 4: resume only what exists
class _NoiseTasks:
    def sample_batch(self, n, generator):
        clean = torch.rand(n, 4, 1, 8, 8, generator=generator)
        noisy = (clean + 0.1 * torch.randn(clean.shape, generator=generator)).clamp(0, 1)
        return [Task((noisy[i, :2], clean[i, :2]), (noisy[i, 2:], clean[i, 2:])) for i in range(n)]


def _mse(model, batch):
    return F.mse_loss(model(batch[0]), batch[1])


def test_resume_if_present_starts_fresh_then_continues(tmp_path):
    def run(iterations, resume):
        torch.manual_seed(0)
        learner = MAML(ConvRestorer(1, 4, 2), inner_lr=0.05, inner_steps=1)
        return meta_train(learner, _NoiseTasks(), _mse,
                          MetaTrainConfig(iterations=iterations, meta_batch=2, progress=False,
                                          checkpoint_dir=tmp_path / "run", checkpoint_every=1, resume=resume))

    with pytest.raises(ValueError, match="holds no checkpoint|does not exist"):
        run(2, True)
    first = run(2, "if_present")  # nothing to resume: a fresh run
    assert first["iteration"] == [1, 2]
    second = run(4, "if_present")  # now there is: it continues
    assert second["iteration"] == [1, 2, 3, 4] and second["meta_loss"][:2] == first["meta_loss"]
    assert run(5, True)["iteration"][-1] == 5


# ------------------------------------------------------------------ item 5: what the argument checks let through
def test_matching_dtypes_and_integer_labels_are_accepted():
    model = ConvRestorer(1, 4, 2).double()
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    adapted = finetune(model, (x, x), _mse, steps=1, lr=0.01)
    assert adapted(x).dtype == torch.float64
    labels = torch.arange(3)  # int64 labels sit next to float images in generation tasks

    def labelled_loss(m, batch):
        return F.mse_loss(m(batch[0]), batch[1]) + 0.0 * batch[2].float().sum()

    learner = MAML(ConvRestorer(1, 4, 2), inner_lr=0.05, inner_steps=1)
    x32 = x.float()
    assert learner.adapt((x32, x32, labels), labelled_loss).support_losses
    # a loss_fn that converts the data itself is the user's choice: the dtype is only named when torch fails
    double = MAML(ConvRestorer(1, 4, 2).double(), inner_lr=0.05, inner_steps=1)

    def converting_loss(m, batch):
        return F.mse_loss(m(batch[0].double()), batch[1].double())

    assert double.adapt((x32, x32), converting_loss).support_losses
    assert torch.isfinite(double.meta_loss([Task((x32, x32), (x32, x32))], converting_loss))
