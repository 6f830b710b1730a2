"""Sample metrics that copies of the support cannot pass, each with what it rewards and what it misses.

The older metrics (:mod:`~metalearn_kit.evaluation.features`, :mod:`~metalearn_kit.evaluation.novelty`) score
copies of the support as well as real drawings, and score blur as novelty. The ones here:

- :func:`bernoulli_draws`: samples of a likelihood model are *draws* from its pixel distribution, not its
  mean image (mean images are kept only as a labelled view, ``*_mean_image`` rows).
- :func:`memorisation_ratio`: pixel-space nearest-support distance of the samples over that of real unseen
  drawings, after a low-pass filter and the best small shift (copies 0, blurred or shifted copies near 0,
  real drawings about 1).
- :func:`precision_recall`: k-nearest-neighbour manifolds in feature space (Kynkaanniemi et al. 2019):
  precision = samples inside the real manifold, recall = real images inside the samples' manifold; copies of
  K images cover few real drawings, so their recall is low.
- 20-way accuracy against distractors of the **same alphabet** is
  :func:`~metalearn_kit.evaluation.features.prototype_accuracy` with those classes (the episodes are built in
  :func:`~metalearn_kit.evaluation.generation.evaluation_episodes`).
- Usefulness downstream is :mod:`~metalearn_kit.evaluation.downstream`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._checks import check_float, check_images, check_int
from .trivial_generators import gaussian_blur

__all__ = ["aligned_distance", "bernoulli_draws", "memorisation_ratio", "precision_recall"]


def bernoulli_draws(means: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Binary images ``[N, C, H, W]``: each pixel drawn from Bernoulli(``means``) (``means`` in [0, 1]).

    Rewards: what the model's distribution produces, speckle and all. Misses: a model whose Bernoulli output is
    only a training device (its mean image may look better than its draws; the mean view shows it)."""
    check_images("means", means)
    return torch.bernoulli(means.detach().float().cpu(), generator=generator).to(means.device)


def _prepared(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Low-passed images, flattened and scaled to unit norm: ``[N, C, H, W] -> [N, C, H, W]``."""
    smooth = gaussian_blur(images.double(), sigma)
    norms = smooth.flatten(1).norm(dim=1).clamp_min(1e-12)
    return smooth / norms[:, None, None, None]


def aligned_distance(images: torch.Tensor, reference: torch.Tensor, sigma: float = 1.5,
                     max_shift: int = 2) -> torch.Tensor:
    """Each image's distance to its nearest reference image ``[N] `` (``[N, C, H, W], [M, C, H, W]``):
    ``min over references and shifts (|dx|, |dy| <= max_shift) of 1 - cos(G x, shift(G r))``, ``G`` a Gaussian
    low-pass of ``sigma`` pixels. The low-pass makes blur and Bernoulli speckle count for little; the shift makes
    a copy moved by a pixel or two still a copy."""
    check_images("images", images)
    check_images("reference", reference)
    check_int("max_shift", max_shift, minimum=0)
    a, b = _prepared(images, sigma).flatten(1), _prepared(reference, sigma)
    size = b.shape[-1]
    padded = F.pad(b, (max_shift,) * 4)
    best = torch.full((images.shape[0],), float("inf"), dtype=torch.float64, device=images.device)
    for dy in range(2 * max_shift + 1):
        for dx in range(2 * max_shift + 1):
            shifted = padded[..., dy:dy + size, dx:dx + size].flatten(1)
            best = torch.minimum(best, (1 - a @ shifted.T).min(1).values)
    return torch.where(best < 1e-9, 0.0, best)  # identical images: 0, not float64 rounding


def memorisation_ratio(samples: torch.Tensor, support: torch.Tensor, real: torch.Tensor,
                       sigma: float = 1.5, max_shift: int = 2) -> float:
    """``mean aligned_distance(samples, support) / mean aligned_distance(real, support)``; ``real`` are other
    drawings of the class, not in the support.

    Rewards: samples as far from the support drawings as another person's drawing of the letter (about 1);
    copies score 0 and blurred, speckled or slightly shifted copies near 0. Misses: whether the samples are
    the right letter at all (noise scores high; read it with precision and the classification metrics), an
    average of the support (the support mean is far from each drawing: it scores high, recall catches it), and
    copies under larger rotations or shears (affine jitter scores in between).
    """
    check_float("sigma", sigma, minimum=0.0, strict_min=True)
    denominator = float(aligned_distance(real, support, sigma, max_shift).mean())
    if denominator <= 0:
        raise ValueError("real images coincide with the support (mean aligned distance 0); real must be other "
                         "drawings of the class than the support")
    return float(aligned_distance(samples, support, sigma, max_shift).mean()) / denominator


def _knn_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row to its ``k``-th nearest other row ``[N]``."""
    distances = torch.cdist(features, features)
    return distances.topk(k + 1, dim=1, largest=False).values[:, k]  # column 0 is the row itself


def _coverage(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    """Fraction of ``points`` inside at least one ball ``(centres, radii)``."""
    return float((torch.cdist(points, centres) <= radii[None, :]).any(1).double().mean())


def precision_recall(sample_features: torch.Tensor, real_features: torch.Tensor, k: int = 3
                     ) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) of ``sample_features [N, D]`` against
    ``real_features [M, D]``: each set's manifold is the union of balls around its points reaching their
    ``k``-th nearest neighbour in the set; precision = fraction of samples in the real manifold, recall =
    fraction of real points in the samples' manifold. A set against itself scores (1, 1).

    Rewards: precision, samples that look like real drawings of the class; recall, samples that cover the
    variety of real drawings (copies of K images, with radii from their own duplicates, cover few).
    Misses: with few real images (``M`` of 10 or so) the real manifold is coarse; both depend on the feature
    space (the background-trained feature network) and on ``k``; compare methods only at equal ``N``, ``M``, ``k``.
    """
    for name, f in (("sample_features", sample_features), ("real_features", real_features)):
        if not isinstance(f, torch.Tensor) or f.dim() != 2 or f.shape[0] <= k:
            raise ValueError(f"{name} must be a [N, D] tensor with N > k = {k}, got "
                             f"{tuple(getattr(f, 'shape', ()))}")
    check_int("k", k, minimum=1)
    if sample_features.shape[1] != real_features.shape[1]:
        raise ValueError(f"sample_features and real_features must have the same feature size, got "
                         f"{sample_features.shape[1]} and {real_features.shape[1]}")
    fake, real = sample_features.double(), real_features.double()
    precision = _coverage(fake, real, _knn_radii(real, k))
    recall = _coverage(real, fake, _knn_radii(fake, k))
    return precision, recall
