"""Restoration backbones, all of the form ``f(x) = R(E(x))`` (an encoder ``E`` into features, a restorer
``R`` back to an image), and the known linear degradation operators the unrolled restorer uses.

- :class:`~metalearn_kit.models.conv.ConvRestorer`: the plain residual CNN, ``x + net(x)`` (``E`` and ``R``
  folded into one stack).
- :class:`EncoderRestorer`: explicit ``encoder`` and ``restorer`` sub-modules, so meta-learning can share
  ``E`` and adapt only ``R`` (``adapt_params=["restorer"]``, or the names from :meth:`restorer_names`).
- :class:`UnrolledRestorer`: "iterative minimisation": a few proximal-gradient steps on the data fidelity
  ``0.5 ||A x - y||^2`` with the task's known operator ``A`` (blur kernel / mask / blur + downsample),
  each followed by a learned CNN regulariser; the step sizes are parameters, so meta-learning tunes them.

Operators act on a batch where every image may have its own kernel or mask (``[N, kh, kw]`` kernels,
``[N, C, H, W]`` masks), so the operator can travel inside a task's ``support`` tuple as a third tensor.
No BatchNorm anywhere: meta-learning adapts on a handful of images, where batch statistics mislead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_choice, check_float, check_int, check_model_input

__all__ = ["EncoderRestorer", "LinearOperator", "OPERATOR_KINDS", "UnrolledRestorer", "blur", "blur_adjoint",
           "blur_downsample", "blur_downsample_adjoint", "upsample"]

OPERATOR_KINDS = ("identity", "blur", "mask", "sr")


def _check_kernels(kernels: torch.Tensor, n: int) -> torch.Tensor:
    if not isinstance(kernels, torch.Tensor) or kernels.dim() != 3 or kernels.shape[0] != n:
        shape = tuple(kernels.shape) if isinstance(kernels, torch.Tensor) else type(kernels).__name__
        raise ValueError(f"operator must be blur kernels of shape [N={n}, kh, kw], got {shape}")
    if kernels.shape[1] % 2 == 0 or kernels.shape[2] % 2 == 0:
        raise ValueError(f"operator kernels must have odd sizes so 'same' padding is centred, got "
                         f"{tuple(kernels.shape[1:])}")
    return kernels


def _grouped(images: torch.Tensor, kernels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reshape ``[N, C, H, W]`` images and ``[N, kh, kw]`` kernels for one grouped convolution in which
    image ``i`` (all channels) meets kernel ``i``."""
    n, c, h, w = images.shape
    weight = kernels.to(images.dtype).repeat_interleave(c, dim=0).unsqueeze(1)  # [N*C, 1, kh, kw]
    return images.reshape(n * c, 1, h, w).transpose(0, 1), weight


def _reflect_index(size: int, pad: int, device: torch.device) -> torch.Tensor:
    """Source index of each position of a reflect-padded axis (``numpy``/``torch`` 'reflect': the edge
    pixel is not repeated)."""
    if pad >= size:
        raise ValueError(f"images of size {size} are too small for a kernel needing padding {pad}; use larger "
                         f"images or a smaller kernel")
    idx = torch.arange(-pad, size + pad, device=device).abs()
    return torch.where(idx > size - 1, 2 * (size - 1) - idx, idx)


def blur(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """``A x``: correlate image ``i`` of ``[N, C, H, W]`` with kernel ``i`` of ``[N, kh, kw]`` after reflect
    padding, output the same size -- the kit's degradation convention (``tasks.degradations.blur``)."""
    n, c, h, w = images.shape
    kernels = _check_kernels(kernels, n)
    rows = _reflect_index(h, kernels.shape[1] // 2, images.device)
    cols = _reflect_index(w, kernels.shape[2] // 2, images.device)
    padded = images[..., rows, :][..., cols]
    flat, weight = _grouped(padded, kernels)
    return F.conv2d(flat, weight, groups=n * c).reshape(n, c, h, w)


def blur_adjoint(residual: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """``A^T r`` for :func:`blur` (exact: the transposed correlation, then the reflect padding folded back
    onto the pixels it copied)."""
    n, c, h, w = residual.shape
    kernels = _check_kernels(kernels, n)
    rows = _reflect_index(h, kernels.shape[1] // 2, residual.device)
    cols = _reflect_index(w, kernels.shape[2] // 2, residual.device)
    flat, weight = _grouped(residual, kernels)
    padded = F.conv_transpose2d(flat, weight, groups=n * c).reshape(n, c, len(rows), len(cols))
    folded = residual.new_zeros(n, c, len(rows), w).index_add(3, cols, padded)
    return residual.new_zeros(n, c, h, w).index_add(2, rows, folded)


def blur_downsample(images: torch.Tensor, kernels: torch.Tensor, scale: int) -> torch.Tensor:
    """``A x`` for super-resolution: blur with kernel ``i`` then keep every ``scale``-th pixel.
    ``[N, C, H, W] -> [N, C, ceil(H / scale), ceil(W / scale)]``."""
    return blur(images, kernels)[..., ::scale, ::scale]


def blur_downsample_adjoint(residual: torch.Tensor, kernels: torch.Tensor, scale: int,
                            size: tuple[int, int]) -> torch.Tensor:
    """``A^T r`` for :func:`blur_downsample`: zero-filled upsampling to ``size`` then the blur adjoint."""
    n, c = residual.shape[:2]
    up = residual.new_zeros(n, c, *size)
    up[..., ::scale, ::scale] = residual
    return blur_adjoint(up, kernels)


class LinearOperator:
    """A known degradation ``y = A x`` for a batch: ``kind`` in ``identity | blur | mask | sr``, ``data``
    the per-image kernels ``[N, kh, kw]`` (blur, sr) or masks ``[N, C, H, W]`` with 1 = observed (mask)."""

    def __init__(self, kind: str, data: torch.Tensor | None = None, scale: int = 1,
                 size: tuple[int, int] | None = None) -> None:
        self.kind = check_choice("kind", kind, OPERATOR_KINDS)
        if kind != "identity" and not isinstance(data, torch.Tensor):
            raise ValueError(f"operator kind {kind!r} needs data (kernels or masks) as a tensor, got "
                             f"{type(data).__name__}")
        self.data = data
        self.scale = check_int("scale", scale, minimum=1)
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "identity":
            return x
        if self.kind == "mask":
            return x * self.data
        if self.kind == "blur":
            return blur(x, self.data)
        return blur_downsample(x, self.data, self.scale)

    def adjoint(self, r: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        if self.kind == "identity":
            return r
        if self.kind == "mask":
            return r * self.data
        if self.kind == "blur":
            return blur_adjoint(r, self.data)
        size = size or self.size
        if size is None:
            raise ValueError("size must be given for the adjoint of an 'sr' operator (the HR image size)")
        return blur_downsample_adjoint(r, self.data, self.scale, size)

    def data_gradient(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Gradient of ``0.5 ||A x - y||^2`` with respect to ``x``: ``A^T (A x - y)``."""
        return self.adjoint(self.forward(x) - y, size=tuple(x.shape[-2:]))


def upsample(images: torch.Tensor, scale: int, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Bicubic upsampling by ``scale`` (or to ``size``), clamped to [0, 1]: the usual first guess for SR."""
    scale = check_int("scale", scale, minimum=1)
    if size is None:
        size = (images.shape[-2] * scale, images.shape[-1] * scale)
    return F.interpolate(images, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


def _conv_stack(in_channels: int, width: int, out_channels: int, depth: int, last_act: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = in_channels
    for i in range(depth):
        out = out_channels if i == depth - 1 else width
        layers.append(nn.Conv2d(channels, out, 3, padding=1))
        if i < depth - 1 or last_act:
            layers.append(nn.ReLU())
        channels = out
    return nn.Sequential(*layers)


def _zero_last(module: nn.Sequential) -> None:
    """Start the residual branch near zero, so a fresh model is close to the identity (the scratch baseline
    starts at the degraded image, not at noise) -- but not at zero, which would give every earlier layer a
    zero gradient on the first step."""
    last = [m for m in module if isinstance(m, nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.mul_(0.1)
        last.bias.zero_()


class EncoderRestorer(nn.Module):
    """``f(x) = x + R(E(x))`` with an explicit encoder ``E`` (``encoder_depth`` convolutions to
    ``width`` feature maps) and restorer ``R`` (``restorer_depth`` convolutions back to an image residual).

    Meta-learning can keep ``E`` shared across tasks and adapt only ``R``: pass
    ``adapt_params=model.restorer_names()`` to the learner.
    """

    def __init__(self, channels: int = 1, width: int = 32, encoder_depth: int = 3,
                 restorer_depth: int = 2) -> None:
        super().__init__()
        self.channels = check_int("channels", channels, minimum=1)
        check_int("width", width, minimum=1)
        check_int("encoder_depth", encoder_depth, minimum=1)
        check_int("restorer_depth", restorer_depth, minimum=1)
        self.encoder = _conv_stack(channels, width, width, encoder_depth, last_act=True)
        self.restorer = _conv_stack(width, width, channels, restorer_depth, last_act=False)
        _zero_last(self.restorer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_model_input("x", x, self.channels, model=self)
        return x + self.restorer(self.encoder(x))

    def restorer_names(self) -> list[str]:
        """Parameter names of ``R`` (for ``adapt_params``)."""
        return [name for name, _ in self.named_parameters() if name.startswith("restorer.")]


class UnrolledRestorer(nn.Module):
    """Unrolled iterative minimisation of ``0.5 ||A x - y||^2 + regulariser(x)``: the source material's CIR
    (循环迭代最小化); meta-learned (its step sizes included) it is one of the source's MetaNNs.

    ``x_0 = y`` (mask, blur) or the bicubic upsampling of ``y`` (sr); then for ``k < iterations``::

        z = x_k - step_k * A^T (A x_k - y)       # gradient step on the data fidelity, known A
        x_{k+1} = z - reg(z)                     # learned proximal step (a residual CNN, shared over k)

    ``step_k = softplus(raw_step_k)`` keeps the steps positive; they are ordinary parameters, so MAML /
    Reptile meta-learn them. ``forward(y, operator)`` takes the operator data as a tensor (kernels
    ``[N, kh, kw]`` or masks ``[N, C, H, W]``) so it can sit in a task's support tuple;
    ``regularize=False`` drops the learned step (pure gradient descent on the data term).
    """

    def __init__(self, kind: str, channels: int = 1, width: int = 32, depth: int = 4, iterations: int = 4,
                 scale: int = 1, initial_step: float = 1.0) -> None:
        super().__init__()
        self.kind = check_choice("kind", kind, OPERATOR_KINDS)
        self.channels = check_int("channels", channels, minimum=1)
        self.iterations = check_int("iterations", iterations, minimum=1)
        self.scale = check_int("scale", scale, minimum=1)
        if kind == "sr" and scale < 2:
            raise ValueError(f"scale must be >= 2 for kind='sr', got {scale}")
        initial_step = check_float("initial_step", initial_step, minimum=0.0, strict_min=True)
        raw = torch.log(torch.expm1(torch.tensor(initial_step)))  # softplus^-1
        self.raw_steps = nn.Parameter(raw.repeat(self.iterations))
        self.regularizer = _conv_stack(channels, width, channels, depth, last_act=False)
        _zero_last(self.regularizer)

    @property
    def steps(self) -> torch.Tensor:
        return F.softplus(self.raw_steps)

    def operator(self, data: torch.Tensor | None, size: tuple[int, int] | None = None) -> LinearOperator:
        return LinearOperator(self.kind, data, self.scale, size)

    def initial_estimate(self, y: torch.Tensor, operator: LinearOperator) -> torch.Tensor:
        if self.kind == "sr":
            return upsample(y, self.scale, operator.size)
        # the observation itself: already the right size, and for a mask equal to A^T y
        return y

    def forward(self, y: torch.Tensor, operator: torch.Tensor | None = None, regularize: bool = True,
                size: tuple[int, int] | None = None) -> torch.Tensor:
        check_model_input("y", y, self.channels, model=self)
        if self.kind == "sr" and size is None:
            size = (y.shape[-2] * self.scale, y.shape[-1] * self.scale)
        op = self.operator(operator, size)
        x = self.initial_estimate(y, op)
        steps = self.steps
        for k in range(self.iterations):
            x = x - steps[k] * op.data_gradient(x, y)
            if regularize:
                x = x - self.regularizer(x)
        return x
