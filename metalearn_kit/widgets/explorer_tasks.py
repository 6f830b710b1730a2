"""One task of the restoration explorer and the methods it compares: for a degradation family of notebook 05
(white noise, blur, inpainting), the chosen test photograph is the query, other photographs degraded with the
same draw are the support, and the meta-learned init, joint pretraining and scratch adapt on that support.

Fair as the benchmark (:mod:`metalearn_kit.evaluation.restoration`): the meta-learned init adapts with the inner
loop it was meta-trained with; joint pretraining and scratch are fine-tuned with the ``(optimizer, lr)`` of
Adam at :data:`~metalearn_kit.evaluation.curves.BASELINE_LRS` or the meta-init's own SGD step that reaches the
lowest *support* loss after the asked number of steps (:func:`~metalearn_kit.evaluation.curves.support_lr`).
Blur and inpainting use the unrolled restorers, which take the task's known operator (kernel or mask).
"""

from __future__ import annotations

from typing import Any

import torch

from .._checks import check_choice, check_images, check_int

__all__ = ["RESTORATION_FAMILIES", "explorer_task", "restoration_methods", "restoration_results"]

# degradation family -> (checkpoint prefix, experiment of restoration_config)
RESTORATION_FAMILIES: dict[str, tuple[str, str]] = {
    "gaussian_noise": ("restoration_denoise", "denoising"),
    "gaussian_blur": ("restoration_deblur", "deblurring_inpainting"),
    "inpainting": ("restoration_inpaint", "deblurring_inpainting"),
}


def explorer_task(family: str, images: torch.Tensor, image_index: int, shots: int, seed: int = 1000) -> Any:
    """A test task of ``family`` built from ``images`` ``[N, C, H, W]``: query = image ``image_index``, support =
    the first ``shots`` other images, all degraded with one draw of the family's *test* range (seed
    ``seed + image_index``). Blur and inpainting tasks carry the operator as a third tensor (kernels ``[K, k, k]``
    or masks ``[K, 1, H, W]``, built for the images' size), as :class:`~metalearn_kit.tasks.OperatorTasks` does."""
    from ..recipes.restoration_configs import restoration_config
    from ..tasks.degradations import make_degradation
    from ..tasks.task import Task

    check_choice("family", family, tuple(RESTORATION_FAMILIES))
    images = check_images("images", images, rank=4)
    check_int("shots", shots, minimum=1)
    if images.shape[0] < shots + 1:
        raise ValueError(f"images holds {images.shape[0]} images but a task needs shots + 1 = {shots + 1} (the "
                         f"query and {shots} support images); pass more images or fewer shots")
    check_int("image_index", image_index, minimum=0, maximum=images.shape[0] - 1)
    options: dict[str, Any] = {}
    if family == "inpainting":  # the benchmark's unseen mask type (trained on others)
        options["mode"] = list(restoration_config("deblurring_inpainting").test_masks)
    degradation = make_degradation(family, split="test", **options)
    g = torch.Generator().manual_seed(seed + image_index)
    params = degradation.sample_params(g)
    others = [i for i in range(images.shape[0]) if i != image_index][:shots]
    clean = torch.cat([images[others], images[image_index:image_index + 1]])
    degraded = degradation.apply(clean, params, g)
    batch = [degraded, clean]
    operator = degradation.operator(params, tuple(clean.shape[-2:]))
    if operator["kind"] in ("blur", "mask"):  # the unrolled restorers take the known operator
        data = operator["kernel"] if operator["kind"] == "blur" else operator["mask"][0]
        batch.append(data.expand(clean.shape[0], *data.shape).clone())
    return Task(tuple(t[:shots] for t in batch), tuple(t[shots:] for t in batch),
                {"family": family, "params": params})


def _predict_with_operator(model: Any, degraded: torch.Tensor, operator: torch.Tensor) -> torch.Tensor:
    return model(degraded, operator[:1].expand(degraded.shape[0], *operator.shape[1:]))


def restoration_methods(family: str, images: torch.Tensor, image_index: int, steps: int,
                        profile: str | None = None, seed: int = 0) -> dict[str, Any]:
    """The explorer task (:func:`explorer_task`) and the three methods for ``family``.

    Returns ``{"task", "methods", "loss_fn", "predict", "lrs"}``: ``methods`` = ``{"meta-learned": MAML learner,
    "joint pretrained": (model, lr, optimizer), "scratch": (model, lr, optimizer)}`` for
    :func:`~metalearn_kit.widgets.adaptation_results`; ``lrs`` = ``{name: (optimizer, lr)}`` of the two baselines,
    chosen on the support set only after ``steps`` steps; ``predict`` passes the known operator (``None`` for
    noise). Models come from the shipped checkpoints of ``profile`` (trained now if a file is missing); ``seed``
    fixes the scratch model's initialisation (torch's global RNG is left as it was)."""
    from ..evaluation.curves import support_lr
    from ..meta import MAML
    from ..pretrained import load_or_train
    from ..recipes.restoration import build_model, mse_loss, operator_loss
    from ..recipes.restoration_configs import restoration_config

    check_choice("family", family, tuple(RESTORATION_FAMILIES))
    check_int("steps", steps, minimum=1)
    prefix, experiment = RESTORATION_FAMILIES[family]
    config = restoration_config(experiment, profile)
    task = explorer_task(family, images, image_index, config.shots)
    meta, _ = load_or_train(prefix + "_maml", config)
    joint, _ = load_or_train(prefix + "_joint", config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        scratch = build_model(prefix + "_maml", config)
    has_operator = len(task.support) > 2
    loss_fn = operator_loss if has_operator else mse_loss
    same_as_meta = [("sgd", config.inner_lr)]  # the baselines may also use the meta-init's own inner step
    lrs = {name: support_lr(model, task.support, loss_fn, steps, extra=same_as_meta)
           for name, model in (("joint pretrained", joint), ("scratch", scratch))}
    learner = MAML(meta, inner_lr=config.inner_lr, inner_steps=config.inner_steps,
                   inner_grad_clip=config.inner_grad_clip)
    methods: dict[str, Any] = {"meta-learned": learner,
                               "joint pretrained": (joint, lrs["joint pretrained"][1], lrs["joint pretrained"][0]),
                               "scratch": (scratch, lrs["scratch"][1], lrs["scratch"][0])}
    predict = None
    if has_operator:
        operator = task.query[2]

        def predict(model: Any, degraded: torch.Tensor) -> torch.Tensor:
            return _predict_with_operator(model, degraded, operator)
    return {"task": task, "methods": methods, "loss_fn": loss_fn, "predict": predict, "lrs": lrs}


def restoration_results(family: str, images: torch.Tensor, image_index: int, steps: int,
                        profile: str | None = None) -> dict[str, Any]:
    """:func:`restoration_methods` adapted for ``steps`` steps: the results of
    :func:`~metalearn_kit.widgets.adaptation_results` (``{method: {"images", "psnr", "support_loss"},
    "degraded", "clean"}``, images ``[C, H, W]``), what ``RestorationExplorer``'s ``restore_fn`` returns."""
    from .results import adaptation_results

    parts = restoration_methods(family, images, image_index, steps, profile)
    return adaptation_results(parts["methods"], parts["task"], parts["loss_fn"], steps, predict=parts["predict"])
