"""A tiny end-to-end generation experiment on a fake class source: well-formed rows, targets, checkpoint
reuse, a sample grid in artifacts/, and config errors that name the key."""

import math
import os
from dataclasses import asdict, replace

import pytest
import torch
from test_generation_metrics import fake_class_source  # tests/ is on sys.path under pytest

from metalearn_kit.evaluation.generation import (
    METHODS,
    check_earlier_targets,
    check_targets,
    evaluate_generation,
    format_table,
    save_sample_grid,
)
from metalearn_kit.evaluation.inner_loop_protocol import candidates
from metalearn_kit.pretrained import CHECKPOINT_DIR, load_or_train
from metalearn_kit.recipes import generation_config

torch.set_num_threads(1)

TINY = dict(feature_steps=8, meta_iterations=2, meta_batch=2, train_shots=2, train_queries=2, inner_steps=1,
            statistician_iterations=2, figr_iterations=2, figr_inner_steps=1, eval_tasks=2, shots=[1, 2],
            steps=[0, 2], iw_samples=2, sample_count=6, eval_queries=4, ways=3, width=8, hidden=16, latent=4,
            gan_latent=4, cavia_iterations=2, cgan_iterations=2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    # one cache folder for the module: models trained by the first test are reloaded by the others
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("METALEARN_KIT_CACHE_DIR", str(tmp_path_factory.mktemp("generation_cache")))
        sources = (fake_class_source(6, 12, seed=0), fake_class_source(6, 12, seed=1))
        yield generation_config("fast", **TINY), sources


def test_tiny_experiment_rows_are_well_formed(tiny, artifacts_dir):
    config, sources = tiny
    result = evaluate_generation(config, METHODS, sources=sources, keep_samples=True, fair_inner_loop=True)
    rows = result["rows"]
    assert rows and all(set(r) >= {"experiment", "method", "shots", "steps", "metric", "value"} for r in rows)
    assert {r["experiment"] for r in rows} == {"generation"}
    # real_drawings needs more than 3 unseen drawings beyond the support (the pool has 2 here)
    assert {r["method"] for r in rows} == set(METHODS) - {"real_drawings"}
    # 2 evaluation classes: the downstream episodes are 2-way (ways = 3 needs 3 classes)
    assert {r["ways"] for r in rows if r["metric"] == "downstream_accuracy"} == {2}
    assert {r["metric"] for r in rows if r["method"] == "support_only"} == {"downstream_accuracy"}
    for row in rows:
        # memorisation is skipped where the real drawings are shifted copies of the support (this fake source)
        assert math.isfinite(row["value"]) and (row["tasks"] == 2 or row["metric"].startswith("memorisation"))
        if row["metric"] == "prototype_accuracy":
            assert 0.0 <= row["value"] <= 1.0
    keys = {(r["method"], r["shots"], r["steps"], r["metric"]) for r in rows}
    for method in ("maml", "fomaml", "reptile", "joint", "scratch"):
        for shots in (1, 2):
            for steps in (0, 2):
                for metric in ("query_nll_nats", "prototype_accuracy", "frechet_distance", "novelty_ratio"):
                    assert (method, shots, steps, metric) in keys
    assert ("statistician", 2, 0, "query_nll_nats") in keys and ("statistician", 2, 2, "query_nll_nats") not in keys
    assert ("figr", 2, 2, "frechet_distance") in keys and ("figr", 2, 2, "query_nll_nats") not in keys
    assert ("cavia", 2, 2, "query_nll_nats") in keys and ("cgan", 2, 2, "novelty_ratio") in keys
    assert ("cgan", 2, 2, "query_nll_nats") not in keys  # a GAN: samples only
    assert {r["kind"] for r in rows} == {"inner_loop", "amortised", "joint", "scratch", "conditional", "gan",
                                         "trivial"}
    assert all(r["value"] >= 0 for r in rows if r["metric"] == "novelty_ratio")
    # every row carries its source, ways and per-task values; the trivial baselines are rows of the table
    assert {r["source"] for r in rows} == {"fake"}
    assert all(len(r["per_task"]) == r["tasks"] and sum(r["per_task"]) / r["tasks"] == pytest.approx(r["value"])
               for r in rows)
    assert {r["ways"] for r in rows if r["metric"] == "prototype_accuracy"} == {3}
    assert {r["ways"] for r in rows if r["metric"] == "same_alphabet_accuracy"} == {6}  # one alphabet of 6 classes
    copies = {r["metric"]: r["value"] for r in rows if r["method"] == "copies" and r["shots"] == 2}
    assert copies["novelty_ratio"] == 0 and copies["recall"] == 0 and copies["precision"] == 1
    # likelihood models: draws are the headline, mean images a labelled view
    assert ("cavia", 2, 2, "precision_mean_image") in keys and ("figr", 2, 2, "precision_mean_image") not in keys
    # one fine-tuning protocol for the pretrained VAEs, chosen on dev classes that are never test classes
    loops = result["info"]["inner_loops"]
    labels = {c.label for c in candidates(config)}
    assert loops["dev_classes"] == 4 and all(loops[m]["choice"] in labels and set(loops[m]["dev_nll"]) == labels
                                             for m in ("maml", "fomaml", "reptile", "joint"))
    background = result["info"]["cgan_background"]
    assert 0 <= background["accuracy"] <= 1 and background["classes"] == 6
    targets = check_targets(result, shots=2, steps=2)
    assert len(targets) == 4 and all(t["holds"] in (True, False, None) for t in targets)
    assert len(check_earlier_targets(result, shots=2, steps=2)) == 7
    assert "query NLL" in format_table(rows)
    path = save_sample_grid(result["samples"], os.path.join(artifacts_dir, "generation_tiny_samples.png"))
    assert path.exists() and path.stat().st_size > 1000


def test_trained_models_are_cached_and_reloaded(tiny):
    config, sources = tiny
    config = replace(config, seed=5)  # a config no other test trained
    model, info = load_or_train("generation_joint", config, 5, options={"background": sources[0]})
    assert info["source"] == "trained" and os.path.exists(info["saved"])
    again, info2 = load_or_train("generation_joint", config, 5)
    assert info2["source"] == info["saved"]
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), again.parameters(), strict=True))
    # a different training config does not reuse the checkpoint
    _, info3 = load_or_train("generation_joint", replace(config, meta_iterations=3), 5,
                             options={"background": sources[0]})
    assert info3["source"] == "trained"


def test_same_seed_same_rows(tiny):
    config, sources = tiny
    first = evaluate_generation(config, ["scratch", "statistician"], sources=sources)["rows"]
    second = evaluate_generation(config, ["scratch", "statistician"], sources=sources)["rows"]
    assert [r["value"] for r in first] == pytest.approx([r["value"] for r in second])


def test_config_and_method_errors_name_the_argument(tiny):
    config, sources = tiny
    with pytest.raises(ValueError, match="bogus"):
        generation_config("fast", bogus=1)
    with pytest.raises(ValueError, match="methods"):
        evaluate_generation(config, ["gan2"], sources=sources)
    with pytest.raises(ValueError, match="eval_queries"):
        evaluate_generation(replace(config, eval_queries=20), ["scratch"], sources=sources)
    with pytest.raises(ValueError, match="shots"):
        generation_config("fast", shots=[])
    with pytest.raises(ValueError, match="inner_lr"):
        generation_config("fast", inner_lr=-1.0)
    with pytest.raises(ValueError, match="name must be a registered checkpoint"):
        load_or_train("generation_vae9", config, 0)


def test_more_ways_than_evaluation_classes_is_a_value_error_naming_ways(tiny):
    config, sources = tiny  # 6 evaluation classes
    with pytest.raises(ValueError, match=r"ways = 7 exceeds the 6 evaluation classes; lower ways"):
        evaluate_generation(replace(config, ways=7), ["scratch"], sources=sources)


def test_every_method_has_one_runner_in_table_order():
    from metalearn_kit.evaluation.generation_methods import RUNNERS

    assert tuple(RUNNERS) == METHODS


def test_seeded_rng_seeds_the_block_and_restores_the_callers_stream():
    from metalearn_kit.recipes.generation import seeded_rng

    torch.manual_seed(3)
    with seeded_rng(7):
        inside = torch.rand(3)
    after = torch.rand(3)
    with pytest.raises(RuntimeError), seeded_rng(7):
        torch.rand(5)
        raise RuntimeError("the caller's stream comes back on an error too")
    after_error = torch.rand(3)
    torch.manual_seed(7)
    assert torch.equal(inside, torch.rand(3))
    torch.manual_seed(3)
    assert torch.equal(after, torch.rand(3)) and torch.equal(after_error, torch.rand(3))


def test_shipped_checkpoints_load_without_training():
    from metalearn_kit import checkpoints
    from metalearn_kit.recipes.generation import CHECKPOINT_NAMES

    config = generation_config("fast")
    shipped = [n for n in CHECKPOINT_NAMES if (CHECKPOINT_DIR / f"generation_{n}_fast.safetensors").exists()]
    assert "featnet" in shipped and "maml" in shipped
    for name in shipped:
        path = CHECKPOINT_DIR / f"generation_{name}_fast.safetensors"
        _, meta = checkpoints.load(path)
        assert {"config", "seed", "metrics", "machine", "command"} <= set(meta)
        assert path.stat().st_size < 4 * 2**20  # a few MB at most
        # found by its recorded config: loaded, not trained
        model, info = load_or_train(f"generation_{name}", config, config.seed)
        assert info["source"] == str(path)
        assert not model.training


def test_checkpoints_written_elsewhere_by_pretrain_are_found(tmp_path, monkeypatch):
    import shutil

    from metalearn_kit import pretrained

    # `metalearn-kit pretrain NAME --out DIR` writes into DIR ($METALEARN_KIT_CHECKPOINT_DIR); the benchmark
    # must look there first
    monkeypatch.setenv(pretrained.DIR_ENV, str(tmp_path))
    for suffix in (".safetensors", ".json"):
        shutil.copy(CHECKPOINT_DIR / f"generation_maml_fast{suffix}", tmp_path / f"generation_maml_fast{suffix}")
    _, info = load_or_train("generation_maml", generation_config("fast"), 0)
    assert info["source"] == str(tmp_path / "generation_maml_fast.safetensors")


def test_a_method_rows_do_not_depend_on_the_other_methods(tiny):
    config, sources = tiny
    alone = [r for r in evaluate_generation(config, ["scratch"], sources=sources)["rows"] if r["method"] == "scratch"]
    together = [r for r in evaluate_generation(config, ["statistician", "scratch"], sources=sources)["rows"]
                if r["method"] == "scratch"]
    assert alone and [r["value"] for r in alone] == pytest.approx([r["value"] for r in together])


def test_bench_merges_disjoint_method_runs(tiny, tmp_path, capsys):
    import json

    from metalearn_kit.cli import main

    config, sources = tiny
    paths = []
    for methods in (["scratch"], ["statistician"]):
        result = evaluate_generation(config, methods, sources=sources)
        path = tmp_path / f"{methods[0]}.json"
        path.write_text(json.dumps({"profile": "fast", "config": asdict(config), "rows": result["rows"],
                                    "per_task": result["info"]["per_task"], "command": "test"}))
        paths.append(str(path))
    out = tmp_path / "merged.json"
    assert main(["bench", "generation", "--merge", *paths, "--json", str(out)]) == 0
    merged = json.loads(out.read_text())
    assert {r["method"] for r in merged["rows"] if r["kind"] != "trivial"} == {"scratch", "statistician"}
    trivial = [r for r in merged["rows"] if r["method"] == "copies"]  # in both parts, merged once
    assert trivial and len(trivial) == len({(r["shots"], r["metric"]) for r in trivial})
    assert len(merged["targets"]) == 4 and "Targets" in capsys.readouterr().out
    assert main(["bench", "generation", "--merge", paths[0], paths[0]]) == 2  # overlapping methods: refused


def test_saving_a_sample_grid_leaves_the_matplotlib_backend_alone(tmp_path):
    import matplotlib

    matplotlib.use("module://matplotlib_inline.backend_inline")  # what a Jupyter kernel uses
    samples = {("real query", 5, 0): torch.rand(8, 1, 28, 28), ("maml", 5, 10): torch.rand(8, 1, 28, 28)}
    path = save_sample_grid(samples, tmp_path / "grid.png")
    assert path.stat().st_size > 0
    assert matplotlib.get_backend() == "module://matplotlib_inline.backend_inline"
    matplotlib.use("Agg")
