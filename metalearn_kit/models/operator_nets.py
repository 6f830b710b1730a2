"""Small restorers for the task families of :mod:`metalearn_kit.tasks.operators`, built so a few inner steps
can move them to one task's operator. No BatchNorm: the inner loop sees four images.

- :class:`PointwiseRestorer`: ``x + mlp(x)`` pixel by pixel (1x1 convolutions): the right shape for tone curves
  and colour casts, whose inverse is one function of the pixel value.
- :class:`FilterRestorer`: ``x + mix(bank(x)) + cnn(x)``: a bank of wide linear filters (an inverse blur kernel
  or a notch for a stripe frequency is linear) weighed by a 1x1 convolution, next to a small non-linear residual
  CNN, so adapting to one task can be mostly re-weighing the bank.
- :class:`CameraRestorer`: ``z + cnn(z)`` with ``z = pointwise(x)``: a :class:`PointwiseRestorer` to undo a
  camera's tone curve and colour matrix, then a residual CNN that sees a neighbourhood to undo its blur and noise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_int


def _check_channels(name: str, x: torch.Tensor, channels: int) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != channels:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be images [N, {channels}, H, W], got {shape}")


def opponent_basis(channels: int) -> torch.Tensor:
    """An orthonormal ``[C, C]`` basis whose first row is the grey axis (luminance) and, for ``C = 3``, the
    other two are the red-green and blue-yellow opponent axes, where natural colours are roughly uncorrelated."""
    if channels == 1:
        return torch.ones(1, 1)
    if channels == 3:
        basis = torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, 0.0], [1.0, 1.0, -2.0]])
        return basis / basis.norm(dim=1, keepdim=True)
    return torch.eye(channels)


def conv_stack(channels: int, width: int, depth: int) -> nn.Sequential:
    """``depth`` 3x3 convolutions (reflect padding) ``channels -> width -> ... -> channels`` with ReLUs between."""
    layers: list[nn.Module] = []
    size = channels
    for i in range(depth):
        out = channels if i == depth - 1 else width
        layers.append(nn.Conv2d(size, out, 3, padding=1, padding_mode="reflect"))
        if i < depth - 1:
            layers.append(nn.ReLU())
        size = out
    return nn.Sequential(*layers)


class PointwiseRestorer(nn.Module):
    """``[N, C, H, W] -> [N, C, H, W]``, pixel by pixel: ``x + U (A (V (x - 1/2)) + b) + mlp(x)``.

    ``A`` (``C x C``, zero at the start) and ``b`` are a linear map in the opponent colour basis ``V``
    (:func:`opponent_basis`, ``U = V^T`` at the start, both trainable): a colour cast's inverse is nearly
    linear, and in that basis the colour channels are nearly uncorrelated, so per-weight step sizes (Meta-SGD)
    can solve for ``A`` in a few steps. ``mlp``: ``depth`` hidden layers of ``width`` (tanh, not ReLU: a smooth
    curve in few units), for what is not linear (tone curves)."""

    def __init__(self, channels: int = 1, width: int = 32, depth: int = 2) -> None:
        super().__init__()
        self.channels = check_int("channels", channels, minimum=1)
        check_int("width", width, minimum=1)
        check_int("depth", depth, minimum=1)
        layers: list[nn.Module] = []
        size = channels
        for _ in range(depth):
            layers += [nn.Conv2d(size, width, 1), nn.Tanh()]
            size = width
        layers.append(nn.Conv2d(size, channels, 1))
        self.net = nn.Sequential(*layers)
        basis = opponent_basis(channels)
        self.to_opponent = nn.Parameter(basis.clone())
        self.from_opponent = nn.Parameter(basis.T.clone())
        self.linear = nn.Parameter(torch.zeros(channels, channels))
        self.offset = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_channels("x", x, self.channels)
        matrix = self.from_opponent @ self.linear @ self.to_opponent
        bias = self.from_opponent @ self.offset
        linear = torch.einsum("ij,njhw->nihw", matrix, x - 0.5) + bias.view(1, -1, 1, 1)
        return x + linear + self.net(x)


class FilterRestorer(nn.Module):
    """``[N, C, H, W] -> [N, C, H, W]``: ``x + mix(bank(x)) + cnn(x)``.

    ``bank``: ``filters`` linear ``filter_size`` filters per channel (reflect padding), ``mix`` a 1x1 convolution
    that weighs them (zero at the start), ``cnn`` a ``depth``-layer 3x3 ReLU stack of ``width`` channels. An
    inverse blur (or a notch) is linear and wide; meta-learning can shape the bank into directional filters so
    that adapting to one task's blur is mostly choosing their weights -- a small, well-conditioned problem, where
    learning a wide filter from scratch by gradient steps is slow (its high frequencies barely move)."""

    def __init__(self, channels: int = 1, width: int = 16, depth: int = 3, filter_size: int = 13,
                 filters: int = 16) -> None:
        super().__init__()
        self.channels = check_int("channels", channels, minimum=1)
        check_int("width", width, minimum=1)
        check_int("depth", depth, minimum=2)
        check_int("filters", filters, minimum=1)
        self.filter_size = check_int("filter_size", filter_size, minimum=1)
        if filter_size % 2 == 0:
            raise ValueError(f"filter_size must be odd so the filter has a centre, got {filter_size}; use "
                             f"{filter_size + 1}")
        self.bank = nn.Conv2d(channels, filters * channels, filter_size, groups=channels, bias=False)
        self.mix = nn.Conv2d(filters * channels, channels, 1, groups=channels)
        nn.init.zeros_(self.mix.weight)
        nn.init.zeros_(self.mix.bias)
        self.cnn = conv_stack(channels, width, depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_channels("x", x, self.channels)
        pad = self.filter_size // 2
        if pad >= min(x.shape[-2:]):
            raise ValueError(f"images of size {tuple(x.shape[-2:])} are too small for filter_size "
                             f"{self.filter_size}; use larger patches or a smaller filter")
        filtered = self.mix(self.bank(F.pad(x, (pad, pad, pad, pad), mode="reflect")))
        return x + filtered + self.cnn(x)


class CameraRestorer(nn.Module):
    """``[N, C, H, W] -> [N, C, H, W]``: ``z + cnn(z)`` with ``z = pointwise(x)`` (:class:`PointwiseRestorer` of
    ``width``, 2 layers), ``cnn`` a ``depth``-layer 3x3 ReLU stack of ``width`` channels (reflect padding, receptive
    field ``2 depth + 1`` pixels) whose last layer starts at zero. The order follows the camera it inverts: the
    tone curve and colour matrix come last in the camera, so they are undone first, pixel by pixel, and the blur
    and noise of the sensor are then undone in the (nearly) linear space they were added in."""

    def __init__(self, channels: int = 3, width: int = 32, depth: int = 5) -> None:
        super().__init__()
        self.channels = check_int("channels", channels, minimum=1)
        check_int("width", width, minimum=1)
        check_int("depth", depth, minimum=2)
        self.pointwise = PointwiseRestorer(channels, width, 2)
        self.cnn = conv_stack(channels, width, depth)
        nn.init.zeros_(self.cnn[-1].weight)
        nn.init.zeros_(self.cnn[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_channels("x", x, self.channels)
        z = self.pointwise(x)
        return z + self.cnn(z)
