"""The built-in degradation families (noise, blur, inpainting, super-resolution, JPEG), each a
:class:`~metalearn_kit.tasks.degradation_base.Degradation` registered on definition; this module also gives
the base class, the registry functions and the kernels, so ``from metalearn_kit.tasks.degradations import
make_degradation`` keeps one import line for everything about degradations."""

from __future__ import annotations

import io
import math
from typing import Any

import torch
import torch.nn.functional as F

from .._checks import check_images, check_int
from ..config import make_generator
from .degradation_base import (
    SPLITS,
    Degradation,
    list_degradations,
    make_degradation,
    register_degradation,
    restoration_split,
)
from .degradation_checks import RAW_RANGE_TOLERANCE
from .kernels import blur, check_kernel, gaussian_kernel, motion_kernel

__all__ = ["BUILTIN_FAMILIES", "JPEG", "SPLITS", "Degradation", "GaussianBlur", "GaussianNoise", "Inpainting",
           "KernelBlur", "MotionBlur", "PoissonNoise", "SuperResolution", "blur", "check_kernel", "gaussian_kernel",
           "list_degradations", "make_degradation", "motion_kernel", "register_degradation", "restoration_split"]


# ----------------------------------------------------------------------------------------------------------
# Built-in families
# ----------------------------------------------------------------------------------------------------------

class GaussianNoise(Degradation):
    """Additive white Gaussian noise of standard deviation ``sigma`` (on the [0, 1] scale), then clipped."""

    name = "gaussian_noise"
    default_ranges = {"train": {"sigma": (0.05, 0.15)}, "val": {"sigma": (0.05, 0.15)},
                      "test": {"sigma": (0.18, 0.3)}}
    param_limits = {"sigma": (0.0, None)}

    def degrade(self, clean, params, generator):
        return clean + params["sigma"] * self.randn(clean.shape, generator, clean)

    def raw_tolerance(self, params):
        # 8 sigma: a Gaussian exceeds it with probability 1e-15 per pixel
        return max(RAW_RANGE_TOLERANCE, 8 * params["sigma"])

    def operator(self, params, image_size=None):
        return {"kind": "identity", "noise_sigma": params["sigma"]}


class PoissonNoise(Degradation):
    """Shot noise: ``Poisson(peak * x) / peak`` -- a pixel of value ``x`` collects ``peak * x`` photons on
    average, so its variance is ``x / peak`` (lower ``peak`` = noisier)."""

    name = "poisson_noise"
    default_ranges = {"train": {"peak": (10.0, 60.0)}, "val": {"peak": (10.0, 60.0)},
                      "test": {"peak": (2.0, 8.0)}}
    param_limits = {"peak": (1e-3, None)}

    def degrade(self, clean, params, generator):
        rate = (clean * params["peak"]).detach().cpu()
        counts = torch.poisson(rate, generator=generator)
        return (counts / params["peak"]).to(clean.device, clean.dtype)

    def raw_tolerance(self, params):
        # counts of a pixel at 1 (rate = peak) stay below peak + 8 sqrt(peak) + 16 but with negligible probability
        # (Bernstein's bound for the Poisson tail), so counts / peak stays below 1 + 8 / sqrt(peak) + 16 / peak
        peak = params["peak"]
        return max(RAW_RANGE_TOLERANCE, 8 / math.sqrt(peak) + 16 / peak)

    def operator(self, params, image_size=None):
        return {"kind": "identity", "poisson_peak": params["peak"]}


def _default_kernel_size(needed: float, minimum: int = 15) -> int:
    size = max(minimum, math.ceil(needed))
    return size if size % 2 else size + 1


def _gaussian_kernel_size(widest_sigma: float, kernel_size: int | None) -> int:
    """``kernel_size`` (checked: an odd int) or, when None, one wide enough for ``widest_sigma``: 3 sigma on each
    side holds 99.7% of the mass; never less than 15 so train and test kernels match."""
    size = (_default_kernel_size(6 * widest_sigma + 1) if kernel_size is None
            else check_int("kernel_size", kernel_size, minimum=1))
    if size % 2 == 0:
        raise ValueError(f"kernel_size must be odd, got {size}; use {size + 1}")
    return size


class GaussianBlur(Degradation):
    """Isotropic Gaussian blur of width ``sigma`` (pixels), optional white noise ``noise_sigma`` after it.
    The kernel (``kernel_size`` square, reflect padding) is part of the task: see :meth:`operator`."""

    name = "gaussian_blur"
    default_ranges = {"train": {"sigma": (0.5, 1.5), "noise_sigma": 0.0},
                      "val": {"sigma": (0.5, 1.5), "noise_sigma": 0.0},
                      "test": {"sigma": (1.8, 2.6), "noise_sigma": 0.0}}
    param_limits = {"sigma": (1e-3, None), "noise_sigma": (0.0, None)}

    def __init__(self, split: str = "train", kernel_size: int | None = None, **ranges: Any) -> None:
        super().__init__(split, **ranges)
        self.kernel_size = _gaussian_kernel_size(max(self.possible_values("sigma")), kernel_size)

    def kernel(self, params: dict[str, Any]) -> torch.Tensor:
        return gaussian_kernel(self.kernel_size, params["sigma"])

    def degrade(self, clean, params, generator):
        out = blur(clean, self.kernel(params))
        if params["noise_sigma"] > 0:
            out = out + params["noise_sigma"] * self.randn(clean.shape, generator, clean)
        return out

    def check_image_size(self, height, width, params=None):
        if self.kernel_size // 2 >= min(height, width):
            raise ValueError(f"images of size {height}x{width} are too small for kernel_size {self.kernel_size}; "
                             f"use larger patches or a smaller kernel_size")

    def raw_tolerance(self, params):
        # a kernel with negative taps (sharpening, allowed for user kernels) overshoots by sum(|k|) - 1 at most
        overshoot = float(self.kernel(params).abs().sum()) - 1.0
        return max(RAW_RANGE_TOLERANCE, overshoot + 8 * params["noise_sigma"])

    def operator(self, params, image_size=None):
        return {"kind": "blur", "kernel": self.kernel(params), "padding": "reflect",
                "noise_sigma": params["noise_sigma"]}


class MotionBlur(GaussianBlur):
    """Linear motion blur: a straight streak of ``length`` pixels at ``angle`` degrees, optional noise."""

    name = "motion_blur"
    default_ranges = {"train": {"length": (3.0, 9.0), "angle": (0.0, 180.0), "noise_sigma": 0.0},
                      "val": {"length": (3.0, 9.0), "angle": (0.0, 180.0), "noise_sigma": 0.0},
                      "test": {"length": (11.0, 15.0), "angle": (0.0, 180.0), "noise_sigma": 0.0}}
    param_limits = {"length": (1.0, None), "angle": (-360.0, 360.0), "noise_sigma": (0.0, None)}

    def __init__(self, split: str = "train", kernel_size: int | None = None, **ranges: Any) -> None:
        Degradation.__init__(self, split, **ranges)
        longest = max(self.possible_values("length"))
        self.kernel_size = (_default_kernel_size(longest) if kernel_size is None
                            else check_int("kernel_size", kernel_size, minimum=1))
        if self.kernel_size % 2 == 0 or self.kernel_size < longest:
            raise ValueError(f"kernel_size must be odd and >= the longest length {longest}, got "
                             f"{self.kernel_size}")

    def kernel(self, params):
        return motion_kernel(self.kernel_size, params["length"], params["angle"])


class KernelBlur(GaussianBlur):
    """Blur with user-given kernels (each ``[k, k]``, odd ``k``, summing to one); a task picks one of them
    (``kernel_index``), optional white noise ``noise_sigma`` after it."""

    name = "kernel_blur"
    default_ranges = {}
    param_limits = {"kernel_index": (0, None), "noise_sigma": (0.0, None)}
    integer_params = frozenset({"kernel_index"})

    def __init__(self, kernels: list[torch.Tensor] | torch.Tensor | None = None, split: str = "train",
                 noise_sigma: Any = 0.0) -> None:
        if kernels is None:
            raise ValueError("kernels is required: give a list of [k, k] tensors that each sum to one")
        if isinstance(kernels, torch.Tensor):
            kernels = [kernels] if kernels.dim() == 2 else list(kernels)
        kernels = [check_kernel(f"kernels[{i}]", k) for i, k in enumerate(kernels)]
        if not kernels:
            raise ValueError("kernels must hold at least one kernel")
        if len({k.shape for k in kernels}) != 1:
            raise ValueError(f"kernels must share one size, got {sorted({tuple(k.shape) for k in kernels})}")
        Degradation.__init__(self, split)
        self.split = split
        self.kernels = kernels
        self.kernel_size = kernels[0].shape[0]
        self.ranges = {"kernel_index": self._check_range("kernel_index", (0, len(kernels) - 1)),
                       "noise_sigma": self._check_range("noise_sigma", noise_sigma)}

    def kernel(self, params):
        if params["kernel_index"] >= len(self.kernels):
            raise ValueError(f"params kernel_index must be < {len(self.kernels)}, got {params['kernel_index']}")
        return self.kernels[params["kernel_index"]]


class Inpainting(Degradation):
    """Missing pixels set to zero: ``degraded = clean * mask`` (mask 1 = kept, 0 = missing).

    ``mode`` is ``"random"`` (scattered pixels), ``"boxes"`` (rectangles) or ``"strokes"`` (thick
    scribbles), and exactly ``round(fraction * H * W)`` pixels are missing. A task has one mask, shared by
    all its images and rebuilt from ``params["mask_seed"]`` (:meth:`mask`), so the support set reveals
    where the holes are -- the task is one fixed forward operator, like a blur kernel."""

    name = "inpainting"
    default_ranges = {"train": {"mode": ["random", "boxes", "strokes"], "fraction": (0.1, 0.4)},
                      "val": {"mode": ["random", "boxes", "strokes"], "fraction": (0.1, 0.4)},
                      "test": {"mode": ["random", "boxes", "strokes"], "fraction": (0.5, 0.7)}}
    param_limits = {"fraction": (0.0, 0.95)}
    param_choices = {"mode": ("random", "boxes", "strokes")}
    extra_params = frozenset({"mask_seed"})

    def sample_params(self, generator=None):
        g = make_generator(generator)
        params = super().sample_params(g)
        params["mask_seed"] = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
        return params

    def check_params(self, params):
        params = super().check_params(params)
        if "mask_seed" not in params:
            raise ValueError("params is missing ['mask_seed'] for Inpainting; get a full set from sample_params()")
        check_int("params['mask_seed']", params["mask_seed"], minimum=0)
        return params

    def mask(self, params: dict[str, Any], image_size: tuple[int, int]) -> torch.Tensor:
        """The task's mask ``[1, 1, H, W]`` (float, 1 = kept), the same for the same params and size."""
        params = self.check_params(params)
        h, w = image_size
        g = torch.Generator().manual_seed(params["mask_seed"])
        n_missing = round(params["fraction"] * h * w)
        if params["mode"] == "random":
            missing = torch.zeros(h * w, dtype=torch.bool)
            missing[torch.randperm(h * w, generator=g)[:n_missing]] = True
            return (~missing).float().view(1, 1, h, w)
        # Shapes are added until enough pixels are covered; recording the order in which pixels were first
        # covered lets the last shape be cut short so the missing count is exact.
        order = torch.full((h * w,), h * w, dtype=torch.long)
        covered = 0
        rows = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
        cols = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w)
        for _ in range(20 * h * w):
            if covered >= n_missing:
                break
            shape = self._box(g, h, w) if params["mode"] == "boxes" else self._stroke(g, rows, cols)
            new = shape.flatten() & (order == h * w)
            count = int(new.sum())
            order[new] = covered + torch.arange(count)
            covered += count
        if covered < n_missing:  # shapes never hit the last pixels (tiny images): finish with scattered ones
            free = (order == h * w).nonzero().flatten()
            pick = free[torch.randperm(len(free), generator=g)[: n_missing - covered]]
            order[pick] = covered + torch.arange(len(pick))
        return (order >= n_missing).float().view(1, 1, h, w)

    @staticmethod
    def _box(g: torch.Generator, h: int, w: int) -> torch.Tensor:
        bh = int(torch.randint(max(1, h // 10), max(2, h // 4) + 1, (1,), generator=g))
        bw = int(torch.randint(max(1, w // 10), max(2, w // 4) + 1, (1,), generator=g))
        top = int(torch.randint(0, h - bh + 1, (1,), generator=g))
        left = int(torch.randint(0, w - bw + 1, (1,), generator=g))
        box = torch.zeros(h, w, dtype=torch.bool)
        box[top:top + bh, left:left + bw] = True
        return box

    @staticmethod
    def _stroke(g: torch.Generator, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        h, w = rows.shape
        radius = 0.5 + float(torch.rand((), generator=g)) * max(1.0, min(h, w) / 16)
        point = torch.rand(2, generator=g) * torch.tensor([h, w])
        stroke = torch.zeros(h, w, dtype=torch.bool)
        for _ in range(int(torch.randint(2, 6, (1,), generator=g))):
            angle = float(torch.rand((), generator=g)) * 2 * math.pi
            length = (0.1 + 0.3 * float(torch.rand((), generator=g))) * min(h, w)
            end = (point + length * torch.tensor([math.sin(angle), math.cos(angle)])).clamp(
                torch.zeros(2), torch.tensor([h - 1.0, w - 1.0]))
            # Distance from every pixel to the segment point -> end.
            d = end - point
            t = (((rows - point[0]) * d[0] + (cols - point[1]) * d[1]) / d.pow(2).sum().clamp_min(1e-6)).clamp(0, 1)
            dist2 = (rows - point[0] - t * d[0]) ** 2 + (cols - point[1] - t * d[1]) ** 2
            stroke |= dist2 <= radius**2
            point = end
        return stroke

    def degrade(self, clean, params, generator):
        return clean * self.mask(params, clean.shape[-2:]).to(clean.device, clean.dtype)

    def operator(self, params, image_size=None):
        if image_size is None:
            raise ValueError("image_size (H, W) is required for the inpainting operator: the mask depends on it")
        return {"kind": "mask", "mask": self.mask(params, tuple(image_size))}


class SuperResolution(Degradation):
    """Super-resolution, MZSR-style: the low-resolution image is the clean one blurred with a Gaussian
    kernel of width ``kernel_sigma`` (reflect padding) and subsampled by ``scale`` (every ``scale``-th
    pixel, starting at 0), plus optional noise ``noise_sigma``. :meth:`downsample` returns that true LR
    ``[N, C, H/scale, W/scale]``; :meth:`apply` returns it upsampled back to ``[N, C, H, W]`` with bicubic
    interpolation, the usual network input. Clean sizes must be divisible by every possible ``scale``.
    Default ranges: scale 2 for training, the unseen scale 4 for testing (both divide the kit's 28- and
    32-pixel patches); pass ``scale=[2, 3, 4]`` with patches that are multiples of 12 for all three."""

    name = "super_resolution"
    default_ranges = {"train": {"scale": [2], "kernel_sigma": (0.4, 1.6), "noise_sigma": 0.0},
                      "val": {"scale": [2], "kernel_sigma": (0.4, 1.6), "noise_sigma": 0.0},
                      "test": {"scale": [4], "kernel_sigma": (1.8, 2.6), "noise_sigma": 0.0}}
    param_limits = {"kernel_sigma": (1e-3, None), "noise_sigma": (0.0, None)}
    param_choices = {"scale": (2, 3, 4)}

    def __init__(self, split: str = "train", kernel_size: int | None = None, **ranges: Any) -> None:
        super().__init__(split, **ranges)
        self.kernel_size = _gaussian_kernel_size(max(self.possible_values("kernel_sigma")), kernel_size)

    def kernel(self, params: dict[str, Any]) -> torch.Tensor:
        return gaussian_kernel(self.kernel_size, params["kernel_sigma"])

    def check_image_size(self, height, width, params=None):
        for scale in self.possible_values("scale") if params is None else [params["scale"]]:
            if height % scale or width % scale:
                raise ValueError(f"clean patch size {height}x{width} must be divisible by scale {scale} for "
                                 f"super-resolution; use a patch size that is a multiple of "
                                 f"{math.lcm(*self.possible_values('scale'))}")
        if self.kernel_size // 2 >= min(height, width):
            raise ValueError(f"images of size {height}x{width} are too small for kernel_size {self.kernel_size}")

    def downsample(self, clean: torch.Tensor, params: dict[str, Any],
                   generator: torch.Generator | int | None = None) -> torch.Tensor:
        """The true low-resolution image ``[N, C, H/scale, W/scale]`` (blur, subsample, noise, clamp)."""
        clean = check_images("clean", clean)
        params = self.check_params(params)
        self.check_image_size(clean.shape[-2], clean.shape[-1], params)
        return self._downsample(clean, params, make_generator(generator)).clamp(0.0, 1.0)

    def _downsample(self, clean, params, generator):
        scale = params["scale"]
        low = blur(clean, self.kernel(params))[..., ::scale, ::scale]
        if params["noise_sigma"] > 0:
            low = low + params["noise_sigma"] * self.randn(low.shape, generator, low)
        return low

    def degrade(self, clean, params, generator):
        low = self._downsample(clean, params, generator).clamp(0.0, 1.0)
        return F.interpolate(low, size=clean.shape[-2:], mode="bicubic", align_corners=False)

    def operator(self, params, image_size=None):
        return {"kind": "downsample", "kernel": self.kernel(params), "scale": params["scale"],
                "padding": "reflect", "offset": 0, "noise_sigma": params["noise_sigma"]}


class JPEG(Degradation):
    """JPEG compression artefacts: each image is rounded to 8 bits, encoded with PIL at ``quality``
    (1-95, lower = stronger artefacts) and decoded. Colour images use PIL's default 4:2:0 chroma
    subsampling; images with 1 or other than 3 channels are coded channel by channel as greyscale."""

    name = "jpeg"
    default_ranges = {"train": {"quality": (30, 70)}, "val": {"quality": (30, 70)}, "test": {"quality": (5, 20)}}
    param_limits = {"quality": (1, 95)}
    integer_params = frozenset({"quality"})

    def degrade(self, clean, params, generator):
        from PIL import Image

        quality = params["quality"]
        data = (clean.detach().cpu() * 255).round().to(torch.uint8)
        out = torch.empty(clean.shape, dtype=torch.float32)

        def roundtrip(array, mode):
            buffer = io.BytesIO()
            Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
            buffer.seek(0)
            decoded = Image.open(buffer).convert(mode)
            return torch.frombuffer(bytearray(decoded.tobytes()), dtype=torch.uint8)

        n, c, h, w = clean.shape
        for i in range(n):
            if c == 3:
                rgb = roundtrip(data[i].permute(1, 2, 0).contiguous().numpy(), "RGB")
                out[i] = rgb.view(h, w, 3).permute(2, 0, 1).float() / 255
            else:
                for ch in range(c):
                    out[i, ch] = roundtrip(data[i, ch].contiguous().numpy(), "L").view(h, w).float() / 255
        return out.to(clean.device, clean.dtype)


BUILTIN_FAMILIES = (GaussianNoise, PoissonNoise, GaussianBlur, MotionBlur, Inpainting, SuperResolution, JPEG)
