"""Adaptation results for :class:`~metalearn_kit.widgets.AdaptationExplorer`: what several methods output on
one unseen restoration task after 0, 1, ..., ``steps`` adaptation steps, with the query PSNR at each step.

The results dict (plain tensors and floats, so it can be built by hand or saved)::

    {"maml":    {"images": [img_0, img_1, ..., img_S], "psnr": [p_0, ..., p_S]},   # img_k [C, H, W]
     "scratch": {"images": [...], "psnr": [...]},
     "degraded": [C, H, W],            # the input the methods restore
     "clean":    [C, H, W],            # the target (optional)
     "degraded_psnr": float}           # the input's PSNR, computed as the methods' (optional)

The methods' ``psnr`` is the mean over the task's whole query set, while one query image is shown; so
:func:`adaptation_results` also records ``degraded_psnr``, the degraded inputs' PSNR averaged over the same query
set, and the explorer compares the methods with that (without it, with the shown image's PSNR).

Step ``k`` means "after ``k`` adaptation steps"; step 0 is the output before any adaptation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .._checks import check_float, check_images, check_int

__all__ = ["RESERVED_KEYS", "adaptation_results", "check_adaptation_results"]

RESERVED_KEYS = ("degraded", "clean", "degraded_psnr")


def _as_image(name: str, image: Any) -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{name} must be an image tensor [C, H, W], got {type(image).__name__}")
    if image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    image = check_images(name, image.detach().float().cpu(), rank=3, unit_range=False).clamp(0.0, 1.0)
    if image.shape[0] not in (1, 3):
        raise ValueError(f"{name} must have 1 or 3 channels, got shape {tuple(image.shape)}")
    return image


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and not math.isnan(value)


def _checked_frames(label: str, images: Any, shape: torch.Size) -> list[torch.Tensor]:
    """A method's images, one ``[C, H, W]`` per step (a list or a ``[steps, C, H, W]`` tensor), of ``shape``."""
    if isinstance(images, torch.Tensor):
        if images.dim() != 4:
            raise ValueError(f"{label}['images'] must be a list of [C, H, W] images or a tensor [steps, C, H, W], "
                             f"got shape {tuple(images.shape)}")
        images = list(images)
    if not isinstance(images, Sequence) or isinstance(images, (str, bytes)) or not images:
        raise ValueError(f"{label}['images'] must be a non-empty list of [C, H, W] images (step 0 first)")
    frames = [_as_image(f"{label}['images'][{k}]", image) for k, image in enumerate(images)]
    for k, frame in enumerate(frames):
        if frame.shape != shape:
            raise ValueError(f"{label}['images'][{k}] has shape {tuple(frame.shape)} but results['degraded'] "
                             f"has {tuple(shape)}; outputs must have the input's shape")
    return frames


def _checked_method(name: Any, entry: Any, shape: torch.Size) -> dict[str, Any]:
    """One method's entry as ``{"images": [S+1, C, H, W], "psnr": [S+1 floats]}``."""
    label = f"results[{name!r}]"
    if not isinstance(name, str):
        raise TypeError(f"method names in results must be strings, got {name!r}")
    if not isinstance(entry, Mapping) or "images" not in entry or "psnr" not in entry:
        raise ValueError(f"{label} must be a dict with 'images' (one [C, H, W] image per step) and 'psnr' "
                         f"(one float per step), got {type(entry).__name__}"
                         + (f" with keys {sorted(entry)}" if isinstance(entry, Mapping) else ""))
    frames = _checked_frames(label, entry["images"], shape)
    psnr = entry["psnr"]
    if isinstance(psnr, torch.Tensor):
        psnr = psnr.detach().cpu().flatten().tolist()
    if not isinstance(psnr, Sequence) or isinstance(psnr, (str, bytes)):
        raise TypeError(f"{label}['psnr'] must be a list of floats (one per step), got {type(psnr).__name__}")
    for k, value in enumerate(psnr):
        if not _is_number(value):
            raise ValueError(f"{label}['psnr'][{k}] must be a number in dB, got {value!r}")
    values = [float(value) for value in psnr]
    if len(values) != len(frames):
        raise ValueError(f"{label} has {len(frames)} images but {len(values)} PSNR values; give one PSNR per "
                         f"step (step 0 included)")
    return {"images": torch.stack(frames), "psnr": values}


def _checked_inputs(results: Mapping) -> tuple[torch.Tensor, torch.Tensor | None, float | None]:
    """``(degraded, clean or None, degraded_psnr or None)`` of ``results``."""
    if "degraded" not in results:
        raise ValueError("results must hold 'degraded': the [C, H, W] input image the methods restore")
    degraded = _as_image("results['degraded']", results["degraded"])
    clean = _as_image("results['clean']", results["clean"]) if results.get("clean") is not None else None
    if clean is not None and clean.shape != degraded.shape:
        raise ValueError(f"results['clean'] has shape {tuple(clean.shape)} but results['degraded'] has "
                         f"{tuple(degraded.shape)}; they must match")
    degraded_psnr = results.get("degraded_psnr")
    if degraded_psnr is not None:
        if isinstance(degraded_psnr, torch.Tensor) and degraded_psnr.numel() == 1:
            degraded_psnr = degraded_psnr.item()
        if not _is_number(degraded_psnr):
            raise ValueError(f"results['degraded_psnr'] must be a number in dB (the degraded inputs' PSNR, "
                             f"computed as the methods'), got {degraded_psnr!r}")
        degraded_psnr = float(degraded_psnr)
    return degraded, clean, degraded_psnr


def check_adaptation_results(results: Any) -> dict[str, Any]:
    """Check an adaptation results dict (see the module docs) and return it normalised:
    ``{"methods": {name: {"images": [S+1, C, H, W] tensor, "psnr": list[float]}}, "degraded": [C, H, W],
    "clean": [C, H, W] | None, "degraded_psnr": float | None, "steps": S}``. Raises ``ValueError``/``TypeError``
    naming the bad entry."""
    if not isinstance(results, Mapping):
        raise TypeError(f"results must be a dict {{method_name: {{'images': [...], 'psnr': [...]}}, 'degraded': "
                        f"image, 'clean': image}}, got {type(results).__name__}")
    degraded, clean, degraded_psnr = _checked_inputs(results)
    names = [k for k in results if k not in RESERVED_KEYS]
    if not names:
        raise ValueError("results holds no method: add at least one entry {method_name: {'images': [...], "
                         "'psnr': [...]}} next to 'degraded' and 'clean'")
    methods = {name: _checked_method(name, results[name], degraded.shape) for name in names}
    lengths = {name: len(entry["psnr"]) for name, entry in methods.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"results: every method needs the same number of steps, got {lengths}; compute them with "
                         f"the same steps")
    return {"methods": methods, "degraded": degraded, "clean": clean, "degraded_psnr": degraded_psnr,
            "steps": next(iter(lengths.values())) - 1}


def _default_predict(model: Callable, degraded: torch.Tensor) -> torch.Tensor:
    return model(degraded)


def _check_adaptation_args(methods: Any, task: Any, loss_fn: Any, steps: int, query_index: int,
                           predict: Any) -> None:
    from ..tasks.task import Task

    if not isinstance(methods, Mapping) or not methods:
        raise ValueError(f"methods must be a non-empty dict {{name: learner or (model, lr)}}, got {methods!r}")
    if not isinstance(task, Task):
        raise TypeError(f"task must be a metalearn_kit.tasks.Task, got {type(task).__name__}")
    if len(task.query) < 2 or task.query[0].dim() != 4 or task.query[1].shape != task.query[0].shape:
        raise ValueError("task must be a restoration task: query = (degraded [Q, C, H, W], clean [Q, C, H, W])")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable loss_fn(model, batch) -> scalar, got {type(loss_fn).__name__}")
    check_int("steps", steps, minimum=1)
    check_int("query_index", query_index, minimum=0, maximum=task.queries - 1)
    if not callable(predict):
        raise TypeError(f"predict must be callable predict(model, degraded) -> restored, got {type(predict).__name__}")
    for name in methods:
        if not isinstance(name, str) or name in RESERVED_KEYS:
            raise ValueError(f"method name {name!r} is not allowed: use a string other than {list(RESERVED_KEYS)}")


def _adapt_one(name: str, how: Any, task: Any, loss_fn: Callable, steps: int, query_index: int,
               predict: Callable) -> dict[str, Any]:
    """Adapt method ``name`` (a learner or ``(model, lr[, optimizer])``), keeping query ``query_index``'s
    restoration after each step."""
    from ..evaluation.metrics import psnr
    from ..meta.baselines import finetune

    frames: list[torch.Tensor] = []

    def metric(model: Callable, query: tuple) -> float:
        # the engine calls this after every inner step (step 0 included): keep the picture, return the PSNR
        degraded, clean = query[0], query[1]
        restored = predict(model, degraded).detach().float().clamp(0.0, 1.0)
        frames.append(restored[query_index].cpu())
        return float(psnr(restored, clean.to(restored.device)))

    if hasattr(how, "adapt") and callable(how.adapt):
        adapted = how.adapt(task.support, loss_fn, steps=steps, query=task.query, metric=metric)
    elif isinstance(how, tuple) and len(how) in (2, 3):
        model = how[0]
        lr = check_float(f"methods[{name!r}] learning rate", how[1], minimum=0.0, strict_min=True)
        optimizer = how[2] if len(how) == 3 else "sgd"
        adapted = finetune(model, task.support, loss_fn, steps, lr, optimizer, query=task.query, metric=metric)
    else:
        raise TypeError(f"methods[{name!r}] must be a meta-learner with .adapt or a tuple (model, lr[, "
                        f"optimizer]), got {type(how).__name__}")
    if len(frames) != steps + 1:
        raise RuntimeError(f"methods[{name!r}] reported {len(frames)} query evaluations for {steps} steps; "
                           f"expected {steps + 1} (step 0 included)")
    return {"images": frames, "psnr": list(adapted.query_metrics), "support_loss": list(adapted.support_losses)}


def adaptation_results(methods: Mapping[str, Any], task: Any, loss_fn: Callable, steps: int,
                       query_index: int = 0,
                       predict: Callable[[Callable, torch.Tensor], torch.Tensor] | None = None) -> dict[str, Any]:
    """Adapt every method to ``task`` for ``steps`` steps and record, after each step, the query PSNR (mean over
    the query set) and the restored image of query ``query_index``, as :class:`AdaptationExplorer` expects.

    Args:
        methods: ``{name: how}`` where ``how`` is a meta-learner (``MAML``, ``MetaSGD``, ``Reptile``: anything
            with ``.adapt(support, loss_fn, steps=, query=, metric=)``; its own inner learning rate is used), or a
            tuple ``(model, lr)`` / ``(model, lr, optimizer)`` for plain fine-tuning
            (:func:`~metalearn_kit.meta.finetune`) of ``model`` with ``optimizer`` ``"sgd"`` (default) or ``"adam"``
            -- e.g. a pretrained model or a fresh one (scratch).
        task: a restoration :class:`~metalearn_kit.tasks.Task`: ``support = (degraded [K, C, H, W], clean
            [K, C, H, W])``, query the same.
        loss_fn: ``loss_fn(model, batch) -> scalar`` used on the support set.
        steps: adaptation steps (>= 1); the results hold ``steps + 1`` entries per method (step 0 = no adaptation).
        query_index: which query image to show.
        predict: ``predict(model, degraded [N, C, H, W]) -> restored [N, C, H, W]``; default ``model(degraded)``.

    Returns:
        ``{name: {"images": [steps + 1 tensors [C, H, W]], "psnr": [steps + 1 floats], "support_loss": [...]},
        "degraded": [C, H, W], "clean": [C, H, W], "degraded_psnr": float}``: ``degraded_psnr`` is the degraded
        query inputs' PSNR, the mean over the query set like the methods' ``psnr``. No model's weights are changed.
    """
    from ..evaluation.metrics import psnr

    predict = _default_predict if predict is None else predict
    _check_adaptation_args(methods, task, loss_fn, steps, query_index, predict)
    results: dict[str, Any] = {name: _adapt_one(name, how, task, loss_fn, steps, query_index, predict)
                               for name, how in methods.items()}
    results["degraded"] = task.query[0][query_index].detach().float().cpu()
    results["clean"] = task.query[1][query_index].detach().float().cpu()
    # the input's PSNR as the methods' is computed (mean over the query set), not the shown image's alone
    results["degraded_psnr"] = float(psnr(task.query[0].detach().float().clamp(0.0, 1.0),
                                          task.query[1].detach().float()))
    return results
