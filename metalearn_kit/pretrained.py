"""The checkpoint service: every shipped model under one name, loaded, trained or loaded-or-trained here.

Shipped checkpoints are small pretrained / meta-learned models kept in ``metalearn_kit/checkpoints_data/``
(safetensors weights + JSON metadata: config, seed, metrics, machine, command), so notebooks and benchmarks
start from trained weights instead of minutes of meta-training::

    model, meta = load_pretrained("restoration_denoise_maml")           # the shipped file
    model, info = load_or_train("restoration_denoise_maml", config)     # the file if trained with config, else train
    metalearn-kit pretrain restoration_denoise_maml [--profile full]     # (re)train and write it

**Registering a checkpoint is one line in** :data:`CHECKPOINTS`: its name, the recipe module (in
``metalearn_kit/recipes/``) whose ``checkpoint_entry(name, profile, description)`` says how to build and train
it, and a one-line description. Nothing is imported until a checkpoint is used: :data:`REGISTRY` builds each
:class:`PretrainedEntry` from its recipe on first access (and tests or users may add entries to it).

The shipped files are the ``fast`` profile's (CPU-sized); each entry's ``full`` variant is the same training
at the GPU sizes of the benchmarks' ``full`` profile, written beside it.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import checkpoints
from .config import describe_machine

__all__ = ["CHECKPOINTS", "CHECKPOINT_DIR", "DIR_ENV", "PROFILES", "REGISTRY", "SHIPPED_PROFILE", "PretrainedEntry",
           "available", "checkpoint_dir", "checkpoint_path", "load_or_train", "load_pretrained", "train_pretrained"]

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints_data"
DIR_ENV = "METALEARN_KIT_CHECKPOINT_DIR"
SHIPPED_PROFILE = "fast"
PROFILES = (SHIPPED_PROFILE, "full")

# name -> (recipe module in metalearn_kit/recipes/, description). Add a checkpoint here: one line.
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
    # the operator families of issue 16 (the support set identifies the task): Meta-SGD init and joint baseline
    "restoration_tone_curve_metasgd": ("tone_curve",
        "Meta-SGD init + learned inner lrs of a pointwise restorer for per-task tone curves"),
    "restoration_tone_curve_joint": ("tone_curve",
        "the pointwise tone-curve restorer jointly pretrained on the same tasks"),
    "restoration_colour_cast_metasgd": ("colour_cast",
        "Meta-SGD init + learned inner lrs of a pointwise colour restorer for per-task colour casts"),
    "restoration_colour_cast_joint": ("colour_cast",
        "the pointwise colour restorer jointly pretrained on the same colour-cast tasks"),
    "restoration_stripe_noise_metasgd": ("stripe_noise",
        "Meta-SGD init + learned inner lrs of a filter-bank restorer for per-task stripe noise"),
    "restoration_stripe_noise_joint": ("stripe_noise",
        "the filter-bank restorer jointly pretrained on the same stripe-noise tasks"),
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


class _Registry(MutableMapping):
    """``name -> PretrainedEntry``; the entries of :data:`CHECKPOINTS` are built from their recipe on first use."""

    def __init__(self) -> None:
        self._entries: dict[str, PretrainedEntry] = {}

    def __getitem__(self, name: str) -> PretrainedEntry:
        if name not in self._entries:
            if name not in CHECKPOINTS:
                raise KeyError(name)
            module_name, description = CHECKPOINTS[name]
            recipe = importlib.import_module(f"{__package__}.recipes.{module_name}")
            fast = recipe.checkpoint_entry(name, SHIPPED_PROFILE, description)
            variants = {p: recipe.checkpoint_entry(name, p, description) for p in PROFILES if p != SHIPPED_PROFILE}
            self._entries[name] = PretrainedEntry(**{**fast.__dict__, "variants": variants})
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


def checkpoint_dir() -> Path:
    """Where checkpoints are read and written: ``$METALEARN_KIT_CHECKPOINT_DIR`` or the package folder."""
    return Path(os.environ.get(DIR_ENV) or CHECKPOINT_DIR)


def _entry(name: str, profile: str = SHIPPED_PROFILE) -> PretrainedEntry:
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"name must be a registered checkpoint, one of {sorted(REGISTRY)}; got {name!r}")
    entry = REGISTRY[name]
    if profile == SHIPPED_PROFILE:
        return entry
    if profile not in entry.variants:
        raise ValueError(f"profile must be one of {[SHIPPED_PROFILE, *entry.variants]} for checkpoint {name!r}, "
                         f"got {profile!r}")
    return entry.variants[profile]


def _command(name: str, profile: str) -> str:
    return f"metalearn-kit pretrain {name}" + ("" if profile == SHIPPED_PROFILE else f" --profile {profile}")


def checkpoint_path(name: str, profile: str = SHIPPED_PROFILE) -> Path:
    """The ``.safetensors`` path of checkpoint ``name`` at ``profile`` (it may not exist yet)."""
    return checkpoint_dir() / _entry(name, profile).file


def available(profile: str = SHIPPED_PROFILE) -> dict[str, bool]:
    """Every registered name and whether its ``profile`` file is present."""
    return {name: checkpoint_path(name, profile).exists() for name in sorted(REGISTRY)}


def _build_loaded(entry: PretrainedEntry, config: Any, path: Path) -> tuple[nn.Module, dict]:
    state, meta = checkpoints.load(path)
    model = entry.build(config, state)
    model, meta = checkpoints.load(path, model)
    return model.eval(), meta


def load_pretrained(name: str, train_if_missing: bool = False, profile: str = SHIPPED_PROFILE
                    ) -> tuple[nn.Module, dict]:
    """The model of checkpoint ``name`` (its ``profile`` variant: ``"fast"``, the shipped one, or ``"full"``)
    with its weights loaded, and its metadata (``config``, ``seed``, ``metrics``, ``machine``, ``command``).
    A missing file raises ``FileNotFoundError`` naming the command that makes it, unless ``train_if_missing``
    (then it is trained and saved now)."""
    entry = _entry(name, profile)
    path = checkpoint_dir() / entry.file
    if not path.exists():
        if not train_if_missing:
            raise FileNotFoundError(f"checkpoint {name!r} ({profile} profile) is not at {str(path)!r}; make it "
                                    f"with `{_command(name, profile)}` or load_pretrained({name!r}, "
                                    f"train_if_missing=True, profile={profile!r})")
        return train_pretrained(name, profile=profile)
    _, meta = checkpoints.load(path)
    record = meta.get("config")
    config = entry.config if record is None or entry.from_record is None else entry.from_record(record)
    return _build_loaded(entry, config, path)


def train_pretrained(name: str, config: Any = None, seed: int | None = None, save: bool = True,
                     profile: str = SHIPPED_PROFILE, path: Path | None = None, options: dict | None = None
                     ) -> tuple[nn.Module, dict]:
    """Train checkpoint ``name`` (its ``profile`` variant) with its registered config and seed (or the ones
    given; ``options`` go to the recipe's trainer) and, with ``save``, write it to ``path`` (default
    :func:`checkpoint_path`). Returns ``(model, meta)``."""
    entry = _entry(name, profile)
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


def _candidates(name: str) -> list[Path]:
    """Where a checkpoint may be, in order: each profile's file in :func:`checkpoint_dir` and in the package,
    then the user cache (models trained on the fly with other configs)."""
    from .data import cache_dir

    entry = _entry(name)
    files = [entry.file, *(variant.file for variant in entry.variants.values())]
    paths = [folder / file for file in files for folder in (checkpoint_dir(), CHECKPOINT_DIR)]
    return list(dict.fromkeys([*paths, cache_dir("checkpoints") / f"{name}.safetensors"]))


def load_or_train(name: str, config: Any, seed: int = 0, *, retrain: bool = False, save_to: Path | None = None,
                  log: Callable[[str], None] | None = None, options: dict | None = None) -> tuple[nn.Module, dict]:
    """Checkpoint ``name`` trained with ``config`` and ``seed``: loaded from the first file (see
    :func:`_candidates`) whose recorded config and seed give the same weights, else trained now -- through
    the registry when ``config`` is a registered profile's (saved where :func:`load_pretrained` looks; kept in
    memory on a read-only install), else saved to ``save_to`` or (for an entry with ``cache``) the user cache for
    next time, or kept in memory only. ``retrain`` skips the lookup. ``options`` go to the recipe's trainer (e.g.
    ``{"background": source}`` for generation).

    Returns ``(model in eval mode, info)``; ``info``: ``source`` (the path loaded, or ``"trained"``),
    ``saved`` (where a trained model was written, if it was), ``metrics`` and ``seconds``."""
    entry = _entry(name)
    wanted = entry.weights_key(entry.to_record(config))
    start = time.perf_counter()
    for path in [] if retrain else _candidates(name):
        if path.exists():
            _, meta = checkpoints.load(path)
            if meta.get("seed") == seed and entry.weights_key(meta.get("config", {})) == wanted:
                model, meta = _build_loaded(entry, config, path)
                return model, {"source": str(path), "metrics": meta.get("metrics", {}),
                               "seconds": time.perf_counter() - start}
    if log:
        log(f"training {name} ...")
    profiles = {SHIPPED_PROFILE: entry, **entry.variants}
    registered = [p for p, e in profiles.items() if e.seed == seed and e.weights_key(e.to_record(e.config)) == wanted]
    if registered and save_to is None and not retrain:
        # a registered configuration whose file is missing: train it for the registry, which writes it where
        # load_pretrained looks (an existing file is never overwritten here; `metalearn-kit pretrain` does that)
        try:
            model, meta = train_pretrained(name, config, seed, profile=registered[0], options=options)
            saved = str(checkpoint_path(name, registered[0]))
        except OSError:  # read-only install: keep the model in memory only
            model, meta = train_pretrained(name, config, seed, save=False, profile=registered[0], options=options)
            saved = None
    elif save_to is not None or entry.cache:
        from .data import cache_dir

        target = save_to or cache_dir("checkpoints") / f"{name}.safetensors"
        profile = registered[0] if registered else SHIPPED_PROFILE  # what the metadata's command says
        model, meta = train_pretrained(name, config, seed, profile=profile, path=Path(target), options=options)
        saved = str(target)
    else:
        model, meta = train_pretrained(name, config, seed, save=False, options=options)
        saved = None
    return model, {"source": "trained", "saved": saved, "metrics": meta["metrics"],
                   "seconds": time.perf_counter() - start}
