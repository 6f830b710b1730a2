"""The convolutional blocks the generators share: a stride-2 conv trunk (images down to features) and a
deconvolution head (a vector up to images), and the image-size check they need."""

from __future__ import annotations

import torch
from torch import nn

from .._checks import check_int

__all__ = ["Deconv", "check_image_size", "conv_trunk"]


def check_image_size(image_size: int) -> int:
    check_int("image_size", image_size, minimum=8)
    if image_size % 4:
        raise ValueError(f"image_size must be a multiple of 4 (two stride-2 stages), got {image_size}; "
                         f"use 28 or 32")
    return image_size


def conv_trunk(channels: int, width: int, norm: bool) -> nn.Sequential:
    """Two stride-2 convolutions: ``[N, channels, S, S] -> [N, 2*width, S/4, S/4]``."""
    layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1)]
    if norm:
        layers.append(nn.GroupNorm(1, width))  # GroupNorm with one group = LayerNorm over (C, H, W)
    layers += [nn.LeakyReLU(0.2), nn.Conv2d(width, 2 * width, 4, 2, 1)]
    if norm:
        layers.append(nn.GroupNorm(1, 2 * width))
    layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)


class Deconv(nn.Module):
    """``[N, in_features] -> [N, channels, S, S]`` logits: linear to ``2*width x S/4 x S/4``, then two
    stride-2 transposed convolutions."""

    def __init__(self, in_features: int, channels: int, image_size: int, width: int, hidden: int):
        super().__init__()
        self.base = image_size // 4
        self.width = width
        self.fc = nn.Sequential(nn.Linear(in_features, hidden), nn.ELU(),
                                nn.Linear(hidden, 2 * width * self.base * self.base), nn.ELU())
        self.up = nn.Sequential(nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ELU(),
                                nn.ConvTranspose2d(width, channels, 4, 2, 1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.up(self.fc(h).view(h.shape[0], 2 * self.width, self.base, self.base))
