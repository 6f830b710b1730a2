"""Issue 31: trivial baselines, metrics copies cannot pass (with known answers), the downstream classifier, the
targets' verdicts on made-up rows, and the real Omniglot subset split by alphabet."""

import math
from pathlib import Path

import pytest
import torch

from metalearn_kit.evaluation.downstream import episode_accuracy, episode_classes, prototype_classifier_accuracy
from metalearn_kit.evaluation.generation_metrics import (
    aligned_distance,
    bernoulli_draws,
    memorisation_ratio,
    precision_recall,
)
from metalearn_kit.evaluation.generation_targets import check_targets
from metalearn_kit.evaluation.trivial_generators import (
    JitterConfig,
    affine_jitter,
    blurred_copies,
    gaussian_blur,
    support_copies,
    support_mean,
)

torch.set_num_threads(1)
SMALL_OMNIGLOT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "omniglot"


def _strokes(template: torch.Tensor, g: torch.Generator, wobble: float = 2.5) -> torch.Tensor:
    """One "drawing" ``[1, 28, 28]`` of a letter: a polyline through ``template [P, 2]`` points, each moved by
    the drawer (independent drawers: held-out drawings are as new as the query drawings)."""
    points = template + wobble * torch.randn(template.shape, generator=g)
    image = torch.zeros(28, 28)
    for a, b in zip(points[:-1], points[1:], strict=True):
        for t in torch.linspace(0, 1, 40):
            y, x = (a + t * (b - a)).round().long().clamp(1, 26).tolist()
            image[y - 1:y + 1, x - 1:x + 1] = 1
    return image[None]


def _letter(seed: int, drawers: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    template = 4 + 20 * torch.rand(5, 2, generator=g)
    return torch.stack([_strokes(template, g) for _ in range(drawers)])


# ---------------------------------------------------------------------------------------- trivial generators


def test_trivial_generators_copy_blur_average_and_jitter_the_support():
    support = _letter(0, 3)
    copies = support_copies(support, 7)
    assert copies.shape == (7, 1, 28, 28) and torch.equal(copies[3], support[0]) and torch.equal(copies[5], support[2])
    assert torch.allclose(support_mean(support, 4)[2], support.mean(0))
    blurred = blurred_copies(support, 3)
    assert not torch.equal(blurred, support) and (blurred.sum() - support.sum()).abs() / support.sum() < 0.1
    impulse = torch.zeros(1, 1, 15, 15)
    impulse[0, 0, 7, 7] = 1
    kernel = gaussian_blur(impulse, 0.7)[0, 0]
    assert kernel.sum() == pytest.approx(1.0, abs=1e-5) and kernel[7, 8] / kernel[7, 7] == pytest.approx(
        math.exp(-1 / (2 * 0.49)), rel=1e-4)
    jittered = affine_jitter(support, 6, torch.Generator().manual_seed(0))
    assert jittered.shape == (6, 1, 28, 28) and 0 <= jittered.min() and jittered.max() <= 1
    assert not torch.allclose(jittered, support_copies(support, 6))
    still = affine_jitter(support, 3, torch.Generator().manual_seed(0), JitterConfig(0.0, 0.0, 0.0, 0.0))
    assert torch.allclose(still, support, atol=1e-5)  # the identity map with every range 0


def test_jitter_config_and_generators_refuse_bad_input_naming_it():
    with pytest.raises(ValueError, match="rotation_deg must be >= 0"):
        JitterConfig(rotation_deg=-1)
    with pytest.raises(ValueError, match="shift <= 0.5"):
        JitterConfig(shift=0.7)
    with pytest.raises(ValueError, match="count must be >= 1"):
        support_copies(torch.zeros(2, 1, 8, 8), 0)
    with pytest.raises(ValueError, match="support must have values in"):
        support_mean(torch.full((2, 1, 8, 8), 2.0), 3)


# ------------------------------------------------------------------------------------------ metrics


def test_memorisation_is_zero_for_copies_about_one_for_real_drawings_and_low_for_blurred_copies():
    ratios = {"copies": [], "blurred": [], "real": [], "jitter": []}
    for letter in range(8):
        drawings = _letter(100 + letter, 25)
        support, query, held_out = drawings[:5], drawings[5:15], drawings[15:]
        ratios["copies"].append(memorisation_ratio(support_copies(support, 10), support, query))
        ratios["blurred"].append(memorisation_ratio(blurred_copies(support, 10), support, query))
        ratios["real"].append(memorisation_ratio(held_out, support, query))
        ratios["jitter"].append(memorisation_ratio(affine_jitter(support, 10, torch.Generator().manual_seed(letter)),
                                                   support, query))
    mean = {name: sum(v) / len(v) for name, v in ratios.items()}
    assert mean["copies"] == pytest.approx(0.0, abs=1e-6)
    assert 0.8 < mean["real"] < 1.25
    assert mean["blurred"] < 0.15 and mean["jitter"] < mean["real"]


def test_aligned_distance_forgives_small_shifts_but_not_other_drawings():
    drawing = _letter(5, 2)
    shifted = torch.roll(drawing[:1], shifts=(2, -1), dims=(2, 3))
    assert float(aligned_distance(shifted, drawing[:1])) < 0.02 < float(aligned_distance(drawing[1:], drawing[:1]))
    with pytest.raises(ValueError, match="real images coincide with the support"):
        memorisation_ratio(drawing, drawing, drawing)


def test_precision_recall_of_a_set_against_itself_is_one_and_copies_have_no_recall():
    real = torch.randn(40, 6, generator=torch.Generator().manual_seed(0))
    assert precision_recall(real, real) == (1.0, 1.0)
    copies = real[:2].repeat(16, 1)  # 32 samples, two points: their k-NN radii are 0
    precision, recall = precision_recall(copies, real)
    assert precision == 1.0 and recall == pytest.approx(2 / 40)
    assert precision_recall(real + 100.0, real) == (0.0, 0.0)
    with pytest.raises(ValueError, match="real_features must be a"):
        precision_recall(real, real[:3])


def test_bernoulli_draws_are_binary_with_the_given_means():
    means = torch.full((200, 1, 10, 10), 0.3)
    draws = bernoulli_draws(means, torch.Generator().manual_seed(0))
    assert set(draws.unique().tolist()) == {0.0, 1.0} and float(draws.mean()) == pytest.approx(0.3, abs=0.01)


# ------------------------------------------------------------------------------------- downstream


def test_downstream_classifier_uses_support_and_samples():
    support = [torch.tensor([[0.0, 0.0]]), torch.tensor([[4.0, 0.0]])]
    queries = [torch.tensor([[1.5, 0.0]]), torch.tensor([[4.0, 0.0]])]
    none = [torch.zeros(0, 2), torch.zeros(0, 2)]
    assert prototype_classifier_accuracy(support, none, queries) == [1.0, 1.0]
    # samples pulling class 0's prototype to (3, 0): its query is now nearer class 1? no: 1.5 is nearer 3
    helpful = [torch.tensor([[2.0, 0.0]] * 3), torch.zeros(0, 2)]
    assert prototype_classifier_accuracy(support, helpful, queries) == [1.0, 1.0]
    harmful = [torch.tensor([[-9.0, 0.0]] * 3), torch.zeros(0, 2)]
    assert prototype_classifier_accuracy(support, harmful, queries) == [0.0, 1.0]
    assert episode_classes(4, 3) == [[0, 1, 2], [1, 2, 3], [2, 3, 0], [3, 0, 1]]
    tasks = [{"pool_features": torch.tensor([[float(10 * c), 0.0]]), "query_features": torch.tensor(
        [[float(10 * c) + 1, 0.0]])} for c in range(4)]
    assert episode_accuracy(tasks, [torch.zeros(0, 2)] * 4, shots=1, ways=3) == [1.0] * 4
    with pytest.raises(ValueError, match="ways must be <= 4"):
        episode_classes(4, 5)


# ------------------------------------------------------------------------------------ inner loops


def test_dev_tasks_never_use_test_classes_and_inner_loops_are_checked():
    from test_generation_metrics import fake_class_source

    from metalearn_kit.evaluation.inner_loop_protocol import InnerLoop, candidates, dev_tasks
    from metalearn_kit.recipes import generation_config

    source = fake_class_source(6, 12, seed=0)
    tasks = dev_tasks(source, ["class0", "class3"], count=10, shots=2, queries=3, seed=0)
    assert len(tasks) == 4 and all(s.shape == (2, 1, 28, 28) and q.shape == (3, 1, 28, 28) for s, q in tasks)
    test_images = torch.cat([source.images_of(0), source.images_of(3)])
    assert not any((test_images[:, None] == s[None]).flatten(2).all(2).any() for s, _ in tasks)
    config = generation_config("fast")
    assert [c.label for c in candidates(config)] == [f"sgd {config.inner_lr:g} clip {config.inner_grad_clip:g}",
                                                     "adam 0.0003", "adam 0.001", "adam 0.003"]
    with pytest.raises(ValueError, match="optimizer must be one of"):
        InnerLoop("lbfgs", 1e-3)
    with pytest.raises(ValueError, match="lr must be > 0"):
        InnerLoop("adam", 0.0)


# ---------------------------------------------------------------------------------------- targets


def _row(method: str, kind: str, source: str, shots: int, steps: int, metric: str, per_task: list[float]):
    return {"method": method, "kind": kind, "source": source, "shots": shots, "steps": steps, "metric": metric,
            "value": sum(per_task) / len(per_task), "per_task": per_task}


def _table(learned_gain: float, copies_gain: float) -> list[dict]:
    noise = [0.01, -0.02, 0.015, -0.01, 0.0, 0.02, -0.015, 0.005]
    rows = []
    for source in ("glyphs", "omniglot"):
        for shots in (1, 5):
            for turn, (method, kind, steps, gain) in enumerate((("affine_jitter", "trivial", 0, 0.0),
                                                                ("copies", "trivial", 0, copies_gain),
                                                                ("cavia", "inner_loop", 10, learned_gain))):
                own = noise[3 * turn:] + noise[:3 * turn]  # each method its own noise on the same tasks
                rows.append(_row(method, kind, source, shots, steps, "downstream_accuracy",
                                 [0.6 + gain + n for n in own]))
        for method, kind, nll in (("cavia", "inner_loop", 110.0), ("maml", "inner_loop", 130.0),
                                  ("joint", "joint", 120.0)):
            rows.append(_row(method, kind, source, 5, 10, "query_nll_nats", [nll + n for n in noise]))
    return rows


def test_targets_hold_only_for_clear_paired_gains_and_never_for_a_trivial_row():
    no_trivial, nll, learned, wall = check_targets(_table(0.1, 0.0), wall_s=600)
    assert no_trivial["holds"] is True and nll["holds"] is True and learned["holds"] is True
    assert wall["holds"] is True and "10.0 min" in wall["detail"] and "NLL(cavia)" in nll["detail"]
    _, _, learned, wall = check_targets(_table(0.001, 0.0), wall_s=1000)
    assert learned["holds"] is False and wall["holds"] is False  # within noise of jitter: not a win
    no_trivial, *_ = check_targets(_table(0.0, 0.1))
    assert no_trivial["holds"] is False and "copies" in no_trivial["detail"]
    glyphs_only = [r for r in _table(0.1, 0.0) if r["source"] == "glyphs"]
    assert check_targets(glyphs_only)[1]["holds"] is None  # NLL on real Omniglot not run: not measured


# ---------------------------------------------------------------------------------------- real Omniglot


@pytest.mark.skipif(not (SMALL_OMNIGLOT / "images_background_small1.zip").exists(),
                    reason="the shared Omniglot subset (../shared/datasets/omniglot) is not here")
def test_small_omniglot_subset_loads_and_splits_by_alphabet(tmp_path, monkeypatch):
    from metalearn_kit.commands.bench_generation import omniglot_test_split
    from metalearn_kit.data import omniglot

    monkeypatch.setenv("METALEARN_KIT_CACHE_DIR", str(tmp_path))  # decoded arrays: not beside the shared zip
    source = omniglot(SMALL_OMNIGLOT, "background_small1", download=False)
    assert (source.num_classes, len(source.alphabets), source.images_per_class) == (136, 5, 20)
    assert source.images_of(0).shape == (20, 1, 28, 28) and 0.02 < float(source.images_of(0).mean()) < 0.3
    test, dev = omniglot_test_split(source, seed=0)
    assert len(test.alphabets) == 2 and len(dev.alphabets) == 3 and not set(test.alphabets) & set(dev.alphabets)
    assert test.num_classes >= 24 and test.num_classes + dev.num_classes == 136
    assert all(name.split("/")[0] in test.alphabets for name in test.classes)
    assert all(dev.alphabets[a] == name.split("/")[0] for name, a in zip(dev.classes, dev.class_alphabet, strict=True))
    assert torch.equal(test.images_of(0), source.images_of(source.classes.index(test.classes[0])))
