"""Per operator family, the classical references and the oracle the benchmark sets beside the learned methods
(the methods themselves are in :mod:`metalearn_kit.evaluation.operator_classical`).

``classical_methods(family, support, query_input)`` and ``oracles(family, params, degradation, query_input,
support)`` return ``{label: restored query [N, C, H, W]}``. Classical references see only the support pairs (or
the query image alone, when blind); oracles are handed the task's true operator and are labelled ``oracle: ...``.
A new family adds one function to each of :data:`CLASSICAL` and :data:`ORACLES`.

``parametric_methods(family, support, query_input)`` returns, in the same form, the references that fit the
family's *own* closed-form operator on the support pairs (:mod:`metalearn_kit.evaluation.parametric_fits`), for
the families that have one (:data:`PARAMETRIC`): the strongest classical reference a family admits. Families
without an entry return ``{}``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import camera_classical, classical, operator_classical, parametric_fits

Support = tuple[torch.Tensor, ...]
WIENER_BALANCES = (0.003, 0.01, 0.03, 0.1)


def _tone_curve(support: Support, query_input: torch.Tensor) -> dict[str, torch.Tensor]:
    table = operator_classical.fit_tone_lut(support[0], support[1])
    return {"monotone LUT fitted on support": operator_classical.apply_tone_lut(query_input, table)}


def _colour_cast(support: Support, query_input: torch.Tensor) -> dict[str, torch.Tensor]:
    affine = operator_classical.fit_colour_matrix(support[0], support[1])
    return {"grey-world white balance (blind)": operator_classical.grey_world(query_input),
            "affine colour matrix fitted on support": operator_classical.apply_affine_colour(query_input, affine)}


def _stripe_noise(support: Support, query_input: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"Fourier notch, frequency from support": operator_classical.tuned_notch(support, query_input)}


def _wiener_tuned(support: Support, query_input: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Wiener deconvolution with ``kernel``, its balance picked by support PSNR."""
    balance, _ = classical.tune_on_support(classical.wiener_deconvolve, support[0], support[1], "balance",
                                           WIENER_BALANCES, kernels=kernel.expand(support[0].shape[0], *kernel.shape))
    return classical.wiener_deconvolve(query_input, kernel.expand(query_input.shape[0], *kernel.shape), balance)


def _directional_blur(support: Support, query_input: torch.Tensor) -> dict[str, torch.Tensor]:
    kernel = operator_classical.estimate_kernel(support[0], support[1], size=13)
    return {"Wiener, kernel estimated on support": _wiener_tuned(support, query_input, kernel)}


def _channel_shift(support: Support, query_input: torch.Tensor) -> dict[str, torch.Tensor]:
    shifts = {name: operator_classical.estimate_plane_shift(support[0][:, c:c + 1], support[1][:, c:c + 1])
              for name, c in (("red", 0), ("blue", 2))}
    return {"plane shifts estimated on support": operator_classical.realign_planes(query_input, shifts)}


def _camera_pipeline(support: Support, query_input: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"staged pipeline fitted on support (LUT, colour map, kernel, Wiener, CBM3D)":
            camera_classical.staged_pipeline(support, query_input)}


def _camera_oracle(params: dict, degradation, query_input: torch.Tensor, support: Support
                   ) -> dict[str, torch.Tensor]:
    return {"oracle: the true camera inverted (Wiener, CBM3D tuned on support)":
            camera_classical.oracle_pipeline(degradation.operator(params), support, query_input)}


CLASSICAL: dict[str, Callable[[Support, torch.Tensor], dict[str, torch.Tensor]]] = {
    "tone_curve": _tone_curve, "colour_cast": _colour_cast, "stripe_noise": _stripe_noise,
    "directional_blur": _directional_blur, "channel_shift": _channel_shift, "camera_pipeline": _camera_pipeline}

ORACLES: dict[str, Callable[..., dict[str, torch.Tensor]]] = {
    "tone_curve": lambda params, degradation, query_input, support: {
        "oracle: true inverse curve": _inverse_curve(params, query_input)},
    "colour_cast": lambda params, degradation, query_input, support: {
        "oracle: true inverse colour matrix": operator_classical.apply_affine_colour(
            query_input, torch.linalg.inv(degradation.matrix(params).double()).float())},
    "stripe_noise": lambda params, degradation, query_input, support: {
        "oracle: true stripe frequency, fitted and subtracted":
            operator_classical.remove_known_stripes(query_input, params["angle"], params["period"])},
    "directional_blur": lambda params, degradation, query_input, support: {
        "oracle: Wiener with the true kernel": _wiener_tuned(support, query_input, degradation.kernel(params))},
    "channel_shift": lambda params, degradation, query_input, support: {
        "oracle: true plane shifts undone": operator_classical.realign_planes(query_input, degradation.shifts(params))},
    "camera_pipeline": _camera_oracle,
}


def _tone_curve_parametric(support: Support, query_input: torch.Tensor) -> dict[str, torch.Tensor]:
    params = parametric_fits.fit_tone_curve(support[0], support[1])
    return {"tone curve: family's curve (gamma, contrast) fitted on support by least squares, inverted":
            parametric_fits.undo_tone_curve(query_input, params)}


def _colour_cast_parametric(support: Support, query_input: torch.Tensor) -> dict[str, torch.Tensor]:
    params = parametric_fits.fit_colour_cast(support[0], support[1])
    # the affine map is the same row as in CLASSICAL (same label, same numbers), listed here beside the
    # family's own 3-parameter matrix so this table alone holds the family's strongest references
    affine = operator_classical.fit_colour_matrix(support[0], support[1])
    return {"affine colour matrix fitted on support": operator_classical.apply_affine_colour(query_input, affine),
            "colour: family's matrix (hue, red/blue gains) fitted on support by least squares, inverted":
            parametric_fits.undo_colour_cast(query_input, params)}


def _stripe_noise_parametric(support: Support, query_input: torch.Tensor) -> dict[str, torch.Tensor]:
    stripes = parametric_fits.estimate_stripes(support[0], support[1])
    return {"stripes: angle and period from support, each query image's sinusoid fitted and subtracted":
            parametric_fits.remove_stripes(query_input, stripes),
            "stripes: angle, period and amplitude from support, each query image's phase fitted and subtracted":
            parametric_fits.remove_stripes(query_input, stripes, fixed_amplitude=True)}


PARAMETRIC: dict[str, Callable[[Support, torch.Tensor], dict[str, torch.Tensor]]] = {
    "tone_curve": _tone_curve_parametric, "colour_cast": _colour_cast_parametric,
    "stripe_noise": _stripe_noise_parametric}


def _inverse_curve(params: dict, query_input: torch.Tensor) -> torch.Tensor:
    from ..tasks.operators import inverse_tone_curve

    return inverse_tone_curve(query_input, params["log2_gamma"], params["contrast"]).clamp(0, 1)


def _check_family(family: str) -> None:
    if family not in CLASSICAL:
        raise ValueError(f"family must be one of {sorted(CLASSICAL)}, got {family!r}")


def classical_methods(family: str, support: Support, query_input: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{label: restored query}`` of ``family``'s classical references, fitted on ``support`` only."""
    _check_family(family)
    return CLASSICAL[family](support, query_input)


def oracles(family: str, params: dict, degradation, query_input: torch.Tensor, support: Support
            ) -> dict[str, torch.Tensor]:
    """``{label: restored query}`` of ``family``'s oracle, given the task's true ``params`` (an upper
    reference; ``support`` only tunes a free parameter such as the Wiener balance)."""
    _check_family(family)
    return ORACLES[family](params, degradation, query_input, support)


def parametric_methods(family: str, support: Support, query_input: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{label: restored query}`` of ``family``'s parametric references (its own operator fitted on ``support``
    only; ``{}`` for a family without a closed form in :data:`PARAMETRIC`)."""
    _check_family(family)
    return PARAMETRIC[family](support, query_input) if family in PARAMETRIC else {}
