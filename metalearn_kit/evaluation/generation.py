"""The few-shot generation benchmark on unseen glyph classes, and its sample-quality metrics.

Methods compared with the same meta-training budget (outer iterations x meta-batch of tasks; their training
is :mod:`metalearn_kit.recipes.generation`):

- ``maml`` / ``fomaml`` / ``reptile``: a conv VAE whose initial weights are meta-learned with the ELBO as
  ``loss_fn``; adapted with ``k`` SGD steps on the support set.
- ``joint``: the same VAE trained on pooled background tasks (no inner loop), then the *same* fine-tuning.
- ``scratch``: a freshly initialised VAE trained only on the support set (Adam, ``k`` steps).
- ``statistician``: Neural-Statistician-lite, conditioned on the support set in one forward pass (``k = 0``).
- ``figr``: FIGR -- Reptile over a WGAN-GP generator and critic; adapted by ``k`` alternating GAN steps
  (samples only: a GAN has no likelihood).
- ``cavia``: a context VAE (:mod:`~metalearn_kit.recipes.generation_cavia`): only a task-context vector is
  adapted, by ``k`` gradient steps on the support ELBO from a meta-learned init; samples from ``p(z | c_k)``.
- ``cgan``: the conditional GAN of the background classes (:mod:`~metalearn_kit.recipes.generation_cgan`); a
  new class's embedding is inverted from the support by ``k`` steps from a meta-learned init (samples only).

Each row has a ``kind`` (:data:`KINDS`): ``inner_loop`` (adapted by gradient steps from meta-learned
weights), ``amortised`` (one forward pass), ``joint``, ``scratch``, ``gan`` (FIGR), ``conditional`` (CGAN).

Metrics on evaluation-alphabet classes (never seen in training): ``query_nll_nats`` (importance-weighted
bound on ``-log p(x)`` of the query images, nats per image), ``prototype_accuracy`` (5-way nearest-prototype
accuracy of generated samples in the background-trained feature space), ``frechet_distance``
(generated vs real query features) and ``novelty_ratio`` (:mod:`~metalearn_kit.evaluation.novelty`: the
samples' mean feature distance to the nearest support image over the real query images'; ~1 = as new as
real drawings, 0 = copies of the support). Trained weights come from :func:`metalearn_kit.pretrained.load_or_train`.
Each method's adapt-and-measure step is its runner in
:data:`metalearn_kit.evaluation.generation_methods.RUNNERS`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._checks import check_int
from ..config import get_device
from ..models.feature_net import FeatureNet
from ..pretrained import load_or_train
from ..recipes.generation import GenerationConfig, load_sources, seeded_rng
from .features import extract_features
from .generation_methods import RUNNERS, Cell, Grid
from .paired import paired_verdict

__all__ = ["EXPERIMENT", "KINDS", "METHODS", "METRICS", "VAE_METHODS", "background_quality", "check_targets",
           "evaluate_generation", "evaluation_episodes", "format_table", "save_sample_grid"]

EXPERIMENT = "generation"
VAE_METHODS = ("maml", "fomaml", "reptile", "joint", "scratch")
METHODS = (*VAE_METHODS, "statistician", "figr", "cavia", "cgan")
KINDS = {"maml": "inner_loop", "fomaml": "inner_loop", "reptile": "inner_loop", "cavia": "inner_loop",
         "joint": "joint", "scratch": "scratch", "statistician": "amortised", "figr": "gan", "cgan": "conditional"}
METRICS = ("query_nll_nats", "prototype_accuracy", "frechet_distance", "novelty_ratio")


def _trained(name: str, config: GenerationConfig, background, log: Callable[[str], None] | None
             ) -> tuple[torch.nn.Module, dict]:
    """Checkpoint ``generation_<name>`` for ``config``: loaded, or trained on ``background`` now."""
    return load_or_train(f"generation_{name}", config, config.seed, log=log, options={"background": background})


def _mean_se(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    se = float(t.std() / math.sqrt(len(values))) if len(values) > 1 else 0.0
    return float(t.mean()), se


def evaluation_episodes(evaluation, n_tasks: int, queries: int, max_shots: int, ways: int, seed: int,
                        device: torch.device | str | None = None) -> list[dict[str, Any]]:
    """The fixed evaluation tasks of :func:`evaluate_generation`: ``n_tasks`` distinct target classes, each with
    its images split (without replacement) into a ``query`` set ``[queries, C, H, W]`` shared by every K and a
    disjoint support ``pool`` ``[max_shots, C, H, W]`` (a K-shot task uses ``pool[:K]``), plus ``ways - 1``
    distractor classes (their first ``queries`` images) for the prototype accuracy."""
    rng = torch.Generator().manual_seed(seed)
    targets = torch.randperm(evaluation.num_classes, generator=rng)[:n_tasks].tolist()
    episodes = []
    for target in targets:
        images = evaluation.images_of(target)
        if images.shape[0] < queries + max_shots:
            raise ValueError(f"class {evaluation.classes[target]!r} has {images.shape[0]} images, fewer than "
                             f"eval_queries + max(shots) = {queries} + {max_shots}; lower them")
        order = torch.randperm(images.shape[0], generator=rng)
        others = [c for c in torch.randperm(evaluation.num_classes, generator=rng).tolist() if c != target]
        distractors = [evaluation.images_of(c)[:queries] for c in others[: ways - 1]]
        episodes.append({"class": evaluation.classes[target], "query": images[order[:queries]].to(device),
                         "pool": images[order[queries:queries + max_shots]].to(device),
                         "distractors": [d.to(device) for d in distractors]})
    return episodes


def _check_methods(methods: Sequence[str]) -> None:
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"methods must be a non-empty subset of {METHODS}, got {list(methods)}")


def _check_sizes(config: GenerationConfig, evaluation) -> None:
    """The evaluation classes must hold the support and query images and the distractor classes."""
    max_shots, queries = max(config.shots), config.eval_queries
    if max_shots + queries > evaluation.images_per_class:
        raise ValueError(f"max(shots) + eval_queries = {max_shots} + {queries} exceeds the "
                         f"{evaluation.images_per_class} images per class; lower eval_queries or shots")
    if config.ways > evaluation.num_classes:
        raise ValueError(f"ways = {config.ways} exceeds the {evaluation.num_classes} evaluation classes; "
                         f"lower ways")


def _load_models(config: GenerationConfig, methods: Sequence[str], models: dict | None,
                 feature_net: FeatureNet | None, background, log: Callable[[str], None] | None,
                 device: torch.device) -> tuple[FeatureNet, dict[str, nn.Module], dict[str, dict]]:
    """The feature network and the methods' models on ``device`` (those not given loaded or trained), and the
    checkpoint info of those loaded."""
    checkpoints: dict[str, dict] = {}
    if feature_net is None:
        feature_net, checkpoints["featnet"] = _trained("featnet", config, background, log)
    feature_net = feature_net.to(device)
    models = dict(models or {})
    for name in methods:
        if name != "scratch" and name not in models:
            models[name], checkpoints[name] = _trained(name, config, background, log)
    return feature_net, {name: model.to(device) for name, model in models.items()}, checkpoints


def _featured_episodes(grid: Grid, evaluation) -> list[dict[str, Any]]:
    """The evaluation tasks, with the features of their real images (and those images kept as samples)."""
    config = grid.config
    tasks = evaluation_episodes(evaluation, min(config.eval_tasks, evaluation.num_classes), config.eval_queries,
                                max(config.shots), config.ways, config.seed + 1, grid.device)
    if grid.keep_samples:  # the first class's real images, for reference in sample grids
        grid.samples[("real query", 0, 0)] = tasks[0]["query"].cpu()
        for shots in config.shots:
            grid.samples[("support", shots, 0)] = tasks[0]["pool"][:shots].cpu()
    with torch.no_grad():
        for task in tasks:
            task["query_features"] = extract_features(grid.feature_net, task["query"])
            task["pool_features"] = extract_features(grid.feature_net, task["pool"])
            task["distractor_features"] = [extract_features(grid.feature_net, d) for d in task["distractors"]]
    return tasks


def _run_method(grid: Grid, method: str, tasks: list[dict[str, Any]], log: Callable[[str], None] | None) -> float:
    """Every ``(K, task)`` cell of ``method``; returns the seconds it took."""
    config, device = grid.config, grid.device
    # each method draws from its own seeded stream, so its rows do not depend on which other
    # methods ran before it (a subset run reproduces the full table's rows)
    torch.manual_seed(config.seed + 2 + METHODS.index(method))
    start = time.perf_counter()
    for shots in config.shots:
        for index, task in enumerate(tasks):
            support = (task["pool"][:shots], torch.zeros(shots, dtype=torch.int64, device=device))
            query = (task["query"], torch.zeros(config.eval_queries, dtype=torch.int64, device=device))
            noise = torch.Generator().manual_seed(config.seed + 1000 * index + shots)
            RUNNERS[method](grid, Cell(method, shots, index, task, support, query, noise))
    seconds = time.perf_counter() - start
    if log:
        log(f"evaluated {method} in {seconds:.1f} s")
    return seconds


def _rows(results: dict[tuple, list[float]]) -> list[dict[str, Any]]:
    """One row per ``(method, K, k, metric)``: the mean over tasks and its standard error, in table order."""
    rows = []
    for (method, shots, steps, metric), values in sorted(results.items(), key=lambda kv: (
            METHODS.index(kv[0][0]), kv[0][1], kv[0][2], METRICS.index(kv[0][3]))):
        mean, se = _mean_se(values)
        rows.append({"experiment": EXPERIMENT, "method": method, "kind": KINDS[method], "shots": shots,
                     "steps": steps, "metric": metric, "value": mean, "std_error": se, "tasks": len(values)})
    return rows


def evaluate_generation(config: GenerationConfig, methods: Sequence[str] = METHODS, *, models: dict | None = None,
                        feature_net: FeatureNet | None = None, sources=None, progress: bool = False,
                        log: Callable[[str], None] | None = None, keep_samples: bool = False,
                        device: torch.device | str | None = "cpu") -> dict[str, Any]:
    """Run the evaluation grid: for each method, each ``K`` in ``config.shots`` and ``eval_tasks`` unseen
    classes, adapt on ``K`` support images and record metrics after each ``k`` in ``config.steps``.

    ``models`` (name -> trained model) and ``feature_net`` skip loading them
    (:func:`~metalearn_kit.pretrained.load_or_train`). ``device``: where models
    train (when missing) and adapt; ``None`` picks :func:`~metalearn_kit.config.get_device`. Returns ``{"rows": [...],
    "samples": {(method, shots, steps): images [N, 1, H, W]} (first task; with keep_samples), "info": {...}}``;
    each row: ``experiment, method, shots, steps, metric, value, std_error, tasks``.
    """
    _check_methods(methods)
    device = get_device(device)
    background, evaluation = sources if sources is not None else load_sources(config)
    _check_sizes(config, evaluation)
    feature_net, models, checkpoints = _load_models(config, methods, models, feature_net, background, log, device)
    info: dict[str, Any] = {"checkpoints": checkpoints}
    grid = Grid(config, models, feature_net, device, sorted(set(config.steps)), keep_samples)
    tasks = _featured_episodes(grid, evaluation)
    start = time.perf_counter()
    with seeded_rng(config.seed + 2):
        method_seconds = {method: _run_method(grid, method, tasks, log) for method in methods}
    if "cgan" in methods:  # the CGAN's own classes: class-conditional samples of every background class
        info["cgan_background"] = background_quality(models["cgan"].cpu(), feature_net.cpu(), background,
                                                     seed=config.seed)
    info.update({"eval_seconds": time.perf_counter() - start, "method_seconds": method_seconds,
                 "eval_classes": [t["class"] for t in tasks],
                 "per_task": {"|".join(map(str, key)): values for key, values in grid.results.items()}})
    return {"rows": _rows(grid.results), "samples": grid.samples, "info": info}


@torch.no_grad()
def background_quality(model: nn.Module, feature_net: FeatureNet, background, per_class: int = 4, seed: int = 0,
                       holdout_per_class: int = 2) -> dict[str, float]:
    """Samples of every background class (``per_class`` each): ``accuracy`` = fraction the feature
    network (trained on the same classes) labels with the class asked for; ``novelty_ratio`` = their mean
    feature distance to the nearest *training* image of their class over the held-out images' (1: as new as
    real held-out drawings, 0: copies); ``holdout_accuracy`` of the feature network on the real held-out
    images, for reference."""
    from .novelty import nearest_distance

    check_int("per_class", per_class, minimum=1)
    gen = torch.Generator().manual_seed(seed)
    sample_dist, real_dist, correct, real_correct, total, real_total = [], [], 0, 0, 0, 0
    model.eval()
    for c in range(background.num_classes):
        labels = torch.full((per_class,), c, dtype=torch.int64)
        samples = model.generator(torch.randn(per_class, model.generator.latent, generator=gen), labels)
        images = background.images_of(c)
        split = background.images_per_class - holdout_per_class
        train, held = images[:split], images[split:background.images_per_class]
        f_samples, f_train, f_held = (extract_features(feature_net, x) for x in (samples, train, held))
        correct += int((feature_net.classifier(f_samples).argmax(1) == c).sum())
        real_correct += int((feature_net.classifier(f_held).argmax(1) == c).sum())
        total, real_total = total + per_class, real_total + held.shape[0]
        sample_dist.append(nearest_distance(f_samples, f_train))
        real_dist.append(nearest_distance(f_held, f_train))
    return {"accuracy": correct / total, "holdout_accuracy": real_correct / real_total,
            "novelty_ratio": float(torch.cat(sample_dist).mean() / torch.cat(real_dist).mean()),
            "classes": background.num_classes, "samples_per_class": per_class}


def _value(rows: list[dict], method: str, shots: int, steps: int, metric: str) -> float | None:
    for row in rows:
        if (row["method"], row["shots"], row["steps"], row["metric"]) == (method, shots, steps, metric):
            return row["value"]
    return None


def check_targets(result: dict, shots: int = 5, steps: int = 10) -> list[dict[str, Any]]:
    """Whether the benchmark's targets hold, each as ``{"target", "holds" (True/False/None = not measured),
    "detail"}``. "No worse than" is a paired test: the mean per-task difference is within 1.96 standard
    errors. Nothing is tuned here; whatever fails is reported as failing."""
    rows = result["rows"]
    per_task = result["info"]["per_task"]

    def paired(a: str, b: str, metric: str) -> tuple[float, float] | None:
        xa = per_task.get(f"{a}|{shots}|{steps}|{metric}")
        xb = per_task.get(f"{b}|{shots}|{steps}|{metric}")
        if not xa or not xb or len(xa) != len(xb):
            return None
        if len(xa) < 2:  # one task: no standard error (paired_verdict needs two)
            return _mean_se([x - y for x, y in zip(xa, xb, strict=True)])
        comparison = paired_verdict(xa, xb)  # the kit's one paired comparison: mean and se of a - b
        return comparison.mean, comparison.se

    out = []
    for algo in ("maml", "fomaml", "reptile"):
        vs_scratch, vs_joint = paired(algo, "scratch", "query_nll_nats"), paired(algo, "joint", "query_nll_nats")
        holds = None
        if vs_scratch is not None and vs_joint is not None:
            holds = vs_scratch[0] < 0 and vs_joint[0] <= 1.96 * vs_joint[1]
        detail = ("not measured" if holds is None else
                  f"NLL({algo}) - NLL(scratch) = {vs_scratch[0]:+.2f} +- {vs_scratch[1]:.2f} nats, "
                  f"NLL({algo}) - NLL(joint+ft) = {vs_joint[0]:+.2f} +- {vs_joint[1]:.2f} nats")
        out.append({"target": f"{algo} VAE, {shots} shots, {steps} steps: query NLL < scratch and no worse than "
                              f"joint pretraining + fine-tuning", "holds": holds, "detail": detail})
    ns = [_value(rows, "statistician", k, 0, "query_nll_nats") for k in (1, 5, 10)]
    holds = None if None in ns else bool(ns[0] > ns[1] > ns[2])
    out.append({"target": "NS-lite query NLL decreases as shots go 1 -> 5 -> 10", "holds": holds,
                "detail": "not measured" if holds is None else " -> ".join(f"{v:.2f}" for v in ns) + " nats"})
    meta_methods = ("maml", "fomaml", "reptile", "figr", "cavia")
    candidates = [(m, _value(rows, m, shots, steps, "prototype_accuracy")) for m in meta_methods]
    candidates = [(m, v) for m, v in candidates if v is not None]
    scratch_fd = _value(rows, "scratch", shots, steps, "frechet_distance")
    if not candidates or scratch_fd is None:
        out.append({"target": "best meta-learned samples: prototype accuracy >= 60% and Frechet < scratch",
                    "holds": None, "detail": "not measured"})
    else:
        best, acc = max(candidates, key=lambda mv: mv[1])
        fd = _value(rows, best, shots, steps, "frechet_distance")
        out.append({"target": f"best meta-learned samples ({best}, {shots} shots, {steps} steps): 5-way prototype "
                              f"accuracy >= 60% and Frechet < scratch",
                    "holds": bool(acc >= 0.6 and fd < scratch_fd),
                    "detail": f"accuracy {acc:.1%}, Frechet {fd:.2f} vs scratch {scratch_fd:.2f}"})
    out.append(_inner_loop_target(rows, paired, shots, steps))
    background = result["info"].get("cgan_background")
    out.append({"target": "conditional GAN: samples of the background classes classified correctly >= 80% by the "
                          "feature network", "holds": None if background is None else background["accuracy"] >= 0.8,
                "detail": "not measured" if background is None else
                f"accuracy {background['accuracy']:.1%} over {background['classes']} classes (real held-out images: "
                f"{background['holdout_accuracy']:.1%}), novelty ratio {background['novelty_ratio']:.2f}"})
    return out


def _inner_loop_target(rows: list[dict], paired, shots: int, steps: int) -> dict[str, Any]:
    """The inner-loop target: some ``inner_loop`` method with prototype accuracy >= 60% and novelty ratio >= 0.8
    at the same ``(shots, steps)``, and query NLL no worse than joint + fine-tuning (paired, 1.96 s.e.)."""
    verdicts = []
    for method in (m for m in METHODS if KINDS[m] == "inner_loop"):
        acc = _value(rows, method, shots, steps, "prototype_accuracy")
        novelty = _value(rows, method, shots, steps, "novelty_ratio")
        vs_joint = paired(method, "joint", "query_nll_nats")
        if acc is None or novelty is None or vs_joint is None:
            continue
        holds = acc >= 0.6 and novelty >= 0.8 and vs_joint[0] <= 1.96 * vs_joint[1]
        verdicts.append((holds, acc, method, f"{method}: accuracy {acc:.1%}, novelty ratio {novelty:.2f}, "
                                             f"NLL - NLL(joint+ft) = {vs_joint[0]:+.2f} +- {vs_joint[1]:.2f} nats"))
    target = (f"an inner-loop method ({shots} shots, {steps} steps): prototype accuracy >= 60% with novelty ratio "
              f">= 0.8, query NLL no worse than joint pretraining + fine-tuning")
    if not verdicts:
        return {"target": target, "holds": None, "detail": "not measured"}
    verdicts.sort(key=lambda v: (v[0], v[1]), reverse=True)
    return {"target": target, "holds": bool(verdicts[0][0]), "detail": "; ".join(v[3] for v in verdicts)}


def format_table(rows: list[dict]) -> str:
    """One text table: method (kind) x K x k -> NLL (nats), prototype accuracy, Frechet distance, novelty ratio
    (mean +- s.e.)."""
    cells: dict[tuple, dict[str, str]] = {}
    for row in rows:
        text = (f"{row['value']:.1%}" if row["metric"] == "prototype_accuracy" else f"{row['value']:.2f}")
        cells.setdefault((row["method"], row.get("kind", KINDS.get(row["method"], "")), row["shots"], row["steps"]),
                         {})[row["metric"]] = (
            f"{text} +- {row['std_error'] * (100 if row['metric'] == 'prototype_accuracy' else 1):.2f}")
    header = (f"{'method':<13}{'kind':<11}{'K':>3}{'k':>4}  {'query NLL (nats)':>20}  {'proto acc (%)':>16}  "
              f"{'Frechet':>16}  {'novelty':>12}")
    lines = [header, "-" * len(header)]
    for (method, kind, shots, steps), metrics in cells.items():
        lines.append(f"{method:<13}{kind:<11}{shots:>3}{steps:>4}  {metrics.get('query_nll_nats', '-'):>20}  "
                     f"{metrics.get('prototype_accuracy', '-'):>16}  {metrics.get('frechet_distance', '-'):>16}  "
                     f"{metrics.get('novelty_ratio', '-'):>12}")
    return "\n".join(lines)


def save_sample_grid(samples: dict, path: str | Path, columns: int = 8, shots: Sequence[int] | None = None,
                     steps: Sequence[int] | None = None) -> Path:
    """Save a PNG with one row of ``columns`` images per (method, K, k) entry of ``samples`` (only the given
    ``shots``/``steps`` if set; the real query and support rows are always kept), labelled."""
    # a pyplot-free Figure: saving a file must not switch the backend of the user's Jupyter session
    from matplotlib.figure import Figure

    if not samples:
        raise ValueError("samples is empty; run evaluate_generation(..., keep_samples=True)")
    keys = [key for key in samples if key[0] in ("real query", "support") or (
        (shots is None or key[1] in shots) and (steps is None or key[2] in steps))]
    keys = [k for k in keys if k[0] != "support" or shots is None or k[1] in shots]
    fig = Figure(figsize=(columns * 0.6 + 1.8, 0.7 * len(keys) + 0.3))
    axes = fig.subplots(len(keys), 1, squeeze=False)
    for ax, key in zip(axes[:, 0], keys, strict=True):
        images = samples[key][:columns, 0].cpu()
        if images.shape[0] < columns:  # pad short rows (a 1-shot support set) with blanks
            images = torch.cat([images, torch.zeros(columns - images.shape[0], *images.shape[1:])])
        strip = torch.cat(list(images), dim=1).numpy()
        ax.imshow(strip, cmap="gray_r", vmin=0, vmax=1)
        ax.set_yticks([])
        ax.set_xticks([])
        label = key[0] if key[0] == "real query" else (
            f"{key[0]}\nK={key[1]}" if key[0] == "support" else f"{key[0]}\nK={key[1]} k={key[2]}")
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
