"""The full-profile smoke (``scripts/full_profile_smoke.py``): the full profile's image-fitting experiment runs
end to end with its iteration and evaluation counts cut and every other size at full (the cheapest full-size
check; the script runs all of the experiments in minutes), and an unknown experiment name is refused with exit
code 2."""

from __future__ import annotations

from metalearn_kit.evaluation import full_profile_smoke as smoke


def test_full_profile_image_fitting_runs_end_to_end(monkeypatch, capsys):
    import math
    import re

    from metalearn_kit.evaluation import restoration
    from metalearn_kit.evaluation.full_profile_smoke import CUT
    from metalearn_kit.recipes.restoration_configs import restoration_config

    for key in ("METALEARN_KIT_CHECKPOINT_DIR", "METALEARN_KIT_CACHE_DIR"):
        # smoke_full_profile() points these at a scratch folder; monkeypatch puts the original values back afterwards
        monkeypatch.setenv(key, "")
    configs, results = [], []

    def config_spy(*args, **kwargs):
        configs.append(restoration_config(*args, **kwargs))
        return configs[-1]

    def experiment_spy(**kwargs):
        results.append(original(**kwargs))
        return results[-1]

    original = restoration.image_fitting
    monkeypatch.setattr(restoration, "restoration_config", config_spy)
    monkeypatch.setattr(restoration, "image_fitting", experiment_spy)
    assert smoke.smoke_full_profile(["image_fitting"]) == 0

    # the full profile's sizes, with only the script's cuts applied
    full, cut = restoration_config("image_fitting", "full"), CUT["image_fitting"]
    assert configs and all(c.as_dict() == {**full.as_dict(), **cut} for c in configs)
    (rows,) = results
    line = capsys.readouterr().out.strip().splitlines()[-1]
    match = re.fullmatch(r"image_fitting\s+(\d+) rows in\s+[\d.]+ s", line)
    assert match and int(match.group(1)) == len(rows), line
    psnr = {(r["method"], r["steps"]): r for r in rows if r["metric"] == "psnr"}
    methods = ("meta-init (MAML)", "meta-init + learned step sizes (Meta-SGD)", "meta-init + full-strength fine-tuning",
               "standard init + full-strength fine-tuning")
    assert set(psnr) == {(m, s) for m in methods for s in cut["steps"]}
    for row in psnr.values():
        assert row["experiment"] == "image_fitting" and row["tasks"] == cut["test_images"]
        assert math.isfinite(row["value"]) and 0 < row["value"] < 100, row
    # a cut full-size config is trained here, never taken from a shipped fast checkpoint
    assert {rows[0]["sources"]["meta"], rows[0]["sources"]["metasgd"]} == {"trained"}


def test_unknown_experiment_is_refused(capsys):
    assert smoke.smoke_full_profile(["dehazing"]) == 2
    assert "unknown experiments ['dehazing']" in capsys.readouterr().err
