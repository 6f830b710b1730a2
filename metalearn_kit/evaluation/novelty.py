"""Novelty of generated samples: are they new images of the class, or copies of the support images?

Prototype accuracy alone rewards copying: a model that memorises its K support images and returns them
scores as well as real images. :func:`novelty_ratio` divides the samples' mean distance to their nearest
support image by the same quantity for the class's *real held-out* (query) images::

    novelty_ratio = mean_i min_k ||f(sample_i) - f(support_k)|| / mean_j min_k ||f(query_j) - f(support_k)||

in the feature space ``f`` of the background-trained feature network (features, not pixels: a copy shifted
by one pixel is far in pixels but near in features, and two drawings of one letter are near in features).
About 1: samples as new as real held-out drawings; 0: copies; well above 1: samples farther from the
support than real drawings are (blurry or off-class; prototype accuracy tells which).
"""

from __future__ import annotations

import torch

__all__ = ["nearest_distance", "novelty_ratio"]


def _check_features(name: str, features: torch.Tensor, dim: int | None = None) -> None:
    if not isinstance(features, torch.Tensor) or features.dim() != 2 or features.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty [N, D] tensor, got {tuple(getattr(features, 'shape', ()))}")
    if dim is not None and features.shape[1] != dim:
        raise ValueError(f"{name} must have feature size {dim} (that of sample_features), got {features.shape[1]}")


def nearest_distance(features: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Each row's Euclidean distance to its nearest row of ``reference``: ``[N, D], [M, D] -> [N]``."""
    _check_features("features", features)
    _check_features("reference", reference, features.shape[1])
    return torch.cdist(features.double(), reference.double()).min(1).values


def novelty_ratio(sample_features: torch.Tensor, support_features: torch.Tensor,
                  query_features: torch.Tensor) -> float:
    """``mean nearest-support distance of samples / mean nearest-support distance of real query images``
    (features ``[N, D]``, ``[K, D]``, ``[Q, D]``; the query images must not be in the support set)."""
    _check_features("sample_features", sample_features)
    _check_features("support_features", support_features, sample_features.shape[1])
    _check_features("query_features", query_features, sample_features.shape[1])
    real = float(nearest_distance(query_features, support_features).mean())
    if real <= 0:
        raise ValueError("query_features coincide with support_features (mean nearest distance 0); the query "
                         "images must be other images of the class than the support images")
    return float(nearest_distance(sample_features, support_features).mean()) / real
