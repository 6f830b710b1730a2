"""Few-shot generation task distribution: each task is one class (or ``ways`` classes) with a few images."""

from __future__ import annotations

from typing import Any

import torch

from .._checks import check_images, check_int
from ..config import make_generator
from .task import Task, TaskDistribution

__all__ = ["FewShotGenerationTasks"]


class FewShotGenerationTasks(TaskDistribution):
    """A distribution over few-shot generation tasks drawn from a class image source.

    With ``ways=1`` a task is one class: ``support = (images [K, C, H, W], labels [K])`` and
    ``query = (images [Q, C, H, W], labels [Q])`` with all labels 0, the support and query images distinct.
    With ``ways=N`` a task holds N distinct classes for class-conditional models: labels ``0..N-1`` within the
    task (the order the classes were drawn), support ``[N*K]`` and query ``[N*Q]`` grouped by label.
    ``task.info`` holds ``classes`` (names), ``class_indices``, ``ways``, ``shots``, ``queries``.

    Args:
        source: class image source (``images_of(i) -> [N, C, H, W]``, ``num_classes``, optional ``classes``).
        shots: support images per class (K >= 1).
        queries: query images per class (Q >= 1); ``shots + queries`` must not exceed the images per class.
        ways: classes per task (N >= 1).
    """

    def __init__(self, source: Any, shots: int, queries: int, ways: int = 1) -> None:
        if not (callable(getattr(source, "images_of", None)) and hasattr(source, "num_classes")):
            raise TypeError(f"source must be a class image source with images_of(index) and num_classes (e.g. "
                            f"metalearn_kit.data.glyphs('train')), got {type(source).__name__}")
        self.source = source
        self.shots = check_int("shots", shots, minimum=1)
        self.queries = check_int("queries", queries, minimum=1)
        self.ways = check_int("ways", ways, minimum=1)
        num_classes = check_int("source.num_classes", source.num_classes, minimum=1)
        if self.ways > num_classes:
            raise ValueError(f"ways={self.ways} exceeds the {num_classes} classes of the source; use ways <= "
                             f"{num_classes}")
        per_class = getattr(source, "images_per_class", None)
        if isinstance(per_class, int) and self.shots + self.queries > per_class:
            raise ValueError(f"shots + queries = {self.shots} + {self.queries} = {self.shots + self.queries} exceeds "
                             f"the {per_class} images per class of the source; lower shots or queries")
        self._cache: dict[int, torch.Tensor] = {}

    def _images_of(self, index: int) -> torch.Tensor:
        if index not in self._cache:
            images = check_images(f"source.images_of({index})", self.source.images_of(index)).float()
            if images.shape[0] < self.shots + self.queries:
                raise ValueError(f"class {index} has {images.shape[0]} images, fewer than shots + queries = "
                                 f"{self.shots} + {self.queries}; lower shots or queries")
            self._cache[index] = images
        return self._cache[index]

    def _class_name(self, index: int) -> str:
        names = getattr(self.source, "classes", None)
        try:
            return str(names[index])
        except (TypeError, IndexError, KeyError):
            return str(index)

    def sample(self, generator: torch.Generator | int | None = None) -> Task:
        """One task. The same seed (or a generator in the same state) gives the same task."""
        g = make_generator(generator)
        class_indices = torch.randperm(self.source.num_classes, generator=g)[: self.ways].tolist()
        support, query = [], []
        for index in class_indices:
            pool = self._images_of(index)
            pick = torch.randperm(pool.shape[0], generator=g)[: self.shots + self.queries]
            support.append(pool[pick[: self.shots]])
            query.append(pool[pick[self.shots:]])
        labels = torch.arange(self.ways, dtype=torch.int64)
        info = {"kind": "generation", "classes": [self._class_name(i) for i in class_indices],
                "class_indices": class_indices, "ways": self.ways, "shots": self.shots, "queries": self.queries}
        return Task((torch.cat(support), labels.repeat_interleave(self.shots)),
                    (torch.cat(query), labels.repeat_interleave(self.queries)), info)


    def __repr__(self) -> str:
        return (f"FewShotGenerationTasks(classes={self.source.num_classes}, ways={self.ways}, shots={self.shots}, "
                f"queries={self.queries})")
