"""Sample-quality metrics without downloaded networks.

A small classifier (:class:`~metalearn_kit.models.feature_net.FeatureNet`, trained on the *background* classes
only by :func:`metalearn_kit.recipes.feature_net.train_feature_net`) gives, with its penultimate activations, the
feature space for two metrics on *unseen* classes:

- :func:`prototype_accuracy`: generated samples of a target class are assigned to the nearest class
  prototype (mean feature of real images) among the target and a few distractor classes; the fraction
  assigned to the target measures whether samples look like *that* class (chance = 1 / ways).
- :func:`frechet_distance`: the Frechet distance between Gaussians fitted to two feature sets
  (the FID formula, in this small feature space): ``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))``.
"""

from __future__ import annotations

import numpy as np
import torch

from .._checks import check_images, check_int
from ..models.feature_net import FeatureNet

__all__ = ["extract_features", "frechet_distance", "prototype_accuracy"]


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
