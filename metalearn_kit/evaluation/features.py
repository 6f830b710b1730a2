"""Sample-quality metrics without downloaded networks.

A small classifier (:class:`FeatureNet`) is trained on the *background* classes only; its penultimate
activations are the feature space for two metrics on *unseen* classes:

- :func:`prototype_accuracy`: generated samples of a target class are assigned to the nearest class
  prototype (mean feature of real images) among the target and a few distractor classes; the fraction
  assigned to the target measures whether samples look like *that* class (chance = 1 / ways).
- :func:`frechet_distance`: the Frechet distance between Gaussians fitted to two feature sets
  (the FID formula, in this small feature space): ``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_float, check_images, check_int
from ..config import make_generator

__all__ = ["FeatureNet", "classification_accuracy", "extract_features", "frechet_distance", "prototype_accuracy",
           "train_feature_net"]


class FeatureNet(nn.Module):
    """Small CNN classifier ``[N, C, 28, 28] -> logits [N, num_classes]``; :meth:`features` gives the
    penultimate ``[N, feature_dim]`` activations. GroupNorm, no BatchNorm. Sizes 24..31 also work
    (three 2x poolings leave a 3x3 map)."""

    def __init__(self, num_classes: int, channels: int = 1, width: int = 32, feature_dim: int = 64):
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, minimum=2)
        self.feature_dim = check_int("feature_dim", feature_dim, minimum=1)
        check_int("channels", channels, minimum=1)
        check_int("width", width, minimum=1)

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(8 if cout % 8 == 0 else 1, cout),
                    nn.ReLU(), nn.MaxPool2d(2)]

        self.trunk = nn.Sequential(*block(channels, width), *block(width, 2 * width), *block(2 * width, 2 * width),
                                   nn.Flatten(), nn.Linear(2 * width * 9, feature_dim), nn.ELU())
        self.classifier = nn.Linear(feature_dim, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.trunk(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images))


def _augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random shifts of up to 2 pixels (keeps the features from keying on exact position)."""
    padded = F.pad(images, (2, 2, 2, 2))
    dx, dy = (int(v) for v in torch.randint(0, 5, (2,), generator=generator))
    size = images.shape[-1]
    return padded[..., dy:dy + size, dx:dx + size]


def train_feature_net(source, steps: int = 600, batch_size: int = 64, lr: float = 2e-3, feature_dim: int = 64,
                      width: int = 32, holdout_per_class: int = 2, generator: torch.Generator | int | None = 0,
                      device: torch.device | str | None = None) -> tuple[FeatureNet, dict]:
    """Train a :class:`FeatureNet` to classify the classes of ``source`` (a ``ClassImageSource``, the
    background split). The last ``holdout_per_class`` images of every class are held out to measure accuracy.

    Trains on ``device`` (default: CPU) and returns the net on the CPU.
    Returns ``(net, history)``; ``history`` has ``loss`` (per step), ``train_accuracy`` and
    ``holdout_accuracy`` (fractions) and ``steps``.
    """
    check_int("steps", steps, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    check_float("lr", lr, minimum=0.0, strict_min=True)
    check_int("holdout_per_class", holdout_per_class, minimum=0)
    if not hasattr(source, "images_of") or not hasattr(source, "num_classes"):
        raise TypeError(f"source must be a ClassImageSource (with images_of and num_classes), "
                        f"got {type(source).__name__}")
    if source.images_per_class <= holdout_per_class:
        raise ValueError(f"holdout_per_class must be < images_per_class ({source.images_per_class}), "
                         f"got {holdout_per_class}")
    gen = make_generator(generator)
    per_class = [source.images_of(c) for c in range(source.num_classes)]
    split = source.images_per_class - holdout_per_class
    train_x = torch.cat([x[:split] for x in per_class])
    train_y = torch.arange(source.num_classes).repeat_interleave(split)
    hold_x = torch.cat([x[split:source.images_per_class] for x in per_class]) if holdout_per_class else None
    hold_y = torch.arange(source.num_classes).repeat_interleave(holdout_per_class)

    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))  # weight init from the generator
    net = FeatureNet(source.num_classes, channels=source.channels, width=width, feature_dim=feature_dim)
    device = torch.device(device) if device is not None else torch.device("cpu")
    net = net.to(device)
    train_x, train_y = train_x.to(device), train_y.to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    losses = []
    net.train()
    for _ in range(steps):
        index = torch.randint(0, train_x.shape[0], (batch_size,), generator=gen).to(device)
        loss = F.cross_entropy(net(_augment(train_x[index], gen)), train_y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
    net.eval()
    net = net.cpu()
    train_x, train_y = train_x.cpu(), train_y.cpu()
    history = {"loss": losses, "steps": steps, "train_accuracy": classification_accuracy(net, train_x, train_y)}
    history["holdout_accuracy"] = (classification_accuracy(net, hold_x, hold_y) if hold_x is not None
                                   else float("nan"))
    return net, history


@torch.no_grad()
def classification_accuracy(net: FeatureNet, images: torch.Tensor, labels: torch.Tensor, chunk: int = 512) -> float:
    """Fraction of ``images`` the classifier labels correctly."""
    correct = 0
    for start in range(0, images.shape[0], chunk):
        correct += int((net(images[start:start + chunk]).argmax(1) == labels[start:start + chunk]).sum())
    return correct / max(1, images.shape[0])


@torch.no_grad()
def extract_features(net: FeatureNet, images: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """Penultimate features ``[N, feature_dim]`` of ``images [N, C, H, W]`` in [0, 1]."""
    check_images("images", images)
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    out = torch.cat([net.features(images[s:s + chunk].to(device)) for s in range(0, images.shape[0], chunk)])
    net.train(was_training)
    return out


def prototype_accuracy(sample_features: torch.Tensor, class_features: list[torch.Tensor], target: int = 0) -> float:
    """Fraction of ``sample_features [N, D]`` whose nearest prototype (Euclidean) is class ``target``.

    ``class_features[i]`` are features ``[M_i, D]`` of real images of class ``i``; the prototype of class
    ``i`` is their mean. With ``len(class_features) = ways``, chance is ``1 / ways``.
    """
    if sample_features.dim() != 2 or sample_features.shape[0] == 0:
        raise ValueError(f"sample_features must be a non-empty [N, D] tensor, got {tuple(sample_features.shape)}")
    if len(class_features) < 2:
        raise ValueError(f"class_features must hold at least 2 classes, got {len(class_features)}")
    check_int("target", target, 0, len(class_features) - 1)
    if any(f.dim() != 2 or f.shape[0] == 0 or f.shape[1] != sample_features.shape[1] for f in class_features):
        raise ValueError(f"class_features must be non-empty [M, {sample_features.shape[1]}] tensors, got "
                         f"{[tuple(f.shape) for f in class_features]}")
    prototypes = torch.stack([f.mean(0) for f in class_features])
    nearest = torch.cdist(sample_features.double(), prototypes.double()).argmin(1)
    return float((nearest == target).double().mean())


def _sqrtm_psd_product_trace(cov_a: np.ndarray, cov_b: np.ndarray) -> float:
    """``Tr((A B)^(1/2))`` for symmetric PSD ``A, B``, computed stably as ``Tr((A^(1/2) B A^(1/2))^(1/2))``
    (a symmetric PSD matrix, so its square root is real: sum of sqrt of its eigenvalues)."""
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = root_a @ cov_b @ root_a
    middle = (middle + middle.T) / 2
    return float(np.sqrt(np.clip(np.linalg.eigvalsh(middle), 0, None)).sum())


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to ``features_a [N, D]`` and ``features_b [M, D]``:
    ``||mu_a - mu_b||^2 + Tr(S_a) + Tr(S_b) - 2 Tr((S_a S_b)^(1/2))`` (unbiased covariances, ``N, M >= 2``).

    Identical sets give 0 (up to rounding); two Gaussians with equal covariance give ``||mu_a - mu_b||^2``.
    With few samples it is biased upwards, so compare methods only at equal ``N`` and ``M``.
    """
    for name, f in (("features_a", features_a), ("features_b", features_b)):
        if not isinstance(f, torch.Tensor) or f.dim() != 2 or f.shape[0] < 2:
            raise ValueError(f"{name} must be a [N, D] tensor with N >= 2, got "
                             f"{tuple(getattr(f, 'shape', ()))}")
    if features_a.shape[1] != features_b.shape[1]:
        raise ValueError(f"features_a and features_b must have the same feature size, got "
                         f"{features_a.shape[1]} and {features_b.shape[1]}")
    a = features_a.detach().double().cpu().numpy()
    b = features_b.detach().double().cpu().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    value = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b)
                  - 2 * _sqrtm_psd_product_trace(cov_a, cov_b))
    return max(value, 0.0)  # tiny negative values are rounding
