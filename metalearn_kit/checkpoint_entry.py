"""What a checkpoint is and how one is loaded, trained or loaded-or-trained, given its entry.

:data:`CHECKPOINTS` names every shipped checkpoint, the recipe module whose ``checkpoint_entry(name, profile,
description)`` builds its :class:`PretrainedEntry`, and a one-line description. This module sits below the
recipes: it imports none, so a recipe may load another checkpoint here (MZSR starts from the SR-pretrained
weights) and read the table. :mod:`metalearn_kit.pretrained`, above the recipes, turns a name into its recipe's
entry and offers the by-name service (``load_pretrained``, ``load_or_train``, ``train_pretrained``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import checkpoints
from .config import describe_machine

__all__ = ["CHECKPOINTS", "CHECKPOINT_DIR", "DIR_ENV", "PROFILES", "SHIPPED_PROFILE", "PretrainedEntry",
           "checkpoint_dir", "load_entry", "load_or_train_entry", "profile_entry", "train_entry", "with_variants"]

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints_data"
DIR_ENV = "METALEARN_KIT_CHECKPOINT_DIR"
SHIPPED_PROFILE = "fast"
PROFILES = (SHIPPED_PROFILE, "full")

# name -> (recipe module in metalearn_kit/recipes/ whose checkpoint_entry builds it, description).
# Add a checkpoint here: one line.
CHECKPOINTS: dict[str, tuple[str, str]] = {
    "restoration_denoise_maml": ("restoration",
        "MAML init of a residual CNN denoiser (Gaussian noise, grey photo patches)"),
    "restoration_denoise_joint": ("restoration",
        "the same CNN jointly pretrained on the same denoising tasks"),
    "restoration_sr_pretrained": ("restoration",
        "x2 SR CNN pretrained on bicubic-downscaled photo patches (MZSR stage 1)"),
    "restoration_sr_mzsr": ("restoration",
        "MZSR meta-transfer init for zero-shot x2 SR with known Gaussian kernels"),
    "restoration_deblur_maml": ("restoration",
        "MAML init of an unrolled deblurring restorer (Gaussian and motion kernels)"),
    "restoration_deblur_joint": ("restoration",
        "the unrolled deblurring restorer jointly pretrained"),
    "restoration_inpaint_maml": ("restoration",
        "MAML init of an unrolled inpainting restorer (random and box masks)"),
    "restoration_inpaint_joint": ("restoration",
        "the unrolled inpainting restorer jointly pretrained"),
    "restoration_siren_maml": ("restoration",
        "MAML-learned SIREN initialisation for fitting grey photo patches"),
    "restoration_siren_metasgd": ("restoration",
        "Meta-SGD-learned SIREN initialisation and per-weight inner learning rates"),
    "restoration_n2s_maml": ("restoration",
        "MAML init for zero-shot Noise2Self denoising (self-supervised inner loop)"),
    # the operator families (the support set identifies the task): Meta-SGD init and joint baseline
    "restoration_tone_curve_metasgd": ("operator_families",
        "Meta-SGD init + learned inner lrs of a pointwise restorer for per-task tone curves"),
    "restoration_tone_curve_joint": ("operator_families",
        "the pointwise tone-curve restorer jointly pretrained on the same tasks"),
    "restoration_tone_curve_joint_step_sizes": ("operator_families",
        "the joint pointwise restorer frozen, with Meta-SGD step sizes meta-learned on the same tasks"),
    "restoration_colour_cast_metasgd": ("operator_families",
        "Meta-SGD init + learned inner lrs of a pointwise colour restorer for per-task colour casts"),
    "restoration_colour_cast_joint": ("operator_families",
        "the pointwise colour restorer jointly pretrained on the same colour-cast tasks"),
    "restoration_colour_cast_joint_step_sizes": ("operator_families",
        "the joint pointwise colour restorer frozen, with Meta-SGD step sizes meta-learned on the same tasks"),
    "restoration_stripe_noise_metasgd": ("operator_families",
        "Meta-SGD init + learned inner lrs of a filter-bank restorer for per-task stripe noise"),
    "restoration_stripe_noise_joint": ("operator_families",
        "the filter-bank restorer jointly pretrained on the same stripe-noise tasks"),
    "restoration_stripe_noise_joint_step_sizes": ("operator_families",
        "the joint filter-bank restorer frozen, with Meta-SGD step sizes meta-learned on the same tasks"),
    "restoration_directional_blur_metasgd": ("operator_families",
        "Meta-SGD init + learned inner lrs of a filter-bank restorer for per-task blind motion blur"),
    "restoration_directional_blur_joint": ("operator_families",
        "the filter-bank restorer jointly pretrained on the same motion-blur tasks"),
    "restoration_directional_blur_joint_step_sizes": ("operator_families",
        "the joint filter-bank restorer frozen, with Meta-SGD step sizes meta-learned on the same tasks"),
    # the camera pipeline: the joint-step-sizes checkpoint is not shipped yet (bench restoration trains it)
    "restoration_camera_pipeline_metasgd": ("operator_families",
        "Meta-SGD init + per-step learned inner lrs of a camera restorer (pointwise, then 3x3 CNN), unknown cameras"),
    "restoration_camera_pipeline_joint": ("operator_families",
        "the camera restorer jointly pretrained on the same camera-pipeline tasks"),
    "generation_featnet": ("generation",
        "glyph classifier trained on background classes; its features score generated samples"),
    "generation_maml": ("generation",
        "MAML-learned initialisation of a conv VAE for few-shot glyph generation"),
    "generation_fomaml": ("generation",
        "first-order-MAML-learned initialisation of the same conv VAE"),
    "generation_reptile": ("generation",
        "Reptile-learned initialisation of the same conv VAE"),
    "generation_joint": ("generation",
        "the same conv VAE jointly pretrained on background glyph tasks (baseline)"),
    "generation_statistician": ("generation",
        "Neural-Statistician-lite: set-conditioned VAE, adapts by one forward pass"),
    "generation_figr": ("generation",
        "FIGR: Reptile over a WGAN-GP generator and critic"),
    "generation_cavia": ("generation",
        "CAVIA-style context VAE: a task context adapted by gradient steps; samples follow the support"),
    "generation_cgan": ("generation",
        "conditional GAN of the background glyph classes; new classes by embedding inversion"),
}



def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class PretrainedEntry:
    """How one checkpoint is built and trained.

    Attributes:
        file: file name in the checkpoint folder (``.safetensors``; the ``.json`` metadata sits beside it).
        build: ``build(config, state) -> nn.Module``, the untrained architecture the weights ``state`` load into.
        train: ``train(config, seed, **options) -> (trained model, metrics dict)`` (``options``: what the
            recipe accepts beyond the config, e.g. the generation recipe's ``background`` image source).
        config: the configuration the file is trained with (a recipe's config dataclass, or a dict).
        seed: its seed.
        description: one line for ``--list``.
        variants: other profiles of the same checkpoint (``{"full": entry}``), each a complete entry.
        to_record: ``config -> dict``, what the metadata records as ``config`` (default: the config itself).
        from_record: the recorded dict back to a config (None: use :attr:`config`).
        weights_key: recorded dict -> the part of it that determines the weights (default: all of it).
        cache: whether :func:`load_or_train` keeps a model trained for an unregistered config in the user cache
            (the generation models, minutes to train) or only in memory (the restoration models).
    """

    file: str
    build: Callable[[Any, dict], nn.Module]
    train: Callable[..., tuple[nn.Module, dict]]
    config: Any = field(default_factory=dict)
    seed: int = 0
    description: str = ""
    variants: dict[str, PretrainedEntry] = field(default_factory=dict)
    to_record: Callable[[Any], dict] = _same
    from_record: Callable[[dict], Any] | None = None
    weights_key: Callable[[dict], dict] = _same
    cache: bool = True



def with_variants(make_entry: Callable[[str, str, str], PretrainedEntry], name: str,
                  description: str) -> PretrainedEntry:
    """Checkpoint ``name``'s shipped-profile entry, its other profiles as ``variants``, from a recipe's
    ``checkpoint_entry(name, profile, description)``."""
    fast = make_entry(name, SHIPPED_PROFILE, description)
    variants = {p: make_entry(name, p, description) for p in PROFILES if p != SHIPPED_PROFILE}
    return replace(fast, variants=variants)


def checkpoint_dir() -> Path:
    """Where checkpoints are read and written: ``$METALEARN_KIT_CHECKPOINT_DIR`` or the package folder."""
    return Path(os.environ.get(DIR_ENV) or CHECKPOINT_DIR)


def profile_entry(name: str, entry: PretrainedEntry, profile: str = SHIPPED_PROFILE) -> PretrainedEntry:
    """``entry`` (checkpoint ``name``'s shipped-profile entry) or its ``profile`` variant."""
    if profile == SHIPPED_PROFILE:
        return entry
    if profile not in entry.variants:
        raise ValueError(f"profile must be one of {[SHIPPED_PROFILE, *entry.variants]} for checkpoint {name!r}, "
                         f"got {profile!r}")
    return entry.variants[profile]


def _command(name: str, profile: str) -> str:
    return f"metalearn-kit pretrain {name}" + ("" if profile == SHIPPED_PROFILE else f" --profile {profile}")


def _build_loaded(entry: PretrainedEntry, config: Any, path: Path) -> tuple[nn.Module, dict]:
    state, meta = checkpoints.load(path)
    model = entry.build(config, state)
    model, meta = checkpoints.load(path, model)
    return model.eval(), meta


def load_entry(name: str, entry: PretrainedEntry, train_if_missing: bool = False, profile: str = SHIPPED_PROFILE
               ) -> tuple[nn.Module, dict]:
    """Checkpoint ``name`` (shipped-profile ``entry``) at ``profile`` with its weights loaded, and its metadata;
    see :func:`metalearn_kit.pretrained.load_pretrained`."""
    chosen = profile_entry(name, entry, profile)
    path = checkpoint_dir() / chosen.file
    if not path.exists():
        if not train_if_missing:
            raise FileNotFoundError(f"checkpoint {name!r} ({profile} profile) is not at {str(path)!r}; make it "
                                    f"with `{_command(name, profile)}` or load_pretrained({name!r}, "
                                    f"train_if_missing=True, profile={profile!r})")
        return train_entry(name, entry, profile=profile)
    _, meta = checkpoints.load(path)
    record = meta.get("config")
    config = chosen.config if record is None or chosen.from_record is None else chosen.from_record(record)
    return _build_loaded(chosen, config, path)


def train_entry(name: str, entry: PretrainedEntry, config: Any = None, seed: int | None = None, save: bool = True,
                profile: str = SHIPPED_PROFILE, path: Path | None = None, options: dict | None = None
                ) -> tuple[nn.Module, dict]:
    """Train checkpoint ``name`` (shipped-profile ``entry``) at ``profile``; see
    :func:`metalearn_kit.pretrained.train_pretrained`."""
    entry = profile_entry(name, entry, profile)
    config = entry.config if config is None else config
    seed = entry.seed if seed is None else seed
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    model, metrics = entry.train(config, seed, **(options or {}))
    meta = {"name": name, "config": entry.to_record(config), "seed": seed, "metrics": metrics,
            "train_wall_time_s": time.perf_counter() - start, "machine": describe_machine(),
            "command": _command(name, profile), "profile": profile, "description": entry.description,
            # the largest GPU memory torch held at once during training (None on a machine without CUDA)
            "peak_gpu_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None}
    if save:
        checkpoints.save(path or checkpoint_dir() / entry.file, model, meta)
    return model.eval(), meta


def _candidates(name: str, entry: PretrainedEntry) -> list[Path]:
    """Where a checkpoint may be, in order: each profile's file in :func:`checkpoint_dir` and in the package,
    then the user cache (models trained on the fly with other configs)."""
    from .data import cache_dir

    files = [entry.file, *(variant.file for variant in entry.variants.values())]
    paths = [folder / file for file in files for folder in (checkpoint_dir(), CHECKPOINT_DIR)]
    return list(dict.fromkeys([*paths, cache_dir("checkpoints") / f"{name}.safetensors"]))


def _find(name: str, entry: PretrainedEntry, config: Any, seed: int) -> tuple[nn.Module, dict] | None:
    """The first candidate file whose recorded config and seed give the weights ``config`` and ``seed`` would."""
    wanted = entry.weights_key(entry.to_record(config))
    for path in _candidates(name, entry):
        if path.exists():
            _, meta = checkpoints.load(path)
            if meta.get("seed") == seed and entry.weights_key(meta.get("config", {})) == wanted:
                model, meta = _build_loaded(entry, config, path)
                return model, {"source": str(path), "metrics": meta.get("metrics", {})}
    return None


def _train_for(name: str, entry: PretrainedEntry, config: Any, seed: int, retrain: bool, save_to: Path | None,
               options: dict | None) -> tuple[nn.Module, dict, str | None]:
    """Train ``name`` with ``config`` and ``seed``; returns ``(model, meta, where it was saved or None)``."""
    wanted = entry.weights_key(entry.to_record(config))
    profiles = {SHIPPED_PROFILE: entry, **entry.variants}
    registered = [p for p, e in profiles.items() if e.seed == seed and e.weights_key(e.to_record(e.config)) == wanted]
    if registered and save_to is None and not retrain:
        # a registered configuration whose file is missing: train it for the registry, which writes it where
        # load_pretrained looks (an existing file is never overwritten here; `metalearn-kit pretrain` does that)
        try:
            model, meta = train_entry(name, entry, config, seed, profile=registered[0], options=options)
            return model, meta, str(checkpoint_dir() / profile_entry(name, entry, registered[0]).file)
        except OSError:  # read-only install: keep the model in memory only
            model, meta = train_entry(name, entry, config, seed, save=False, profile=registered[0], options=options)
            return model, meta, None
    if save_to is not None or entry.cache:
        from .data import cache_dir

        target = save_to or cache_dir("checkpoints") / f"{name}.safetensors"
        profile = registered[0] if registered else SHIPPED_PROFILE  # what the metadata's command says
        model, meta = train_entry(name, entry, config, seed, profile=profile, path=Path(target), options=options)
        return model, meta, str(target)
    model, meta = train_entry(name, entry, config, seed, save=False, options=options)
    return model, meta, None


def load_or_train_entry(name: str, entry: PretrainedEntry, config: Any, seed: int = 0, *, retrain: bool = False,
                        save_to: Path | None = None, log: Callable[[str], None] | None = None,
                        options: dict | None = None) -> tuple[nn.Module, dict]:
    """Checkpoint ``name`` (shipped-profile ``entry``) trained with ``config`` and ``seed``, loaded or trained
    now; see :func:`metalearn_kit.pretrained.load_or_train`."""
    start = time.perf_counter()
    found = None if retrain else _find(name, entry, config, seed)
    if found is not None:
        model, info = found
        return model, {**info, "seconds": time.perf_counter() - start}
    if log:
        log(f"training {name} ...")
    model, meta, saved = _train_for(name, entry, config, seed, retrain, save_to, options)
    return model, {"source": "trained", "saved": saved, "metrics": meta["metrics"],
                   "seconds": time.perf_counter() - start}
