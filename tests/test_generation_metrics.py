"""Sample-quality metrics: Frechet distance and prototype accuracy on inputs with known answers, and the
background-trained feature network on a small fake class source."""

import pytest
import torch

from metalearn_kit.data.base import ClassImageSource
from metalearn_kit.evaluation.features import extract_features, frechet_distance, prototype_accuracy
from metalearn_kit.models.feature_net import FeatureNet
from metalearn_kit.recipes.feature_net import train_feature_net

torch.set_num_threads(1)


def fake_class_source(classes: int = 6, per_class: int = 12, seed: int = 0) -> ClassImageSource:
    """Classes of distinct stroke patterns (bar rows/columns/diagonals), jittered per image."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.zeros(classes * per_class, 1, 28, 28, dtype=torch.uint8)
    labels = torch.arange(classes).repeat_interleave(per_class)
    for i, c in enumerate(labels.tolist()):
        dy, dx = torch.randint(-2, 3, (2,), generator=g).tolist()
        kind, pos = c % 3, 6 + 5 * (c // 3)
        image = torch.zeros(28, 28)
        if kind == 0:
            image[pos + dy:pos + dy + 3, 4:24] = 1
        elif kind == 1:
            image[4:24, pos + dx:pos + dx + 3] = 1
        else:
            idx = torch.arange(4, 24)
            image[(idx + dy).clamp(0, 27), (idx + pos - 6 + dx).clamp(0, 27)] = 1
            image[(idx + dy + 1).clamp(0, 27), (idx + pos - 6 + dx).clamp(0, 27)] = 1
        pixels[i, 0] = (image * 255).to(torch.uint8)
    return ClassImageSource("fake", pixels, labels, [f"class{c}" for c in range(classes)])


def test_frechet_identical_sets_is_zero():
    x = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)


def test_frechet_of_shifted_gaussians_is_squared_shift():
    # same samples shifted by delta: equal covariances, so the distance is exactly ||delta||^2
    x = torch.randn(300, 5, generator=torch.Generator().manual_seed(1))
    delta = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0])
    assert frechet_distance(x, x + delta) == pytest.approx(float(delta.pow(2).sum()), rel=1e-6)


def test_frechet_of_scaled_gaussians_matches_formula():
    # b = 2a: mu_b = 2 mu_a, S_b = 4 S_a, so FD = ||mu_a||^2 + Tr(S_a) (1 + 4 - 2 * 2) = ||mu_a||^2 + Tr(S_a)
    a = torch.randn(400, 4, generator=torch.Generator().manual_seed(2)).double() @ torch.tensor(
        [[1.0, 0.3, 0, 0], [0, 1, 0.2, 0], [0, 0, 2, 0], [0, 0, 0, 0.5]], dtype=torch.float64) + 0.7
    expected = float(a.mean(0).pow(2).sum() + torch.cov(a.T).trace())
    assert frechet_distance(a, 2 * a) == pytest.approx(expected, rel=1e-6)


def test_frechet_is_symmetric_and_rank_deficient_safe():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(6, 16, generator=g), torch.randn(9, 16, generator=g) + 1  # N < D: singular covariances
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-6)
    assert frechet_distance(a, b) > 0


def test_prototype_accuracy_known_inputs():
    classes = [torch.tensor([[0.0, 0.0], [0.2, 0.0]]), torch.tensor([[5.0, 5.0]]), torch.tensor([[-5.0, 5.0]])]
    samples = torch.tensor([[0.1, 0.1], [4.0, 4.0], [0.0, -1.0], [-4.0, 4.0]])
    assert prototype_accuracy(samples, classes, target=0) == pytest.approx(0.5)
    assert prototype_accuracy(samples, classes, target=1) == pytest.approx(0.25)
    assert prototype_accuracy(samples, classes, target=2) == pytest.approx(0.25)


def test_feature_net_learns_fake_classes():
    source = fake_class_source()
    net, history = train_feature_net(source, steps=60, batch_size=32, lr=3e-3, feature_dim=16, width=8,
                                     holdout_per_class=3, generator=0)
    assert len(history["loss"]) == 60 and history["loss"][-1] < history["loss"][0]
    assert history["holdout_accuracy"] >= 0.6  # 6 classes: chance is 1/6
    feats = extract_features(net, source.images_of(0))
    assert feats.shape == (12, 16)
    # real images of a class land nearest their own prototype far above chance
    per_class = [extract_features(net, source.images_of(c)) for c in range(5)]
    acc = prototype_accuracy(per_class[0][6:], [f[:6] for f in per_class], target=0)
    assert acc >= 0.5
    # same seed -> same network
    net2, _ = train_feature_net(source, steps=5, batch_size=8, feature_dim=16, width=8, generator=7)
    net3, _ = train_feature_net(source, steps=5, batch_size=8, feature_dim=16, width=8, generator=7)
    assert all(torch.equal(p, q) for p, q in zip(net2.parameters(), net3.parameters(), strict=True))


def test_metric_bad_inputs_name_the_argument():
    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match="features_a"):
        frechet_distance(x[:1], x)
    with pytest.raises(ValueError, match="feature size"):
        frechet_distance(x, torch.randn(5, 4))
    with pytest.raises(ValueError, match="target"):
        prototype_accuracy(x, [x, x], target=2)
    with pytest.raises(ValueError, match="class_features"):
        prototype_accuracy(x, [x])
    with pytest.raises(ValueError, match="holdout_per_class"):
        train_feature_net(fake_class_source(per_class=4), steps=1, holdout_per_class=4)
    with pytest.raises(TypeError, match="source"):
        train_feature_net([1, 2, 3], steps=1)
    with pytest.raises(ValueError, match="num_classes"):
        FeatureNet(1)
