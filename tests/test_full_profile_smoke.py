"""``scripts/full_profile_smoke.py``: the full profile's image-fitting experiment runs end to end with cut
iteration counts (the cheapest full-size check; the script runs all of them in about 5 minutes), and an unknown
experiment name is refused with exit code 2."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "full_profile_smoke.py"


def _script():
    spec = importlib.util.spec_from_file_location("full_profile_smoke", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_full_profile_image_fitting_runs_end_to_end(monkeypatch, capsys):
    smoke = _script()
    for key in ("METALEARN_KIT_CHECKPOINT_DIR", "METALEARN_KIT_CACHE_DIR"):
        # main() points these at a scratch folder; monkeypatch puts the original values back afterwards
        monkeypatch.setenv(key, "")
    assert smoke.main(["image_fitting"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("image_fitting") and "rows in" in line


def test_unknown_experiment_is_refused(capsys):
    assert _script().main(["dehazing"]) == 2
    assert "unknown experiments ['dehazing']" in capsys.readouterr().err
