"""Standard photograph sets and the pre-registered split of every restoration benchmark.

``kodak24()`` gives the 24 Kodak photographs, the **test** photographs (nothing is chosen or tuned on them);
``cbsd68(split)`` the 68 colour photographs of CBSD68, split into **train** and **dev** by a fixed rule;
``photo_pool(split)`` joins a CBSD68 split with the kit's embedded photographs. ``RESTORATION_SPLITS``, ``TEST_SEED``
and ``TEST_TASKS`` fix the protocol in code, before any final run.

Each set is read from a folder (the ``root`` argument, else an environment variable) or, without one, downloaded
once into the kit's cache from the FFDNet repository, which distributes both sets. Either way every file must
match its pinned SHA-256 hash (``_photo_hashes.py``), so every figure is computed on the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._checks import check_choice, check_int
from ._photo_hashes import CBSD68_SHA256, KODAK24_SHA256
from .downloads import DatasetUnavailableError, _fetch, _file_hash, _hash_matches
from .photo_source import PhotoSource, luma, photos

__all__ = ["BASE_URLS", "CBSD68_SPLITS", "DEV_SEED", "ENV_VARS", "PhotoSet", "RESTORATION_SPLITS",
           "RestorationSplit", "TEST_SEED", "TEST_TASKS", "cbsd68", "cbsd68_names", "kodak24", "photo_pool"]

_FFDNET = "https://github.com/cszn/FFDNet/raw/master/testsets/"
BASE_URLS = {"kodak24": _FFDNET + "Kodak24/", "cbsd68": _FFDNET + "CBSD68/"}
ENV_VARS = {"kodak24": "METALEARN_KIT_KODAK24", "cbsd68": "METALEARN_KIT_CBSD68"}
_HASHES = {"kodak24": KODAK24_SHA256, "cbsd68": CBSD68_SHA256}
_FOLDERS = {"kodak24": "testsets/Kodak24", "cbsd68": "testsets/CBSD68"}

CBSD68_SPLITS = ("train", "dev", "all")
# Every 4th photograph in sorted file-name order goes to dev (17 of 68): a rule anyone can recompute, and
# sorted BSDS ids carry no order by content, so both splits span the same kinds of scene.
_DEV_EVERY = 4

# Drawn once for this protocol and never used for anything else in the kit; changing either after a final run
# would make its figures a choice made on the test split.
TEST_SEED = 7_340_921
TEST_TASKS = 48
DEV_SEED = 2_718  # the seed of dev tasks, where every choice (families, recipes, grids, step counts) is made


@dataclass(frozen=True)
class RestorationSplit:
    """Where one split's photographs come from and what it may be used for."""

    photographs: tuple[str, ...]
    use: str


RESTORATION_SPLITS: dict[str, RestorationSplit] = {
    "train": RestorationSplit(("cbsd68('train')", "photos('train')"),
                              "meta-training and joint pretraining"),
    # the embedded 'test' photographs were read while the kit was built, so they can only be dev now
    "dev": RestorationSplit(("cbsd68('dev')", "photos('test')"),
                            "every choice: families, recipes, learning-rate grids, step counts (seed DEV_SEED)"),
    "test": RestorationSplit(("kodak24()",),
                             "final figures only, with TEST_SEED and TEST_TASKS; nothing is chosen on it"),
}


@dataclass(frozen=True)
class PhotoSet:
    """Named photographs of a standard set, in sorted file-name order.

    Attributes:
        name: ``"kodak24"``, ``"cbsd68/train"``, ...
        names: file stems, e.g. ``("kodim01", ...)``.
        images: float32 ``[C, H, W]`` tensors in [0, 1], one per name. Kodak24 is all 3x500x500; CBSD68 mixes
            3x321x481 and 3x481x321, so a set is a tuple rather than one tensor (:meth:`stack` joins equal shapes).
    """

    name: str
    names: tuple[str, ...]
    images: tuple[torch.Tensor, ...]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def channels(self) -> int:
        return int(self.images[0].shape[0])

    def stack(self) -> torch.Tensor:
        """All photographs as one float32 ``[N, C, H, W]`` tensor; needs one shape (true of Kodak24)."""
        shapes = sorted({tuple(img.shape) for img in self.images})
        if len(shapes) > 1:
            raise ValueError(f"{self.name} holds photographs of shapes {shapes}; use .images (one tensor each) "
                             f"or .patches(patch_size) instead of stack()")
        return torch.stack(self.images)

    def patches(self, patch_size: int = 32) -> PhotoSource:
        """A :class:`PhotoSource` over these photographs, for ``sample_patches``."""
        return PhotoSource.from_images(self.name, self.names, self.images, patch_size)


def _folder(dataset: str, root: str | os.PathLike | None) -> tuple[Path, str] | None:
    """The folder to read, and how it was given (for error messages); ``None`` means the cache/download path."""
    if root is not None:
        return Path(root).expanduser(), f"the root argument ({str(root)!r})"
    value = os.environ.get(ENV_VARS[dataset], "")
    if value:
        return Path(value).expanduser(), f"${ENV_VARS[dataset]} ({value!r})"
    return None


def _checked_folder_files(dataset: str, folder: Path, origin: str, hashes: Mapping[str, str]) -> list[Path]:
    """The files of ``hashes`` in ``folder``, each checked against its hash; one error lists every bad file."""
    missing = [name for name in hashes if not (folder / name).is_file()]
    wrong = [f"{name} (sha256 {_file_hash(folder / name, hashes[name]).partition(':')[2][:12]}..., expected "
             f"{hashes[name].partition(':')[2][:12]}...)"
             for name in hashes if name not in missing and not _hash_matches(folder / name, hashes[name])]
    if missing or wrong:
        problems = ([f"missing: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"] if missing else [])
        problems += [f"not the pinned bytes: {', '.join(wrong[:5])}{' ...' if len(wrong) > 5 else ''}"] if wrong else []
        raise DatasetUnavailableError(
            f"{dataset}: the folder {folder}, given by {origin}, does not hold the {len(hashes)} pinned files of "
            f"FFDNet's {_FOLDERS[dataset]}: {'; '.join(problems)}. Fix: copy the files of {BASE_URLS[dataset]} "
            f"there unchanged (PNG, hashes in metalearn_kit/data/_photo_hashes.py), or point "
            f"{'root' if origin.startswith('the root') else '$' + ENV_VARS[dataset]} at a folder that holds them, "
            f"or pass root=None with ${ENV_VARS[dataset]} unset to download them into the kit's cache.")
    return [folder / name for name in hashes]


def _files(dataset: str, root, download: bool, base_url: str | None,
           known_hashes: Mapping[str, str] | None) -> list[Path]:
    """Verified paths of every file of ``dataset``, in sorted name order."""
    hashes = dict(sorted((_HASHES[dataset] if known_hashes is None else known_hashes).items()))
    if not hashes:
        raise ValueError(f"known_hashes must name at least one file of {dataset}, got {known_hashes!r}")
    given = _folder(dataset, root)
    if given is not None:
        return _checked_folder_files(dataset, *given, hashes)
    alternative = (f"a folder holding the files of FFDNet's {_FOLDERS[dataset]}, given as root=... or "
                   f"${ENV_VARS[dataset]}")
    return [_fetch(dataset, name, None, download, base_url or BASE_URLS[dataset], hashes, alternative)
            for name in hashes]


def _read_png(path: Path, grey: bool) -> torch.Tensor:
    """One photograph as float32 ``[3, H, W]`` (or ``[1, H, W]`` by BT.601 luma) in [0, 1]."""
    from PIL import Image

    with Image.open(path) as handle:
        array = np.asarray(handle.convert("RGB"), dtype=np.float32) / 255.0
    image = torch.from_numpy(array).permute(2, 0, 1).contiguous()
    return luma(image) if grey else image


def _photo_set(name: str, paths: list[Path], grey: bool) -> PhotoSet:
    return PhotoSet(name, tuple(p.stem for p in paths), tuple(_read_png(p, grey) for p in paths))


def kodak24(root: str | os.PathLike | None = None, download: bool = True, grey: bool = False, *,
            base_url: str | None = None, known_hashes: Mapping[str, str] | None = None) -> PhotoSet:
    """The 24 Kodak photographs (``kodim01`` ... ``kodim24``, the 500x500 crops FFDNet distributes): the
    **test** photographs of the restoration benchmarks. ``.stack()`` gives float32 ``[24, 3, 500, 500]`` in [0, 1]
    (``[24, 1, 500, 500]``, BT.601 luma, with ``grey=True``).

    Args:
        root: a folder holding ``kodim01.png`` ... ``kodim24.png``; default ``$METALEARN_KIT_KODAK24``, else the
            kit's cache, filled from the FFDNet repository on first use (``download=True``).
        download: allow that download; a folder is only read, never written.
        grey: convert each photograph to one channel.
        base_url, known_hashes: another mirror (``https://`` or ``file://``) and its files' hashes.
    """
    return _photo_set("kodak24", _files("kodak24", root, download, base_url, known_hashes), grey)


def cbsd68_names(split: str = "all", names: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """File names of a CBSD68 split: sorted, every 4th (index 3, 7, ...) to ``"dev"``, the rest to ``"train"``."""
    check_choice("split", split, CBSD68_SPLITS)
    ordered = sorted(CBSD68_SHA256 if names is None else names)
    if split == "all":
        return tuple(ordered)
    return tuple(n for i, n in enumerate(ordered) if (i % _DEV_EVERY == _DEV_EVERY - 1) == (split == "dev"))


def cbsd68(root: str | os.PathLike | None = None, download: bool = True, split: str = "train", grey: bool = False,
           *, base_url: str | None = None, known_hashes: Mapping[str, str] | None = None) -> PhotoSet:
    """CBSD68's colour photographs (321x481 or 481x321, from BSDS300): the **train** and **dev** pool of the
    restoration benchmarks, never a test split. ``split``: ``"train"`` (51), ``"dev"`` (17) or ``"all"`` (68), by
    :func:`cbsd68_names`' fixed rule. ``.images``: float32 ``[3, H, W]`` each (``[1, H, W]`` with ``grey=True``).

    ``root`` / ``$METALEARN_KIT_CBSD68``, ``download``, ``base_url``, ``known_hashes``: as for :func:`kodak24`.
    """
    check_choice("split", split, CBSD68_SPLITS)
    hashes = CBSD68_SHA256 if known_hashes is None else known_hashes
    chosen = set(cbsd68_names(split, tuple(hashes)))
    paths = _files("cbsd68", root, download, base_url, {k: v for k, v in hashes.items() if k in chosen})
    return _photo_set(f"cbsd68/{split}", paths, grey)


def photo_pool(split: str = "train", patch_size: int = 32, channels: int = 3,
               root: str | os.PathLike | None = None, download: bool = True) -> PhotoSource:
    """The photographs a restoration model may learn from (``"train"``) or be tuned on (``"dev"``), as
    :data:`RESTORATION_SPLITS` says: a CBSD68 split plus the kit's embedded photographs, named
    ``"cbsd68/<id>"`` and ``"skimage/<name>"``. There is no ``"test"`` here: the test split is :func:`kodak24`.

    ``channels``: 3, or 1 (every photograph by BT.601 luma); ``root`` and ``download`` go to :func:`cbsd68`.
    """
    check_choice("split", split, ("train", "dev"))
    check_int("patch_size", patch_size, 8)
    embedded = photos({"train": "train", "dev": "test"}[split], patch_size, channels)
    pool = cbsd68(root, download, split, grey=channels == 1)
    names = [f"cbsd68/{n}" for n in pool.names] + [f"skimage/{n}" for n in embedded.names]
    return PhotoSource.from_images(split, names, list(pool.images) + list(embedded.images), patch_size)
