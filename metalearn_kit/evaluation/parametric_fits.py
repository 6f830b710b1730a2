"""Parametric classical references: where an operator family has a closed form, fit the family's own parameters
on the support pairs and undo the fitted operator on the query.

- tone curve (:func:`~metalearn_kit.tasks.operators.tone_curve`): ``log2_gamma`` and ``contrast`` by bounded
  least squares of ``T(clean) - degraded`` on the support pixels, then the exact inverse curve on the query;
- colour cast (:func:`~metalearn_kit.tasks.operators.colour_matrix`): ``hue`` and the red/blue gains by bounded
  least squares on the support pixels, then the inverse matrix on the query;
- stripe noise (:func:`~metalearn_kit.tasks.operators.stripe_pattern`): the stripe direction and period from the
  support residuals ``degraded - clean`` (spectral peak, then the least-squares sinusoid frequency), then on each
  degraded query image alone its own amplitude and phase (a sine and a cosine at that frequency), subtracted.

Every fit reads only the support pairs and the degraded query. Degraded pixels at exactly 0 or 1 were clipped by
the degradation, so the fits model the clip (tone curve, colour) or leave those pixels out of the support
residuals (stripes). All take and return ``[N, C, H, W]`` tensors in [0, 1].
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import least_squares, minimize

from .._checks import check_images

# ----------------------------------------------------------------------------------------------------------
# Tone curve
# ----------------------------------------------------------------------------------------------------------


def _tone_numpy(x: np.ndarray, log2_gamma: float, contrast: float) -> np.ndarray:
    """:func:`~metalearn_kit.tasks.operators.tone_curve` in float64 NumPy, clipped as the degradation clips."""
    u = np.clip(x, 0, 1) ** (2.0 ** log2_gamma)
    return np.clip((1 - contrast) * u + contrast * (3 * u**2 - 2 * u**3), 0, 1)


def _tone_limits() -> dict[str, tuple[float, float]]:
    from ..tasks.operators import ToneCurve

    return {name: ToneCurve.param_limits[name] for name in ("log2_gamma", "contrast")}


def fit_tone_curve(degraded: torch.Tensor, clean: torch.Tensor, max_pixels: int = 50_000) -> dict[str, float]:
    """The tone curve's ``{"log2_gamma", "contrast"}`` that best map the clean support pixels onto the degraded
    ones (least squares in the degraded domain, where the noise is white): a coarse grid over the family's
    ``param_limits``, then bounded Levenberg-Marquardt-style refinement. ``degraded, clean``: ``[K, C, H, W]``;
    at most ``max_pixels`` evenly spaced pixels are used."""
    degraded, clean = check_images("degraded", degraded), check_images("clean", clean)
    stride = max(1, degraded.numel() // max_pixels)
    x = clean.flatten().double().numpy()[::stride]
    y = degraded.flatten().double().numpy()[::stride]
    limits = _tone_limits()
    low, high = np.array([limits["log2_gamma"][0], limits["contrast"][0]]), np.array(
        [limits["log2_gamma"][1], limits["contrast"][1]])
    grid = [(g, c) for g in np.linspace(low[0], high[0], 33) for c in np.linspace(low[1], high[1], 21)]
    start = min(grid, key=lambda p: float(np.square(_tone_numpy(x, *p) - y).sum()))
    fit = least_squares(lambda p: _tone_numpy(x, p[0], p[1]) - y, np.array(start), bounds=(low, high),
                        x_scale="jac", jac="3-point")
    return {"log2_gamma": float(fit.x[0]), "contrast": float(fit.x[1])}


def undo_tone_curve(images: torch.Tensor, params: dict[str, float]) -> torch.Tensor:
    """The exact inverse of the tone curve ``params`` (bisection; the curve is monotone), in [0, 1]."""
    from ..tasks.operators import inverse_tone_curve

    images = check_images("images", images)
    return inverse_tone_curve(images, params["log2_gamma"], params["contrast"]).clamp(0, 1)


# ----------------------------------------------------------------------------------------------------------
# Colour cast
# ----------------------------------------------------------------------------------------------------------

_COLOUR_PARAMS = ("hue", "log2_gain_red", "log2_gain_blue")


def fit_colour_cast(degraded: torch.Tensor, clean: torch.Tensor, max_pixels: int = 30_000) -> dict[str, float]:
    """The colour cast's ``{"hue", "log2_gain_red", "log2_gain_blue"}`` that best map the clean support pixels
    ``[K, 3, H, W]`` onto the degraded ones (least squares on the clipped model): a 10-degree hue grid, then
    bounded refinement within the family's ``param_limits``."""
    from ..tasks.operators import ColourCast, colour_matrix

    degraded, clean = check_images("degraded", degraded), check_images("clean", clean)
    if degraded.shape[1] != 3 or clean.shape[1] != 3:
        raise ValueError(f"colour cast fits need colour images [K, 3, H, W], got degraded {tuple(degraded.shape)} "
                         f"and clean {tuple(clean.shape)}")
    stride = max(1, degraded[:, 0].numel() // max_pixels)
    x = clean.permute(1, 0, 2, 3).reshape(3, -1).double().numpy()[:, ::stride]
    y = degraded.permute(1, 0, 2, 3).reshape(3, -1).double().numpy()[:, ::stride]

    def residual(p: np.ndarray) -> np.ndarray:
        # colour_matrix rounds to float32: hence the coarse finite-difference step (diff_step) below
        matrix = colour_matrix(float(p[0]), float(p[1]), float(p[2])).double().numpy()
        return (np.clip(matrix @ x, 0, 1) - y).ravel()

    limits = [ColourCast.param_limits[name] for name in _COLOUR_PARAMS]
    low, high = np.array([lo for lo, _ in limits]), np.array([hi for _, hi in limits])
    start = min((np.array([h, 0.0, 0.0]) for h in np.arange(-180.0, 180.0, 10.0)),
                key=lambda p: float(np.square(residual(p)).sum()))
    # central differences: forward ones from a start with zero gains stalled the refinement in trials
    fit = least_squares(residual, start, bounds=(low, high), x_scale="jac", jac="3-point", diff_step=1e-3)
    return dict(zip(_COLOUR_PARAMS, (float(v) for v in fit.x)))


def undo_colour_cast(images: torch.Tensor, params: dict[str, float]) -> torch.Tensor:
    """``[N, 3, H, W]`` through the inverse of the colour cast ``params``, clipped to [0, 1]."""
    from ..tasks.operators import colour_matrix
    from .operator_classical import apply_affine_colour

    matrix = colour_matrix(params["hue"], params["log2_gain_red"], params["log2_gain_blue"]).double()
    return apply_affine_colour(images, torch.linalg.inv(matrix).float())


# ----------------------------------------------------------------------------------------------------------
# Stripe noise
# ----------------------------------------------------------------------------------------------------------


def _stripe_basis(size: tuple[int, int], frequency: tuple[float, float]) -> torch.Tensor:
    """``[H*W, 2]``: ``sin`` and ``cos`` of ``2 pi (fy row + fx col)``, ``frequency = (fy, fx)`` in cycles per
    pixel."""
    h, w = size
    rows = torch.arange(h, dtype=torch.float64)[:, None]
    cols = torch.arange(w, dtype=torch.float64)[None, :]
    phase = 2 * math.pi * (frequency[0] * rows + frequency[1] * cols)
    return torch.stack([torch.sin(phase), torch.cos(phase)], dim=-1).reshape(h * w, 2)


def _unclipped(degraded: torch.Tensor) -> torch.Tensor:
    """Weight 1 where a degraded pixel is strictly inside (0, 1), 0 where the degradation clipped it."""
    return ((degraded > 0) & (degraded < 1)).double()


def _fit_stripes(values: torch.Tensor, weights: torch.Tensor, basis: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image of ``values`` ``[N, C, H, W]``, the least-squares fit (pixel ``weights``, same shape) of one sine
    and one cosine shared by every channel (the stripes are the same on each) plus a constant per channel.
    Returns the coefficients ``[N, 2]`` and the weighted residual sums of squares ``[N]``."""
    n, c = values.shape[:2]
    values = values.double().reshape(n, c, -1)
    p = basis.shape[0]
    design = torch.cat([basis.expand(c, p, 2), torch.eye(c, dtype=torch.float64)[:, None, :].expand(c, p, c)],
                       dim=-1).reshape(c * p, 2 + c)  # [C*P, 2 + C]
    coefficients, errors = [], []
    for value, weight in zip(values.reshape(n, -1), weights.reshape(n, -1)):
        root = weight.sqrt()[:, None]
        solution = torch.linalg.lstsq(design * root, value[:, None] * root[:, 0:1]).solution[:, 0]
        coefficients.append(solution[:2])
        errors.append(((design @ solution - value) ** 2 * weight).sum())
    return torch.stack(coefficients), torch.stack(errors)


def _spectral_peak(residual: torch.Tensor, pad: int = 4) -> tuple[float, float]:
    """The strongest non-DC frequency ``(fy, fx)`` of ``residual`` ``[N, H, W]`` (mean power spectrum, zero-padded
    ``pad`` times so the peak falls within a quarter bin of the true frequency), in the half plane ``fx >= 0``."""
    h, w = residual.shape[-2:]
    centred = residual - residual.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.rfft2(centred, s=(pad * h, pad * w)).abs().pow(2).mean(dim=0)
    rows = torch.fft.fftfreq(pad * h, dtype=torch.float64)[:, None]
    cols = torch.fft.rfftfreq(pad * w, dtype=torch.float64)[None, :]
    power[(rows.abs() < 1 / h) & (cols < 1 / w)] = 0  # DC and its zero-padding sidelobe
    index = int(power.argmax())
    return float(rows[index // power.shape[1], 0]), float(cols[0, index % power.shape[1]])


def estimate_stripes(degraded: torch.Tensor, clean: torch.Tensor) -> dict[str, float]:
    """The stripes' ``{"angle" (degrees, in [0, 180)), "period" (pixels), "amplitude"}`` from support pairs
    ``[K, C, H, W]``: the spectral peak of the residuals ``degraded - clean``, refined to the frequency whose
    per-image least-squares sinusoid leaves the smallest residual (Nelder-Mead), and the mean fitted amplitude."""
    degraded, clean = check_images("degraded", degraded), check_images("clean", clean)
    size = tuple(degraded.shape[-2:])
    residual, weights = degraded.double() - clean.double(), _unclipped(degraded)
    start = _spectral_peak(residual.mean(dim=1))

    def error(frequency: np.ndarray) -> float:
        return float(_fit_stripes(residual, weights, _stripe_basis(size, (frequency[0], frequency[1])))[1].sum())

    h, w = size
    refined = minimize(error, np.array(start), method="Nelder-Mead",
                       options={"initial_simplex": np.array(start) + np.array([[0, 0], [0.5 / h, 0], [0, 0.5 / w]]),
                                "xatol": 1e-7, "fatol": 1e-10}).x
    fy, fx = float(refined[0]), float(refined[1])
    coefficients, _ = _fit_stripes(residual, weights, _stripe_basis(size, (fy, fx)))
    # stripe_pattern's phase is 2 pi (col cos(angle) - row sin(angle)) / period
    return {"angle": math.degrees(math.atan2(-fy, fx)) % 180.0, "period": 1.0 / math.hypot(fy, fx),
            "amplitude": float(coefficients.norm(dim=1).mean())}


def remove_stripes(images: torch.Tensor, stripes: dict[str, float], fixed_amplitude: bool = False) -> torch.Tensor:
    """Subtract from each image of ``[N, C, H, W]`` its own stripes at ``stripes``' angle and period: amplitude
    and phase fitted by least squares on that degraded image alone, or with ``fixed_amplitude`` only the phase,
    the amplitude being ``stripes["amplitude"]`` (the task's)."""
    images = check_images("images", images)
    theta = math.radians(stripes["angle"])
    frequency = (-math.sin(theta) / stripes["period"], math.cos(theta) / stripes["period"])
    basis = _stripe_basis(tuple(images.shape[-2:]), frequency)
    # every pixel counts here: which pixels clipped depends on the unknown clean image and the stripe itself, so
    # leaving them out would bias the fit (unlike on the support, where the clean image is known)
    coefficients, _ = _fit_stripes(images, torch.ones_like(images, dtype=torch.float64), basis)
    if fixed_amplitude:
        coefficients = coefficients * stripes["amplitude"] / coefficients.norm(dim=1, keepdim=True).clamp_min(1e-12)
    pattern = (coefficients @ basis.T).reshape(images.shape[0], 1, *images.shape[-2:])
    return (images.double() - pattern).clamp(0, 1).to(images.dtype)
