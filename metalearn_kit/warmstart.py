"""Meta-testing from the store: start a new task from the stored model of the most similar past task,
then fine-tune on the new task's support set (the warm start of AutoML systems and model-zoo selection); and
:func:`evaluate_tasks` (from :mod:`~metalearn_kit.meta_label_records`), which adapts to tasks and records their
meta-labels in the store. (It sits above
``store/`` and ``meta/``: the store itself only persists.)

Two ways to choose, and their mix:

- ``by="descriptor"``: the nearest stored task by :func:`~metalearn_kit.store.similarity.task_descriptor`
  distance; costs no model evaluation at all;
- ``by="support_loss"``: every stored model is run on the new support set and the lowest loss wins;
  costs one forward pass per stored model;
- ``by="both"``: the ``k_candidates`` nearest tasks by descriptor, then the lowest support loss among them;
- ``by="meta_labels"``: the start (a stored model with its optimizer and learning rate: a run with a run-level
  model) whose recorded meta-labels on the nearest stored tasks predict the best PSNR
  (:class:`~metalearn_kit.meta_label_chooser.MetaLabelChooser`); costs no model evaluation, and fine-tunes
  with the chosen start's own optimizer and learning rate.

:func:`compare_warm_start` puts the warm start next to other initialisations (MAML's meta-learned one,
joint pre-training, scratch) on the same unseen tasks with the same fine-tuning budget.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ._checks import check_choice, check_float, check_int
from .meta import finetune
from .meta.step import LossFn
from .meta_label_chooser import MetaLabelChoice, MetaLabelChooser
from .meta_label_records import evaluate_tasks
from .store.db import ArtefactIntegrityError, MetaDatabase
from .store.similarity import (
    DESCRIPTOR_NAMES,
    DESCRIPTOR_VERSION,
    descriptor_distance,
    is_restoration_support,
    support_loss,
    task_descriptor,
)

__all__ = ["Candidate", "WarmStartResult", "compare_warm_start", "evaluate_tasks", "restoration_psnr", "warm_start"]

Batch = tuple[torch.Tensor, ...]


@dataclass
class Candidate:
    """A stored model considered for a warm start."""

    artefact_id: int
    run_id: int
    task_id: int | None
    family: str | None
    algorithm: str
    backbone: str
    distance: float | None = None  # descriptor distance to the new task (None: no comparable descriptor)
    support_loss: float | None = None  # loss on the new support set (None: not evaluated)
    skipped: str | None = None  # why it could not be used (e.g. the weights do not fit the model)


@dataclass
class WarmStartResult:
    """What :func:`warm_start` returns."""

    model: nn.Module  # the adapted model
    source: Candidate | None  # the stored model it started from (None: nothing usable, started from scratch)
    candidates: list[Candidate]  # every stored model considered, in ranking order
    models_evaluated: int  # stored models whose support loss was computed to choose
    models_loaded: int  # stored models read from disk (evaluated or tried)
    support_losses: list[float] = field(default_factory=list)  # support loss before each fine-tuning step
    descriptor: torch.Tensor | None = None
    seconds_choosing: float = 0.0
    meta_label_choice: MetaLabelChoice | None = None  # by="meta_labels": the prediction, neighbours, fallback
    fallback: str | None = None  # by="meta_labels": None, "cold_start" or "novel_task" (also warned)


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def _to(batch: Batch, device: torch.device) -> Batch:
    return tuple(t.to(device) for t in batch)


def _fresh(model_factory: Callable[[], nn.Module], seed: int | None) -> nn.Module:
    """``model_factory()`` with torch's global RNG seeded by ``seed`` and restored afterwards, so building
    candidate models never moves the caller's random stream and a scratch model is the same for every call
    (``seed=None``: built from the global RNG as it is)."""
    if seed is None:
        model = model_factory()
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = model_factory()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model_factory must return an nn.Module, got {type(model).__name__}")
    return model


def _support_of(task: Any) -> Batch:
    support = getattr(task, "support", task)
    if not isinstance(support, tuple) or not support or not all(isinstance(t, torch.Tensor) for t in support):
        raise TypeError(f"task must be a Task or a support tuple of tensors, got {type(task).__name__}")
    return support


def _candidates(db: MetaDatabase, backbone: str | None, family: str | None,
                descriptor: torch.Tensor | None) -> list[Candidate]:
    """Stored models matching ``backbone``/``family``, with their descriptor distance to ``descriptor``
    when both have comparable descriptors."""
    out = []
    for row in db.descriptor_candidates():
        if backbone is not None and row["backbone"] != backbone:
            continue
        if family is not None and row["family"] != family:
            continue
        cand = Candidate(artefact_id=row["artefact_id"], run_id=row["run_id"], task_id=row["task_id"],
                         family=row["family"], algorithm=row["algorithm"], backbone=row["backbone"])
        stored = row["descriptor"]
        if (descriptor is not None and stored is not None and row["descriptor_version"] == DESCRIPTOR_VERSION
                and len(stored) == len(DESCRIPTOR_NAMES)):
            cand.distance = descriptor_distance(descriptor, row["descriptor"])
        out.append(cand)
    return out


def _check_warm_start(db: MetaDatabase, model_factory: Callable[[], nn.Module], k_candidates: int, by: str,
                      finetune_steps: int, lr: float, optimizer: str) -> None:
    if not isinstance(db, MetaDatabase):
        raise TypeError(f"db must be a MetaDatabase, got {type(db).__name__}")
    if not callable(model_factory):
        raise TypeError(f"model_factory must be a callable returning a fresh nn.Module, got {model_factory!r}")
    check_choice("by", by, ("descriptor", "support_loss", "both", "meta_labels"))
    check_int("k_candidates", k_candidates, minimum=1)
    check_int("finetune_steps", finetune_steps, minimum=0)
    check_float("lr", lr, minimum=0.0, strict_min=True)
    check_choice("optimizer", optimizer, ("sgd", "adam"))


def _ranked_candidates(db: MetaDatabase, support: Batch, by: str, backbone: str | None, family: str | None
                       ) -> tuple[torch.Tensor | None, list[Candidate]]:
    """The new task's descriptor (restoration supports only) and the stored models to consider, nearest first
    when ``by`` ranks by descriptor."""
    descriptor = None
    if is_restoration_support(support):
        descriptor = task_descriptor(support)
    elif by in ("descriptor", "both"):
        raise ValueError(f"by={by!r} needs a restoration support (degraded, clean) to compute a descriptor; "
                         f"use by='support_loss' for other tasks")
    candidates = _candidates(db, backbone, family, descriptor)
    if by in ("descriptor", "both"):
        # a stored model without a comparable descriptor cannot be ranked by descriptor: not considered
        candidates = sorted((c for c in candidates if c.distance is not None),
                            key=lambda c: (c.distance, c.artefact_id))
    return descriptor, candidates


def _try_load(db: MetaDatabase, cand: Candidate, model_factory: Callable[[], nn.Module]) -> nn.Module | None:
    """A fresh model holding ``cand``'s stored weights, or ``None`` (``cand.skipped`` says why)."""
    model = _fresh(model_factory, 0)  # its weights are replaced by the stored ones
    try:
        db.load_artefact(cand.artefact_id, model=model)
    except ArtefactIntegrityError as err:  # a changed file is worth a word, then the next candidate
        cand.skipped = str(err)
        # the warning points at warm_start's caller (warm_start -> _choose_* -> here)
        warnings.warn(str(err), RuntimeWarning, stacklevel=4)
        return None
    except (ValueError, FileNotFoundError) as err:  # weights of another architecture, a missing file
        cand.skipped = str(err)
        return None
    return model


Choice = tuple[tuple[Candidate, nn.Module] | None, int, int]  # (candidate and its model, loaded, evaluated)


def _choose_nearest(db: MetaDatabase, candidates: list[Candidate], model_factory: Callable[[], nn.Module]) -> Choice:
    """The first usable candidate (they come nearest first)."""
    loaded = 0
    for cand in candidates:
        model = _try_load(db, cand, model_factory)
        loaded += 1
        if model is not None:
            return (cand, model), loaded, 0
    return None, loaded, 0


def _choose_by_support_loss(db: MetaDatabase, candidates: list[Candidate], budget: int, support: Batch,
                            loss_fn: LossFn, model_factory: Callable[[], nn.Module]) -> Choice:
    """The lowest support loss among the first ``budget`` usable candidates (unusable ones take no place)."""
    loaded = evaluated = 0
    chosen: tuple[Candidate, nn.Module] | None = None
    best_loss = math.inf
    for cand in candidates:
        if evaluated >= budget:
            break
        model = _try_load(db, cand, model_factory)
        loaded += 1
        if model is None:
            continue
        cand.support_loss = support_loss(model, _to(support, _model_device(model)), loss_fn)
        evaluated += 1
        if chosen is None or cand.support_loss < best_loss:
            best_loss = cand.support_loss
            chosen = (cand, model)  # keep only the best model in memory
    return chosen, loaded, evaluated


_CHOOSERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # db -> its chooser (label table cached)


def _meta_label_start(db: MetaDatabase, support: Batch, model_factory: Callable[[], nn.Module],
                      backbone: str | None, family: str | None, chooser: MetaLabelChooser | None
                      ) -> tuple[Candidate | None, nn.Module | None, MetaLabelChoice]:
    """The start the meta-labels choose: its run as a :class:`Candidate` and a model holding its run-level stored
    weights (``None`` when nothing is recorded)."""
    if chooser is None:
        chooser = _CHOOSERS.get(db)
        if chooser is None:
            chooser = _CHOOSERS[db] = MetaLabelChooser(db)
    elif not isinstance(chooser, MetaLabelChooser) or chooser.db is not db:
        raise TypeError("chooser must be a MetaLabelChooser built on this db (or None)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a fallback is warned once below, at the caller's line
        choice = chooser.choose(support, backbone=backbone, family=family)
    if choice.fallback is not None:
        warnings.warn(f"meta-label chooser fell back ({choice.fallback}): {choice.reason}", RuntimeWarning,
                      stacklevel=3)
    start = choice.start
    if start is None:
        return None, None, choice
    run_level = [a for a in db.artefacts(run_id=start.run_id) if a["task_id"] is None]
    cand = Candidate(artefact_id=run_level[0]["id"] if run_level else 0, run_id=start.run_id, task_id=None,
                     family=None, algorithm=start.algorithm, backbone=start.backbone)
    if not run_level:
        raise ValueError(f"start {start.name!r} (run {start.run_id}) has no run-level stored model to start from; "
                         f"record starts with meta_label_records.record_start (or StoreRecorder.save_model)")
    model = _try_load(db, cand, model_factory)
    if model is None:
        raise ValueError(f"the stored model of start {start.name!r} does not fit model_factory()'s model "
                         f"({cand.skipped}); pass backbone= to restrict the starts to this architecture")
    return cand, model, choice


def warm_start(db: MetaDatabase, task: Any, model_factory: Callable[[], nn.Module], loss_fn: LossFn,
               k_candidates: int = 5, by: str = "both", finetune_steps: int = 10, lr: float = 1e-3,
               optimizer: str = "adam", backbone: str | None = None, family: str | None = None,
               seed: int | None = 0, chooser: MetaLabelChooser | None = None) -> WarmStartResult:
    """Adapt to ``task`` (a Task or its support tuple) starting from the best stored model in ``db``.

    ``model_factory()`` builds a fresh model of the stored kind (weights are loaded into it; stored models
    whose weights do not fit are skipped and marked). ``by``: ``"descriptor"``, ``"support_loss"``, ``"both"`` or
    ``"meta_labels"`` (see the module docstring); ``k_candidates``: how many of the nearest usable models
    ``"both"`` evaluates. ``backbone``/``family`` restrict the stored models considered. Fine-tuning:
    ``finetune_steps`` steps of ``optimizer`` at ``lr`` on the support set (with ``"meta_labels"``, the chosen
    start's recorded ``optimizer`` and ``lr`` when its config has them; ``chooser`` reuses a
    :class:`~metalearn_kit.meta_label_chooser.MetaLabelChooser`). With no usable stored model a fresh
    ``model_factory()`` model (initialised under ``seed``) is fine-tuned (``result.source is None``, with a
    warning). torch's global RNG is left where it was.
    """
    _check_warm_start(db, model_factory, k_candidates, by, finetune_steps, lr, optimizer)
    support = _support_of(task)
    started = time.perf_counter()
    choice = None
    if by == "meta_labels":
        source, model, choice = _meta_label_start(db, support, model_factory, backbone, family, chooser)
        chosen, loaded, evaluated = (None if source is None else (source, model)), int(source is not None), 0
        candidates, descriptor = ([] if source is None else [source]), task_descriptor(support)
        if choice.start is not None:
            recorded = choice.start.config
            lr, optimizer = float(recorded.get("lr", lr)), str(recorded.get("optimizer", optimizer))
    else:
        descriptor, candidates = _ranked_candidates(db, support, by, backbone, family)
        if by == "descriptor":
            chosen, loaded, evaluated = _choose_nearest(db, candidates, model_factory)
        else:
            budget = k_candidates if by == "both" else len(candidates)
            chosen, loaded, evaluated = _choose_by_support_loss(db, candidates, budget, support, loss_fn,
                                                                model_factory)
    choosing = time.perf_counter() - started
    if chosen is None:
        warnings.warn(f"no usable stored model in {db.path} (considered {len(candidates)}); fine-tuning the "
                      f"model from model_factory() as it is", RuntimeWarning, stacklevel=2)
        source, model = None, _fresh(model_factory, seed)
    else:
        source, model = chosen
    adapted = finetune(model, _to(support, _model_device(model)), loss_fn, steps=finetune_steps, lr=lr,
                       optimizer=optimizer)
    return WarmStartResult(model=adapted.to_module(), source=source, candidates=candidates,
                           models_evaluated=evaluated, models_loaded=loaded,
                           support_losses=list(adapted.support_losses), descriptor=descriptor,
                           seconds_choosing=choosing, meta_label_choice=choice,
                           fallback=None if choice is None else choice.fallback)


@torch.no_grad()
def restoration_psnr(model: Callable, batch: Batch) -> float:
    """Mean PSNR (dB) of ``model(degraded)`` clamped to [0, 1] against ``clean`` over a batch."""
    degraded, clean = batch[0], batch[1]
    restored = model(degraded).clamp(0, 1)
    mse = (restored - clean).square().flatten(1).mean(1).clamp_min(1e-10)
    return float((10 * torch.log10(1.0 / mse)).mean())


def _init_model(name: str, init: Any, model_factory: Callable[[], nn.Module], seed: int | None) -> nn.Module:
    """A fresh model from ``init``: ``None`` (scratch: ``model_factory()`` initialised under ``seed``), an
    ``nn.Module`` (its weights are copied), a learner with a ``.model`` (e.g. MAML), or a state dict."""
    if init is None:
        return _fresh(model_factory, seed)
    if hasattr(init, "model") and isinstance(init.model, nn.Module):
        init = init.model
    if isinstance(init, nn.Module):
        model = _fresh(model_factory, seed)
        try:
            model.load_state_dict(init.state_dict())
        except RuntimeError:
            # another architecture than model_factory builds: fine-tune a copy of it as it is
            model = copy.deepcopy(init)
        return model
    if isinstance(init, Mapping):
        model = _fresh(model_factory, seed)
        try:
            model.load_state_dict(dict(init))
        except RuntimeError as err:
            raise ValueError(f"inits[{name!r}] is a state dict that does not fit model_factory()'s model: {err}") \
                from err
        return model
    raise TypeError(f"inits[{name!r}] must be None (scratch), an nn.Module, a learner with .model, or a state "
                    f"dict, got {type(init).__name__}")


def _check_comparison(tasks: Sequence[Any], inits: Mapping[str, Any], finetune_steps: int, seed: int) -> list:
    if not isinstance(inits, Mapping):
        raise TypeError(f"inits must be a dict name -> initialisation, got {type(inits).__name__}")
    if "store" in inits:
        raise ValueError("inits must not use the name 'store'; it is the warm start from db")
    tasks = list(tasks)
    if not tasks:
        raise ValueError("tasks must hold at least one unseen task")
    for i, task in enumerate(tasks):
        if not hasattr(task, "support") or not hasattr(task, "query"):
            raise TypeError(f"tasks[{i}] must be a Task with support and query, got {type(task).__name__}")
    check_int("finetune_steps", finetune_steps, minimum=0)
    check_int("seed", seed, minimum=0)
    return tasks


def _store_start(db: MetaDatabase, task: Any, index: int, model_factory: Callable[[], nn.Module], loss_fn: LossFn,
                 **choose: Any) -> tuple[nn.Module, dict[str, Any]]:
    """The stored model :func:`warm_start` chooses for ``task`` (not fine-tuned), and what it chose."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        choice = warm_start(db, task, model_factory, loss_fn, finetune_steps=0, **choose)
    source = choice.source
    return choice.model, {
        "task": index, "source_artefact": None if source is None else source.artefact_id,
        "source_family": None if source is None else source.family,
        "distance": None if source is None else source.distance,
        "models_evaluated": choice.models_evaluated, "seconds_choosing": choice.seconds_choosing}


def _summary(per_task: list[dict[str, Any]], methods: list[str]) -> dict[str, dict[str, Any]]:
    """Per method, the mean and standard deviation over tasks of the metric after each step."""
    summary = {}
    for method in methods:
        curves = torch.tensor([r["metric"] for r in per_task if r["method"] == method], dtype=torch.float64)
        std = curves.std(0) if len(curves) > 1 else torch.zeros(curves.shape[1])
        summary[method] = {"metric_mean": curves.mean(0).tolist(), "metric_std": std.tolist(),
                           "final_mean": float(curves[:, -1].mean())}
    return summary


def compare_warm_start(db: MetaDatabase, tasks: Sequence[Any], model_factory: Callable[[], nn.Module],
                       loss_fn: LossFn, inits: Mapping[str, Any],
                       metric_fn: Callable[[Callable, Batch], float] | None = None, finetune_steps: int = 20,
                       lr: float = 1e-3, optimizer: str = "adam", by: str = "both", k_candidates: int = 5,
                       backbone: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Fine-tune from several initialisations on the same unseen ``tasks`` (each with support and query)
    with the same budget (``finetune_steps`` steps of ``optimizer`` at ``lr``, through
    :func:`metalearn_kit.meta.finetune`), measuring the query metric after every step.

    Methods: ``"store"`` (the stored model :func:`warm_start` chooses from ``db``) plus one per entry of
    ``inits``, e.g. ``{"maml": maml_learner, "joint": pretrained_model, "scratch": None}``: ``None`` is a fresh
    ``model_factory()`` initialised under ``seed`` (the same for every task), an ``nn.Module`` or a learner
    with ``.model`` has its weights copied, a dict is a state dict. ``metric_fn(model, query) -> float``
    defaults to :func:`restoration_psnr` (higher is better).

    Returns ``{"steps": [0..finetune_steps], "methods", "per_task": [{"task", "method", "metric": [...],
    "support_losses": [...], "query_loss"}], "summary": {method: {"metric_mean": [...], "metric_std": [...],
    "final_mean"}}, "store": [{"task", "source_artefact", "source_family", "distance", "models_evaluated",
    "seconds_choosing"}]}`` (``metric`` has ``finetune_steps + 1`` values, after 0, 1, ... steps).
    """
    tasks = _check_comparison(tasks, inits, finetune_steps, seed)
    metric_fn = metric_fn or restoration_psnr
    methods = ["store", *inits]
    per_task, store_info = [], []
    for index, task in enumerate(tasks):
        for method in methods:
            if method == "store":  # choose only; the fine-tuning below is the same call for every method
                model, info = _store_start(db, task, index, model_factory, loss_fn, k_candidates=k_candidates,
                                           by=by, lr=lr, optimizer=optimizer, backbone=backbone, seed=seed)
                store_info.append(info)
            else:
                model = _init_model(method, inits[method], model_factory, seed)
            device = _model_device(model)
            query = _to(task.query, device)
            adapted = finetune(model, _to(task.support, device), loss_fn, steps=finetune_steps, lr=lr,
                               optimizer=optimizer, query=query, metric=metric_fn)
            per_task.append({"task": index, "method": method, "metric": [float(v) for v in adapted.query_metrics],
                             "support_losses": list(adapted.support_losses),
                             "query_loss": support_loss(adapted, query, loss_fn)})
    return {"steps": list(range(finetune_steps + 1)), "methods": methods, "per_task": per_task,
            "summary": _summary(per_task, methods), "store": store_info}
