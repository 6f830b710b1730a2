"""Real datasets fetched on first use: Omniglot, MNIST and Fashion-MNIST.

Files come through ``pooch`` (imported only when a loader runs), are checked against pinned hashes (the
MD5 sums the dataset authors and torchvision publish) and live in the user cache dir, so the next call
is offline. pooch writes a download to a temporary file and renames it only after the hash matched,
so an interrupted download never leaves a half-written file under the final name. A cached file whose
hash no longer matches is fetched again (``download=True``) or reported (``download=False``).

Without internet, :func:`metalearn_kit.data.glyphs` gives an Omniglot-like set with no download.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_choice, check_int
from ._cache import cache_dir, load_npz, save_npz_atomic
from .base import ClassImageSource

__all__ = ["BASE_URLS", "DatasetUnavailableError", "FASHION_CLASSES", "KNOWN_HASHES", "OMNIGLOT_SMALL_HASHES",
           "OMNIGLOT_SPLITS", "fashion_mnist", "mnist", "omniglot", "read_idx"]

_PROCESSED_VERSION = 1

BASE_URLS = {
    "omniglot": "https://github.com/brendenlake/omniglot/raw/master/python/",
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}
# Pinned hashes of the official files (pooch's "md5:" form; these are the published checksums).
KNOWN_HASHES: dict[str, dict[str, str]] = {
    "omniglot": {
        "images_background.zip": "md5:68d2efa1b9178cc56df9314c21c6e718",
        "images_evaluation.zip": "md5:6b91aef0f799c5bb55b94e3f2daec811",
    },
    "mnist": {
        "train-images-idx3-ubyte.gz": "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "md5:d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "md5:9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "md5:ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz": "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "md5:25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "md5:bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "md5:bb300cfdad3c16e7a12a480ee83cd310",
    },
}
# Omniglot's small background subsets (5 alphabets each), for development and tests; md5 of the repository's file.
OMNIGLOT_SMALL_HASHES = {"images_background_small1.zip": "md5:e704a628b5459e08445c13499850abc4"}
OMNIGLOT_SPLITS = ("background", "evaluation", "background_small1")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
_ALTERNATIVE = ("metalearn_kit.data.glyphs(split='background' or 'evaluation'), an Omniglot-like set drawn "
                "from bundled fonts, needs no download")


class DatasetUnavailableError(RuntimeError):
    """A dataset file could not be downloaded, or its cached copy is corrupted and cannot be re-fetched."""


def _file_hash(path: Path, known_hash: str) -> str:
    algorithm, _, _ = known_hash.rpartition(":")
    digest = hashlib.new(algorithm or "sha256")
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"{algorithm or 'sha256'}:{digest.hexdigest()}"


def _hash_matches(path: Path, known_hash: str) -> bool:
    return _file_hash(path, known_hash).lower() == (known_hash if ":" in known_hash
                                                     else f"sha256:{known_hash}").lower()


def _copy_local(url: str, output_file, pooch_instance=None, check_only: bool = False):
    """pooch downloader for ``file://`` URLs (tests and local mirrors); same contract as pooch's own."""
    source = urllib.request.url2pathname(urllib.parse.urlparse(url).path)
    if check_only:
        return os.path.exists(source)
    if not os.path.exists(source):
        raise FileNotFoundError(f"no file at {url}")
    if hasattr(output_file, "write"):
        with open(source, "rb") as handle:
            shutil.copyfileobj(handle, output_file)
    else:
        shutil.copyfile(source, output_file)
    return None


def _fetch(dataset: str, filename: str, root: str | os.PathLike | None, download: bool,
           base_url: str | None, known_hashes: Mapping[str, str] | None, alternative: str = _ALTERNATIVE) -> Path:
    """Path of a verified copy of ``filename``, downloading it if needed and allowed; ``alternative`` is the
    offline way out the errors suggest."""
    hashes = KNOWN_HASHES[dataset] if known_hashes is None else known_hashes
    if filename not in hashes:
        raise ValueError(f"known_hashes must give a hash for {filename!r}, got keys {sorted(hashes)}")
    known_hash = hashes[filename]
    folder = Path(root).expanduser() if root is not None else cache_dir(dataset)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    if path.exists() and _hash_matches(path, known_hash):
        return path
    if not download:
        if path.exists():
            raise DatasetUnavailableError(
                f"{path} is corrupted or truncated: its hash is {_file_hash(path, known_hash)}, expected "
                f"{known_hash}. Call with download=True to fetch it again, or delete the file. "
                f"Offline, use {alternative}.")
        raise DatasetUnavailableError(
            f"{path} is missing and download=False. Call with download=True (needs internet), or use "
            f"{alternative}.")
    import pooch

    url = (base_url or BASE_URLS[dataset]).rstrip("/") + "/" + filename
    downloader = _copy_local if url.startswith("file:") else None
    try:
        # pooch re-fetches a cached file whose hash does not match and renames the download into
        # place only after checking it.
        pooch.retrieve(url, known_hash=known_hash, fname=filename, path=folder, downloader=downloader,
                       progressbar=False)
    except ValueError as err:  # pooch's hash mismatch on the fresh download
        raise DatasetUnavailableError(
            f"the file downloaded from {url} does not match its pinned hash {known_hash} ({err}). The "
            f"mirror may have changed or the transfer was cut; try again later, or use {alternative}.") from err
    except Exception as err:  # network errors come from requests, urllib, ftplib...: report them all alike
        state = (f"the cached copy at {path} is corrupted and could not be replaced" if path.exists()
                 else f"could not download {filename}")
        raise DatasetUnavailableError(
            f"{dataset}: {state} from {url} ({type(err).__name__}: {err}). Check the internet connection, "
            f"or use {alternative}.") from err
    if not _hash_matches(path, known_hash):  # defensive: pooch guarantees this
        raise DatasetUnavailableError(f"{path} does not match its pinned hash {known_hash} after download")
    return path


def _resize(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """uint8 ``[N, H, W]`` -> uint8 ``[N, 1, S, S]`` with antialiased resampling, in chunks to bound memory."""
    if images.shape[-1] == image_size and images.shape[-2] == image_size:
        return images[:, None].contiguous()
    out = []
    for chunk in images.split(4096):
        resized = F.interpolate(chunk[:, None].float(), size=(image_size, image_size), mode="bilinear",
                                antialias=True, align_corners=False)
        out.append(resized.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out) if out else torch.zeros(0, 1, image_size, image_size, dtype=torch.uint8)


def _processed_path(folder: Path, stem: str, image_size: int, known_hash: str) -> Path:
    tag = known_hash.rpartition(":")[2][:12]  # a different raw file never reuses a processed array
    return folder / f"{stem}-size{image_size}-{tag}-v{_PROCESSED_VERSION}.npz"


# ----------------------------------------------------------------------------------------- Omniglot


def _read_omniglot_zip(path: Path) -> tuple[np.ndarray, list[str], list[str], list[int], np.ndarray]:
    """Decode an Omniglot zip (``<top>/<alphabet>/<character>/<drawing>.png``, black ink on white)."""
    from PIL import Image

    with zipfile.ZipFile(path) as archive:
        members = sorted(n for n in archive.namelist() if n.lower().endswith(".png"))
        entries = []
        for name in members:
            parts = name.split("/")
            if len(parts) < 3:
                raise ValueError(f"{path.name}: expected <alphabet>/<character>/<image>.png entries, got {name!r}")
            entries.append((parts[-3], parts[-2], name))
        if not entries:
            raise ValueError(f"{path.name} holds no PNG images; is it an Omniglot archive?")
        alphabets = sorted({a for a, _, _ in entries})
        classes = sorted({(a, c) for a, c, _ in entries})
        class_index = {key: i for i, key in enumerate(classes)}
        images, labels = [], []
        for alphabet, character, name in entries:
            with archive.open(name) as handle:
                grey = np.asarray(Image.open(handle).convert("L"), dtype=np.uint8)
            if images and grey.shape != images[0].shape:
                raise ValueError(f"{path.name}: {name} is {grey.shape}, other images are {images[0].shape}")
            images.append(255 - grey)  # ink = 1 on 0, like MNIST
            labels.append(class_index[(alphabet, character)])
    class_alphabet = [alphabets.index(a) for a, _ in classes]
    return (np.stack(images), [f"{a}/{c}" for a, c in classes], alphabets, class_alphabet,
            np.asarray(labels, dtype=np.int64))


def omniglot(root: str | os.PathLike | None = None, split: str = "background", download: bool = True,
             image_size: int = 28, *, base_url: str | None = None,
             known_hashes: Mapping[str, str] | None = None) -> ClassImageSource:
    """Omniglot (Lake et al.): 1623 handwritten characters of 50 alphabets, 20 drawers each.

    Args:
        root: folder for the zip and the decoded arrays (default: the user cache dir).
        split: ``"background"`` (30 alphabets, meta-train), ``"evaluation"`` (20 alphabets, meta-test) or
            ``"background_small1"`` (5 of the background alphabets, 136 characters: the repository's small subset).
        download: fetch the zip if it is missing or corrupted.
        image_size: side the 105x105 drawings are resized to (>= 8).
        base_url, known_hashes: another mirror (``https://`` or ``file://``) and its files' hashes.

    Returns:
        a :class:`ClassImageSource`; ``images_of(c)`` ``[20, 1, S, S]`` float32, ink = 1.
    """
    check_choice("split", split, OMNIGLOT_SPLITS)
    check_int("image_size", image_size, 8, 512)
    filename = f"images_{split}.zip"
    if known_hashes is None and filename in OMNIGLOT_SMALL_HASHES:
        known_hashes = OMNIGLOT_SMALL_HASHES
    archive = _fetch("omniglot", filename, root, download, base_url, known_hashes)
    known_hash = (KNOWN_HASHES["omniglot"] if known_hashes is None else known_hashes)[filename]
    # a read-only data folder (a shared copy of the zips) keeps its decoded arrays in the user cache
    folder = archive.parent if os.access(archive.parent, os.W_OK) else cache_dir("omniglot")
    processed = _processed_path(folder, f"omniglot-{split}", image_size, known_hash)
    cached = load_npz(processed)
    if cached is None:
        images, classes, alphabets, class_alphabet, labels = _read_omniglot_zip(archive)
        pixels = _resize(torch.from_numpy(images), image_size).numpy()
        cached = {"pixels": pixels, "labels": labels, "classes": np.array(classes),
                  "alphabets": np.array(alphabets), "class_alphabet": np.array(class_alphabet, dtype=np.int64)}
        save_npz_atomic(processed, **cached)
    return ClassImageSource(f"omniglot/{split}", torch.from_numpy(cached["pixels"]),
                            torch.from_numpy(cached["labels"]), [str(c) for c in cached["classes"]],
                            [str(a) for a in cached["alphabets"]], cached["class_alphabet"].tolist())


# ------------------------------------------------------------------------------------ MNIST family


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read a (gzipped) IDX file of unsigned bytes, the MNIST format: magic ``0x0000 08 ndim``, then
    ``ndim`` big-endian uint32 sizes, then the data."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as err:  # gzip raises BadGzipFile (an OSError) or EOFError when cut short
        raise ValueError(f"{path.name} is not a readable gzip IDX file ({err})") from err
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path.name} is not an unsigned-byte IDX file: magic {data[:4].hex()!r}, expected "
                         f"'000008' followed by the number of dimensions")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(shape)) if ndim else 0
    if len(data) - header != expected:
        raise ValueError(f"{path.name}: header says shape {shape} ({expected} bytes) but holds "
                         f"{len(data) - header} bytes; the file is truncated or corrupted")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _idx_source(dataset: str, classes: tuple[str, ...], alphabet: str, root, split: str, download: bool,
                image_size: int, base_url: str | None, known_hashes) -> ClassImageSource:
    check_choice("split", split, ("train", "test"))
    check_int("image_size", image_size, 8, 512)
    prefix = "train" if split == "train" else "t10k"
    images_file, labels_file = f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"
    images_path = _fetch(dataset, images_file, root, download, base_url, known_hashes)
    labels_path = _fetch(dataset, labels_file, root, download, base_url, known_hashes)
    known_hash = (KNOWN_HASHES[dataset] if known_hashes is None else known_hashes)[images_file]
    processed = _processed_path(images_path.parent, f"{dataset}-{split}", image_size, known_hash)
    cached = load_npz(processed)
    if cached is None:
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"{dataset} {split}: expected images [N, H, W] and labels [N], got "
                             f"{images.shape} and {labels.shape}")
        if labels.size and labels.max() >= len(classes):
            raise ValueError(f"{dataset} {split}: label {int(labels.max())} out of range for {len(classes)} classes")
        pixels = _resize(torch.from_numpy(images.copy()), image_size).numpy()
        cached = {"pixels": pixels, "labels": labels.astype(np.int64)}
        save_npz_atomic(processed, **cached)
    return ClassImageSource(f"{dataset}/{split}", torch.from_numpy(cached["pixels"]),
                            torch.from_numpy(cached["labels"]), list(classes), [alphabet])


def mnist(root: str | os.PathLike | None = None, split: str = "train", download: bool = True,
          image_size: int = 28, *, base_url: str | None = None,
          known_hashes: Mapping[str, str] | None = None) -> ClassImageSource:
    """MNIST digits (60000 train / 10000 test) as a :class:`ClassImageSource` with classes ``"0"``..``"9"``;
    ``images_of(d)`` is every image of digit ``d``, ``[N_d, 1, S, S]`` float32, ink = 1."""
    return _idx_source("mnist", tuple(str(d) for d in range(10)), "digits", root, split, download,
                       image_size, base_url, known_hashes)


def fashion_mnist(root: str | os.PathLike | None = None, split: str = "train", download: bool = True,
                  image_size: int = 28, *, base_url: str | None = None,
                  known_hashes: Mapping[str, str] | None = None) -> ClassImageSource:
    """Fashion-MNIST (Zalando; 60000 train / 10000 test, 10 kinds of clothing) as a
    :class:`ClassImageSource`; ``images_of(c)`` ``[N_c, 1, S, S]`` float32, bright = 1."""
    return _idx_source("fashion_mnist", FASHION_CLASSES, "clothing", root, split, download, image_size,
                       base_url, known_hashes)
