"""The meta-step benchmark's machinery (the benchmark itself is run by hand: docs/benchmarks/)."""

import torch

from metalearn_kit.evaluation import bench_meta_step as bench


def test_run_config_times_a_meta_step_and_reports_memory():
    row = bench.run_config("func", "fomaml", meta_batch=1, device=torch.device("cpu"), repeats=1, warmup=0)
    assert "error" not in row, row
    assert row["tasks_per_s"] > 0 and row["step_ms_median"] > 0 and row["memory_method"] == "rss_delta"
    assert row["peak_mem_mb"] >= 0


def test_failures_become_rows_and_summary_picks_the_fastest():
    row = bench.run_config("func+compile", "reptile", meta_batch=1, device=torch.device("cpu"), repeats=1, warmup=0)
    assert "error" in row and "maml and fomaml only" in row["error"]
    rows = [{"backend": "higher", "algorithm": "maml", "meta_batch": 8, "tasks_per_s": 10.0},
            {"backend": "func", "algorithm": "maml", "meta_batch": 8, "tasks_per_s": 40.0}, row]
    bench.add_speedups(rows)
    summary = bench.summarize(rows)
    assert summary["fastest"]["maml@8"]["backend"] == "func"
    assert summary["fastest"]["maml@8"]["speedup_vs_higher"] == 4.0


def test_interleaved_timing_rows():
    rows = bench.run_interleaved(["higher", "func-loop"], "fomaml", meta_batch=1, device=torch.device("cpu"),
                                 repeats=1, warmup=0)
    assert [r["backend"] for r in rows] == ["higher", "func-loop"]
    assert all(r["tasks_per_s"] > 0 and r["peak_mem_mb"] is None and "error" not in r for r in rows)
