"""A meta-training run's state on disk, for exact resume: the learner's weights, the meta-optimizer state
(flattened to tensors), the task sampler's generator state, torch's global RNG state (random ops inside the
forward) and the history so far, in one safetensors file ``CHECKPOINT_NAME`` of the run's folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from .. import checkpoints
from ..config import describe_machine

CHECKPOINT_NAME = "meta_train.safetensors"
RESUME_IF_PRESENT = "if_present"


def check_resume(resume: bool | str, checkpoint_dir: str | os.PathLike | None) -> None:
    """``resume`` is ``False``, ``True`` (continue the run in ``checkpoint_dir``) or ``"if_present"`` (continue it
    if there is one), and any resume names its ``checkpoint_dir``."""
    if resume is not False and resume is not True and resume != RESUME_IF_PRESENT:
        raise ValueError(f"resume must be False, True or {RESUME_IF_PRESENT!r}, got {resume!r}")
    if resume and checkpoint_dir is None:
        raise ValueError(f"resume={resume!r} needs checkpoint_dir (the folder of the run to continue)")


def check_resume_target(resume: bool | str, checkpoint_dir: str | os.PathLike | None) -> None:
    """With ``resume=True`` a checkpoint must exist in ``checkpoint_dir``: an empty or mistyped folder must not
    start a fresh run silently. Checked when the run starts, on the process whose disk holds the run (in a
    distributed run, rank 0's), not when the settings are built."""
    check_resume(resume, checkpoint_dir)
    if resume is True and not (Path(checkpoint_dir) / CHECKPOINT_NAME).exists():
        folder = Path(checkpoint_dir)
        state = "does not exist" if not folder.exists() else "holds no checkpoint"
        raise ValueError(f"resume=True but checkpoint_dir {str(folder)!r} {state} ({CHECKPOINT_NAME} missing): "
                         f"check the folder name, or pass resume={RESUME_IF_PRESENT!r} to start a fresh run when "
                         f"there is nothing to resume")


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """``optimizer.state_dict()`` as ``(tensors by name, JSON-able rest)`` (safetensors holds tensors only)."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.state.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in state["param_groups"]]
    return tensors, {"param_groups": groups, "scalar_state": scalars}


def optimizer_from_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Inverse of :func:`optimizer_to_tensors`: load that state into ``optimizer``."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer.state."):
            index, key = name[len("optimizer.state."):].split(".", 1)
            state.setdefault(int(index), {})[key] = value
    for index, entry in meta["scalar_state"].items():
        state.setdefault(int(index), {}).update(entry)
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_run(path: Path, learner, optimizer, generator: torch.Generator, history: dict, config: dict,
             iteration: int) -> Path:
    """Write the run's state after ``iteration`` meta-steps to ``path``."""
    tensors = {f"learner.{k}": v for k, v in learner.state_dict().items()}
    opt_tensors, opt_meta = optimizer_to_tensors(optimizer)
    tensors.update(opt_tensors)
    tensors["rng.sampler"] = generator.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    meta = {"kind": "meta_train", "iteration": iteration, "config": config, "history": history,
            "optimizer": opt_meta, "machine": describe_machine()}
    return checkpoints.save(path, tensors, meta)


def load_run(path: Path, learner, optimizer, generator: torch.Generator, config: dict) -> tuple[int, dict]:
    """Restore the run saved at ``path`` into ``learner``, ``optimizer`` and ``generator`` (and torch's RNG);
    refuses a checkpoint of another learner or meta-lr schedule. Returns ``(iteration, history)``."""
    tensors, meta = checkpoints.load(path)
    if meta.get("kind") != "meta_train":
        raise ValueError(f"{str(path)!r} is not a meta_train checkpoint; pass resume=False or another checkpoint_dir")
    saved = meta["config"]["learner"]
    if saved != config["learner"]:
        raise ValueError(f"resume=True but the learner differs from the checkpoint's: saved {saved}, now "
                         f"{config['learner']}; use the same learner settings or a fresh checkpoint_dir")
    saved_loop, loop = meta["config"].get("loop", {}), config["loop"]
    saved_schedule = saved_loop.get("meta_lr_schedule", "constant")
    if "cosine" in (saved_schedule, loop["meta_lr_schedule"]) and (
            saved_schedule != loop["meta_lr_schedule"] or saved_loop.get("iterations") != loop["iterations"]):
        # the steps already taken followed the saved schedule; another length would bend it half-way
        raise ValueError(f"resume=True but the checkpoint follows meta_lr_schedule={saved_schedule!r} over "
                         f"iterations={saved_loop.get('iterations')}, now {loop['meta_lr_schedule']!r} over "
                         f"iterations={loop['iterations']}; resume with the checkpoint's schedule and iterations, "
                         f"or start a fresh checkpoint_dir")
    device = next((p.device for p in learner.parameters()), torch.device("cpu"))
    learner_state = {k[len("learner."):]: v.to(device) for k, v in tensors.items() if k.startswith("learner.")}
    learner.load_state_dict(learner_state)
    optimizer_from_tensors(optimizer, {k: v.to(device) for k, v in tensors.items()}, meta["optimizer"])
    generator.set_state(tensors["rng.sampler"])
    torch.set_rng_state(tensors["rng.torch"])
    if torch.cuda.is_available():
        states = [tensors[f"rng.cuda.{i}"] for i in range(torch.cuda.device_count()) if f"rng.cuda.{i}" in tensors]
        if states:
            torch.cuda.set_rng_state_all(states)
    return int(meta["iteration"]), meta["history"]


def checkpoint_iteration(checkpoint_dir: str | os.PathLike) -> int | None:
    """The iteration of the meta_train checkpoint in ``checkpoint_dir`` (read from its header, without
    loading the tensors), or ``None`` when there is none or it is unreadable."""
    path = Path(checkpoint_dir) / CHECKPOINT_NAME
    if not path.exists():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads((handle.metadata() or {}).get("metalearn_kit_meta", "{}"))
        return int(meta["iteration"])
    except Exception:  # noqa: BLE001 - a damaged file reads as "no checkpoint" here; loading it reports why
        return None


def last_checkpoint_text(checkpoint_dir: str | os.PathLike | None) -> str:
    """``"'<path>' (iteration N)"`` of the checkpoint in ``checkpoint_dir``, or why there is none."""
    if checkpoint_dir is None:
        return "none (no checkpoint_dir was given)"
    iteration = checkpoint_iteration(checkpoint_dir)
    if iteration is None:
        return f"none readable yet in {str(Path(checkpoint_dir))!r} (on rank 0's machine)"
    return f"{str(Path(checkpoint_dir) / CHECKPOINT_NAME)!r} (iteration {iteration}, on rank 0's machine)"


__all__ = ["CHECKPOINT_NAME", "RESUME_IF_PRESENT", "check_resume", "check_resume_target", "save_run", "load_run",
           "checkpoint_iteration", "last_checkpoint_text", "optimizer_to_tensors", "optimizer_from_tensors"]
