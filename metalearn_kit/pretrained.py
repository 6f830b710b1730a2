"""Shipped checkpoints: a registry ``name -> PretrainedEntry`` of small pretrained / meta-learned models kept
in ``metalearn_kit/checkpoints_data/`` (safetensors weights + JSON metadata), so notebooks and benchmarks
start from trained weights instead of minutes of meta-training.

Every entry can be rebuilt with one command, which records its config, seed, metrics and machine::

    metalearn-kit pretrain restoration_denoise_maml      # one checkpoint
    metalearn-kit pretrain --all                         # every registered checkpoint
    metalearn-kit pretrain --list

The shipped files are the ``fast`` profile's (CPU-sized). Each entry also has a ``full`` variant: the same
training at the GPU sizes of the benchmarks' ``full`` profile, written beside the shipped one (``NAME`` ->
``NAME_full`` file) and loaded by ``metalearn-kit bench restoration|generation --profile full``::

    metalearn-kit pretrain restoration_denoise_maml --profile full      # one full-size checkpoint, one GPU
    metalearn-kit pretrain --all --profile full

``REGISTRY`` is a plain dict; other parts of the kit add their own entries::

    REGISTRY["my_model"] = PretrainedEntry(file="my_model.safetensors", build=..., train=..., config={...})
"""

from __future__ import annotations

import argparse
import json
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
        variants: other profiles of the same checkpoint (``{"full": entry}``), each a complete entry.
    """

    file: str
    build: Callable[[dict], nn.Module]
    train: Callable[[dict, int], tuple[nn.Module, dict]]
    config: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    description: str = ""
    variants: dict[str, PretrainedEntry] = field(default_factory=dict)


REGISTRY: dict[str, PretrainedEntry] = {}


def checkpoint_dir() -> Path:
    """Where checkpoints are read and written: ``$METALEARN_KIT_CHECKPOINT_DIR`` or the package folder."""
    return Path(os.environ.get(DIR_ENV) or CHECKPOINT_DIR)


SHIPPED_PROFILE = "fast"


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
    model = entry.build(meta.get("config", entry.config))
    model, meta = checkpoints.load(path, model)
    return model.eval(), meta


def train_pretrained(name: str, config: dict | None = None, seed: int | None = None,
                     save: bool = True, profile: str = SHIPPED_PROFILE) -> tuple[nn.Module, dict]:
    """Train checkpoint ``name`` (its ``profile`` variant) with its registered config and seed (or the ones
    given) and, with ``save``, write it to :func:`checkpoint_path`. Returns ``(model, meta)``."""
    entry = _entry(name, profile)
    config = dict(entry.config if config is None else config)
    seed = entry.seed if seed is None else seed
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    model, metrics = entry.train(config, seed)
    meta = {"name": name, "config": config, "seed": seed, "metrics": metrics,
            "train_wall_time_s": time.perf_counter() - start, "machine": describe_machine(),
            "command": _command(name, profile), "profile": profile, "description": entry.description,
            # the largest GPU memory torch held at once during training (None on a machine without CUDA)
            "peak_gpu_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None}
    if save:
        checkpoints.save(checkpoint_dir() / entry.file, model, meta)
    return model.eval(), meta


# ----------------------------------------------------------------------------------------------------------
# Restoration entries (trained by metalearn_kit.evaluation.restoration, fast-profile sizes)
# ----------------------------------------------------------------------------------------------------------

def _restoration_entry(name: str, description: str) -> PretrainedEntry:
    from .evaluation import restoration

    experiment = restoration.CHECKPOINT_EXPERIMENT[name]

    def entry(profile: str, file: str) -> PretrainedEntry:
        return PretrainedEntry(
            file=file,
            build=lambda config: restoration.checkpoint_module(name, config),
            train=lambda config, seed: restoration.train_checkpoint(name, config, seed),
            config=restoration.experiment_config(experiment, profile),
            seed=0,
            description=description,
        )
    return replace(entry("fast", f"{name}.safetensors"), variants={"full": entry("full", f"{name}_full.safetensors")})


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
    "restoration_siren_metasgd": "Meta-SGD-learned SIREN initialisation and per-weight inner learning rates",
    "restoration_n2s_maml": "MAML init for zero-shot Noise2Self denoising (self-supervised inner loop)",
}
for _name, _text in _RESTORATION.items():
    REGISTRY[_name] = _restoration_entry(_name, _text)

# Operator families (issue 16: the support set identifies the task), one recipe each in metalearn_kit/recipes/
from .recipes.operator_recipe import checkpoint_entries as _operator_entries  # noqa: E402

_operator_full = _operator_entries(PretrainedEntry, "full")
REGISTRY.update({name: replace(entry, variants={"full": _operator_full[name]})
                 for name, entry in _operator_entries(PretrainedEntry, "fast").items()})

# Generation entries (metalearn_kit.evaluation.generation, fast-profile sizes): generation_featnet, _maml, ...
from .evaluation.generation import pretrained_entries as _generation_entries  # noqa: E402

_full = _generation_entries(PretrainedEntry, "full")
REGISTRY.update({name: replace(entry, variants={"full": _full[name]})
                 for name, entry in _generation_entries(PretrainedEntry, "fast").items()})


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
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="also write one row per trained checkpoint (wall time, meta-steps, tasks/s, peak GPU "
                             "memory, machine) to this JSON file")
    parser.add_argument("--profile", default=SHIPPED_PROFILE, choices=(SHIPPED_PROFILE, "full"),
                        help="fast: the shipped CPU-sized checkpoints (default); full: the GPU-sized variants "
                             "that `bench ... --profile full` loads, written as NAME_full files")


def main(args: argparse.Namespace) -> int:
    if args.out:
        os.environ[DIR_ENV] = str(args.out)
    if args.list:
        present = available(args.profile)
        for name, entry in sorted(REGISTRY.items()):
            print(f"{name:32s} {args.profile:5s} {'present' if present[name] else 'missing':8s} {entry.description}")
        return 0
    names = list(args.names)
    if args.all:
        names = sorted(REGISTRY)
    elif args.prefix:
        names += [n for n in sorted(REGISTRY) if n.startswith(args.prefix) and n not in names]
    if not names:
        raise ValueError("names is empty: give checkpoint names, --prefix PREFIX or --all (see --list)")
    for name in names:
        _entry(name, args.profile)
    rows = []
    for name in names:
        if args.missing_only and checkpoint_path(name, args.profile).exists():
            print(f"{name}: present, skipped")
            continue
        _, meta = train_pretrained(name, profile=args.profile)
        rows.append(training_row(meta))
        print(f"{name}: trained in {meta['train_wall_time_s']:.1f} s -> {checkpoint_path(name, args.profile)}  "
              f"metrics {meta['metrics']}", flush=True)
        if args.json:  # rewritten after every checkpoint: a run cut short keeps what it finished
            checkpoints.atomic_write_bytes(Path(args.json), json.dumps(
                {"command": f"metalearn-kit pretrain {' '.join(names)} --profile {args.profile}",
                 "profile": args.profile, "machine": describe_machine(), "rows": rows}, indent=1).encode())
    if rows:
        print(format_training_table(rows))
    return 0


def training_row(meta: dict) -> dict[str, Any]:
    """What a training run cost: wall time, meta-steps (iterations), tasks/s where the config has a meta-batch,
    peak GPU memory and the device."""
    config, metrics = meta["config"], meta["metrics"]
    iterations = metrics.get("iterations", metrics.get("iteration_last"))
    batch = config.get("meta_batch")
    wall = meta["train_wall_time_s"]
    return {"name": meta["name"], "profile": meta["profile"], "wall_time_s": wall, "iterations": iterations,
            "tasks_per_s": iterations * batch / wall if iterations and batch and wall > 0 else None,
            "peak_gpu_memory_mb": meta.get("peak_gpu_memory_mb"), "device": metrics.get("device"),
            "gpu": meta["machine"].get("gpu")}


def format_training_table(rows: list[dict]) -> str:
    def cell(value, fmt):
        return "-" if value is None else format(value, fmt)

    header = f"{'checkpoint':32s} {'profile':7s} {'wall s':>9s} {'iters':>7s} {'tasks/s':>9s} {'peak GPU MB':>12s}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['name']:32s} {r['profile']:7s} {cell(r['wall_time_s'], '9.1f')} "
                     f"{cell(r['iterations'], '7d')} {cell(r['tasks_per_s'], '9.1f')} "
                     f"{cell(r['peak_gpu_memory_mb'], '12.0f')}")
    return "\n".join(lines)
