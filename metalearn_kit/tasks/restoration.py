"""Restoration task distribution: each task is one degradation with fixed parameters and a few image pairs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .._checks import check_choice, check_images, check_int
from ..config import make_generator
from .degradations import SPLITS, Degradation, make_degradation
from .task import Task, TaskDistribution

__all__ = ["RestorationTasks"]


class _CleanSampler:
    """Draws clean images ``[n, C, H, W]`` from any of the kit's image sources:
    a photo source (``sample_patches(n, generator)``), a class source (``images_of(i)``, ``num_classes``;
    images drawn from uniformly chosen classes) or a plain tensor ``[N, C, H, W]`` in [0, 1]."""

    def __init__(self, source: Any) -> None:
        self.source = source
        if isinstance(source, torch.Tensor):
            check_images("source", source)
            if source.shape[0] < 1:
                raise ValueError("source tensor holds no images")
            self.kind = "tensor"
            self.image_size = (source.shape[-2], source.shape[-1])
        elif callable(getattr(source, "sample_patches", None)):
            self.kind = "patches"
            size = getattr(source, "patch_size", None)
            self.image_size = (size, size) if isinstance(size, int) else None
        elif callable(getattr(source, "images_of", None)) and hasattr(source, "num_classes"):
            self.kind = "classes"
            size = getattr(source, "image_size", None)
            self.image_size = (size, size) if isinstance(size, int) else None
            self._cache: dict[int, torch.Tensor] = {}
        else:
            raise TypeError(f"source must be a photo source (with sample_patches), a class image source (with "
                            f"images_of and num_classes) or an image tensor [N, C, H, W]; got "
                            f"{type(source).__name__}")

    def _images_of(self, index: int) -> torch.Tensor:
        if index not in self._cache:
            self._cache[index] = self.source.images_of(index)
        return self._cache[index]

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        if self.kind == "tensor":
            rows = torch.randint(self.source.shape[0], (n,), generator=generator)
            return self.source[rows]
        if self.kind == "patches":
            return self.source.sample_patches(n, generator)
        classes = torch.randint(self.source.num_classes, (n,), generator=generator).tolist()
        images = []
        for c in classes:
            pool = self._images_of(c)
            images.append(pool[int(torch.randint(pool.shape[0], (1,), generator=generator))])
        return torch.stack(images)


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
            class (instances keep their own ranges); ``None`` means the training ranges.
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
        if self.sampler.image_size is not None:
            for d in self.degradations:
                d.check_image_size(*self.sampler.image_size)

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
        split = self.split if self.split is not None else getattr(degradation, "split", None)
        info = {"kind": "restoration", "family": family, "params": params, "split": split,
                "shots": self.shots, "queries": self.queries}
        if isinstance(getattr(self.source, "name", None), str):
            info["source"] = self.source.name
        json.dumps(info)  # fail here, not in a checkpoint or a log, if a family returns odd parameters
        return Task((degraded[:k], clean[:k]), (degraded[k:], clean[k:]), info)


    def __repr__(self) -> str:
        return (f"RestorationTasks(families={self.families}, shots={self.shots}, queries={self.queries}, "
                f"split={self.split!r})")
