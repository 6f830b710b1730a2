"""Functional inner-loop optimizers: the update line of the inner loop (``optimizer.step``).

Parameters are dicts ``{name: tensor}``. An optimizer never mutates anything: ``step`` returns new
parameters and a new state, so the whole unrolled inner loop stays one differentiable graph (MAML's
second-order gradient flows through it) and it runs unchanged under ``torch.func.vmap``.

The update rules are written to match ``higher``'s differentiable SGD/Adam *exactly* (including Adam's
``sqrt(v) + eps`` denominator with the bias corrections folded into the step size), so both backends
give the same numbers.

``inner_lr`` may be a float (the same rate everywhere), a dict ``{name: tensor}`` of per-parameter rates
broadcastable to each parameter (Meta-SGD learns these), or a sequence of such dicts, one per inner step
(per-step rates, as in MAML++); :func:`rate_at` picks step ``k``'s rates and the optimizers see one step's rates
only. The inner loop itself is :func:`metalearn_kit.meta.step.adapt_then_query`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from .._checks import check_choice, check_float

Params = dict[str, torch.Tensor]
StepLR = float | torch.Tensor | Mapping[str, torch.Tensor]
InnerLR = StepLR | Sequence[Mapping[str, torch.Tensor]]


class DivergenceError(ValueError):
    """A loss became NaN or Inf during (meta-)training. The message names where (inner step or meta
    iteration) and the learning rate in force, so the fix (a lower rate, gradient clipping) is obvious."""


def rate_at(inner_lr: InnerLR, step: int) -> StepLR:
    """The rates of inner step ``step`` (0-based): entry ``min(step, len - 1)`` of a per-step sequence, so steps
    past the trained ones keep the last step's rates; any other ``inner_lr`` is the same at every step."""
    if isinstance(inner_lr, (list, tuple)):
        return inner_lr[min(step, len(inner_lr) - 1)]
    return inner_lr


def is_learned(inner_lr: InnerLR) -> bool:
    """Whether ``inner_lr`` holds rate tensors (Meta-SGD's dict, or a per-step sequence of dicts), which must stay
    on the autograd graph to receive their gradient."""
    return isinstance(inner_lr, (Mapping, list, tuple))


def _rate_for(inner_lr: StepLR, name: str):
    if isinstance(inner_lr, Mapping):
        return inner_lr[name]
    return inner_lr


class FunctionalSGD:
    """SGD with optional heavy-ball momentum: ``buf = g`` (first step), ``buf = momentum * buf + g``,
    ``p <- p - inner_lr * buf``. Same rule as ``torch.optim.SGD`` / ``higher``'s DifferentiableSGD."""

    name = "sgd"

    def __init__(self, momentum: float = 0.0) -> None:
        self.momentum = check_float("momentum", momentum, minimum=0.0, maximum=1.0)

    def init(self, params: Params) -> dict:
        return {"step": 0, "buf": {}}

    def step(self, params: Params, grads: Params, state: dict, inner_lr: StepLR) -> tuple[Params, dict]:
        new_params, new_buf = {}, {}
        for name, p in params.items():
            g = grads[name]
            if self.momentum:
                g = g if state["step"] == 0 else self.momentum * state["buf"][name] + g
                new_buf[name] = g
            new_params[name] = p - _rate_for(inner_lr, name) * g
        return new_params, {"step": state["step"] + 1, "buf": new_buf}

    def torch_optimizer(self, params, inner_lr: float) -> torch.optim.Optimizer:
        """The ``torch.optim`` twin (what ``higher`` wraps)."""
        return torch.optim.SGD(params, lr=inner_lr, momentum=self.momentum)

    def __repr__(self) -> str:
        return f"FunctionalSGD(momentum={self.momentum})"


class FunctionalAdam:
    """Adam as ``higher`` differentiates it: ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``,
    ``p <- p - inner_lr * sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)``.

    ``sqrt`` is made safe at ``v == 0`` (gradient 0 there instead of ``inf * 0 = nan``), which is what
    ``higher`` does with its gradient mask."""

    name = "adam"

    def __init__(self, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (check_float("betas[0]", betas[0], 0.0, 1.0), check_float("betas[1]", betas[1], 0.0, 1.0))
        if self.betas[0] >= 1 or self.betas[1] >= 1:
            raise ValueError(f"betas must each be < 1, got {betas!r}")
        self.eps = check_float("eps", eps, minimum=0.0)

    def init(self, params: Params) -> dict:
        return {"step": 0, "m": {k: torch.zeros_like(p) for k, p in params.items()},
                "v": {k: torch.zeros_like(p) for k, p in params.items()}}

    def step(self, params: Params, grads: Params, state: dict, inner_lr: StepLR) -> tuple[Params, dict]:
        b1, b2 = self.betas
        t = state["step"] + 1
        scale = math.sqrt(1 - b2**t) / (1 - b1**t)
        new_params, m_new, v_new = {}, {}, {}
        for name, p in params.items():
            g = grads[name]
            m = b1 * state["m"][name] + (1 - b1) * g
            v = b2 * state["v"][name] + (1 - b2) * g * g
            positive = v > 0
            root = torch.where(positive, torch.where(positive, v, torch.ones_like(v)).sqrt(), torch.zeros_like(v))
            new_params[name] = p - (_rate_for(inner_lr, name) * scale) * (m / (root + self.eps))
            m_new[name], v_new[name] = m, v
        return new_params, {"step": t, "m": m_new, "v": v_new}

    def torch_optimizer(self, params, inner_lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=inner_lr, betas=self.betas, eps=self.eps)

    def __repr__(self) -> str:
        return f"FunctionalAdam(betas={self.betas}, eps={self.eps})"


InnerOptimizer = FunctionalSGD | FunctionalAdam
INNER_OPTIMIZERS = {"sgd": FunctionalSGD, "adam": FunctionalAdam}


def make_inner_optimizer(inner_optimizer: str | InnerOptimizer) -> InnerOptimizer:
    """``"sgd"`` / ``"adam"`` (default settings) or an already built functional optimizer."""
    if isinstance(inner_optimizer, (FunctionalSGD, FunctionalAdam)):
        return inner_optimizer
    if not isinstance(inner_optimizer, str):
        raise TypeError(f"inner_optimizer must be 'sgd', 'adam', a FunctionalSGD or a FunctionalAdam, "
                        f"got {type(inner_optimizer).__name__}")
    check_choice("inner_optimizer", inner_optimizer, INNER_OPTIMIZERS)
    return INNER_OPTIMIZERS[inner_optimizer]()


def check_finite_losses(losses: torch.Tensor, what: str, lr_text: str) -> None:
    """Raise :class:`DivergenceError` naming the first non-finite step of ``losses`` (``[..., steps]``)."""
    if losses.numel() == 0:
        return
    bad = ~torch.isfinite(losses.detach())
    if bool(bad.any()):
        steps_bad = bad.reshape(-1, losses.shape[-1]).any(dim=0).nonzero().flatten()
        first = int(steps_bad[0])
        raise DivergenceError(f"{what} became NaN/Inf at inner step {first} (0-based, of {losses.shape[-1]}) "
                              f"with {lr_text}; lower the inner learning rate, use grad clipping, or check the "
                              f"task data for NaN")


def clip_grads(grads: Params, max_norm: float) -> Params:
    """Scale ``grads`` so their global L2 norm is at most ``max_norm`` (vmap-safe: no data-dependent
    branching)."""
    total = torch.sqrt(sum((g * g).sum() for g in grads.values()))
    factor = torch.clamp(max_norm / (total + 1e-12), max=1.0)
    return {k: g * factor for k, g in grads.items()}


__all__ = ["Params", "StepLR", "InnerLR", "rate_at", "is_learned", "InnerOptimizer", "DivergenceError",
           "FunctionalSGD", "FunctionalAdam", "INNER_OPTIMIZERS", "make_inner_optimizer", "check_finite_losses",
           "clip_grads"]
