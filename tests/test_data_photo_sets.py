"""Kodak24 and CBSD68 loaders (folder, environment variable, pinned-hash download), the fixed train/dev rule, the
photo pool, and the pre-registered protocol: nothing outside an allow-list reads the test split or its seed."""

import ast
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from metalearn_kit.data import DatasetUnavailableError, PhotoSet, PhotoSource, cbsd68, kodak24, photo_pool
from metalearn_kit.data import photo_sets as ps

REPO = Path(__file__).resolve().parents[1]
# In CI the repository is cloned elsewhere with shared/ beside it, as here.
SHARED = REPO.parent / "shared" / "datasets"
needs_kodak = pytest.mark.skipif(not (SHARED / "kodak24").is_dir(),
                                 reason=f"no Kodak24 folder at {SHARED / 'kodak24'} (shared/ beside the repository)")
needs_cbsd = pytest.mark.skipif(not (SHARED / "cbsd68").is_dir(),
                                reason=f"no CBSD68 folder at {SHARED / 'cbsd68'} (shared/ beside the repository)")


@pytest.fixture(autouse=True)
def _no_env_folders(monkeypatch, tmp_path):
    """Each test chooses its folder; nothing leaks in from the environment or the user's cache."""
    for variable in ps.ENV_VARS.values():
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("METALEARN_KIT_CACHE_DIR", str(tmp_path / "cache"))


def _png(path: Path, seed: int, shape=(12, 16)) -> Path:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def mirror(tmp_path):
    """Three small Kodak-named PNGs and their hashes: a stand-in for the FFDNet folder."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    paths = [_png(folder / f"kodim{i:02d}.png", i) for i in (1, 2, 3)]
    return folder, {p.name: _sha256(p) for p in paths}


# ------------------------------------------------------------------------------------------ the real sets


@needs_kodak
def test_kodak24_from_the_shared_folder(monkeypatch):
    photos = kodak24(SHARED / "kodak24")
    assert isinstance(photos, PhotoSet) and photos.name == "kodak24" and len(photos) == 24
    assert photos.names == tuple(f"kodim{i:02d}" for i in range(1, 25))
    batch = photos.stack()
    assert batch.shape == (24, 3, 500, 500) and batch.dtype == torch.float32
    assert 0 <= batch.min() and batch.max() <= 1 and batch.std() > 0.1
    grey = kodak24(SHARED / "kodak24", grey=True).stack()
    assert grey.shape == (24, 1, 500, 500)
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    assert torch.allclose(grey, (batch * weights).sum(1, keepdim=True), atol=1e-6)
    monkeypatch.setenv("METALEARN_KIT_KODAK24", str(SHARED / "kodak24"))
    assert torch.equal(kodak24(download=False).images[5], photos.images[5])


@needs_cbsd
def test_cbsd68_from_the_shared_folder_in_two_orientations():
    train, dev, every = (cbsd68(SHARED / "cbsd68", split=s) for s in ("train", "dev", "all"))
    assert (len(train), len(dev), len(every)) == (51, 17, 68)
    assert not set(train.names) & set(dev.names) and set(train.names) | set(dev.names) == set(every.names)
    assert {tuple(img.shape) for img in every.images} == {(3, 321, 481), (3, 481, 321)}
    with pytest.raises(ValueError, match=r"shapes .*patches"):
        every.stack()
    source = dev.patches(48)
    assert isinstance(source, PhotoSource) and source.sample_patches(4, 0).shape == (4, 3, 48, 48)
    assert cbsd68(SHARED / "cbsd68", split="dev", grey=True).images[0].shape[0] == 1


def test_cbsd68_split_rule_is_fixed_in_code():
    every = ps.cbsd68_names("all")
    assert len(every) == 68 and list(every) == sorted(every)
    assert ps.cbsd68_names("dev") == every[3::4] and len(ps.cbsd68_names("train")) == 51
    with pytest.raises(ValueError, match="split must be one of"):
        ps.cbsd68_names("test")


@needs_cbsd
def test_photo_pool_joins_cbsd68_and_the_embedded_photographs():
    train = photo_pool("train", 32, 3, root=SHARED / "cbsd68")
    dev = photo_pool("dev", 32, 1, root=SHARED / "cbsd68")
    assert len(train) == 51 + 5 and train.channels == 3
    assert "skimage/coffee" in dev.names and "cbsd68/" + ps.cbsd68_names("dev")[0].removesuffix(".png") in dev.names
    assert not set(train.names) & set(dev.names)
    assert dev.sample_patches(5, 1).shape == (5, 1, 32, 32)
    with pytest.raises(ValueError, match="split must be one of"):
        photo_pool("test")


@pytest.mark.skipif(not (SHARED / "SHA256SUMS").is_file(), reason=f"no {SHARED / 'SHA256SUMS'}")
def test_pinned_hashes_are_the_shared_checksums():
    sums = dict(line.split()[::-1] for line in (SHARED / "SHA256SUMS").read_text().splitlines() if line.strip())
    for folder, table in (("kodak24", ps.KODAK24_SHA256), ("cbsd68", ps.CBSD68_SHA256)):
        assert table == {k.partition("/")[2]: "sha256:" + v for k, v in sums.items() if k.startswith(folder + "/")}
    assert len(ps.KODAK24_SHA256) == 24 and len(ps.CBSD68_SHA256) == 68
    assert ps.BASE_URLS["kodak24"].startswith("https://github.com/cszn/FFDNet/")


# ---------------------------------------------------------------------------- folders, downloads, errors


def test_a_folder_is_read_and_checked_against_its_hashes(mirror, monkeypatch):
    folder, hashes = mirror
    photos = kodak24(folder, known_hashes=hashes)
    assert photos.names == ("kodim01", "kodim02", "kodim03") and photos.stack().shape == (3, 3, 12, 16)
    (folder / "kodim02.png").write_bytes(b"not a png")
    (folder / "kodim03.png").unlink()
    with pytest.raises(DatasetUnavailableError) as err:
        kodak24(folder, known_hashes=hashes)
    message = str(err.value)
    print(message)
    assert "missing: kodim03.png" in message and "not the pinned bytes: kodim02.png" in message
    assert "root argument" in message and "Fix:" in message and "$METALEARN_KIT_KODAK24" in message
    monkeypatch.setenv("METALEARN_KIT_KODAK24", str(folder))
    with pytest.raises(DatasetUnavailableError, match=r"given by \$METALEARN_KIT_KODAK24"):
        kodak24(known_hashes=hashes)


def test_download_through_pooch_then_offline(mirror, tmp_path):
    folder, hashes = mirror
    photos = kodak24(base_url=folder.as_uri(), known_hashes=hashes)
    assert len(photos) == 3 and (tmp_path / "cache" / "kodak24" / "kodim01.png").is_file()
    for path in folder.iterdir():
        path.unlink()
    again = kodak24(download=False, base_url=folder.as_uri(), known_hashes=hashes)
    assert all(torch.equal(a, b) for a, b in zip(photos.images, again.images))


def test_download_hash_mismatch_and_no_download(mirror):
    folder, hashes = mirror
    wrong = {**hashes, "kodim02.png": "sha256:" + "0" * 64}
    with pytest.raises(DatasetUnavailableError, match=r"kodim02\.png.*pinned hash"):
        kodak24(base_url=folder.as_uri(), known_hashes=wrong)
    with pytest.raises(DatasetUnavailableError, match=r"download=False.*METALEARN_KIT_CBSD68"):
        cbsd68(download=False, known_hashes={"100.png": hashes["kodim01.png"]})


def test_cbsd68_download_applies_the_split_rule(tmp_path):
    folder = tmp_path / "bsd"
    folder.mkdir()
    hashes = {p.name: _sha256(p) for p in (_png(folder / f"{100 + i}.png", i, (9, 11)) for i in range(8))}
    dev = cbsd68(split="dev", base_url=folder.as_uri(), known_hashes=hashes)
    train = cbsd68(split="train", base_url=folder.as_uri(), known_hashes=hashes)
    assert dev.names == ("103", "107") and len(train) == 6 and dev.name == "cbsd68/dev"


# ------------------------------------------------------------------------------------ the protocol


def test_the_protocol_is_fixed_in_code():
    assert set(ps.RESTORATION_SPLITS) == {"train", "dev", "test"}
    assert ps.RESTORATION_SPLITS["test"].photographs == ("kodak24()",)
    assert all("kodak24()" not in ps.RESTORATION_SPLITS[s].photographs for s in ("train", "dev"))
    assert isinstance(ps.TEST_SEED, int) and ps.TEST_SEED != ps.DEV_SEED and ps.TEST_TASKS >= 48


# Names that reach the test split: its loader and its seed. A module may use them only if it is listed here:
# where they are defined, and the runners of final test figures (the CBM3D reference check).
TEST_SPLIT_NAMES = {"kodak24", "TEST_SEED"}
ALLOWED_TO_READ_THE_TEST_SPLIT = {
    "metalearn_kit/data/photo_sets.py",  # defines them
    "metalearn_kit/evaluation/standard_sets.py",  # CBM3D against its published Kodak24 figure
    "metalearn_kit/recipes/operator_recipe.py",  # the operator families' test split (task_distribution)
    "metalearn_kit/evaluation/operator_experiments.py",  # the operator families' benchmark, its final figures
    "metalearn_kit/warmstart_benchmark.py",  # bench warmstart's test stream, its final figures
    # the five original restoration experiments: their test split (restoration_sampler(..., "test"), through
    # operator_recipe.photo_source) and their final figures drawn with TEST_SEED
    "metalearn_kit/recipes/restoration.py",
    "metalearn_kit/evaluation/restoration.py",
}


def split_uses(source: str) -> list[str]:
    """Lines of ``source`` (Python) that name the test split's loader or seed, however imported."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name):
            name = node.id
        elif isinstance(node, ast.Attribute):
            name = node.attr
        elif isinstance(node, ast.alias):
            name = node.name.rpartition(".")[2]
        else:
            continue
        if name in TEST_SPLIT_NAMES:
            found.append(f"line {node.lineno}: {name}")
    return found


def test_the_scan_finds_every_way_in():
    for source in ("from metalearn_kit.data import kodak24\n", "import metalearn_kit.data as d\nx = d.kodak24()\n",
                   "from metalearn_kit.data.photo_sets import TEST_SEED as s\n", "import x\nseed = x.TEST_SEED\n"):
        assert split_uses(source), source
    assert not split_uses("rows = kodak24_cbm3d(images=2)\nname = 'kodak24'\n")


def test_nothing_else_reads_the_test_split_or_its_seed():
    offenders = {}
    for path in sorted([*(REPO / "metalearn_kit").rglob("*.py"), *(REPO / "scripts").rglob("*")]):
        relative = path.relative_to(REPO).as_posix()
        if not path.is_file() or relative in ALLOWED_TO_READ_THE_TEST_SPLIT or "__pycache__" in relative:
            continue
        text = path.read_text(errors="replace")
        if path.suffix == ".py":
            hits = split_uses(text)
        else:  # shell scripts and the like: a plain text match
            hits = [m.group(0) for m in re.finditer(r"\bkodak24\s*\(|\bTEST_SEED\b", text)]
        if hits:
            offenders[relative] = hits
    assert not offenders, (f"these files read the test split or its seed, which only {ALLOWED_TO_READ_THE_TEST_SPLIT} "
                           f"may (choose on dev: photo_pool('dev'), DEV_SEED): {offenders}")


def test_notebooks_never_sample_the_test_split_by_hand():
    # a notebook shows the benchmark's functions and shipped tables; its own screens and explorers draw dev tasks
    # ("val"), so nothing a learner runs by hand doubles as a look at the test split
    pattern = re.compile(r"\b(restoration_sampler|photo_source|task_distribution)\([^)]*[\"']test[\"']")
    offenders = {}
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        hits = [m.group(0) for cell in cells if cell["cell_type"] == "code"
                for m in pattern.finditer("".join(cell["source"]))]
        if hits:
            offenders[path.name] = hits
    assert not offenders, f"use split 'val' (dev) in notebooks: {offenders}"
