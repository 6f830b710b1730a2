"""The small MAML denoiser notebooks 02 and 03 share: notebook 02 meta-trains it and saves it to the kit's
cache; notebook 03 meta-tests *that* model beside the shipped full-size one, on the same task family and sizes.
When 02 has not run on this machine, 03 meta-trains it here with this recipe (load if present, else train, as the
UvA deep-learning tutorials do).

The sizes are notebook 02's (``NOTEBOOK_DENOISER_SIZES``); the tasks are Gaussian-noise denoising on photo
patches, one noise level per task; training tasks from the training photographs and noise range, meta-test tasks
from the test ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .._checks import check_float_fields, check_int_fields
from ..config import get_profile, make_generator

__all__ = ["NOTEBOOK_DENOISER_SIZES", "NotebookDenoiserConfig", "build_notebook_denoiser",
           "load_or_train_notebook_denoiser", "notebook_denoiser_config", "notebook_denoiser_loss",
           "notebook_denoiser_path", "notebook_denoiser_tasks", "save_notebook_denoiser", "train_notebook_denoiser"]


@dataclass(frozen=True)
class NotebookDenoiserConfig:
    """Sizes of notebook 02's denoising experiment (one profile)."""

    patch_size: int
    width: int
    depth: int
    shots: int
    queries: int
    meta_batch: int
    inner_steps: int
    inner_lr: float
    meta_lr: float
    iterations: int
    eval_tasks: int

    def __post_init__(self) -> None:
        check_int_fields(self, ("patch_size", "width", "depth", "shots", "queries", "meta_batch", "inner_steps",
                                "iterations", "eval_tasks"), minimum=1)
        check_float_fields(self, ("inner_lr", "meta_lr"), minimum=0.0, strict_min=True)


NOTEBOOK_DENOISER_SIZES = {
    "fast": NotebookDenoiserConfig(patch_size=16, width=16, depth=3, shots=5, queries=5, meta_batch=4,
                                   inner_steps=3, inner_lr=0.05, meta_lr=3e-3, iterations=80, eval_tasks=16),
    "full": NotebookDenoiserConfig(patch_size=32, width=32, depth=4, shots=5, queries=5, meta_batch=8,
                                   inner_steps=5, inner_lr=0.05, meta_lr=1e-3, iterations=1000, eval_tasks=64),
}


def notebook_denoiser_config(profile: str | None = None) -> NotebookDenoiserConfig:
    """The sizes for ``profile`` (default: the active profile)."""
    profile = profile or get_profile()
    if profile not in NOTEBOOK_DENOISER_SIZES:
        raise ValueError(f"profile must be one of {sorted(NOTEBOOK_DENOISER_SIZES)}, got {profile!r}")
    return NOTEBOOK_DENOISER_SIZES[profile]


def notebook_denoiser_tasks(config: NotebookDenoiserConfig, split: str):
    """``split="train"``: training photographs and noise levels; ``"test"``: the test ones (meta-testing)."""
    from ..data import photos
    from ..tasks import RestorationTasks

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return RestorationTasks(photos(split, config.patch_size), "gaussian_noise", shots=config.shots,
                            queries=config.queries, split=split)


def build_notebook_denoiser(config: NotebookDenoiserConfig, seed: int = 0):
    """A fresh ``ConvRestorer`` of the config's width and depth, its weights fixed by ``seed``."""
    from ..models import ConvRestorer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the same initial weights for every method compared in notebook 02
        return ConvRestorer(width=config.width, depth=config.depth)


def notebook_denoiser_loss(model, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Mean squared error of ``model(degraded)`` against ``clean`` (``batch = task.support`` or ``task.query``)."""
    degraded, clean = batch[0], batch[1]
    return F.mse_loss(model(degraded), clean)


def train_notebook_denoiser(config: NotebookDenoiserConfig, seed: int = 0, callbacks=(), progress: bool = False):
    """Meta-train the MAML denoiser as notebook 02 does; returns ``(learner, history)``."""
    from ..meta import MAML, MetaTrainConfig, meta_train

    learner = MAML(build_notebook_denoiser(config, seed), inner_lr=config.inner_lr, inner_steps=config.inner_steps)
    tasks = notebook_denoiser_tasks(config, "train")
    settings = MetaTrainConfig(iterations=config.iterations, meta_batch=config.meta_batch, meta_lr=config.meta_lr,
                               progress=progress)
    history = meta_train(learner, tasks, notebook_denoiser_loss, settings, callbacks=list(callbacks),
                         generator=make_generator(seed))
    return learner, history


def notebook_denoiser_path(config: NotebookDenoiserConfig) -> Path:
    """Where the model is cached: the kit's cache folder, one file per size table."""
    from ..data._cache import cache_dir

    tag = f"w{config.width}d{config.depth}p{config.patch_size}i{config.iterations}"
    return cache_dir("notebooks") / f"notebook_maml_denoiser_{tag}.safetensors"


def save_notebook_denoiser(model: torch.nn.Module, config: NotebookDenoiserConfig, history: dict | None = None,
                           path: str | Path | None = None) -> Path:
    """Save notebook 02's meta-trained model with its config (and final figures) for notebook 03."""
    from .. import checkpoints

    meta = {"config": dataclasses.asdict(config), "trained_by": "notebook 02"}
    if history:
        meta["final"] = {k: v[-1] for k, v in history.items() if isinstance(v, list) and v
                         and isinstance(v[-1], (int, float))}
    return checkpoints.save(Path(path) if path else notebook_denoiser_path(config), model, meta)


def load_or_train_notebook_denoiser(config: NotebookDenoiserConfig, path: str | Path | None = None, seed: int = 0):
    """``(model, info)``: the cached model when it was saved with this config (``info["source"] == "loaded"``),
    else meta-trained now with :func:`train_notebook_denoiser`, saved, and ``info["source"] == "trained"``."""
    from .. import checkpoints

    path = Path(path) if path else notebook_denoiser_path(config)
    if path.exists():
        model, meta = checkpoints.load(path, build_notebook_denoiser(config, seed))
        if meta.get("config") == dataclasses.asdict(config):
            return model, {"source": "loaded", "path": str(path), **meta}
    learner, history = train_notebook_denoiser(config, seed)
    save_notebook_denoiser(learner.model, config, history, path)
    return learner.model, {"source": "trained", "path": str(path), "config": dataclasses.asdict(config)}
