"""Omniglot / MNIST / Fashion-MNIST loaders, exercised offline on small archives in the official formats."""

import gzip
import hashlib
import io
import struct
import sys
import zipfile

import numpy as np
import pytest
import torch

from metalearn_kit.data import ClassImageSource, DatasetUnavailableError, fashion_mnist, mnist, omniglot, read_idx


def _md5(path) -> str:
    return "md5:" + hashlib.md5(path.read_bytes()).hexdigest()


def _sha256(path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def _stroke_png(seed: int) -> bytes:
    """A 105x105 Omniglot-style drawing: black strokes on white, 1-bit PNG like the originals."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    image = Image.new("1", (105, 105), 1)
    draw = ImageDraw.Draw(image)
    points = [tuple(int(v) for v in rng.integers(15, 90, 2)) for _ in range(4)]
    draw.line(points, fill=0, width=3)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _omniglot_zip(path, split: str, alphabets: dict[str, int], drawers: int = 4):
    """``images_<split>/<alphabet>/characterNN/<id>_NN.png`` like the official archives."""
    with zipfile.ZipFile(path, "w") as archive:
        seed = 0
        for alphabet, characters in alphabets.items():
            for c in range(1, characters + 1):
                for d in range(1, drawers + 1):
                    seed += 1
                    archive.writestr(f"images_{split}/{alphabet}/character{c:02d}/{1000 + c:04d}_{d:02d}.png",
                                     _stroke_png(seed))
    return path


def _idx_gz(path, array: np.ndarray):
    """Gzipped IDX: magic 0x00000801 (1-D labels) or 0x00000803 (3-D images), big-endian sizes, bytes."""
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())
    return path


@pytest.fixture
def omniglot_mirror(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    _omniglot_zip(mirror / "images_background.zip", "background", {"Alpha_(fake)": 3, "Beta": 2})
    _omniglot_zip(mirror / "images_evaluation.zip", "evaluation", {"Gamma": 2, "Delta": 3, "Epsilon": 1})
    hashes = {name: _sha256(mirror / name) for name in ("images_background.zip", "images_evaluation.zip")}
    return mirror, hashes


@pytest.fixture
def mnist_mirror(tmp_path):
    mirror = tmp_path / "idx"
    mirror.mkdir()
    rng = np.random.default_rng(0)
    data = {}
    for prefix, count in (("train", 50), ("t10k", 20)):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = np.arange(count, dtype=np.uint8) % 10
        rng.shuffle(labels)
        _idx_gz(mirror / f"{prefix}-images-idx3-ubyte.gz", images)
        _idx_gz(mirror / f"{prefix}-labels-idx1-ubyte.gz", labels)
        data[prefix] = (images, labels)
    hashes = {p.name: _md5(p) for p in mirror.iterdir()}
    return mirror, hashes, data


def test_import_stays_light():
    import subprocess

    code = ("import sys, metalearn_kit.data as d; from metalearn_kit.data import ClassImageSource; "
            "heavy = [m for m in ('pooch', 'skimage', 'matplotlib', 'metalearn_kit.data.downloads') "
            "if m in sys.modules]; print(heavy); assert not heavy, heavy")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_pinned_official_hashes_and_urls():
    from metalearn_kit.data.downloads import BASE_URLS, KNOWN_HASHES

    assert BASE_URLS["omniglot"].startswith("https://github.com/brendenlake/omniglot/")
    assert set(KNOWN_HASHES["omniglot"]) == {"images_background.zip", "images_evaluation.zip"}
    for files in KNOWN_HASHES.values():
        for known in files.values():
            algorithm, _, digest = known.partition(":")
            assert algorithm == "md5" and len(digest) == 32 and int(digest, 16) >= 0


def test_omniglot_from_zip_archives(tmp_path, omniglot_mirror):
    mirror, hashes = omniglot_mirror
    root = tmp_path / "cache"
    background = omniglot(root, "background", base_url=mirror.as_uri(), known_hashes=hashes)
    evaluation = omniglot(root, "evaluation", image_size=20, base_url=mirror.as_uri(), known_hashes=hashes)
    assert isinstance(background, ClassImageSource)
    assert background.alphabets == ["Alpha_(fake)", "Beta"] and background.num_classes == 5
    assert background.classes[0] == "Alpha_(fake)/character01" and background.class_alphabet == [0, 0, 0, 1, 1]
    assert evaluation.num_classes == 6 and len(evaluation.alphabets) == 3
    assert not set(background.classes) & set(evaluation.classes)
    images = background.images_of(4)
    assert images.shape == (4, 1, 28, 28) and images.dtype == torch.float32
    assert evaluation.images_of(0).shape == (4, 1, 20, 20)
    assert images.min() >= 0 and images.max() <= 1
    # Black ink on white was inverted: strokes are bright, the page is 0 (like MNIST).
    assert images[:, :, 0, 0].max() == 0 and images.amax((1, 2, 3)).min() > 0.5
    assert 0.01 < images.mean() < 0.3
    # The zip and the decoded array are cached: a second call needs neither the mirror nor a download.
    (mirror / "images_background.zip").unlink()
    again = omniglot(root, "background", download=False, known_hashes=hashes)
    assert torch.equal(again.images_of(4), images)


def test_omniglot_hash_mismatch_and_offline_errors(tmp_path, omniglot_mirror):
    mirror, hashes = omniglot_mirror
    root = tmp_path / "cache"
    wrong = dict(hashes, **{"images_background.zip": "sha256:" + "0" * 64})
    with pytest.raises(DatasetUnavailableError, match="pinned hash") as err:
        omniglot(root, "background", base_url=mirror.as_uri(), known_hashes=wrong)
    assert "metalearn_kit.data.glyphs" in str(err.value)
    assert not (root / "images_background.zip").exists()  # the bad download was not kept as complete
    # Offline (the mirror is unreachable) and nothing cached: a clear error naming the alternative.
    with pytest.raises(DatasetUnavailableError, match="metalearn_kit.data.glyphs"):
        omniglot(root, "background", base_url=(tmp_path / "nowhere").as_uri(), known_hashes=hashes)
    with pytest.raises(DatasetUnavailableError, match="download=False"):
        omniglot(root, "background", download=False, known_hashes=hashes)


def test_corrupted_cache_is_refetched_online_and_reported_offline(tmp_path, mnist_mirror):
    mirror, hashes, data = mnist_mirror
    root = tmp_path / "cache"
    mnist(root, "test", base_url=mirror.as_uri(), known_hashes=hashes)
    cached = root / "t10k-images-idx3-ubyte.gz"
    cached.write_bytes(cached.read_bytes()[:100])  # a truncated file under the final name
    with pytest.raises(DatasetUnavailableError, match="corrupted") as err:
        mnist(root, "test", download=False, known_hashes=hashes)
    assert "download=True" in str(err.value)
    with pytest.raises(DatasetUnavailableError, match="corrupted.*could not be replaced"):
        mnist(root, "test", base_url=(tmp_path / "nowhere").as_uri(), known_hashes=hashes)
    source = mnist(root, "test", base_url=mirror.as_uri(), known_hashes=hashes)  # online: fetched again
    assert _md5(cached) == hashes[cached.name]
    assert source.num_classes == 10 and sum(source.class_sizes) == 20


def test_mnist_and_fashion_mnist_from_idx_files(tmp_path, mnist_mirror):
    mirror, hashes, data = mnist_mirror
    train = mnist(tmp_path / "m", "train", base_url=mirror.as_uri(), known_hashes=hashes)
    images, labels = data["train"]
    assert train.classes == [str(d) for d in range(10)] and train.alphabets == ["digits"]
    assert train.class_sizes == np.bincount(labels, minlength=10).tolist()
    assert train.images_per_class == min(train.class_sizes)
    for digit in (0, 7):
        expected = torch.from_numpy(images[labels == digit]).float().div(255)[:, None]
        assert torch.equal(train.images_of(digit), expected)  # file order is kept inside a class
    fashion = fashion_mnist(tmp_path / "f", "test", image_size=14, base_url=mirror.as_uri(), known_hashes=hashes)
    assert fashion.classes[9] == "Ankle boot" and fashion.images_of(0).shape[1:] == (1, 14, 14)
    assert sum(fashion.class_sizes) == 20


def test_read_idx_rejects_wrong_magic_and_truncation(tmp_path):
    good = _idx_gz(tmp_path / "ok-idx3-ubyte.gz", np.zeros((3, 4, 5), np.uint8))
    assert read_idx(good).shape == (3, 4, 5)
    bad_magic = tmp_path / "bad.gz"
    with gzip.open(bad_magic, "wb") as handle:
        handle.write(struct.pack(">I", 0x0D03) + struct.pack(">3I", 1, 2, 2) + bytes(16))  # float32 code
    with pytest.raises(ValueError, match="magic"):
        read_idx(bad_magic)
    short = tmp_path / "short.gz"
    with gzip.open(short, "wb") as handle:
        handle.write(struct.pack(">I", 0x0803) + struct.pack(">3I", 10, 28, 28) + bytes(100))
    with pytest.raises(ValueError, match="truncated"):
        read_idx(short)
    not_gzip = tmp_path / "plain.gz"
    not_gzip.write_bytes(b"not a gzip stream")
    with pytest.raises(ValueError, match="gzip"):
        read_idx(not_gzip)


def test_bad_arguments_name_the_argument(tmp_path):
    with pytest.raises(ValueError, match="split"):
        omniglot(tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        mnist(tmp_path, "background")
    with pytest.raises(ValueError, match="image_size"):
        fashion_mnist(tmp_path, "train", image_size=4)
    with pytest.raises(ValueError, match="known_hashes"):
        mnist(tmp_path, "train", known_hashes={"other.gz": "md5:0"})
