"""Sparse-representation baseline: learn a patch dictionary, sparse-code each patch with orthogonal
matching pursuit (OMP), rebuild the image by averaging overlapping patches (the K-SVD-style denoiser of
Elad & Aharon, with scikit-learn's ``MiniBatchDictionaryLearning`` in place of K-SVD).

The patch mean (DC) is removed before coding and added back after, so atoms model texture, not brightness.
OMP stops when the residual of a patch falls to the noise level (``tolerance = patch_pixels * (gain *
sigma)^2``), so stronger noise means fewer atoms per patch.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .._checks import check_float, check_images, check_int
from ..config import make_generator

__all__ = ["PatchDictionary"]


class PatchDictionary:
    """A learned dictionary of ``n_atoms`` patches of ``patch_size x patch_size`` (one channel at a time).

    ``fit(images, generator)`` learns it from ``[N, C, H, W]`` images (clean training photos, or the noisy
    image itself); ``denoise(noisy, sigma)`` restores ``[N, C, H, W]`` images with Gaussian noise of
    standard deviation ``sigma`` (known or estimated).
    """

    def __init__(self, n_atoms: int = 64, patch_size: int = 6, gain: float = 1.15,
                 max_fit_patches: int = 20000) -> None:
        self.n_atoms = check_int("n_atoms", n_atoms, minimum=2)
        self.patch_size = check_int("patch_size", patch_size, minimum=2)
        self.gain = check_float("gain", gain, minimum=0.0, strict_min=True)
        self.max_fit_patches = check_int("max_fit_patches", max_fit_patches, minimum=n_atoms)
        self.atoms: np.ndarray | None = None  # [n_atoms, patch_size**2], unit norm rows

    def _patches(self, image: np.ndarray) -> np.ndarray:
        """All overlapping patches of an ``[H, W]`` image as rows ``[P, patch_size**2]``."""
        from sklearn.feature_extraction.image import extract_patches_2d

        p = self.patch_size
        return extract_patches_2d(image, (p, p)).reshape(-1, p * p)

    def fit(self, images: torch.Tensor, generator: torch.Generator | int | None = None,
            iterations: int = 200) -> PatchDictionary:
        """Learn the atoms from every channel of ``images`` ``[N, C, H, W]``; returns ``self``."""
        from sklearn.decomposition import MiniBatchDictionaryLearning
        from sklearn.exceptions import ConvergenceWarning

        images = check_images("images", images)
        iterations = check_int("iterations", iterations, minimum=1)
        if min(images.shape[-2:]) < self.patch_size:
            raise ValueError(f"images must be at least patch_size={self.patch_size} pixels on a side, got "
                             f"{tuple(images.shape[-2:])}")
        gen = make_generator(generator)
        arr = images.detach().cpu().double().numpy()
        rows = np.concatenate([self._patches(channel) for image in arr for channel in image])
        if rows.shape[0] > self.max_fit_patches:  # a seeded subset keeps fitting time bounded
            keep = torch.randperm(rows.shape[0], generator=gen)[: self.max_fit_patches].numpy()
            rows = rows[keep]
        rows = rows - rows.mean(axis=1, keepdims=True)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen).item())
        learner = MiniBatchDictionaryLearning(
            n_components=self.n_atoms, alpha=0.1, batch_size=256, max_iter=None, max_no_improvement=None,
            random_state=seed, fit_algorithm="cd", transform_algorithm="omp",
        )
        learner.set_params(max_iter=max(1, iterations * 256 // max(rows.shape[0], 1)))
        with warnings.catch_warnings():
            # coordinate descent's inner Lasso stops early on some batches; the dictionary is still fine
            warnings.simplefilter("ignore", ConvergenceWarning)
            learner.fit(rows)
        atoms = learner.components_
        self.atoms = atoms / np.maximum(np.linalg.norm(atoms, axis=1, keepdims=True), 1e-12)
        return self

    def denoise(self, noisy: torch.Tensor, sigma: float) -> torch.Tensor:
        """Sparse-code every overlapping patch of ``noisy`` ``[N, C, H, W]`` with OMP down to the noise
        level and average the rebuilt patches. Returns ``[N, C, H, W]`` in [0, 1]."""
        from sklearn.feature_extraction.image import reconstruct_from_patches_2d
        from sklearn.linear_model import orthogonal_mp_gram

        if self.atoms is None:
            raise ValueError("this PatchDictionary has no atoms yet: call fit(images) before denoise()")
        noisy = check_images("noisy", noisy)
        sigma = check_float("sigma", sigma, minimum=0.0, strict_min=True)
        p = self.patch_size
        tol = p * p * (self.gain * sigma) ** 2
        gram = self.atoms @ self.atoms.T
        out = np.empty(noisy.shape, dtype=np.float64)
        arr = noisy.detach().cpu().double().numpy()
        for i, image in enumerate(arr):
            for c, channel in enumerate(image):
                rows = self._patches(channel)
                means = rows.mean(axis=1, keepdims=True)
                centred = rows - means
                # per-patch tolerance: OMP stops once ||residual||^2 <= tol
                codes = orthogonal_mp_gram(gram, self.atoms @ centred.T, n_nonzero_coefs=None, tol=tol,
                                           norms_squared=(centred**2).sum(1))
                rebuilt = (codes.T @ self.atoms) + means
                out[i, c] = reconstruct_from_patches_2d(rebuilt.reshape(-1, p, p), channel.shape)
        return torch.from_numpy(out).to(noisy.dtype).clamp(0, 1)
