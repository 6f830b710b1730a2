"""The classical answer to an unknown camera (:class:`~metalearn_kit.tasks.camera_pipeline.CameraPipeline`): undo
its stages one by one, each fitted or tuned on the support pairs only.

1. **Tone and colour** (pixel by pixel): one monotone look-up table for the tone curve (the same curve on every
   channel) and an affine colour map, fitted by alternating least squares: the table maps the degraded values to
   what the colour map needs, the colour map maps the table's output to the clean values.
2. **Blur:** the kernel estimated by ridge regression from the clean support onto the linearised support.
3. **Deconvolution:** Wiener, its balance chosen by support PSNR.
4. **Noise:** colour BM3D at the noise level measured on the support: the standard deviation of the deconvolved
   support minus the clean support (one BM3D run per image: at about 2 s per 48x48 colour patch on the 2-core CPU, a
   grid of levels tuned by support PSNR would cost more than every learned method together).

:func:`staged_pipeline` runs the four stages; :func:`oracle_pipeline` runs stages 3 and 4 after inverting the
task's *true* tone curve and colour matrix with its true kernel (an upper reference, still tuned on the support).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import classical, operator_classical
from .metrics import psnr
from .standard_sets import cbm3d_denoise

__all__ = ["CameraFit", "WIENER_BALANCES", "fit_camera", "oracle_pipeline", "staged_pipeline"]

WIENER_BALANCES = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
MIN_SIGMA = 0.002  # below half an 8-bit level of residual noise, BM3D is skipped
KERNEL_SIZE = 9
COLOUR_RIDGES = (1e-6, 0.001, 0.01, 0.1, 1.0)  # 1e-6: least squares, kept solvable
DEFAULT_RIDGE = 0.01
TABLE_BINS = 32  # 2 support patches leave many of 64 bins nearly empty
ROUNDS = 3  # alternations of tone table and colour map: the support PSNR of the pixel stage settles by then


@dataclass(frozen=True)
class CameraFit:
    """A camera inverted stage by stage: ``linearise`` (tone and colour, pixel by pixel), the blur ``kernel``
    ``[k, k]``, the Wiener ``balance`` and the BM3D ``sigma`` (0: none, below ``MIN_SIGMA``)."""

    linearise: Callable[[torch.Tensor], torch.Tensor]
    kernel: torch.Tensor
    balance: float
    sigma: float

    def restore(self, degraded: torch.Tensor) -> torch.Tensor:
        """The restored images ``[N, 3, H, W]`` in [0, 1]."""
        return _deconvolve_and_denoise(self.linearise(degraded), self.kernel, self.balance, self.sigma)


def _anchored(values: torch.Tensor) -> torch.Tensor:
    """``values`` flattened to one row image ``[1, 1, 1, P + 2]`` with the black and white anchors appended."""
    return torch.cat([values.flatten(), torch.tensor([0.0, 1.0])]).view(1, 1, 1, -1)


def _colour_map(toned: torch.Tensor, clean: torch.Tensor, ridge: float) -> torch.Tensor:
    """The affine colour map ``[3, 4]`` from ``toned`` to ``clean`` by least squares, pulled towards the identity
    by ``ridge`` (per pixel): two patches of few colours leave a free 3x4 map ill-determined, and a camera's
    colour matrix is near the identity."""
    inputs = toned.permute(1, 0, 2, 3).reshape(3, -1).double()
    design = torch.cat([inputs, torch.ones(1, inputs.shape[1], dtype=torch.float64)]).T  # [P, 4]
    targets = clean.permute(1, 0, 2, 3).reshape(3, -1).double().T  # [P, 3]
    prior = torch.eye(4, 3, dtype=torch.float64)  # the identity map, no offset
    weight = ridge * design.shape[0]
    solution = torch.linalg.solve(design.T @ design + weight * torch.eye(4, dtype=torch.float64),
                                  design.T @ targets + weight * prior)
    return solution.T.float()


def _fit_pixels(degraded: torch.Tensor, clean: torch.Tensor, ridge: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """The tone table and colour map alternated ``ROUNDS`` times (see :func:`_pixel_stage`)."""
    target = clean
    for _ in range(ROUNDS):
        table = operator_classical.fit_tone_lut(_anchored(degraded), _anchored(target), bins=TABLE_BINS)
        toned = operator_classical.apply_tone_lut(degraded, table)
        affine = _colour_map(toned, clean, ridge)
        # what the table should output for the colour map to give the clean values: invert the affine map
        full = torch.cat([affine.double(), torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=torch.float64)])
        target = operator_classical.apply_affine_colour(clean, torch.linalg.pinv(full)[:3].float())
    return lambda images: operator_classical.apply_affine_colour(
        operator_classical.apply_tone_lut(images, table), affine)


def _pixel_stage(degraded: torch.Tensor, clean: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Stage 1: a tone table and an affine colour map. The table is anchored at black -> black and white -> white
    (every tone curve keeps them), so levels the support never shows are interpolated towards the ends rather
    than held flat. The colour map's pull towards the identity is chosen by leaving one support pair out (fit on
    the others, score the pair left out) among ``COLOUR_RIDGES``; with one pair, ``DEFAULT_RIDGE``."""
    k = degraded.shape[0]
    if k == 1:
        return _fit_pixels(degraded, clean, DEFAULT_RIDGE)

    def held_out_psnr(ridge: float) -> float:
        scores = []
        for i in range(k):
            keep = [j for j in range(k) if j != i]
            linearise = _fit_pixels(degraded[keep], clean[keep], ridge)
            scores.append(psnr(linearise(degraded[i:i + 1]), clean[i:i + 1]))
        return sum(scores) / k

    return _fit_pixels(degraded, clean, max(COLOUR_RIDGES, key=held_out_psnr))


def _per_channel(images: torch.Tensor) -> torch.Tensor:
    return images.reshape(-1, 1, *images.shape[-2:])


def _wiener(images: torch.Tensor, kernel: torch.Tensor, balance: float) -> torch.Tensor:
    flat = _per_channel(images)
    out = classical.wiener_deconvolve(flat, kernel.expand(flat.shape[0], *kernel.shape), balance)
    return out.reshape(images.shape)


def _deconvolve_and_denoise(linear: torch.Tensor, kernel: torch.Tensor, balance: float, sigma: float
                            ) -> torch.Tensor:
    sharp = _wiener(linear, kernel, balance)
    return (cbm3d_denoise(sharp, sigma).float() if sigma > 0 else sharp).clamp(0, 1)


def _tuned(linear: torch.Tensor, clean: torch.Tensor, kernel: torch.Tensor) -> tuple[float, float]:
    """Stages 3 and 4 on the support: the Wiener balance with the best support PSNR, then the noise left in the
    deconvolved support as BM3D's sigma (0 when below ``MIN_SIGMA``)."""
    balance = max(WIENER_BALANCES, key=lambda b: psnr(_wiener(linear, kernel, b).clamp(0, 1), clean))
    sigma = float((_wiener(linear, kernel, balance) - clean).std())
    return balance, sigma if sigma >= MIN_SIGMA else 0.0


def fit_camera(degraded: torch.Tensor, clean: torch.Tensor) -> CameraFit:
    """Fit the four stages on the support pairs ``degraded``, ``clean`` ``[K, 3, H, W]``."""
    linearise = _pixel_stage(degraded, clean)
    linear = linearise(degraded)
    kernel = operator_classical.estimate_kernel(_per_channel(linear), _per_channel(clean), size=KERNEL_SIZE)
    return CameraFit(linearise, kernel, *_tuned(linear, clean, kernel))


def staged_pipeline(support: tuple[torch.Tensor, ...], query_input: torch.Tensor) -> torch.Tensor:
    """The query restored by the pipeline fitted on ``support`` (:func:`fit_camera`)."""
    return fit_camera(support[0], support[1]).restore(query_input)


def oracle_pipeline(operator: dict, support: tuple[torch.Tensor, ...], query_input: torch.Tensor) -> torch.Tensor:
    """The query restored with the camera's true tone curve, colour matrix and kernel (``operator`` as
    :meth:`~metalearn_kit.tasks.camera_pipeline.CameraPipeline.operator` gives it), Wiener balance and BM3D sigma
    tuned on ``support``."""
    from ..tasks.camera_pipeline import inverse_spline_tone_curve

    inverse = torch.linalg.inv(operator["matrix"].double()).float()

    def linearise(images: torch.Tensor) -> torch.Tensor:
        untoned = inverse_spline_tone_curve(images, operator["knots"])
        return torch.einsum("ij,njhw->nihw", inverse, untoned).clamp(0, 1)

    kernel = operator["kernel"]
    return CameraFit(linearise, kernel, *_tuned(linearise(support[0]), support[1], kernel)).restore(query_input)
