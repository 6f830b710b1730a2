"""The standard conv restorer: a small fully convolutional net that predicts a residual added to its input.

It is the model the meta-learning experiments adapt (4 conv layers of 32 channels by default): small enough
that MAML's second-order inner loop is cheap, big enough to denoise/deblur. No BatchNorm: its running
statistics are state mutated per task, which breaks ``vmap`` over the tasks of a meta-batch and leaks
information between support and query. Use ``norm="group"`` or ``norm="layer"`` if you want normalisation.
"""

from __future__ import annotations

import torch
from torch import nn

from .._checks import check_choice, check_int, check_model_input

__all__ = ["ACTIVATIONS", "ConvRestorer", "NORMS"]

ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU, "tanh": nn.Tanh}
NORMS = (None, "group", "layer")


def _norm_layer(norm: str | None, width: int) -> nn.Module:
    if norm is None:
        return nn.Identity()
    if norm == "group":
        return nn.GroupNorm(num_groups=min(8, width), num_channels=width)
    # "layer": normalise over channels and space of each image (GroupNorm with a single group)
    return nn.GroupNorm(num_groups=1, num_channels=width)


class ConvRestorer(nn.Module):
    """``depth`` 3x3 conv layers (``width`` channels, padding 1) mapping ``[N, channels, H, W]`` to the same
    shape. With ``residual=True`` the net predicts a correction added to the input (output = x + net(x)),
    so an untrained net starts near the identity (the last layer's initial weights are scaled by 0.1).

    Args:
        channels: image channels (1 grey, 3 colour).
        width: channels of the hidden layers.
        depth: number of conv layers (>= 2: one in, ``depth - 2`` hidden, one out).
        residual: add the input to the output.
        norm: ``None``, ``"group"`` (GroupNorm, 8 groups) or ``"layer"`` (one group) after each hidden conv.
        activation: ``"relu"`` (default), ``"silu"``, ``"gelu"`` or ``"tanh"``.
    """

    def __init__(self, channels: int = 1, width: int = 32, depth: int = 4, residual: bool = True,
                 norm: str | None = None, activation: str = "relu") -> None:
        super().__init__()
        self.channels = check_int("channels", channels, minimum=1)
        self.width = check_int("width", width, minimum=1)
        self.depth = check_int("depth", depth, minimum=2)
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r} (BatchNorm is not supported: its running "
                             f"stats break per-task adaptation)")
        check_choice("activation", activation, ACTIVATIONS)
        self.residual = bool(residual)
        self.norm = norm
        layers: list[nn.Module] = []
        in_ch = channels
        for _ in range(depth - 1):
            layers += [nn.Conv2d(in_ch, width, 3, padding=1), _norm_layer(norm, width), ACTIVATIONS[activation]()]
            in_ch = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(width, channels, 3, padding=1)
        if self.residual:
            # start close to the identity, but not at it: a zero head would give the body zero gradient
            with torch.no_grad():
                self.head.weight.mul_(0.1)
                self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``[N, channels, H, W]`` -> restored ``[N, channels, H, W]``."""
        check_model_input("x", x, self.channels)
        out = self.head(self.body(x))
        return x + out if self.residual else out
