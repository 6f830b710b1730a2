"""Natural-image patches from the photographs bundled inside the scikit-image wheel (no download).

Restoration tasks need clean natural images; these ship with scikit-image, so notebooks run offline.
The split is by photograph: a test photograph never lends a pixel to training.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_choice, check_int
from ..config import make_generator

__all__ = ["FLAT_PATCH_STD", "MAX_SIDE", "PhotoSource", "SPLITS", "luma", "photo_names", "photos"]

SPLITS = ("train", "test")
MAX_SIDE = 512  # bigger photographs are downscaled so the whole set stays a few MB
# A patch whose pixels vary by less than one 8-bit level (a blown-out highlight, a black shadow) is restored exactly
# by doing nothing: its PSNR is infinite and one such patch dominates a mean over tasks. Evaluation sources refuse
# patches flatter than this (``min_std``); training sources keep them (harmless to learn from).
FLAT_PATCH_STD = 1.0 / 255.0
_FLAT_REDRAWS = 1000  # a source whose crops are this often all flat has no texture to evaluate on

# Real photographs only: synthetic or binary pictures (horse, logo, colorwheel, checkerboard) teach a
# restoration model nothing about natural statistics, and `cat` is the same picture as `chelsea`.
_COLOUR = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "retina", "rocket")
_GREY = ("brick", "camera", "cell", "clock", "coins", "grass", "gravel", "microaneurysms", "moon", "page", "text")
# Fixed meta-test photographs: two colour ones (so channels=3 has a test split) and two grey textures.
_TEST = ("camera", "coffee", "gravel", "immunohistochemistry")


def photo_names(split: str, channels: int) -> tuple[str, ...]:
    """Names of the scikit-image photographs in one split (``channels=3`` keeps colour ones only)."""
    check_choice("split", split, SPLITS)
    _check_channels(channels)
    pool = _COLOUR if channels == 3 else tuple(sorted(_COLOUR + _GREY))
    return tuple(n for n in pool if (n in _TEST) == (split == "test"))


def _check_channels(channels) -> None:
    if isinstance(channels, bool) or not isinstance(channels, int):
        raise TypeError(f"channels must be the int 1 (grey) or 3 (colour), got {channels!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (colour), got {channels}")


def luma(image: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 luma, the usual colour-to-grey weights: ``[..., 3, H, W]`` -> ``[..., 1, H, W]``."""
    if image.dim() < 3 or image.shape[-3] != 3:
        raise ValueError(f"image must have shape [..., 3, H, W] (RGB), got {tuple(image.shape)}")
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image * weights).sum(-3, keepdim=True)


@functools.cache
def _load(name: str, channels: int) -> torch.Tensor:
    """One photograph as float32 ``[C, H, W]`` in [0, 1], longer side at most MAX_SIDE."""
    import skimage.data

    array = np.asarray(getattr(skimage.data, name)())
    image = torch.from_numpy(array.astype(np.float32) / 255.0)
    image = image[None] if image.dim() == 2 else image.permute(2, 0, 1)[:3]
    if channels == 1 and image.shape[0] == 3:
        image = luma(image)
    side = max(image.shape[-2:])
    if side > MAX_SIDE:
        size = [round(s * MAX_SIDE / side) for s in image.shape[-2:]]
        image = F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    return image.clamp_(0, 1).contiguous()


class PhotoSource:
    """Photographs of one split and random square patches of them.

    Attributes:
        split: the split's name (``"train"``, ``"test"``, or the label :meth:`from_images` was given).
        names: the names of the photographs (scikit-image names for :func:`photos`).
        images: list of float32 ``[C, H, W]`` tensors in [0, 1].
        channels: 1 or 3.
        patch_size: side of the patches :meth:`sample_patches` returns.
        min_std: a crop whose pixel standard deviation is below this is redrawn (0: every crop is kept; evaluation
            sources use :data:`FLAT_PATCH_STD`).
    """

    def __init__(self, split: str, patch_size: int, channels: int):
        names = photo_names(split, channels)
        self._hold(split, patch_size, channels, names, [_load(name, channels) for name in names])

    @classmethod
    def from_images(cls, split: str, names: Sequence[str], images: Sequence[torch.Tensor],
                    patch_size: int = 32) -> PhotoSource:
        """A source over given photographs: ``images`` float32 ``[C, H, W]`` in [0, 1] (sizes may differ, the
        channel count may not), one name each; ``split`` is only a label."""
        check_int("patch_size", patch_size, 8)
        images = list(images)
        if not images or len(names) != len(images):
            raise ValueError(f"names and images must be non-empty and of equal length, got {len(names)} names "
                             f"and {len(images)} images")
        shapes = [tuple(getattr(img, "shape", ())) for img in images]
        if any(len(s) != 3 or s[0] != shapes[0][0] for s in shapes) or shapes[0][0] not in (1, 3):
            raise ValueError(f"images must all be [C, H, W] with one C in (1, 3), got shapes {sorted(set(shapes))}")
        source = cls.__new__(cls)
        source._hold(split, patch_size, shapes[0][0], names, [img.float().contiguous() for img in images])
        return source

    def _hold(self, split: str, patch_size: int, channels: int, names: Sequence[str],
              images: list[torch.Tensor]) -> None:
        self.split = split
        self.channels = channels
        self.patch_size = patch_size
        self.names = list(names)
        self.images = images
        self.min_std = 0.0
        smallest = min(min(img.shape[-2:]) for img in self.images)
        if patch_size > smallest:
            raise ValueError(f"patch_size must be at most {smallest} (the smallest {split} photograph's side "
                             f"for channels={channels}), got {patch_size}")

    def __len__(self) -> int:
        return len(self.images)

    def image(self, index: int) -> torch.Tensor:
        """Photograph ``index`` as float32 ``[C, H, W]`` in [0, 1]."""
        check_int("index", index, 0, len(self.images) - 1)
        return self.images[index]

    def sample_patches(self, n: int, generator: torch.Generator | int | None = None) -> torch.Tensor:
        """``n`` random crops: float32 ``[n, C, patch_size, patch_size]`` in [0, 1].

        Each crop picks a photograph uniformly (so small photographs are not drowned out by large ones)
        and a uniform position in it; a crop flatter than ``min_std`` is redrawn. Same generator state -> same
        patches.
        """
        check_int("n", n, 0)
        gen = make_generator(generator)
        which = torch.randint(len(self.images), (n,), generator=gen)
        # One uniform number per axis, scaled to each photograph's own free range.
        offsets = torch.rand(n, 2, generator=gen, dtype=torch.float64)
        out = torch.empty(n, self.channels, self.patch_size, self.patch_size)
        for k in range(n):
            out[k] = self._crop(int(which[k]), offsets[k])
            for _ in range(_FLAT_REDRAWS if self.min_std > 0 else 0):
                if float(out[k].std()) >= self.min_std:
                    break
                out[k] = self._crop(int(torch.randint(len(self.images), (1,), generator=gen)),
                                    torch.rand(2, generator=gen, dtype=torch.float64))
            else:
                if self.min_std > 0:
                    raise ValueError(f"min_std={self.min_std}: {_FLAT_REDRAWS} crops of {self.split!r} in a row were "
                                     f"flatter than that; lower min_std or use photographs with texture")
        return out

    def _crop(self, index: int, offset: torch.Tensor) -> torch.Tensor:
        """The crop of photograph ``index`` at relative position ``offset`` (two numbers in [0, 1))."""
        img, p = self.images[index], self.patch_size
        top = int(offset[0] * (img.shape[-2] - p + 1))
        left = int(offset[1] * (img.shape[-1] - p + 1))
        return img[:, top:top + p, left:left + p]

    def __repr__(self) -> str:
        return (f"PhotoSource({self.split!r}: {len(self.images)} photographs, channels={self.channels}, "
                f"patch_size={self.patch_size})")


def photos(split: str = "train", patch_size: int = 32, channels: int = 1) -> PhotoSource:
    """Natural photographs bundled with scikit-image, split by photograph into ``train`` and ``test``.

    Args:
        split: ``"train"`` or ``"test"``; no photograph is in both.
        patch_size: side of the square patches ``sample_patches`` cuts (>= 8, at most the smallest
            photograph's side).
        channels: 1 converts every photograph to grey; 3 keeps the colour photographs only.
    """
    check_choice("split", split, SPLITS)
    check_int("patch_size", patch_size, 8)
    _check_channels(channels)
    return PhotoSource(split, patch_size, channels)
