"""Sparse representation (稀疏表示, the source's "SR" — not super-resolution) as a network that can be
meta-learned: a convolutional LISTA (learned ISTA, Gregor & LeCun 2010).

An image ``y`` ``[N, C, H, W]`` is written as ``D * z``: a convolution of a sparse code ``z`` ``[N, atoms, H, W]``
with a dictionary ``D`` of ``atoms`` filters. ISTA minimises ``0.5 ||D*z - y||^2 + lam ||z||_1`` by

    z_{k+1} = soft(z_k - step_k * W_k^T (D*z_k - y), step_k * lam_k),    soft(v, t) = sign(v) max(|v| - t, 0)

with ``W_k = D`` (``tied=True``: exactly ISTA, with learnable dictionary, steps and thresholds). ``tied=False``
gives each iteration its own analysis filters ``W_k`` (LISTA's learned encoder), initialised to ``D`` so an
untrained LISTA equals ISTA. The per-image mean is removed before coding and added back (atoms model texture).
Every weight is an ordinary parameter, so MAML learns a dictionary *initialisation* that a few steps on a task's
support set specialise: the meta-learned sparse coder of notebook 06, beside the OMP baseline (``PatchDictionary``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_float, check_int
from ..config import make_generator

__all__ = ["UnrolledSparseCoder", "soft_threshold"]


def soft_threshold(values: torch.Tensor, threshold: torch.Tensor | float) -> torch.Tensor:
    """``sign(v) * max(|v| - t, 0)``: the proximal step of ``t * ||v||_1``."""
    return torch.sign(values) * F.relu(values.abs() - threshold)


def _inverse_softplus(value: float) -> float:
    return float(torch.log(torch.expm1(torch.tensor(value))))


class UnrolledSparseCoder(nn.Module):
    """Convolutional ISTA/LISTA with ``iterations`` unrolled steps; ``forward(y)`` -> ``D * z`` ``[N, C, H, W]``.

    Args:
        channels: image channels C. atoms: dictionary filters. kernel_size: odd filter size.
        iterations: unrolled ISTA steps. tied: ``True`` = ISTA (every step uses ``D``), ``False`` = LISTA.
        threshold: the initial ``lam`` (per step, learnable, kept positive by softplus).
        seed: the seeded initial dictionary (unit-norm random filters); the initial step is ``0.9 / L`` with
            ``L`` the largest eigenvalue of ``D^T D``, found by power iteration.
    """

    def __init__(self, channels: int = 1, atoms: int = 16, kernel_size: int = 5, iterations: int = 5,
                 tied: bool = True, threshold: float = 0.02, seed: int = 0) -> None:
        super().__init__()
        self.channels = check_int("channels", channels, minimum=1)
        self.atoms = check_int("atoms", atoms, minimum=1)
        self.kernel_size = check_int("kernel_size", kernel_size, minimum=1)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (so the code keeps the image size), got {kernel_size}")
        self.iterations = check_int("iterations", iterations, minimum=1)
        if not isinstance(tied, bool):
            raise TypeError(f"tied must be a bool, got {type(tied).__name__} {tied!r}")
        self.tied = tied
        threshold = check_float("threshold", threshold, minimum=0.0, strict_min=True)
        generator = make_generator(seed)
        filters = torch.randn(channels, atoms, kernel_size, kernel_size, generator=generator)
        filters = filters / filters.flatten(2).norm(dim=2).clamp_min(1e-8)[..., None, None]
        filters = filters / atoms ** 0.5
        self.dictionary = nn.Parameter(filters)  # conv2d weight [C, atoms, k, k]: code -> image
        step = 0.9 / self._lipschitz(filters, generator)
        self.raw_steps = nn.Parameter(torch.full((iterations,), _inverse_softplus(step)))
        self.raw_thresholds = nn.Parameter(torch.full((iterations,), _inverse_softplus(threshold)))
        if not tied:  # LISTA: one analysis filter bank per step, starting at ISTA
            self.analysis = nn.Parameter(filters.clone().unsqueeze(0).repeat(iterations, 1, 1, 1, 1))

    def _lipschitz(self, filters: torch.Tensor, generator: torch.Generator, size: int = 24) -> float:
        """The largest eigenvalue of ``D^T D`` (power iteration on a ``size x size`` code)."""
        z = torch.randn(1, self.atoms, size, size, generator=generator)
        for _ in range(30):
            z = self._adjoint(self._synthesis(z, filters), filters)
            z = z / z.norm().clamp_min(1e-12)
        return float(self._synthesis(z, filters).norm() ** 2)

    def _synthesis(self, codes: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
        return F.conv2d(codes, filters, padding=self.kernel_size // 2)

    def _adjoint(self, images: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
        # conv_transpose2d with the same weights and padding is the exact adjoint of conv2d (stride 1)
        return F.conv_transpose2d(images, filters, padding=self.kernel_size // 2)

    @property
    def steps(self) -> torch.Tensor:
        return F.softplus(self.raw_steps)

    @property
    def thresholds(self) -> torch.Tensor:
        return F.softplus(self.raw_thresholds)

    def codes(self, y: torch.Tensor) -> torch.Tensor:
        """The sparse code ``z`` ``[N, atoms, H, W]`` of the mean-removed images ``y`` ``[N, C, H, W]``."""
        # shape only: a value check (.all()) would break torch.func.vmap over tasks
        if y.dim() != 4 or y.shape[1] != self.channels:
            raise ValueError(f"y must have shape [N, {self.channels}, H, W], got shape {tuple(y.shape)}")
        centred = y - y.mean(dim=(-2, -1), keepdim=True)
        z = torch.zeros(y.shape[0], self.atoms, *y.shape[-2:], dtype=y.dtype, device=y.device)
        steps, thresholds = self.steps, self.thresholds
        for k in range(self.iterations):
            analysis = self.dictionary if self.tied else self.analysis[k]
            residual = self._synthesis(z, self.dictionary) - centred
            z = soft_threshold(z - steps[k] * self._adjoint(residual, analysis), steps[k] * thresholds[k])
        return z

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self._synthesis(self.codes(y), self.dictionary) + y.mean(dim=(-2, -1), keepdim=True)
