"""CBM3D on Kodak24 against its published figure: rows in the benchmark format, the script, bad input."""

import json
import sys
from pathlib import Path

import pytest
import torch

from metalearn_kit.evaluation.standard_sets import PUBLISHED_CBM3D_KODAK24, cbm3d_denoise, kodak24_cbm3d

REPO = Path(__file__).resolve().parents[1]
KODAK = REPO.parent / "shared" / "datasets" / "kodak24"  # shared/ sits beside the repository, here and in CI
needs_kodak = pytest.mark.skipif(not KODAK.is_dir(), reason=f"no Kodak24 folder at {KODAK} (shared/ beside the "
                                                            "repository)")
ROW_KEYS = {"experiment", "method", "role", "steps", "metric", "value", "stderr", "per_task", "sigma", "published",
            "test_source"}


@pytest.mark.slow
@needs_kodak
def test_cbm3d_on_two_kodak_photographs_is_near_the_published_band(tmp_path, monkeypatch):
    """Two photographs at sigma 25 (about 40 s on one free core). Per-photograph PSNR differs from the 24-photograph
    average (kodim01 is among the hardest), so the check is a band, not the published 31.68 dB."""
    monkeypatch.setenv("METALEARN_KIT_KODAK24", str(KODAK))
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import kodak24_cbm3d as script
    finally:
        sys.path.remove(str(REPO / "scripts"))
    path = tmp_path / "rows.json"
    assert script.main(["--images", "2", "--sigmas", "25", "--json", str(path)]) == 0
    rows = json.loads(path.read_text())["rows"]
    noisy, cbm3d = rows
    for row in rows:
        assert ROW_KEYS <= set(row) and row["experiment"] == "kodak24_cbm3d" and row["test_source"] == "kodak24"
        assert row["sigma"] == 25 and row["images"] == ["kodim01", "kodim02"] and len(row["per_task"]) == 2
    assert (noisy["role"], cbm3d["role"]) == ("input", "classical")
    assert cbm3d["published"] == PUBLISHED_CBM3D_KODAK24[25] == 31.68 and noisy["published"] is None
    print(f"noisy {noisy['per_task']} dB, CBM3D {cbm3d['per_task']} dB, published average 31.68 dB")
    assert 19.5 < noisy["value"] < 20.7  # 20.17 dB is the PSNR of sigma-25 noise on an unclipped image
    assert 28 < cbm3d["value"] < 36 and all(28 < v < 36 for v in cbm3d["per_task"])
    assert all(c - n > 8 for c, n in zip(cbm3d["per_task"], noisy["per_task"]))


def test_cbm3d_denoise_checks_its_input():
    with pytest.raises(ValueError, match=r"noisy must be an RGB tensor"):
        cbm3d_denoise(torch.rand(1, 16, 16), 0.1)
    with pytest.raises(ValueError, match=r"sigma must be > 0"):
        cbm3d_denoise(torch.rand(3, 16, 16), 0.0)


@needs_kodak
def test_kodak24_cbm3d_checks_its_arguments():
    with pytest.raises(ValueError, match="images must be"):
        kodak24_cbm3d(images=25, root=KODAK)
    with pytest.raises(ValueError, match="sigma must be"):
        kodak24_cbm3d(sigmas=(0,), images=1, root=KODAK)
