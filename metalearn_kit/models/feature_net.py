"""The small glyph classifier whose penultimate activations are the feature space of the generation metrics
(:mod:`metalearn_kit.evaluation.features`); :func:`metalearn_kit.recipes.feature_net.train_feature_net` trains it
on the background classes (the ``generation_featnet`` checkpoint)."""

from __future__ import annotations

import torch
from torch import nn

from .._checks import check_int

__all__ = ["FeatureNet"]


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
