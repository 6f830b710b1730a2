"""Natural-photograph patches from scikit-image: split by photograph, shapes, seeding, bad input."""

import os

import pytest
import torch

from metalearn_kit.data import PhotoSource, photos
from metalearn_kit.data.photo_source import MAX_SIDE


@pytest.mark.parametrize("channels", [1, 3])
def test_splits_share_no_photograph(channels):
    train, test = photos("train", 32, channels), photos("test", 32, channels)
    print(f"channels={channels}: train {train.names}, test {test.names}")
    assert isinstance(train, PhotoSource) and len(train) >= 5 and len(test) >= 2
    assert not set(train.names) & set(test.names)
    # Not only the names: no test picture's pixels appear in train (e.g. skimage's cat is chelsea).
    for a in train.images:
        for b in test.images:
            assert a.shape != b.shape or not torch.allclose(a, b)
    names = train.names + test.names
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("channels", [1, 3])
def test_images_are_unit_range_float_with_bounded_size(channels):
    for split in ("train", "test"):
        source = photos(split, 16, channels)
        assert source.channels == channels and source.patch_size == 16
        for i, image in enumerate(source.images):
            assert image.dtype == torch.float32 and image.dim() == 3 and image.shape[0] == channels
            assert max(image.shape[1:]) <= MAX_SIDE
            assert image.min() >= 0 and image.max() <= 1
            assert image.std() > 0.02  # a real photograph, not a flat page
            assert source.image(i) is image
    colour = photos("train", 16, 3)
    # Colour photographs really carry colour: the channels differ.
    assert all((img[0] - img[1]).abs().mean() > 0.01 for img in colour.images)


def test_sample_patches_shape_range_and_seeding():
    source = photos("train", 24, 1)
    patches = source.sample_patches(50, generator=7)
    assert patches.shape == (50, 1, 24, 24) and patches.dtype == torch.float32
    assert patches.min() >= 0 and patches.max() <= 1
    assert torch.equal(patches, source.sample_patches(50, generator=torch.Generator().manual_seed(7)))
    assert not torch.equal(patches, source.sample_patches(50, generator=8))
    # A generator is consumed: two calls in a row give different patches.
    gen = torch.Generator().manual_seed(0)
    assert not torch.equal(source.sample_patches(4, gen), source.sample_patches(4, gen))
    assert source.sample_patches(0, generator=1).shape == (0, 1, 24, 24)


def test_patches_are_real_crops_of_split_photographs():
    source = photos("test", 16, 3)
    patches = source.sample_patches(6, generator=3)
    for patch in patches:
        found = False
        for img in source.images:
            # Candidate corners: where the patch's top-left pixel value occurs; then compare whole windows.
            for y, x in torch.nonzero((img[:, :-15, :-15] == patch[:, :1, :1]).all(0)).tolist():
                found = found or torch.equal(img[:, y:y + 16, x:x + 16], patch)
        assert found


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="split"):
        photos("validation")
    with pytest.raises(ValueError, match="channels"):
        photos("train", 32, 2)
    with pytest.raises(TypeError, match="channels"):
        photos("train", 32, "1")
    with pytest.raises(ValueError, match="patch_size"):
        photos("train", 4)
    with pytest.raises(ValueError, match="patch_size"):
        photos("train", 200, 1)  # larger than the smallest training photograph (microaneurysms, 102 px)
    source = photos("test", 32, 1)
    with pytest.raises(ValueError, match="index"):
        source.image(len(source))
    with pytest.raises(ValueError, match="n"):
        source.sample_patches(-1)
    with pytest.raises(TypeError, match="generator"):
        source.sample_patches(2, generator="seed")


def test_patch_picture(artifacts_dir):
    """artifacts/photos_patches.png: grey train, grey test, colour train, colour test patches."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("train", 1), ("test", 1), ("train", 3), ("test", 3)]
    fig, axes = plt.subplots(len(rows), 12, figsize=(12, 4.6))
    for r, (split, channels) in enumerate(rows):
        patches = photos(split, 48, channels).sample_patches(12, generator=r)
        for k, patch in enumerate(patches):
            ax = axes[r, k]
            if channels == 1:
                ax.imshow(patch[0].numpy(), cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(patch.permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(f"{split}\nC={channels}", fontsize=8)
    fig.suptitle("photos(): random 48x48 patches; rows: grey train, grey test, colour train, colour test")
    fig.tight_layout()
    path = os.path.join(artifacts_dir, "photos_patches.png")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    assert os.path.getsize(path) > 10_000


def test_a_source_over_given_photographs():
    images = [torch.rand(3, 20, 30), torch.rand(3, 30, 20)]
    source = PhotoSource.from_images("mine", ["wide", "tall"], images, patch_size=16)
    assert source.names == ["wide", "tall"] and source.channels == 3 and len(source) == 2
    assert source.sample_patches(4, 0).shape == (4, 3, 16, 16)
    assert torch.equal(source.sample_patches(4, 7), source.sample_patches(4, 7))
    with pytest.raises(ValueError, match="patch_size must be at most 20"):
        PhotoSource.from_images("mine", ["wide", "tall"], images, patch_size=24)
    with pytest.raises(ValueError, match="one C in"):
        PhotoSource.from_images("mine", ["a", "b"], [torch.rand(3, 20, 20), torch.rand(1, 20, 20)])
    with pytest.raises(ValueError, match="equal length"):
        PhotoSource.from_images("mine", ["a"], images)


def test_luma_is_bt601():
    from metalearn_kit.data.photo_source import luma

    rgb = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1).expand(3, 2, 2)
    assert torch.allclose(luma(rgb), torch.full((1, 2, 2), 0.299))
    assert luma(torch.rand(5, 3, 4, 4)).shape == (5, 1, 4, 4)
    with pytest.raises(ValueError, match=r"\[\.\.\., 3, H, W\]"):
        luma(torch.rand(1, 4, 4))


def test_evaluation_sources_refuse_flat_patches():
    from metalearn_kit.data.photo_source import FLAT_PATCH_STD
    from metalearn_kit.recipes.operator_recipe import photo_source

    flat = torch.ones(1, 64, 64)  # a blown-out highlight: restoring nothing scores infinite PSNR
    textured = torch.rand(1, 64, 64, generator=torch.Generator().manual_seed(0))
    source = PhotoSource.from_images("t", ["flat", "textured"], [flat, textured], 16)
    kept = source.sample_patches(64, 0)
    assert sum(float(p.std()) < FLAT_PATCH_STD for p in kept) > 10  # by default every crop is kept
    source.min_std = FLAT_PATCH_STD
    refused = source.sample_patches(64, 0)
    assert all(float(p.std()) >= FLAT_PATCH_STD for p in refused)
    assert torch.equal(refused, source.sample_patches(64, 0))  # still a function of the seed
    only_flat = PhotoSource.from_images("t", ["flat"], [flat], 16)
    only_flat.min_std = FLAT_PATCH_STD
    with pytest.raises(ValueError, match="min_std"):
        only_flat.sample_patches(1, 0)
    # the operator benchmark's dev and test sources refuse flat crops; training keeps them
    assert photo_source("val", 16, 1, "embedded").min_std == FLAT_PATCH_STD
    assert photo_source("test", 16, 1, "embedded").min_std == FLAT_PATCH_STD
    assert photo_source("train", 16, 1, "embedded").min_std == 0.0
