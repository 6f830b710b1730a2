"""Same seed -> same result, bit for bit on the CPU: task samples (restoration and generation), a short
meta-training run (weights, history, adapted PSNR), an experiment's initial weights, and the benchmark rows of
tiny restoration and generation experiments (wall-time columns excluded).

Each check also moves torch's global RNG between the two runs: every random choice in the kit must go through
its own seeded ``torch.Generator``, so what ran before in the process must not matter. And a different seed
must give a different result, so the comparisons cannot pass by comparing constants.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from metalearn_kit import pretrained
from metalearn_kit.data import ClassImageSource, photos
from metalearn_kit.evaluation import restoration as R
from metalearn_kit.evaluation.generation import evaluate_generation
from metalearn_kit.evaluation.metrics import psnr
from metalearn_kit.meta import MAML, MetaTrainConfig, Reptile, meta_train
from metalearn_kit.models.conv import ConvRestorer
from metalearn_kit.recipes import build_experiment, generation_config
from metalearn_kit.tasks import FewShotGenerationTasks, RestorationTasks

torch.set_num_threads(1)

FAMILIES = ("gaussian_noise", "poisson_noise", "gaussian_blur", "motion_blur", "inpainting", "super_resolution",
            "jpeg")


def _disturb_global_rng(seed: int) -> None:
    """Move torch's global RNG to an unrelated state, as other code running in between would."""
    torch.manual_seed(seed)
    torch.rand(seed % 7 + 1)


def _same(a, b) -> bool:
    """Exact equality of nested results: tensors bit-identical (same dtype/shape), floats equal (NaN == NaN)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and \
            torch.equal(a, b)
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _class_source(seed: int = 0, classes: int = 6, per_class: int = 12) -> ClassImageSource:
    g = torch.Generator().manual_seed(seed)
    pixels = (torch.rand(classes * per_class, 1, 28, 28, generator=g) > 0.7).to(torch.uint8) * 255
    labels = torch.arange(classes).repeat_interleave(per_class)
    return ClassImageSource(f"random-{seed}", pixels, labels, [f"class{i}" for i in range(classes)])


def _batch_parts(batch) -> tuple:
    return (batch.support, batch.query, batch.infos)


# ------------------------------------------------------------------ tasks

@pytest.fixture(scope="module")
def patches():
    return photos("train", patch_size=32)


@pytest.mark.parametrize("family", FAMILIES)
def test_restoration_tasks_same_seed_same_tasks(patches, family):
    tasks = RestorationTasks(patches, family, shots=3, queries=2, split="train")
    _disturb_global_rng(1)
    first = _batch_parts(tasks.sample_batch(3, generator=17))
    _disturb_global_rng(2)
    second = _batch_parts(tasks.sample_batch(3, generator=17))
    # a fresh distribution object with the same arguments samples the same tasks too
    third = _batch_parts(RestorationTasks(patches, family, shots=3, queries=2, split="train").sample_batch(3, 17))
    assert _same(first, second) and _same(first, third)
    other = _batch_parts(tasks.sample_batch(3, generator=18))
    assert not _same(first[0], other[0])


def test_generation_tasks_same_seed_same_tasks():
    source = _class_source()
    tasks = FewShotGenerationTasks(source, shots=2, queries=3, ways=2)
    _disturb_global_rng(3)
    first = _batch_parts(tasks.sample_batch(4, generator=11))
    _disturb_global_rng(4)
    second = _batch_parts(FewShotGenerationTasks(source, shots=2, queries=3, ways=2).sample_batch(4, generator=11))
    assert _same(first, second)
    assert first[1][1].dtype == torch.int64  # labels stay int64
    other = _batch_parts(tasks.sample_batch(4, generator=12))
    assert not _same(first[2], other[2])  # other classes were drawn


# ------------------------------------------------------------------ short meta-training

def _mse(model, batch):
    return F.mse_loss(model(batch[0]), batch[1])


def _short_meta_training(seed: int, algorithm: str) -> dict:
    sampler = RestorationTasks(photos("train", patch_size=16), "gaussian_noise", shots=2, queries=2, split="train")
    torch.manual_seed(seed)  # the initial weights
    model = ConvRestorer(channels=1, width=8, depth=3)
    learner = (MAML(model, inner_lr=0.05, inner_steps=2, backend="func") if algorithm == "maml"
               else Reptile(model, inner_lr=0.05, inner_steps=2, backend="higher"))
    _disturb_global_rng(seed + 100)  # training must not depend on the global RNG either
    config = MetaTrainConfig(iterations=4, meta_batch=2, meta_lr=1e-3, val_every=2, val_tasks=2, progress=False)
    history = meta_train(learner, sampler, _mse, config, generator=seed, val_sampler=sampler)
    test = sampler.sample_batch(2, generator=seed + 1)
    scores = []
    for task in test:
        adapted = learner.adapt(task.support, _mse, steps=3)
        with torch.no_grad():
            scores.append(psnr(adapted(task.query[0]).clamp(0, 1), task.query[1], reduction="none"))
    return {"weights": {n: p.detach().clone() for n, p in learner.named_parameters()},
            "history": {k: v for k, v in history.items() if k != "wall_time_s"},
            "psnr": scores}


@pytest.mark.parametrize("algorithm", ["maml", "reptile"])
def test_short_meta_training_is_bit_identical(algorithm):
    first = _short_meta_training(3, algorithm)
    second = _short_meta_training(3, algorithm)
    assert _same(first["weights"], second["weights"])
    assert _same(first["history"], second["history"])
    assert _same(first["psnr"], second["psnr"])
    assert all(torch.isfinite(s).all() for s in first["psnr"])
    other = _short_meta_training(4, algorithm)
    assert not _same(first["history"]["meta_loss"], other["history"]["meta_loss"])


def test_experiment_initial_weights_depend_on_the_seed_only():
    _disturb_global_rng(5)
    first = build_experiment("denoise", profile="fast", seed=2).model.state_dict()
    _disturb_global_rng(6)
    second = build_experiment("denoise", profile="fast", seed=2).model.state_dict()
    assert _same(dict(first), dict(second))
    assert not _same(dict(first), dict(build_experiment("denoise", profile="fast", seed=3).model.state_dict()))


# ------------------------------------------------------------------ benchmark rows

def _without_wall_time(rows: list[dict]) -> list[dict]:
    """Drop wall-time rows and columns: everything else in a benchmark row must repeat exactly."""
    kept = []
    for row in rows:
        if "time" in str(row.get("metric", "")) or "seconds" in str(row.get("metric", "")):
            continue
        kept.append({k: v for k, v in row.items() if "time" not in k and "seconds" not in k})
    return kept


TINY_DENOISING = {"width": 4, "depth": 2, "shots": 1, "queries": 1, "meta_iterations": 2, "joint_iterations": 2,
                  "meta_batch": 1, "test_tasks": 1, "steps": [0, 1]}


def test_restoration_benchmark_rows_repeat(monkeypatch, tmp_path):
    monkeypatch.setenv(pretrained.DIR_ENV, str(tmp_path))  # nothing shipped is read or written
    runs = []
    for disturb in (7, 8):
        _disturb_global_rng(disturb)
        runs.append(_without_wall_time(R.few_shot_denoising(profile="fast", seed=1, sizes=TINY_DENOISING,
                                                            classical=False)))
    assert runs[0] and _same(runs[0], runs[1])
    methods = {r["method"] for r in runs[0]}
    assert {"meta-init (MAML)", "joint pretrained + full-strength fine-tuning",
            "scratch + full-strength fine-tuning"} <= methods
    assert {r["sources"]["meta"] for r in runs[0]} == {"trained"}  # both runs trained, nothing was reused


TINY_GENERATION = dict(feature_steps=4, meta_iterations=2, meta_batch=2, train_shots=2, train_queries=2, inner_steps=1,
                       statistician_iterations=2, figr_iterations=2, figr_inner_steps=1, eval_tasks=2, shots=[2],
                       steps=[0, 1], iw_samples=2, sample_count=4, eval_queries=4, ways=3, width=4, hidden=8,
                       latent=4, gan_latent=4)


def test_generation_benchmark_rows_repeat(monkeypatch, tmp_path):
    config = generation_config("fast", **TINY_GENERATION)
    sources = (_class_source(0), _class_source(1))
    runs = []
    for run in range(2):
        # a fresh cache per run: both runs train every model (featnet, MAML, statistician) from scratch
        monkeypatch.setenv("METALEARN_KIT_CACHE_DIR", str(tmp_path / f"cache{run}"))
        _disturb_global_rng(9 + run)
        result = evaluate_generation(config, ["maml", "scratch", "statistician"], sources=sources)
        runs.append(_without_wall_time(result["rows"]))
    assert runs[0] and _same(runs[0], runs[1])
    # the learned methods asked for, beside the trivial and reference rows every table carries
    assert {r["method"] for r in runs[0] if r["kind"] not in ("trivial", "reference")} == {"maml", "scratch",
                                                                                          "statistician"}
    assert {r["kind"] for r in runs[0]} >= {"trivial"}
    assert all(math.isfinite(r["value"]) for r in runs[0])
    assert sorted(p.name for p in (tmp_path / "cache1").rglob("*.safetensors"))  # the second run trained too
