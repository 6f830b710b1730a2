"""Usefulness downstream (as in DAGAN, Antoniou et al. 2017): do generated samples help a few-shot classifier?

An N-way K-shot episode has N unseen classes, each with K support images, generated samples (from a generator
adapted on that class's support) and real query images. The classifier is the nearest class prototype in the
background-trained feature space (Snell et al. 2017), each prototype the mean feature of the class's support
plus its samples; the score is its accuracy on the real query images of the N classes. Support only (no
samples) and support plus affine jitter are the rows to beat.

Rewards: samples that move a class's prototype towards the class's real centre (on-class, varied the way real
drawings vary). Misses: anything a nearest-prototype classifier cannot use (the spread of a class, its
outliers); copies leave the prototype where the support put it (the support-only score).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._checks import check_int

__all__ = ["episode_accuracy", "episode_classes", "prototype_classifier_accuracy"]


def prototype_classifier_accuracy(support: Sequence[torch.Tensor], samples: Sequence[torch.Tensor],
                                  queries: Sequence[torch.Tensor]) -> list[float]:
    """Per-class accuracy ``[ways]`` on each class's ``queries[c] [Q_c, D]`` of the nearest prototype,
    ``prototype_c`` = mean of ``cat(support[c] [K, D], samples[c] [S_c, D])`` (``S_c`` may be 0: support only)."""
    if not (len(support) == len(samples) == len(queries)) or len(support) < 2:
        raise ValueError(f"support, samples and queries must give the same number (>= 2) of classes, got "
                         f"{len(support)}, {len(samples)}, {len(queries)}")
    prototypes = torch.stack([torch.cat([s.double(), g.double().to(s.device)]).mean(0)
                              for s, g in zip(support, samples, strict=True)])
    return [float((torch.cdist(query.double(), prototypes).argmin(1) == label).double().mean())
            for label, query in enumerate(queries)]


def episode_classes(n_tasks: int, ways: int) -> list[list[int]]:
    """The N-way episodes over ``n_tasks`` evaluation classes: episode ``t`` is classes ``t, t+1, ..,
    t+ways-1`` (mod ``n_tasks``), so every class is in ``ways`` episodes and all methods share them."""
    check_int("n_tasks", n_tasks, minimum=2)
    check_int("ways", ways, minimum=2, maximum=n_tasks)
    return [[(t + i) % n_tasks for i in range(ways)] for t in range(n_tasks)]


def episode_accuracy(tasks: Sequence[dict], sample_features: Sequence[torch.Tensor], shots: int,
                     ways: int) -> list[float]:
    """One accuracy per class ``[len(tasks)]``: the accuracy on its query images, averaged over the ``ways``
    episodes of :func:`episode_classes` it is in (per class, not per episode: overlapping episodes are not
    independent, classes nearly are; with equal query counts the mean is the episodes' mean accuracy).
    ``tasks[c]`` holds ``pool_features`` (support = first ``shots``) and ``query_features``;
    ``sample_features[c] [S, D]`` are the samples for class ``c``."""
    if len(sample_features) != len(tasks):
        raise ValueError(f"sample_features must hold one tensor per task ({len(tasks)}), got {len(sample_features)}")
    totals = [0.0] * len(tasks)
    for classes in episode_classes(len(tasks), ways):
        accuracy = prototype_classifier_accuracy([tasks[c]["pool_features"][:shots] for c in classes],
                                                 [sample_features[c] for c in classes],
                                                 [tasks[c]["query_features"] for c in classes])
        for c, value in zip(classes, accuracy, strict=True):
            totals[c] += value / ways
    return totals
