"""Restoration task distribution: each task is one degradation with fixed parameters and a few image pairs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .._checks import check_choice, check_images, check_int
from ..config import make_generator
from .degradation_checks import probe_instance
from .degradations import SPLITS, Degradation, make_degradation
from .task import Task, TaskDistribution

__all__ = ["RestorationTasks", "sample_distinct_images"]

# Source split -> the task split it serves: photos have train/test, glyphs and Omniglot background/evaluation.
_SOURCE_SPLIT = {"train": "train", "background": "train", "val": "val", "test": "test", "evaluation": "test"}
_MAX_REDRAWS = 100  # per image: a source that keeps repeating one crop this often has too few distinct images


class _CleanSampler:
    """Draws clean images ``[n, C, H, W]`` from any of the kit's image sources:
    a photo source (``sample_patches(n, generator)``), a class source (``images_of(i)``, ``num_classes``;
    images drawn from uniformly chosen classes) or a plain tensor ``[N, C, H, W]`` in [0, 1].

    The ``n`` images of one draw are distinct (drawn without replacement), so a task's query never repeats one
    of its support images: a tensor row or a class image is used at most once, and a photo crop equal to an
    earlier one is redrawn. The first draw is kept whenever it has no repeat, so a seed gives the same images
    as sampling with replacement did unless that draw held a repeat."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.split = getattr(source, "split", None) if isinstance(getattr(source, "split", None), str) else None
        if isinstance(source, torch.Tensor):
            check_images("source", source)
            if source.shape[0] < 1:
                raise ValueError("source tensor holds no images")
            self.kind = "tensor"
            self.image_size = (source.shape[-2], source.shape[-1])
            self.capacity: int | None = source.shape[0]
        elif callable(getattr(source, "sample_patches", None)):
            self.kind = "patches"
            size = getattr(source, "patch_size", None)
            self.image_size = (size, size) if isinstance(size, int) else None
            self.capacity = None  # crops at any position: only repeats found while drawing are refused
        elif callable(getattr(source, "images_of", None)) and hasattr(source, "num_classes"):
            self.kind = "classes"
            size = getattr(source, "image_size", None)
            self.image_size = (size, size) if isinstance(size, int) else None
            self._cache: dict[int, torch.Tensor] = {}
            sizes, per_class = getattr(source, "class_sizes", None), getattr(source, "images_per_class", None)
            self.capacity = (sum(sizes) if isinstance(sizes, (list, tuple)) else
                             source.num_classes * per_class if isinstance(per_class, int) else None)
        else:
            raise TypeError(f"source must be a photo source (with sample_patches), a class image source (with "
                            f"images_of and num_classes) or an image tensor [N, C, H, W]; got "
                            f"{type(source).__name__}")

    def check_count(self, shots: int, queries: int) -> None:
        """Refuse a source with fewer images than one task needs (``shots + queries``, all distinct)."""
        if self.capacity is not None and shots + queries > self.capacity:
            raise ValueError(f"source holds {self.capacity} images, fewer than shots + queries = {shots} + {queries} "
                             f"= {shots + queries}, and a task uses each image at most once (the query must be held "
                             f"out from the support); lower shots or queries, or give more images")

    def _images_of(self, index: int) -> torch.Tensor:
        if index not in self._cache:
            self._cache[index] = self.source.images_of(index)
        return self._cache[index]

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        if self.kind == "tensor":
            rows = self._distinct(n, lambda: int(torch.randint(self.source.shape[0], (1,), generator=generator)),
                                  torch.randint(self.source.shape[0], (n,), generator=generator).tolist())
            return self.source[rows]
        if self.kind == "patches":
            return self._distinct_patches(n, generator)

        def image_in(c: int) -> tuple[int, int]:  # (class, image index)
            return c, int(torch.randint(self._images_of(c).shape[0], (1,), generator=generator))

        classes = torch.randint(self.source.num_classes, (n,), generator=generator).tolist()
        first = [image_in(c) for c in classes]
        picks = self._distinct(
            n, lambda: image_in(int(torch.randint(self.source.num_classes, (1,), generator=generator))), first)
        return torch.stack([self._images_of(c)[i] for c, i in picks])

    def _distinct(self, n: int, draw_one, first: list) -> list:
        """``first`` with every repeat of an earlier entry replaced by a fresh ``draw_one()`` that is new."""
        seen, out = set(), []
        for item in first:
            for _ in range(_MAX_REDRAWS * max(1, n)):
                if item not in seen:
                    break
                item = draw_one()
            else:
                raise ValueError(f"could not draw {n} distinct images from the source; give more images or lower "
                                 f"shots + queries")
            seen.add(item)
            out.append(item)
        return out

    def _distinct_patches(self, n: int, generator: torch.Generator) -> torch.Tensor:
        patches = self.source.sample_patches(n, generator)
        keys = [p.numpy().tobytes() for p in patches]
        seen: set[bytes] = set()
        for k in range(n):
            for _ in range(_MAX_REDRAWS):
                if keys[k] not in seen:
                    break
                patches[k] = self.source.sample_patches(1, generator)[0]
                keys[k] = patches[k].numpy().tobytes()
            else:
                raise ValueError(f"the photo source kept giving identical patches ({_MAX_REDRAWS} redraws): it has "
                                 f"too few distinct patches for {n} images per task; use a smaller patch_size or "
                                 f"lower shots + queries")
            seen.add(keys[k])
        return patches


def sample_distinct_images(source: Any, n: int, generator: torch.Generator | int | None = None) -> torch.Tensor:
    """``n`` distinct clean images ``[n, C, H, W]`` from a photo source, a class image source or an image tensor
    (no image twice; a tensor or class source with fewer than ``n`` images is refused)."""
    sampler = _CleanSampler(source)
    sampler.check_count(check_int("n", n, minimum=1), 0)
    return sampler.sample(n, make_generator(generator))


def _as_degradations(degradations: Any, split: str | None) -> list[Degradation]:
    """Names, classes, instances, a ``{name: ranges}`` dict, or a list of these -> list of instances."""
    split_arg = split if split is not None else "train"
    if isinstance(degradations, Mapping):
        out = []
        for name, ranges in degradations.items():
            if not isinstance(ranges, Mapping):
                raise TypeError(f"degradations[{name!r}] must be a dict of parameter ranges, got "
                                f"{type(ranges).__name__}")
            out.append(make_degradation(name, split=split_arg, **ranges))
        items = out
    elif isinstance(degradations, (str, Degradation, type)):
        items = [degradations]
    elif isinstance(degradations, Sequence):
        items = list(degradations)
    else:
        raise TypeError(f"degradations must be a family name, a Degradation, a dict {{name: ranges}} or a list "
                        f"of these, got {type(degradations).__name__}")
    if not items:
        raise ValueError("degradations must name at least one family; see list_degradations()")
    return [make_degradation(d, split=split_arg) for d in items]


class RestorationTasks(TaskDistribution):
    """A distribution over restoration tasks.

    A task picks one family uniformly from ``degradations``, draws its parameters once, and degrades
    ``shots`` support and ``queries`` query clean patches from ``source`` with them (each image gets its
    own noise draw). ``task.support = (degraded [K, C, H, W], clean [K, C, H, W])``, same for the query;
    ``task.info`` (JSON-serialisable) holds ``family``, ``params``, ``split``, ``shots``, ``queries``
    (and ``source`` when the source has a ``name``). :meth:`operator` gives a task's known forward model.

    Args:
        source: photo source, class image source or image tensor ``[N, C, H, W]`` (see module docs).
        degradations: a family name, class or instance, a ``{name: {param: range}}`` dict, or a list.
        shots: support pairs per task (K >= 1).
        queries: query pairs per task (Q >= 1).
        split: ``"train"``, ``"val"`` or ``"test"``: the parameter ranges for families given by name or
            class; ``None`` means the training ranges. A given split must match the split of every degradation
            instance and of the source (a source with a ``split``: photos ``train``/``test``, glyphs
            ``background``/``evaluation``); ``"val"`` accepts images of either split. Otherwise ``ValueError``.

    Every task holds ``shots + queries`` distinct images (a source with fewer is refused): the query set is
    held out from the support set. ``info["split"]`` is the split of both the images and the parameters
    (``None`` when ``split`` was not given and they differ); ``info["source_split"]`` is the source's own.
    """

    def __init__(self, source: Any, degradations: Any, shots: int, queries: int, split: str | None = None
                 ) -> None:
        self.shots = check_int("shots", shots, minimum=1)
        self.queries = check_int("queries", queries, minimum=1)
        if split is not None:
            check_choice("split", split, SPLITS)
        self.split = split
        self.sampler = _CleanSampler(source)
        self.source = source
        self.degradations = _as_degradations(degradations, split)
        names = [d.name or type(d).__name__ for d in self.degradations]
        if len(set(names)) != len(names):
            raise ValueError(f"degradations must be distinct families, got {names}; widen one family's ranges "
                             f"instead of listing it twice")
        self._by_name = dict(zip(names, self.degradations))
        self.sampler.check_count(self.shots, self.queries)
        self._check_splits()
        if self.sampler.image_size is not None:
            for d in self.degradations:
                d.check_image_size(*self.sampler.image_size)
        channels = getattr(source, "channels", source.shape[1] if isinstance(source, torch.Tensor) else 1)
        for d in self.degradations:
            # a user family that could not be built with its defaults at registration is probed here
            probe_instance(d, self.sampler.image_size or (32, 32), channels if isinstance(channels, int) else 1)

    def _check_splits(self) -> None:
        """The split a task records must be the one its images and its parameters come from."""
        source_split = _SOURCE_SPLIT.get(self.sampler.split) if self.sampler.split is not None else None
        if self.split is not None:
            for d in self.degradations:
                # a family without default ranges (KernelBlur) has only the ranges it was given: no split to disagree
                if d.default_ranges and getattr(d, "split", self.split) != self.split:
                    raise ValueError(f"split={self.split!r} but degradation {d!r} was built with split={d.split!r}: "
                                     f"its parameters would come from the {d.split!r} ranges while the tasks say "
                                     f"{self.split!r}; pass the family by name (it then takes split {self.split!r}) "
                                     f"or build it with split={self.split!r}")
            # "val" repeats the training ranges on new images; photos and glyphs have no validation images, so a
            # val task may take them from either split (info["source_split"] says which)
            if source_split is not None and self.split != "val" and source_split != self.split:
                raise ValueError(f"split={self.split!r} but the source holds {self.sampler.split!r} images "
                                 f"({self.source!r}): a {self.split!r} task must use {self.split!r} images; pass "
                                 f"the source of that split or split={source_split!r}")

    def _recorded_split(self, degradation: Degradation) -> str | None:
        """``info["split"]`` of a task of ``degradation``: the given split, else the degradation's own -- unless
        the images come from another split, where no single split describes the task (``None``)."""
        if self.split is not None:
            return self.split
        own = getattr(degradation, "split", None)
        source_split = _SOURCE_SPLIT.get(self.sampler.split) if self.sampler.split is not None else None
        return own if source_split in (None, own) else None

    @property
    def families(self) -> list[str]:
        return list(self._by_name)

    def degradation(self, family: str) -> Degradation:
        """The degradation instance behind ``task.info["family"]`` (for its ``operator``)."""
        if family not in self._by_name:
            raise ValueError(f"family {family!r} is not in this distribution; it has {self.families}")
        return self._by_name[family]

    def operator(self, task: Task) -> dict[str, Any] | None:
        """The known forward model of ``task`` (blur kernel, mask, scale, noise level) from its info, as
        :meth:`Degradation.operator` gives it; ``None`` for families without one (JPEG)."""
        if not isinstance(task, Task):
            raise TypeError(f"task must be a Task from this distribution, got {type(task).__name__}")
        info = task.info
        if "family" not in info or "params" not in info:
            raise ValueError("task.info has no family/params; it was not sampled from a RestorationTasks")
        return self.degradation(info["family"]).operator(info["params"], tuple(task.support[1].shape[-2:]))

    def sample(self, generator: torch.Generator | int | None = None) -> Task:
        """One task. The same seed (or a generator in the same state) gives the same task."""
        g = make_generator(generator)
        index = int(torch.randint(len(self.degradations), (1,), generator=g))
        family = self.families[index]
        degradation = self.degradations[index]
        params = degradation.sample_params(g)
        clean = self.sampler.sample(self.shots + self.queries, g)
        clean = check_images("source images", clean).float()
        degradation.check_image_size(clean.shape[-2], clean.shape[-1])
        degraded = degradation.apply(clean, params, g)
        k = self.shots
        # The split whose ranges the parameters came from (an instance keeps the split it was built with).
        split = self._recorded_split(degradation)
        info = {"kind": "restoration", "family": family, "params": params, "split": split,
                "shots": self.shots, "queries": self.queries}
        if isinstance(getattr(self.source, "name", None), str):
            info["source"] = self.source.name
        if self.sampler.split is not None:
            info["source_split"] = self.sampler.split
        json.dumps(info)  # fail here, not in a checkpoint or a log, if a family returns odd parameters
        return Task((degraded[:k], clean[:k]), (degraded[k:], clean[k:]), info)


    def __repr__(self) -> str:
        return (f"RestorationTasks(families={self.families}, shots={self.shots}, queries={self.queries}, "
                f"split={self.split!r})")
