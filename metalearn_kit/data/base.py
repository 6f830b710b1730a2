"""The shape every class-structured image source shares (glyphs, Omniglot, MNIST, Fashion-MNIST).

A source holds its images once, as one ``uint8`` tensor sorted by class, and hands out float
views per class. Task samplers only need :meth:`ClassImageSource.images_of` and the class lists.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._checks import check_int

__all__ = ["ClassImageSource"]


class ClassImageSource:
    """Images grouped into classes, and classes grouped into alphabets (or a single group).

    Attributes:
        name: short label of the source, e.g. ``"glyphs/background"``.
        classes: one name per class, e.g. ``"Greek/small_alpha"``.
        alphabets: names of the groups classes belong to (scripts for glyphs and Omniglot).
        class_alphabet: for each class, the index into ``alphabets`` of its group.
        image_size: side ``H == W`` of every image.
        channels: 1 (grey).
        images_per_class: how many images every class has at least (exactly, for glyphs and Omniglot).
        class_sizes: the number of images of each class.
    """

    def __init__(self, name: str, pixels: torch.Tensor, labels: torch.Tensor, classes: Sequence[str],
                 alphabets: Sequence[str] | None = None, class_alphabet: Sequence[int] | None = None):
        """``pixels``: uint8 ``[N, C, H, W]`` with ink/bright = 255; ``labels``: int ``[N]`` class indices."""
        if not isinstance(pixels, torch.Tensor) or pixels.dtype != torch.uint8 or pixels.dim() != 4:
            raise TypeError(f"pixels must be a uint8 tensor [N, C, H, W], got "
                            f"{getattr(pixels, 'dtype', type(pixels).__name__)} "
                            f"{tuple(getattr(pixels, 'shape', ()))}")
        if pixels.shape[-1] != pixels.shape[-2]:
            raise ValueError(f"pixels must hold square images, got shape {tuple(pixels.shape)}")
        labels = torch.as_tensor(labels, dtype=torch.int64)
        if labels.shape != (pixels.shape[0],):
            raise ValueError(f"labels must have shape [{pixels.shape[0]}], got {tuple(labels.shape)}")
        num_classes = len(classes)
        if num_classes == 0:
            raise ValueError("classes must not be empty")
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"labels must lie in [0, {num_classes}), got range "
                             f"[{int(labels.min())}, {int(labels.max())}]")
        # Sort once by class (stable, so the file order inside a class is kept) and keep offsets.
        order = torch.argsort(labels, stable=True)
        self._pixels = pixels[order].contiguous()
        counts = torch.bincount(labels, minlength=num_classes)
        if (counts == 0).any():
            empty = [classes[i] for i in torch.nonzero(counts == 0).flatten().tolist()[:5]]
            raise ValueError(f"every class needs at least one image; empty: {empty}")
        self._starts = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)]).tolist()
        self.name = name
        self.classes = list(classes)
        self.alphabets = list(alphabets) if alphabets is not None else [name]
        self.class_alphabet = list(class_alphabet) if class_alphabet is not None else [0] * num_classes
        if len(self.class_alphabet) != num_classes:
            raise ValueError(f"class_alphabet must have one entry per class ({num_classes}), "
                             f"got {len(self.class_alphabet)}")
        self.class_sizes = counts.tolist()
        self.images_per_class = int(counts.min())
        self.channels = int(pixels.shape[1])
        self.image_size = int(pixels.shape[-1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.classes)

    def images_of(self, class_index: int) -> torch.Tensor:
        """All images of one class: float32 ``[class_sizes[class_index], C, H, W]`` in [0, 1], ink = 1."""
        check_int("class_index", class_index, 0, self.num_classes - 1)
        start, stop = self._starts[class_index], self._starts[class_index + 1]
        return self._pixels[start:stop].to(torch.float32).div_(255.0)

    def classes_of_alphabet(self, alphabet: int | str) -> list[int]:
        """Indices of the classes in one alphabet (given by index or name)."""
        if isinstance(alphabet, str):
            if alphabet not in self.alphabets:
                raise ValueError(f"alphabet must be one of {self.alphabets}, got {alphabet!r}")
            alphabet = self.alphabets.index(alphabet)
        check_int("alphabet", alphabet, 0, len(self.alphabets) - 1)
        return [i for i, a in enumerate(self.class_alphabet) if a == alphabet]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.name!r}: {self.num_classes} classes in {len(self.alphabets)} "
                f"alphabets, {self.images_per_class}+ images/class, {self.channels}x{self.image_size}x"
                f"{self.image_size})")
