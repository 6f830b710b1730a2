"""A SIREN coordinate network (Sitzmann et al. 2020): an MLP with sine activations mapping pixel
coordinates ``[P, 2]`` in ``[-1, 1]`` to pixel values ``[P, C]``; fitting one image = training it on that
image's pixels. A *learned initialisation* (MAML/Reptile over many images, Tancik et al. 2021) makes the
fit take a few steps instead of hundreds.

Images become fitting tasks with :func:`image_to_pixels` (support = query = ``(coords, values)``), so
the meta-learning engine's ``loss_fn(model, (coords, values))`` is plain MSE.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._checks import check_float, check_images, check_int

__all__ = ["SineLayer", "Siren", "coordinate_grid", "fit_image", "image_to_pixels", "pixels_to_image"]


def coordinate_grid(height: int, width: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Pixel centres of an ``height x width`` image as ``[height * width, 2]`` (row, column) in [-1, 1]."""
    height = check_int("height", height, minimum=1)
    width = check_int("width", width, minimum=1)
    rows = torch.linspace(-1.0, 1.0, height, device=device)
    cols = torch.linspace(-1.0, 1.0, width, device=device)
    grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1)
    return grid.reshape(-1, 2)


def image_to_pixels(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[C, H, W]`` image -> ``(coords [H*W, 2], values [H*W, C])``."""
    image = check_images("image", image, rank=3)
    c, h, w = image.shape
    return coordinate_grid(h, w, image.device), image.reshape(c, -1).T.contiguous()


def pixels_to_image(values: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``values [H*W, C]`` -> ``[C, H, W]`` image (not clamped)."""
    if not isinstance(values, torch.Tensor) or values.dim() != 2 or values.shape[0] != height * width:
        shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise ValueError(f"values must have shape [height*width={height * width}, C], got {shape}")
    return values.T.reshape(-1, height, width)


class SineLayer(nn.Module):
    """``sin(omega * (W x + b))`` with SIREN's initialisation: the first layer uniform in ``±1/in``, the
    others in ``±sqrt(6 / in) / omega``, which keeps activations well spread through depth."""

    def __init__(self, in_features: int, out_features: int, omega: float, first: bool) -> None:
        super().__init__()
        self.omega = omega
        self.linear = nn.Linear(in_features, out_features)
        bound = 1.0 / in_features if first else math.sqrt(6.0 / in_features) / omega
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.omega * self.linear(x))


class Siren(nn.Module):
    """Coordinates ``[P, 2]`` -> values ``[P, out_channels]``: ``hidden_layers`` sine layers of ``width``
    units then a linear output. ``omega`` (SIREN's ``w0``, 30 in the paper) sets the first layer's
    frequency."""

    def __init__(self, out_channels: int = 1, width: int = 64, hidden_layers: int = 3,
                 omega: float = 30.0) -> None:
        super().__init__()
        self.out_channels = check_int("out_channels", out_channels, minimum=1)
        check_int("width", width, minimum=1)
        check_int("hidden_layers", hidden_layers, minimum=1)
        omega = check_float("omega", omega, minimum=0.0, strict_min=True)
        layers: list[nn.Module] = [SineLayer(2, width, omega, first=True)]
        layers += [SineLayer(width, width, omega, first=False) for _ in range(hidden_layers - 1)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, out_channels)
        bound = math.sqrt(6.0 / width) / omega
        with torch.no_grad():
            self.head.weight.uniform_(-bound, bound)
            self.head.bias.fill_(0.5)  # mid-grey: the mean of a [0, 1] image is a better start than 0

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        if not isinstance(coords, torch.Tensor) or coords.dim() != 2 or coords.shape[-1] != 2:
            shape = tuple(coords.shape) if isinstance(coords, torch.Tensor) else type(coords).__name__
            raise ValueError(f"coords must have shape [P, 2], got {shape}; build them with coordinate_grid()")
        return self.head(self.body(coords))

    def render(self, height: int, width: int) -> torch.Tensor:
        """The image this network represents, ``[C, height, width]`` clamped to [0, 1]."""
        coords = coordinate_grid(height, width, self.head.weight.device)
        with torch.no_grad():
            return pixels_to_image(self(coords), height, width).clamp(0, 1)


def fit_image(model: nn.Module, image: torch.Tensor, steps: int, lr: float = 1e-3,
              optimizer: str = "adam") -> list[float]:
    """Fit ``model`` (in place) to ``image`` ``[C, H, W]`` for ``steps`` full-batch steps of MSE.
    Returns the loss history (one value per step, before each update)."""
    steps = check_int("steps", steps, minimum=0)
    lr = check_float("lr", lr, minimum=0.0, strict_min=True)
    coords, values = image_to_pixels(image)
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    history = []
    for _ in range(steps):
        loss = (model(coords) - values).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    return history
