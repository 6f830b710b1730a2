"""The meta-step benchmark's machinery (the benchmark itself is run by hand: docs/benchmarks/): the step it times
is the meta-step it names, and its figures are the arithmetic of the measured times (a fake clock makes them
exact)."""

import pytest
import torch

from metalearn_kit.evaluation import bench_meta_step as bench

CPU = torch.device("cpu")


class _Clock:
    """A ``time.perf_counter`` that only moves when a fake step runs."""

    def __init__(self) -> None:
        self.now = 100.0
        self.calls: list[str] = []

    def __call__(self) -> float:
        return self.now

    def step_taking(self, name: str, seconds: list[float]):
        """A step function whose n-th call lasts ``seconds[n]`` and returns the loss ``n``."""
        calls = iter(range(len(seconds)))

        def step():
            n = next(calls)
            self.calls.append(name)
            self.now += seconds[n]
            return torch.tensor(float(n))
        return step


def _fake_steps(monkeypatch, durations: dict[str, list[float]]) -> _Clock:
    clock = _Clock()
    monkeypatch.setattr(bench.time, "perf_counter", clock)
    monkeypatch.setattr(bench, "_make_step", lambda backend, algorithm, device, meta_batch: (
        clock.step_taking(backend, durations[backend]), None))
    return clock


def test_run_config_reports_the_median_step_and_its_throughput(monkeypatch):
    # one warm-up step of 5 s (not counted), then steps of 0.2, 0.1 and 0.4 s: median 0.2 s, min 0.1 s
    _fake_steps(monkeypatch, {"func": [5.0, 0.2, 0.1, 0.4]})
    row = bench.run_config("func", "maml", meta_batch=8, device=CPU, repeats=3, warmup=1)
    assert row["warmup_s"] == pytest.approx(5.0)
    assert row["step_ms_median"] == pytest.approx(200.0) and row["step_ms_min"] == pytest.approx(100.0)
    assert row["tasks_per_s"] == pytest.approx(8 / 0.2)
    assert row["loss"] == 3.0  # the last measured step's loss
    assert row["memory_method"] == "rss_delta" and row["peak_mem_mb"] >= 0


def test_run_config_times_the_named_meta_step():
    """The loss the benchmark reports is first-order MAML's meta-objective on the benchmark's tasks at the seeded
    initial weights (its one step returns the loss before the Adam update), whatever the backend."""
    from metalearn_kit.meta import FOMAML
    from metalearn_kit.models.conv import ConvRestorer

    torch.manual_seed(0)
    model = ConvRestorer(channels=1, width=bench.WIDTH, depth=bench.DEPTH)
    learner = FOMAML(model, inner_lr=bench.INNER_LR, inner_steps=bench.INNER_STEPS, backend="func")
    expected = learner.meta_objective(bench._tasks(2, CPU), bench._loss).loss.item()
    for backend in ("func-loop", "higher"):
        row = bench.run_config(backend, "fomaml", meta_batch=2, device=CPU, repeats=1, warmup=0)
        assert "error" not in row, row
        assert row["loss"] == pytest.approx(expected, rel=1e-4), backend
        assert row["tasks_per_s"] == pytest.approx(2 * 1e3 / row["step_ms_median"])


def test_interleaved_timing_runs_the_backends_in_turn(monkeypatch):
    clock = _fake_steps(monkeypatch, {"higher": [0.5, 0.4, 0.4], "func-loop": [0.1, 0.1, 0.3]})
    rows = bench.run_interleaved(["higher", "func-loop"], "fomaml", meta_batch=4, device=CPU, repeats=2, warmup=1)
    # warm-ups back to back, then one measured step of each backend per round: drifting load hits both alike
    assert clock.calls == ["higher", "func-loop", "higher", "func-loop", "higher", "func-loop"]
    higher, func_loop = rows
    assert (higher["backend"], func_loop["backend"]) == ("higher", "func-loop")
    assert higher["tasks_per_s"] == pytest.approx(4 / 0.4) and func_loop["tasks_per_s"] == pytest.approx(4 / 0.2)
    assert func_loop["step_ms_min"] == pytest.approx(100.0) and higher["warmup_s"] == pytest.approx(0.5)
    assert higher["peak_mem_mb"] is None and "error" not in higher


def test_failures_become_rows_and_summary_picks_the_fastest():
    row = bench.run_config("func+compile", "reptile", meta_batch=1, device=CPU, repeats=1, warmup=0)
    assert "error" in row and "maml and fomaml only" in row["error"]
    rows = [{"backend": "higher", "algorithm": "maml", "meta_batch": 8, "tasks_per_s": 10.0},
            {"backend": "func", "algorithm": "maml", "meta_batch": 8, "tasks_per_s": 40.0}, row]
    bench.add_speedups(rows)
    summary = bench.summarize(rows)
    assert summary["fastest"]["maml@8"]["backend"] == "func"
    assert summary["fastest"]["maml@8"]["speedup_vs_higher"] == 4.0
