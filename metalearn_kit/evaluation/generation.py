"""The few-shot generation benchmark on unseen glyph classes, and its sample-quality metrics.

Methods compared with the same meta-training budget (outer iterations x meta-batch of tasks; their training
is :mod:`metalearn_kit.recipes.generation`):

- ``maml`` / ``fomaml`` / ``reptile``: a conv VAE whose initial weights are meta-learned with the ELBO as
  ``loss_fn``; adapted with ``k`` steps on the support set of the inner loop chosen on dev classes
  (:mod:`~metalearn_kit.evaluation.inner_loop_protocol`: the meta-training SGD loop or Adam at three rates).
- ``joint``: the same VAE trained on pooled background tasks (no inner loop), then the *same* fine-tuning
  protocol (its own choice among the same candidates, on the same dev classes).
- ``scratch``: a freshly initialised VAE trained only on the support set (Adam, ``k`` steps).
- ``statistician``: Neural-Statistician-lite, conditioned on the support set in one forward pass (``k = 0``).
- ``figr``: FIGR -- Reptile over a WGAN-GP generator and critic; adapted by ``k`` alternating GAN steps
  (samples only: a GAN has no likelihood).
- ``cavia``: a context VAE (:mod:`~metalearn_kit.recipes.generation_cavia`): only a task-context vector is
  adapted, by ``k`` gradient steps on the support ELBO from a meta-learned init; samples from ``p(z | c_k)``.
- ``cgan``: the conditional GAN of the background classes (:mod:`~metalearn_kit.recipes.generation_cgan`); a
  new class's embedding is inverted from the support by ``k`` steps from a meta-learned init (samples only).

- trivial baselines that learn nothing (:mod:`~metalearn_kit.evaluation.trivial_generators`): ``copies``,
  ``blurred_copies`` (sigma 0.7), ``support_mean``, ``affine_jitter``, and ``support_only`` (no samples: the
  downstream classifier's reference). Every table carries them, and the ``real_drawings`` reference (kind
  ``reference``): other real drawings of the class measured like samples (what real data scores).

Each row has a ``kind`` (:data:`KINDS`): ``inner_loop`` (adapted by gradient steps from meta-learned
weights), ``amortised`` (one forward pass), ``joint``, ``scratch``, ``gan`` (FIGR), ``conditional`` (CGAN),
``trivial``, ``reference``; and a ``source`` (``glyphs`` or ``omniglot``: the unseen classes' data).

Metrics on unseen classes (never seen in training), of binarised draws for likelihood models (their mean images
are a labelled view, ``<metric>_mean_image``): ``query_nll_nats`` (importance-weighted bound on ``-log p(x)``
of the query images, nats per image: the headline for likelihood models); ``downstream_accuracy``
(:mod:`~metalearn_kit.evaluation.downstream`: N-way K-shot nearest-prototype accuracy with support + samples);
``same_alphabet_accuracy`` (up to 20-way nearest-prototype accuracy of the samples against classes of the same
alphabet; ``ways`` on the row); ``precision`` / ``recall`` (k-NN manifolds) and ``memorisation_ratio``
(:mod:`~metalearn_kit.evaluation.generation_metrics`); and the older ``prototype_accuracy`` (5-way, distractors
of any alphabet), ``frechet_distance`` and ``novelty_ratio`` (:mod:`~metalearn_kit.evaluation.novelty`), which
copies pass. Trained weights come from :func:`metalearn_kit.pretrained.load_or_train`. Each method's
adapt-and-measure step is its runner in :data:`metalearn_kit.evaluation.generation_methods.RUNNERS`; the targets
are :mod:`~metalearn_kit.evaluation.generation_targets`.
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
from .downstream import episode_accuracy
from .features import extract_features
from .generation_methods import MEAN_VIEW, REFERENCE_METHODS, RUNNERS, TRIVIAL_METHODS, Cell, Grid
from .generation_targets import check_earlier_targets, check_targets
from .inner_loop_protocol import DEV_TASKS, choose_inner_loops, dev_tasks

__all__ = ["ALPHABET_WAYS", "EXPERIMENT", "FINETUNED_METHODS", "KINDS", "LEARNED_METHODS", "METHODS", "METRICS",
           "REFERENCE_METHODS", "TRIVIAL_METHODS", "VAE_METHODS", "background_quality", "check_earlier_targets",
           "check_targets", "evaluate_generation", "evaluation_episodes", "format_table", "metric_order",
           "save_sample_grid", "source_label"]

EXPERIMENT = "generation"
VAE_METHODS = ("maml", "fomaml", "reptile", "joint", "scratch")
LEARNED_METHODS = (*VAE_METHODS, "statistician", "figr", "cavia", "cgan")
FINETUNED_METHODS = ("maml", "fomaml", "reptile", "joint")  # one fine-tuning protocol, chosen on dev classes
METHODS = (*LEARNED_METHODS, *TRIVIAL_METHODS, *REFERENCE_METHODS)
KINDS = {"maml": "inner_loop", "fomaml": "inner_loop", "reptile": "inner_loop", "cavia": "inner_loop",
         "joint": "joint", "scratch": "scratch", "statistician": "amortised", "figr": "gan", "cgan": "conditional",
         **dict.fromkeys(TRIVIAL_METHODS, "trivial"), **dict.fromkeys(REFERENCE_METHODS, "reference")}
# headline metrics first; the ``*_mean_image`` view of each sample metric follows the draws' metrics
METRICS = ("query_nll_nats", "downstream_accuracy", "same_alphabet_accuracy", "precision", "recall",
           "memorisation_ratio", "prototype_accuracy", "frechet_distance", "novelty_ratio")
ALPHABET_WAYS = 20  # the same-alphabet classification: the target and up to 19 classes of its alphabet


def metric_order(metric: str) -> tuple[int, int]:
    """Sort key of a metric name: draws before the mean-image view, then :data:`METRICS` order."""
    view = metric.endswith(MEAN_VIEW)
    return int(view), METRICS.index(metric[: -len(MEAN_VIEW)] if view else metric)


def source_label(name: str) -> str:
    """``"glyphs/evaluation"`` -> ``"glyphs"``, ``"omniglot/background_small1"`` -> ``"omniglot"``."""
    return name.split("/")[0]


def _trained(name: str, config: GenerationConfig, background, log: Callable[[str], None] | None
             ) -> tuple[torch.nn.Module, dict]:
    """Checkpoint ``generation_<name>`` for ``config``: loaded, or trained on ``background`` now."""
    return load_or_train(f"generation_{name}", config, config.seed, log=log, options={"background": background})


def _mean_se(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    se = float(t.std() / math.sqrt(len(values))) if len(values) > 1 else 0.0
    return float(t.mean()), se


def _alphabet_distractors(evaluation, target: int, queries: int, seed: int) -> list[torch.Tensor]:
    """The first ``queries`` images of up to ``ALPHABET_WAYS - 1`` other classes of ``target``'s alphabet (a seeded
    draw of its own, so the other episode draws do not depend on it). A source without ``class_alphabet`` is one
    alphabet."""
    # a source that records no alphabets (a user's class source) counts as one alphabet
    class_alphabet = getattr(evaluation, "class_alphabet", None)
    class_alphabet = [0] * evaluation.num_classes if class_alphabet is None else class_alphabet
    alphabet = class_alphabet[target]
    rng = torch.Generator().manual_seed(seed * 100003 + target)
    others = [c for c in torch.randperm(evaluation.num_classes, generator=rng).tolist()
              if c != target and class_alphabet[c] == alphabet]
    return [evaluation.images_of(c)[:queries] for c in others[: ALPHABET_WAYS - 1]]


def evaluation_episodes(evaluation, n_tasks: int, queries: int, max_shots: int, ways: int, seed: int,
                        device: torch.device | str | None = None) -> list[dict[str, Any]]:
    """The fixed evaluation tasks of :func:`evaluate_generation`: ``n_tasks`` distinct target classes, each with
    its images split (without replacement) into a ``query`` set ``[queries, C, H, W]`` shared by every K and a
    disjoint support ``pool`` ``[max_shots, C, H, W]`` (a K-shot task uses ``pool[:K]``), plus ``ways - 1``
    distractor classes of any alphabet (their first ``queries`` images) for the prototype accuracy and
    ``alphabet_distractors``, up to ``ALPHABET_WAYS - 1`` classes of the target's own alphabet (fewer when the
    alphabet has fewer: ``alphabet_ways`` records how many ways)."""
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
        alphabet = _alphabet_distractors(evaluation, target, queries, seed)
        episodes.append({"class": evaluation.classes[target], "query": images[order[:queries]].to(device),
                         "pool": images[order[queries:queries + max_shots]].to(device),
                         "distractors": [d.to(device) for d in distractors],
                         "alphabet_distractors": [d.to(device) for d in alphabet], "alphabet_ways": len(alphabet) + 1})
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
        if name != "scratch" and KINDS[name] not in ("trivial", "reference") and name not in models:
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
            task["alphabet_features"] = [extract_features(grid.feature_net, d) for d in task["alphabet_distractors"]]
    return tasks


def _downstream(grid: Grid, method: str, tasks: list[dict[str, Any]]) -> None:
    """Record ``downstream_accuracy`` (:mod:`~metalearn_kit.evaluation.downstream`) of every ``(K, k, view)`` of
    ``method`` whose samples were measured: one value per class, over the N-way episodes it is in (N =
    ``config.ways``, or the number of tasks when fewer)."""
    ways = min(grid.config.ways, len(tasks))
    for (name, shots, steps, view), features in list(grid.sample_features.items()):
        if name != method or len(features) != len(tasks) or ways < 2:
            continue
        accuracy = episode_accuracy(tasks, [features[i] for i in range(len(tasks))], shots, ways)
        grid.results[(method, shots, steps, "downstream_accuracy" + view)] = accuracy


def _run_method(grid: Grid, method: str, tasks: list[dict[str, Any]], log: Callable[[str], None] | None) -> float:
    """Every ``(K, task)`` cell of ``method``, then its downstream accuracy; returns the seconds it took."""
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
    _downstream(grid, method, tasks)
    seconds = time.perf_counter() - start
    if log:
        log(f"evaluated {method} in {seconds:.1f} s")
    return seconds


def _choose_inner_loops(grid: Grid, dev_source, tasks: list[dict[str, Any]], methods: Sequence[str],
                        log: Callable[[str], None] | None) -> dict[str, Any]:
    """Choose the inner loop of the pretrained VAEs among ``methods`` on dev classes of ``dev_source`` (unseen,
    never test classes) at K = 5 (or the largest K below) and the targets' k; store it in ``grid.inner_loops``;
    return the record."""
    config = grid.config
    finetuned = [m for m in methods if m in FINETUNED_METHODS]
    if not finetuned:
        return {}
    shots = max([k for k in config.shots if k <= 5] or [min(config.shots)])
    steps = 10 if 10 in grid.steps else max(grid.steps)
    dev = dev_tasks(dev_source, [t["class"] for t in tasks], DEV_TASKS, shots, config.eval_queries, config.seed + 3,
                    grid.device)
    if not dev:
        return {"dev_classes": 0}
    chosen = choose_inner_loops(grid.models, finetuned, dev, config, steps)
    grid.inner_loops = {m: c["choice"] for m, c in chosen.items()}
    if log:
        log("inner loops chosen on dev classes: " + ", ".join(f"{m} {c['choice'].label}" for m, c in chosen.items()))
    return {"dev_source": dev_source.name, "dev_classes": len(dev), "shots": shots, "steps": steps,
            "criterion": "mean dev query NLL (nats)",
            **{m: {"choice": c["choice"].label, "dev_nll": c["dev_nll"]} for m, c in chosen.items()}}


def _ways(metric: str, config: GenerationConfig, tasks: list[dict[str, Any]]) -> float | int | None:
    """How many classes a classification metric chooses among (the mean over tasks when it varies)."""
    base = metric.removesuffix(MEAN_VIEW)
    if base == "prototype_accuracy":
        return config.ways
    if base == "downstream_accuracy":
        return min(config.ways, len(tasks))
    if base == "same_alphabet_accuracy":
        ways = [t["alphabet_ways"] for t in tasks if t["alphabet_ways"] > 1]
        return ways[0] if len(set(ways)) == 1 else round(sum(ways) / len(ways), 2)
    return None


def _rows(results: dict[tuple, list[float]], source: str, ways) -> list[dict[str, Any]]:
    """One row per ``(method, K, k, metric)``: the mean over tasks (or episodes), its standard error and the
    per-task values, in table order; ``ways(metric)`` for classification metrics."""
    rows = []
    for (method, shots, steps, metric), values in sorted(results.items(), key=lambda kv: (
            METHODS.index(kv[0][0]), kv[0][1], kv[0][2], metric_order(kv[0][3]))):
        mean, se = _mean_se(values)
        rows.append({"experiment": EXPERIMENT, "method": method, "kind": KINDS[method], "source": source,
                     "shots": shots, "steps": steps, "ways": ways(metric), "metric": metric, "value": mean,
                     "std_error": se, "tasks": len(values), "per_task": list(values)})
    return rows


def evaluate_generation(config: GenerationConfig, methods: Sequence[str] = METHODS, *, models: dict | None = None,
                        feature_net: FeatureNet | None = None, sources=None, progress: bool = False,
                        log: Callable[[str], None] | None = None, keep_samples: bool = False,
                        device: torch.device | str | None = "cpu", trivial: bool = True,
                        fair_inner_loop: bool = False, dev_source=None) -> dict[str, Any]:
    """Run the evaluation grid: for each method, each ``K`` in ``config.shots`` and ``eval_tasks`` unseen
    classes, adapt on ``K`` support images and record metrics after each ``k`` in ``config.steps``.

    ``models`` (name -> trained model) and ``feature_net`` skip loading them
    (:func:`~metalearn_kit.pretrained.load_or_train`). ``device``: where models
    train (when missing) and adapt; ``None`` picks :func:`~metalearn_kit.config.get_device`. ``trivial``: also
    run the :data:`TRIVIAL_METHODS` and the real-drawings reference (the default: every table carries them).
    ``fair_inner_loop``: choose the fine-tuning loop of the pretrained VAEs on dev classes
    (:mod:`~metalearn_kit.evaluation.inner_loop_protocol`; ``info["inner_loops"]``; ``bench generation`` does),
    else (the default, quicker) the meta-training SGD loop for all four. ``dev_source``: the classes to choose
    on (default: the evaluation classes that are not test classes).
    Returns ``{"rows": [...], "samples": {(method, shots, steps): images [N, 1, H, W]} (first task; with
    keep_samples), "info": {...}}``;
    each row: ``experiment, method, kind, source, shots, steps, ways, metric, value, std_error, tasks,
    per_task`` (``per_task``: the values the mean is over, in task or episode order).
    """
    _check_methods(methods)
    if trivial:  # every table carries the baselines that learn nothing
        methods = [*methods, *(m for m in (*TRIVIAL_METHODS, *REFERENCE_METHODS) if m not in methods)]
    device = get_device(device)
    background, evaluation = sources if sources is not None else load_sources(config)
    _check_sizes(config, evaluation)
    feature_net, models, checkpoints = _load_models(config, methods, models, feature_net, background, log, device)
    info: dict[str, Any] = {"checkpoints": checkpoints}
    grid = Grid(config, models, feature_net, device, sorted(set(config.steps)), keep_samples)
    tasks = _featured_episodes(grid, evaluation)
    start = time.perf_counter()
    if fair_inner_loop:
        info["inner_loops"] = _choose_inner_loops(grid, evaluation if dev_source is None else dev_source, tasks,
                                                  methods, log)
    with seeded_rng(config.seed + 2):
        method_seconds = {method: _run_method(grid, method, tasks, log) for method in methods}
    if "cgan" in methods:  # the CGAN's own classes: class-conditional samples of every background class
        info["cgan_background"] = background_quality(models["cgan"].cpu(), feature_net.cpu(), background,
                                                     seed=config.seed)
    info.update({"eval_seconds": time.perf_counter() - start, "method_seconds": method_seconds,
                 "eval_classes": [t["class"] for t in tasks],
                 "per_task": {"|".join(map(str, key)): values for key, values in grid.results.items()}})
    info["same_alphabet_ways"] = [t["alphabet_ways"] for t in tasks]
    info["source"] = source_label(evaluation.name)
    rows = _rows(grid.results, info["source"], lambda metric: _ways(metric, config, tasks))
    return {"rows": rows, "samples": grid.samples, "info": info}


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


# (metric, column header, width, as a percentage) of the text table, draws' metrics only
_COLUMNS = (("query_nll_nats", "query NLL", 15, False), ("downstream_accuracy", "downstr %", 12, True),
            ("same_alphabet_accuracy", "20-way alph %", 14, True), ("precision", "precision", 12, False),
            ("recall", "recall", 12, False), ("memorisation_ratio", "memoris.", 12, False),
            ("prototype_accuracy", "5-way %", 12, True), ("frechet_distance", "Frechet", 13, False),
            ("novelty_ratio", "novelty", 12, False))


def _cell_text(row: dict, percent: bool) -> str:
    scale = 100 if percent else 1
    digits = 1 if percent or row["metric"] in ("query_nll_nats", "frechet_distance") else 2
    return f"{row['value'] * scale:.{digits}f}+-{row['std_error'] * scale:.{digits}f}"


def format_table(rows: list[dict]) -> str:
    """One text table: (source) x method (kind) x K x k -> the draws' metrics (mean +- s.e. over classes):
    query NLL (nats), downstream N-way accuracy, same-alphabet 20-way accuracy, precision, recall, memorisation
    ratio, 5-way prototype accuracy, Frechet distance, novelty ratio. The ``*_mean_image`` view is left out."""
    percent = {metric: pct for metric, _, _, pct in _COLUMNS}
    cells: dict[tuple, dict[str, str]] = {}
    for row in rows:
        if row["metric"] in percent:
            key = (row.get("source", ""), row["method"], row.get("kind", KINDS.get(row["method"], "")),
                   row["shots"], row["steps"])
            cells.setdefault(key, {})[row["metric"]] = _cell_text(row, percent[row["metric"]])
    header = f"{'source':<9}{'method':<15}{'kind':<11}{'K':>3}{'k':>4}" + "".join(
        f"{title:>{width}}" for _, title, width, _ in _COLUMNS)
    lines = [header, "-" * len(header)]
    for (source, method, kind, shots, steps), metrics in cells.items():
        lines.append(f"{source:<9}{method:<15}{kind:<11}{shots:>3}{steps:>4}" + "".join(
            f"{metrics.get(metric, '-'):>{width}}" for metric, _, width, _ in _COLUMNS))
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
