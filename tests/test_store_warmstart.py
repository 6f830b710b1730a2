"""Task descriptors, warm starts from the meta-database, the meta-training recorder and the warm-start
comparison, on small synthetic restoration tasks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metalearn_kit.meta import MAML, MetaTrainConfig, meta_train
from metalearn_kit.store import (
    DESCRIPTOR_NAMES,
    MetaDatabase,
    StoreRecorder,
    descriptor_distance,
    estimate_noise_sigma,
    rank_by_descriptor,
    rank_by_support_loss,
    task_descriptor,
)
from metalearn_kit.tasks.task import Task
from metalearn_kit.warmstart import compare_warm_start, evaluate_tasks, restoration_psnr, warm_start

SIZE = 16


pytestmark = pytest.mark.usefixtures("one_thread")


def _clean(g: torch.Generator, n: int, size: int = SIZE) -> torch.Tensor:
    """Smooth random images with some texture, in [0.15, 0.85]."""
    x = F.interpolate(torch.rand(n, 1, size // 4, size // 4, generator=g), size=(size, size), mode="bilinear",
                      align_corners=False)
    x = x + 0.15 * torch.rand(n, 1, size, size, generator=g)
    low, high = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
    return 0.15 + 0.7 * (x - low) / (high - low)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = int(3 * sigma) + 1
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-t**2 / (2 * sigma**2))
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1))


def _degrade(family: str, clean: torch.Tensor, g: torch.Generator, level: float) -> torch.Tensor:
    if family == "denoise":
        degraded = clean + level * torch.randn(clean.shape, generator=g)
    elif family == "deblur":
        degraded = _blur(clean, level) + 0.01 * torch.randn(clean.shape, generator=g)
    elif family == "inpaint":
        degraded = clean * (torch.rand(clean.shape, generator=g) > level)
    elif family == "superres":
        degraded = F.interpolate(F.avg_pool2d(clean, int(level)), scale_factor=int(level), mode="nearest")
    else:
        raise ValueError(family)
    return degraded.clamp(0, 1)


LEVELS = {"denoise": (0.08, 0.15), "deblur": (0.8, 1.6), "inpaint": (0.2, 0.35), "superres": (2, 2)}


def make_task(family: str, seed: int, level: float | None = None, shots: int = 4, queries: int = 4,
              size: int = SIZE) -> Task:
    g = torch.Generator().manual_seed(seed)
    if level is None:
        low, high = LEVELS[family]
        level = low + (high - low) * float(torch.rand(1, generator=g))
    clean = _clean(g, shots + queries, size)
    degraded = _degrade(family, clean, g, level)
    return Task((degraded[:shots], clean[:shots]), (degraded[shots:], clean[shots:]),
                {"family": family, "level": level})


class Tiny(nn.Module):
    """A residual two-layer conv restorer (no normalisation layers)."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3, padding=1)
        self.out = nn.Conv2d(width, 1, 3, padding=1)

    def forward(self, x):
        return x + self.out(torch.relu(self.conv(x)))


def mse_loss(model, batch):
    degraded, clean = batch
    return F.mse_loss(model(degraded), clean)


def _train_on_family(family: str, seed: int, steps: int = 60) -> nn.Module:
    torch.manual_seed(seed)
    model = Tiny()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    tasks = [make_task(family, 1000 + seed * 100 + i) for i in range(6)]
    for step in range(steps):
        task = tasks[step % len(tasks)]
        opt.zero_grad()
        loss = mse_loss(model, (torch.cat([task.support[0], task.query[0]]), torch.cat([task.support[1],
                                                                                       task.query[1]])))
        loss.backward()
        opt.step()
    return model


# ------------------------------------------------------------------ descriptors


@pytest.mark.parametrize("sigma", [0.02, 0.05, 0.1, 0.2])
def test_noise_sigma_estimate_within_20_percent(sigma):
    task = make_task("denoise", seed=int(sigma * 1000), level=sigma, shots=4, size=32)
    degraded, clean = task.support
    estimate = estimate_noise_sigma(degraded, clean)
    assert abs(estimate - sigma) / sigma < 0.2, (sigma, estimate)
    assert task_descriptor(task)[DESCRIPTOR_NAMES.index("noise_sigma")] == pytest.approx(estimate)


def test_noise_sigma_ignores_blur():
    g = torch.Generator().manual_seed(3)
    clean = _clean(g, 4, 32)
    degraded = (_blur(clean, 1.5) + 0.05 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    assert abs(estimate_noise_sigma(degraded, clean) - 0.05) / 0.05 < 0.2
    # blur alone is not noise: far below the residual's own spread
    blurred = _blur(clean, 1.5)
    assert estimate_noise_sigma(blurred, clean) < 0.25 * float((blurred - clean).std())


def test_descriptor_ranks_same_family_nearest():
    families = list(LEVELS)
    stored = [make_task(f, seed=10 + i) for i, f in enumerate(families) for _ in range(1)]
    stored += [make_task(f, seed=50 + i) for i, f in enumerate(families)]
    descriptors = [task_descriptor(t) for t in stored]
    assert descriptors[0].shape == (len(DESCRIPTOR_NAMES),) and descriptors[0].dtype == torch.float64
    for i, family in enumerate(families):
        new = make_task(family, seed=900 + i)
        nearest, distance = rank_by_descriptor(task_descriptor(new), descriptors)[0]
        assert stored[nearest].info["family"] == family, (family, stored[nearest].info)
        assert distance >= 0
    a, b = descriptors[0], descriptors[1]
    assert descriptor_distance(a, b) == pytest.approx(descriptor_distance(b, a))
    assert descriptor_distance(a, a) == 0


def test_descriptor_is_deterministic_and_checks_input():
    task = make_task("deblur", seed=1)
    assert torch.equal(task_descriptor(task), task_descriptor(task.support))
    blur_transfer = task_descriptor(task)[DESCRIPTOR_NAMES.index(f"transfer_band{3}")]
    noise_transfer = task_descriptor(make_task("denoise", seed=1))[DESCRIPTOR_NAMES.index("transfer_band3")]
    assert blur_transfer < 0.5 < noise_transfer  # blur removes the highest band; noise keeps it
    g = torch.Generator().manual_seed(0)
    colour = torch.rand(3, 3, 19, 24, generator=g)  # colour, odd and non-square sizes work too
    noisy = (colour + 0.1 * torch.randn(colour.shape, generator=g)).clamp(0, 1)
    vector = task_descriptor((noisy, colour))
    assert torch.isfinite(vector).all() and vector.shape == (len(DESCRIPTOR_NAMES),)
    images, labels = torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)
    with pytest.raises(TypeError, match="restoration Task or its support tuple"):
        task_descriptor((images, labels))
    with pytest.raises(ValueError, match=r"must have \d+ entries"):
        descriptor_distance([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        task_descriptor((images * 3, images))


def test_support_loss_ranking():
    task = make_task("denoise", seed=7)
    identity = Tiny()
    nn.init.zeros_(identity.out.weight)
    nn.init.zeros_(identity.out.bias)
    spoiled = Tiny()
    nn.init.constant_(spoiled.out.bias, 0.5)
    ranking = rank_by_support_loss([spoiled, identity], task.support, mse_loss)
    assert [i for i, _ in ranking] == [1, 0] and ranking[0][1] < ranking[1][1]


# ------------------------------------------------------------------ warm start


@pytest.fixture(scope="module")
def stocked(tmp_path_factory):
    """A database with models trained per family, each adapted to 3 tasks and stored with them."""
    path = tmp_path_factory.mktemp("store") / "meta.sqlite"
    db = MetaDatabase(path)
    models = {}
    for seed, family in enumerate(("denoise", "deblur")):
        models[family] = _train_on_family(family, seed)
        recorder = StoreRecorder(db, f"joint-{family}", "tiny", config={"steps": 60}, seed=seed)
        tasks = [make_task(family, 100 + 10 * seed + i) for i in range(3)]
        evaluate_tasks(recorder, models[family], tasks, mse_loss, steps=2, lr=1e-3, metric_fn=restoration_psnr,
                       metric_name="psnr", save_models=True)
        recorder.finish({"trained_steps": 60})
    yield db, models
    db.close()


def test_warm_start_by_descriptor_evaluates_no_model(stocked):
    db, _ = stocked
    new = make_task("denoise", seed=555)
    result = warm_start(db, new, Tiny, mse_loss, by="descriptor", finetune_steps=5, lr=1e-3)
    assert result.source.family == "denoise"
    assert result.models_evaluated == 0 and result.models_loaded == 1
    assert [c.distance for c in result.candidates] == sorted(c.distance for c in result.candidates)
    assert len(result.support_losses) >= 5 and result.support_losses[-1] < result.support_losses[0]
    assert isinstance(result.model, nn.Module)
    state = torch.get_rng_state()
    warm_start(db, new, Tiny, mse_loss, by="both", finetune_steps=1)
    assert torch.equal(torch.get_rng_state(), state)  # choosing does not move the caller's random stream


def test_warm_start_by_support_loss_and_both(stocked):
    db, _ = stocked
    new = make_task("deblur", seed=556)
    every = warm_start(db, new, Tiny, mse_loss, by="support_loss", finetune_steps=2)
    assert every.models_evaluated == 6 and every.source.family == "deblur"
    assert every.source.support_loss == min(c.support_loss for c in every.candidates)
    both = warm_start(db, new, Tiny, mse_loss, by="both", k_candidates=2, finetune_steps=2)
    assert both.models_evaluated == 2 and both.source.family == "deblur"
    evaluated = [c for c in both.candidates if c.support_loss is not None]
    assert len(evaluated) == 2 and all(c.distance <= d.distance for c in evaluated for d in both.candidates
                                       if d.support_loss is None)


def test_warm_start_skips_models_that_do_not_fit(tmp_path):
    with MetaDatabase(tmp_path / "meta.sqlite") as db:
        wide_run = db.add_run("joint", "wide")
        task = make_task("denoise", seed=1)
        db.add_artefact(wide_run, db.add_task(task), Tiny(width=16))
        with pytest.warns(RuntimeWarning, match="no usable stored model"):
            result = warm_start(db, make_task("denoise", seed=2), Tiny, mse_loss, by="support_loss",
                                finetune_steps=1)
        assert result.source is None and "does not fit" in result.candidates[0].skipped
        assert result.models_evaluated == 0
        with pytest.warns(RuntimeWarning, match="no usable stored model"):
            warm_start(db, make_task("denoise", seed=2), Tiny, mse_loss, by="descriptor", finetune_steps=1)
        with pytest.warns(RuntimeWarning, match=r"considered 0"):
            assert warm_start(db, task, Tiny, mse_loss, backbone="tiny", by="both", finetune_steps=0).candidates == []
        with pytest.raises(ValueError, match="by must be one of"):
            warm_start(db, task, Tiny, mse_loss, by="nearest")

        # a usable model further away: "both" walks past the unusable one and still evaluates k usable ones
        tiny_run = db.add_run("joint", "tiny")
        far = make_task("deblur", seed=3)
        path = db.add_artefact(tiny_run, db.add_task(far), Tiny())
        both = warm_start(db, make_task("denoise", seed=2), Tiny, mse_loss, by="both", k_candidates=1,
                          finetune_steps=0)
        assert both.source.task_id == db.artefacts(run_id=tiny_run)[0]["task_id"] and both.models_evaluated == 1
        assert both.candidates[0].skipped and both.models_loaded == 2

        # a stored model whose file changed is refused, with a warning, and the next one is used
        path.write_bytes(path.read_bytes()[:-4] + b"\0\0\0\0")
        with pytest.warns(RuntimeWarning) as caught:
            tampered = warm_start(db, far, Tiny, mse_loss, by="support_loss", finetune_steps=0)
        messages = [str(w.message) for w in caught]
        assert any("changed since it was recorded" in m for m in messages)
        assert any("no usable stored model" in m for m in messages)
        assert tampered.source is None and "changed since" in tampered.candidates[1].skipped


def test_compare_warm_start(stocked):
    db, models = stocked
    unseen = [make_task("denoise", seed=700 + i) for i in range(2)]
    torch.manual_seed(0)
    report = compare_warm_start(db, unseen, Tiny, mse_loss, {"other_family": models["deblur"], "scratch": None},
                                finetune_steps=4, lr=1e-3, by="descriptor")
    assert report["methods"] == ["store", "other_family", "scratch"] and report["steps"] == [0, 1, 2, 3, 4]
    assert len(report["per_task"]) == 6 and all(len(r["metric"]) == 5 for r in report["per_task"])
    assert [s["source_family"] for s in report["store"]] == ["denoise", "denoise"]
    summary = report["summary"]
    # the store's denoise model starts (and ends) ahead of models that never saw denoising
    assert summary["store"]["metric_mean"][0] > summary["scratch"]["metric_mean"][0]
    assert summary["store"]["final_mean"] > summary["other_family"]["final_mean"]
    assert all(math.isfinite(v) for s in summary.values() for v in s["metric_mean"])
    # same arguments, same numbers, whatever torch's global RNG did in between
    torch.manual_seed(123)
    again = compare_warm_start(db, unseen, Tiny, mse_loss, {"other_family": models["deblur"], "scratch": None},
                               finetune_steps=4, lr=1e-3, by="descriptor")
    assert again["summary"] == summary


# ------------------------------------------------------------------ the recorder


def _sampler(n: int, generator: torch.Generator) -> list[Task]:
    seeds = torch.randint(0, 10**6, (n,), generator=generator).tolist()
    return [make_task("denoise", seed=s) for s in seeds]


def test_recorder_with_meta_train_and_evaluation(tmp_path):
    with MetaDatabase(tmp_path / "meta.sqlite") as db:
        torch.manual_seed(0)
        learner = MAML(Tiny(), inner_lr=0.05, inner_steps=2, first_order=True)
        recorder = StoreRecorder(db, "fomaml", "tiny", config={"inner_steps": 2}, seed=0)
        history = meta_train(learner, _sampler, mse_loss,
                             MetaTrainConfig(iterations=3, meta_batch=2, meta_lr=1e-3, progress=False), store=recorder)
        run = db.run(recorder.run_id)
        assert run["status"] == "finished" and recorder.finished
        assert run["history"]["meta_loss"] == history["meta_loss"]
        assert run["final_metrics"]["iteration"] == 3
        assert run["config"]["inner_steps"] == 2 and "learner" in run["config"]["meta_train"]

        tasks = [make_task("denoise", seed=40 + i) for i in range(3)]
        ids = evaluate_tasks(recorder, learner, tasks, mse_loss, metric_fn=restoration_psnr, metric_name="psnr")
        assert len(set(ids)) == 3
        curve = db.learning_curve(ids[0], metric="psnr")[recorder.run_id]
        assert [step for step, _ in curve] == [0, 1, 2]
        [best] = db.best_runs(family="denoise", metric="psnr")
        assert best["run_id"] == recorder.run_id and best["step"] == 2 and best["n_tasks"] == 3
        recorder.finish()  # keeps the history and final metrics recorded by meta_train
        assert db.run(recorder.run_id)["history"]["meta_loss"] == history["meta_loss"]


def test_recorder_batches_and_failure(tmp_path):
    path = tmp_path / "meta.sqlite"
    tasks = [make_task("inpaint", seed=i) for i in range(2)]
    with pytest.raises(RuntimeError, match="boom"), StoreRecorder(path, "maml", "tiny", seed=1) as recorder:
        ids = recorder.record(0, tasks, [{"psnr": [20.0, 22.0]}, {"psnr": [19.0, float("nan"), 23.0]}],
                              model_states=[Tiny(), None])
        recorder.record_task_results({"family": "inpaint", "note": "info only"}, {"query_loss": [0.5]})
        raise RuntimeError("boom")
    with MetaDatabase(path) as db:
        run = db.run_record(recorder.run_id)
        assert run["status"] == "failed"
        assert run["n_results"] == 5  # the NaN step is skipped, not stored
        assert run["results"]["psnr"][2]["mean"] == 23.0
        assert [a["task_id"] for a in run["artefacts"]] == [ids[0]]
    with pytest.raises(ValueError, match="one entry per task"):
        StoreRecorder(path, "maml", "tiny").record(1, tasks, [{"psnr": [1.0]}])
