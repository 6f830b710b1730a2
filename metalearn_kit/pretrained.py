"""Shipped checkpoints: a registry ``name -> PretrainedEntry`` of small pretrained / meta-learned models kept
in ``metalearn_kit/checkpoints_data/`` (safetensors weights + JSON metadata), so notebooks and benchmarks
start from trained weights instead of minutes of meta-training.

Every entry can be rebuilt with one command, which records its config, seed, metrics and machine::

    metalearn-kit pretrain restoration_denoise_maml      # one checkpoint
    metalearn-kit pretrain --all                         # every registered checkpoint
    metalearn-kit pretrain --list

``REGISTRY`` is a plain dict; other parts of the kit add their own entries::

    REGISTRY["my_model"] = PretrainedEntry(file="my_model.safetensors", build=..., train=..., config={...})
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from . import checkpoints
from .config import describe_machine

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints_data"
DIR_ENV = "METALEARN_KIT_CHECKPOINT_DIR"


@dataclass(frozen=True)
class PretrainedEntry:
    """One shipped checkpoint.

    Attributes:
        file: file name in the checkpoint folder (``.safetensors``; the ``.json`` metadata sits beside it).
        build: ``build(config) -> nn.Module``, the untrained architecture the weights load into.
        train: ``train(config, seed) -> (trained model, metrics dict)``.
        config: the configuration the shipped file is trained with.
        seed: its seed.
        description: one line for ``--list``.
    """

    file: str
    build: Callable[[dict], nn.Module]
    train: Callable[[dict, int], tuple[nn.Module, dict]]
    config: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    description: str = ""


REGISTRY: dict[str, PretrainedEntry] = {}


def checkpoint_dir() -> Path:
    """Where checkpoints are read and written: ``$METALEARN_KIT_CHECKPOINT_DIR`` or the package folder."""
    return Path(os.environ.get(DIR_ENV) or CHECKPOINT_DIR)


def _entry(name: str) -> PretrainedEntry:
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"name must be a registered checkpoint, one of {sorted(REGISTRY)}; got {name!r}")
    return REGISTRY[name]


def checkpoint_path(name: str) -> Path:
    """The ``.safetensors`` path of checkpoint ``name`` (it may not exist yet)."""
    return checkpoint_dir() / _entry(name).file


def available() -> dict[str, bool]:
    """Every registered name and whether its file is present."""
    return {name: (checkpoint_dir() / entry.file).exists() for name, entry in sorted(REGISTRY.items())}


def load_pretrained(name: str, train_if_missing: bool = False) -> tuple[nn.Module, dict]:
    """The model of checkpoint ``name`` with its weights loaded, and its metadata (``config``, ``seed``,
    ``metrics``, ``machine``, ``command``). A missing file raises ``FileNotFoundError`` naming the command
    that makes it, unless ``train_if_missing`` (then it is trained and saved now)."""
    entry = _entry(name)
    path = checkpoint_dir() / entry.file
    if not path.exists():
        if not train_if_missing:
            raise FileNotFoundError(f"checkpoint {name!r} is not at {str(path)!r}; make it with "
                                    f"`metalearn-kit pretrain {name}` or load_pretrained({name!r}, "
                                    f"train_if_missing=True)")
        return train_pretrained(name)
    _, meta = checkpoints.load(path)
    model = entry.build(meta.get("config", entry.config))
    model, meta = checkpoints.load(path, model)
    return model.eval(), meta


def train_pretrained(name: str, config: dict | None = None, seed: int | None = None,
                     save: bool = True) -> tuple[nn.Module, dict]:
    """Train checkpoint ``name`` with its registered config and seed (or the ones given) and, with ``save``,
    write it to :func:`checkpoint_path`. Returns ``(model, meta)``."""
    entry = _entry(name)
    config = dict(entry.config if config is None else config)
    seed = entry.seed if seed is None else seed
    start = time.perf_counter()
    model, metrics = entry.train(config, seed)
    meta = {"name": name, "config": config, "seed": seed, "metrics": metrics,
            "train_wall_time_s": time.perf_counter() - start, "machine": describe_machine(),
            "command": f"metalearn-kit pretrain {name}", "description": entry.description}
    if save:
        checkpoints.save(checkpoint_dir() / entry.file, model, meta)
    return model.eval(), meta


# ----------------------------------------------------------------------------------------------------------
# Restoration entries (trained by metalearn_kit.evaluation.restoration, fast-profile sizes)
# ----------------------------------------------------------------------------------------------------------

def _restoration_entry(name: str, description: str) -> PretrainedEntry:
    from .evaluation import restoration

    experiment = restoration.CHECKPOINT_EXPERIMENT[name]
    return PretrainedEntry(
        file=f"{name}.safetensors",
        build=lambda config: restoration.build_model(name, config),
        train=lambda config, seed: restoration.train_checkpoint(name, config, seed),
        config=restoration.experiment_config(experiment, "fast"),
        seed=0,
        description=description,
    )


_RESTORATION = {
    "restoration_denoise_maml": "MAML init of a residual CNN denoiser (Gaussian noise, grey photo patches)",
    "restoration_denoise_joint": "the same CNN jointly pretrained on the same denoising tasks",
    "restoration_sr_pretrained": "x2 SR CNN pretrained on bicubic-downscaled photo patches (MZSR stage 1)",
    "restoration_sr_mzsr": "MZSR meta-transfer init for zero-shot x2 SR with known Gaussian kernels",
    "restoration_deblur_maml": "MAML init of an unrolled deblurring restorer (Gaussian and motion kernels)",
    "restoration_deblur_joint": "the unrolled deblurring restorer jointly pretrained",
    "restoration_inpaint_maml": "MAML init of an unrolled inpainting restorer (random and box masks)",
    "restoration_inpaint_joint": "the unrolled inpainting restorer jointly pretrained",
    "restoration_siren_maml": "MAML-learned SIREN initialisation for fitting grey photo patches",
    "restoration_n2s_maml": "MAML init for zero-shot Noise2Self denoising (self-supervised inner loop)",
}
for _name, _text in _RESTORATION.items():
    REGISTRY[_name] = _restoration_entry(_name, _text)

# Generation entries (metalearn_kit.evaluation.generation, fast-profile sizes): generation_featnet, _maml, ...
from .evaluation.generation import pretrained_entries as _generation_entries  # noqa: E402

REGISTRY.update(_generation_entries(PretrainedEntry))


# ----------------------------------------------------------------------------------------------------------
# CLI: metalearn-kit pretrain
# ----------------------------------------------------------------------------------------------------------

def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = "Train shipped checkpoints and write them (with config, seed, metrics, machine)."
    parser.add_argument("names", nargs="*", help="checkpoint names (see --list)")
    parser.add_argument("--all", action="store_true", help="train every registered checkpoint")
    parser.add_argument("--prefix", default=None, help="train every checkpoint whose name starts with this")
    parser.add_argument("--list", action="store_true", help="list the registered checkpoints and exit")
    parser.add_argument("--out", default=None, help=f"folder to write to (default: ${DIR_ENV} or the package)")
    parser.add_argument("--missing-only", action="store_true", help="skip checkpoints whose file exists")


def main(args: argparse.Namespace) -> int:
    if args.out:
        os.environ[DIR_ENV] = str(args.out)
    if args.list:
        present = available()
        for name, entry in sorted(REGISTRY.items()):
            print(f"{name:32s} {'present' if present[name] else 'missing':8s} {entry.description}")
        return 0
    names = list(args.names)
    if args.all:
        names = sorted(REGISTRY)
    elif args.prefix:
        names += [n for n in sorted(REGISTRY) if n.startswith(args.prefix) and n not in names]
    if not names:
        raise ValueError("names is empty: give checkpoint names, --prefix PREFIX or --all (see --list)")
    for name in names:
        _entry(name)
    for name in names:
        if args.missing_only and checkpoint_path(name).exists():
            print(f"{name}: present, skipped")
            continue
        _, meta = train_pretrained(name)
        print(f"{name}: trained in {meta['train_wall_time_s']:.1f} s -> {checkpoint_path(name)}  "
              f"metrics {meta['metrics']}", flush=True)
    return 0
