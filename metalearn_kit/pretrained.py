"""The checkpoint service: every shipped model under one name, loaded, trained or loaded-or-trained here.

Shipped checkpoints are small pretrained / meta-learned models kept in ``metalearn_kit/checkpoints_data/``
(safetensors weights + JSON metadata: config, seed, metrics, machine, command), so notebooks and benchmarks
start from trained weights instead of minutes of meta-training::

    model, meta = load_pretrained("restoration_denoise_maml")           # the shipped file
    model, info = load_or_train("restoration_denoise_maml", config)     # the file if trained with config, else train
    metalearn-kit pretrain restoration_denoise_maml [--profile full]     # (re)train and write it

**Registering a checkpoint is one line in** :data:`~metalearn_kit.checkpoint_entry.CHECKPOINTS`: its name, the
recipe module (in ``metalearn_kit/recipes/``) whose ``checkpoint_entry(name, profile, description)`` says how to
build and train it, and a one-line description. This module sits above the recipes and imports a recipe only when
one of its checkpoints is used: :data:`REGISTRY` builds each :class:`PretrainedEntry` on first access (and tests
or users may add entries to it). Importing it loads no recipe.

The shipped files are the ``fast`` profile's (CPU-sized); each entry's ``full`` variant is the same training
at the GPU sizes of the benchmarks' ``full`` profile, written beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

from torch import nn

from .checkpoint_entry import (
    CHECKPOINT_DIR,
    CHECKPOINTS,
    DIR_ENV,
    PROFILES,
    SHIPPED_PROFILE,
    PretrainedEntry,
    checkpoint_dir,
    load_entry,
    load_or_train_entry,
    profile_entry,
    train_entry,
    with_variants,
)

__all__ = ["CHECKPOINTS", "CHECKPOINT_DIR", "DIR_ENV", "PROFILES", "REGISTRY", "SHIPPED_PROFILE", "PretrainedEntry",
           "available", "checkpoint_dir", "checkpoint_path", "load_or_train", "load_pretrained", "train_pretrained"]


def _recipe_entry(recipe: str) -> Callable[[str, str, str], PretrainedEntry]:
    """The ``checkpoint_entry(name, profile, description)`` of recipe module ``recipe`` (imported now)."""
    if recipe == "restoration":
        from .recipes.restoration import checkpoint_entry
    elif recipe == "operator_families":
        from .recipes.operator_families import checkpoint_entry
    elif recipe == "generation":
        from .recipes.generation import checkpoint_entry
    else:
        raise ValueError(f"recipe must be 'restoration', 'operator_families' or 'generation' (the recipes with "
                         f"checkpoints), got {recipe!r}; add its import here")
    return checkpoint_entry


class _Registry(MutableMapping):
    """``name -> PretrainedEntry``; the entries of :data:`CHECKPOINTS` are built from their recipe on first use."""

    def __init__(self) -> None:
        self._entries: dict[str, PretrainedEntry] = {}

    def __getitem__(self, name: str) -> PretrainedEntry:
        if name not in self._entries:
            if name not in CHECKPOINTS:
                raise KeyError(name)
            recipe, description = CHECKPOINTS[name]
            self._entries[name] = with_variants(_recipe_entry(recipe), name, description)
        return self._entries[name]

    def __setitem__(self, name: str, entry: PretrainedEntry) -> None:
        self._entries[name] = entry

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*CHECKPOINTS, *self._entries]))

    def __len__(self) -> int:
        return len(set(CHECKPOINTS) | set(self._entries))

    def __contains__(self, name: object) -> bool:
        return name in CHECKPOINTS or name in self._entries


REGISTRY = _Registry()


def _entry(name: str) -> PretrainedEntry:
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"name must be a registered checkpoint, one of {sorted(REGISTRY)}; got {name!r}")
    return REGISTRY[name]


def checkpoint_path(name: str, profile: str = SHIPPED_PROFILE) -> Path:
    """The ``.safetensors`` path of checkpoint ``name`` at ``profile`` (it may not exist yet)."""
    return checkpoint_dir() / profile_entry(name, _entry(name), profile).file


def available(profile: str = SHIPPED_PROFILE) -> dict[str, bool]:
    """Every registered name and whether its ``profile`` file is present."""
    return {name: checkpoint_path(name, profile).exists() for name in sorted(REGISTRY)}


def load_pretrained(name: str, train_if_missing: bool = False, profile: str = SHIPPED_PROFILE
                    ) -> tuple[nn.Module, dict]:
    """The model of checkpoint ``name`` (its ``profile`` variant: ``"fast"``, the shipped one, or ``"full"``)
    with its weights loaded, and its metadata (``config``, ``seed``, ``metrics``, ``machine``, ``command``).
    A missing file raises ``FileNotFoundError`` naming the command that makes it, unless ``train_if_missing``
    (then it is trained and saved now)."""
    return load_entry(name, _entry(name), train_if_missing, profile)


def train_pretrained(name: str, config: Any = None, seed: int | None = None, save: bool = True,
                     profile: str = SHIPPED_PROFILE, path: Path | None = None, options: dict | None = None
                     ) -> tuple[nn.Module, dict]:
    """Train checkpoint ``name`` (its ``profile`` variant) with its registered config and seed (or the ones
    given; ``options`` go to the recipe's trainer) and, with ``save``, write it to ``path`` (default
    :func:`checkpoint_path`). Returns ``(model, meta)``."""
    return train_entry(name, _entry(name), config, seed, save, profile, path, options)


def load_or_train(name: str, config: Any, seed: int = 0, *, retrain: bool = False, save_to: Path | None = None,
                  log: Callable[[str], None] | None = None, options: dict | None = None) -> tuple[nn.Module, dict]:
    """Checkpoint ``name`` trained with ``config`` and ``seed``: loaded from the first file (each profile's file
    in :func:`checkpoint_dir` and in the package, then the user cache) whose recorded config and seed give the
    same weights, else trained now -- through the registry when ``config`` is a registered profile's (saved where
    :func:`load_pretrained` looks; kept in memory on a read-only install), else saved to ``save_to`` or (for an
    entry with ``cache``) the user cache for next time, or kept in memory only. ``retrain`` skips the lookup.
    ``options`` go to the recipe's trainer (e.g. ``{"background": source}`` for generation).

    Returns ``(model in eval mode, info)``; ``info``: ``source`` (the path loaded, or ``"trained"``),
    ``saved`` (where a trained model was written, if it was), ``metrics`` and ``seconds``."""
    return load_or_train_entry(name, _entry(name), config, seed, retrain=retrain, save_to=save_to, log=log,
                               options=options)
