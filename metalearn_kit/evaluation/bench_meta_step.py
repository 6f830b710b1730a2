"""The meta-step benchmark (``metalearn-kit bench meta-step``: :mod:`metalearn_kit.commands.bench_meta_step`):
time one meta-step per backend and algorithm.

Setup (fixed, the kit's standard): ConvRestorer (4 conv layers, 32 channels), 1-channel 32x32 images, 5 support +
5 query examples per task, 5 inner SGD steps, meta-batch 8 and 32. A meta-step is: meta-objective over the
meta-batch, backward, Adam step on the model. Backends:

- ``higher``: a Python loop over tasks, each inside ``higher.innerloop_ctx``;
- ``func``: torch.func, the inner loop ``vmap``-ed over the tasks (``MAML(backend=FuncBackend(vmap=True))``);
- ``func-loop``: the same pure function in a Python loop over tasks (``FuncBackend(vmap=False)``);
- ``func+compile`` (CUDA, MAML/FOMAML): the pure-functional meta-gradient
  (:func:`~metalearn_kit.meta.step.functional_meta_grad`) under ``torch.compile``; reported with its
  error when compilation fails.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` minus what was allocated before the step; on CPU each
configuration runs in a child process and reports the growth of its ``ru_maxrss`` (peak resident set) over the
measured steps, relative to the resident size after setup ("rss_delta"): a coarse figure, since the allocator
may reuse memory freed by warm-up steps.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

import torch

__all__ = ["ALGORITHMS", "BACKENDS", "add_speedups", "benchmark", "print_row", "run_child", "run_config",
           "run_interleaved", "summarize"]

ALGORITHMS = ("maml", "fomaml", "reptile")
BACKENDS = ("higher", "func", "func-loop", "func+compile")
SHOTS, QUERIES, SIZE, INNER_STEPS, INNER_LR, WIDTH, DEPTH = 5, 5, 32, 5, 0.05, 32, 4


def _loss(model, batch):
    degraded, clean = batch
    return ((model(degraded) - clean) ** 2).mean()


def _tasks(meta_batch: int, device: torch.device):
    from ..tasks.task import TaskBatch

    g = torch.Generator().manual_seed(0)
    clean = torch.rand(meta_batch, SHOTS + QUERIES, 1, SIZE, SIZE, generator=g)
    degraded = clean + 0.1 * torch.randn(clean.shape, generator=g)
    support = (degraded[:, :SHOTS].to(device), clean[:, :SHOTS].to(device))
    query = (degraded[:, SHOTS:].to(device), clean[:, SHOTS:].to(device))
    return TaskBatch(support, query, [{} for _ in range(meta_batch)])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _make_step(backend: str, algorithm: str, device: torch.device, meta_batch: int):
    """Build (step function, model); the step runs one full meta-step."""
    from ..meta import MAML, FuncBackend, Reptile
    from ..meta.inner import FunctionalSGD
    from ..meta.step import functional_meta_grad
    from ..models.conv import ConvRestorer

    torch.manual_seed(0)
    model = ConvRestorer(channels=1, width=WIDTH, depth=DEPTH).to(device)
    tasks = _tasks(meta_batch, device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    if backend == "func+compile":
        if algorithm == "reptile":
            raise ValueError("func+compile is measured for maml and fomaml only")
        names = [n for n, _ in model.named_parameters()]

        def pure(params, support, query):
            return functional_meta_grad(model, params, {}, support, query, _loss, FunctionalSGD(), INNER_STEPS,
                                        INNER_LR, algorithm == "fomaml")

        compiled = torch.compile(pure)

        def step():
            params = {n: p.detach() for n, p in model.named_parameters()}
            grads, loss = compiled(params, tasks.support, tasks.query)
            for n, p in zip(names, model.parameters()):
                p.grad = grads[n]
            opt.step()
            return loss
        return step, model

    cls = Reptile if algorithm == "reptile" else MAML
    kwargs = {} if algorithm == "reptile" else {"first_order": algorithm == "fomaml"}
    if backend.startswith("func"):
        kwargs.update(backend=FuncBackend(vmap=backend == "func"))
    else:
        kwargs.update(backend=backend)
    learner = cls(model, inner_lr=INNER_LR, inner_steps=INNER_STEPS, **kwargs)

    def step():
        opt.zero_grad(set_to_none=True)
        out = learner.meta_objective(tasks, _loss)
        out.loss.backward()
        opt.step()
        return out.loss
    return step, model


def _rss_bytes() -> int:
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _current_rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as handle:
            import os

            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return _rss_bytes()


def run_config(backend: str, algorithm: str, meta_batch: int, device: torch.device, repeats: int,
               warmup: int) -> dict:
    """Time one configuration in this process. Returns a row."""
    row = {"backend": backend, "algorithm": algorithm, "meta_batch": meta_batch, "device": device.type,
           "repeats": repeats}
    try:
        step, _ = _make_step(backend, algorithm, device, meta_batch)
        rss_before = _current_rss_bytes()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        t_compile = time.perf_counter()
        for _ in range(warmup):
            step()
        _sync(device)
        row["warmup_s"] = time.perf_counter() - t_compile
        times = []
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            loss = step()
            _sync(device)
            times.append(time.perf_counter() - t0)
        row["loss"] = float(loss.detach())
        median = statistics.median(times)
        row.update(step_ms_median=1e3 * median, step_ms_min=1e3 * min(times), tasks_per_s=meta_batch / median)
        if device.type == "cuda":
            row.update(peak_mem_mb=(torch.cuda.max_memory_allocated(device) - base) / 2**20,
                       memory_method="cuda_max_memory_allocated")
        else:
            row.update(peak_mem_mb=max(_rss_bytes() - rss_before, 0) / 2**20, memory_method="rss_delta")
    except Exception as err:  # a failing backend (e.g. torch.compile) is a result to report, not a crash
        row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"
    return row


def run_interleaved(backends, algorithm: str, meta_batch: int, device: torch.device, repeats: int,
                    warmup: int) -> list[dict]:
    """Time several backends round-robin (step of each, then again ``repeats`` times): drifting load from
    other processes then hits them alike. Peak memory is not measured here."""
    rows, steps = [], {}
    for backend in backends:
        row = {"backend": backend, "algorithm": algorithm, "meta_batch": meta_batch, "device": device.type,
               "repeats": repeats, "memory_method": "not measured (interleaved timing)", "interleaved": True}
        try:
            step, _ = _make_step(backend, algorithm, device, meta_batch)
            t0 = time.perf_counter()
            for _ in range(warmup):
                step()
            _sync(device)
            row["warmup_s"] = time.perf_counter() - t0
            steps[backend] = (step, [])
        except Exception as err:
            row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"
        rows.append(row)
    for _ in range(repeats):
        for step, times in steps.values():
            _sync(device)
            t0 = time.perf_counter()
            step()
            _sync(device)
            times.append(time.perf_counter() - t0)
    for row in rows:
        if row["backend"] in steps:
            times = steps[row["backend"]][1]
            median = statistics.median(times)
            row.update(step_ms_median=1e3 * median, step_ms_min=1e3 * min(times), tasks_per_s=meta_batch / median,
                       peak_mem_mb=None)
    return rows


def run_child(spec: str) -> dict:
    cfg = json.loads(spec)
    if cfg.get("threads"):
        torch.set_num_threads(cfg["threads"])
    return run_config(cfg["backend"], cfg["algorithm"], cfg["meta_batch"], torch.device("cpu"), cfg["repeats"],
                      cfg["warmup"])


def _run_in_child(cfg: dict) -> dict:
    cmd = [sys.executable, "-m", "metalearn_kit.evaluation.bench_meta_step", "--child", json.dumps(cfg)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        return {**{k: cfg[k] for k in ("backend", "algorithm", "meta_batch")}, "device": "cpu",
                "error": f"child failed: {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(lines[-1])


def benchmark(device: torch.device, meta_batches, repeats: int, warmup: int, algorithms, backends,
              threads: int | None = None, on_row=None, interleave: bool = False) -> list[dict]:
    """Run every configuration; ``on_row(rows)`` after each (the CLI rewrites its JSON file then, so a run cut
    short by a time limit still leaves the rows it finished)."""
    rows = []
    for meta_batch in meta_batches:
        for algorithm in algorithms:
            if interleave:
                chosen = [b for b in backends if not (b == "func+compile" and algorithm == "reptile")]
                for row in run_interleaved(chosen, algorithm, meta_batch, device, repeats, warmup):
                    rows.append(row)
                    print_row(row)
                add_speedups(rows)
                if on_row is not None:
                    on_row(rows)
                continue
            for backend in backends:
                if backend == "func+compile" and (algorithm == "reptile" or meta_batch != max(meta_batches)):
                    continue  # compilation is slow: measured at the largest meta-batch only
                if device.type == "cpu":  # own process: ru_maxrss is a per-process peak
                    row = _run_in_child({"backend": backend, "algorithm": algorithm, "meta_batch": meta_batch,
                                         "repeats": repeats, "warmup": warmup, "threads": threads})
                else:
                    row = run_config(backend, algorithm, meta_batch, device, repeats, warmup)
                rows.append(row)
                print_row(row)
                add_speedups(rows)
                if on_row is not None:
                    on_row(rows)
    return rows


def print_row(row: dict) -> None:
    if "error" in row:
        print(f"{row['algorithm']:8s} {row['backend']:13s} {row['meta_batch']:4d}  error: {row['error']}", flush=True)
    else:
        memory = "-" if row.get("peak_mem_mb") is None else f"{row['peak_mem_mb']:.1f}"
        print(f"{row['algorithm']:8s} {row['backend']:13s} {row['meta_batch']:4d} {row['tasks_per_s']:10.1f} "
              f"{row['step_ms_median']:10.1f} {memory:>10s}", flush=True)


def add_speedups(rows: list[dict]) -> None:
    # speed relative to the higher loop of the same algorithm and meta-batch
    for row in rows:
        ref = next((r for r in rows if r["backend"] == "higher" and r["algorithm"] == row["algorithm"]
                    and r["meta_batch"] == row["meta_batch"] and "tasks_per_s" in r), None)
        if ref is not None and "tasks_per_s" in row:
            row["speedup_vs_higher"] = row["tasks_per_s"] / ref["tasks_per_s"]


def summarize(rows: list[dict]) -> dict:
    lines, fastest = [], {}
    for key in sorted({(r["algorithm"], r["meta_batch"]) for r in rows}):
        ok = [r for r in rows if (r["algorithm"], r["meta_batch"]) == key and "tasks_per_s" in r]
        if not ok:
            continue
        best = max(ok, key=lambda r: r["tasks_per_s"])
        fastest[f"{key[0]}@{key[1]}"] = {"backend": best["backend"], "tasks_per_s": best["tasks_per_s"],
                                         "speedup_vs_higher": best.get("speedup_vs_higher")}
        speed = best.get("speedup_vs_higher")
        lines.append(f"fastest {key[0]} at meta-batch {key[1]}: {best['backend']} "
                     f"({best['tasks_per_s']:.1f} tasks/s" + (f", {speed:.2f}x the higher loop)" if speed else ")"))
    return {"fastest": fastest, "lines": lines}


if __name__ == "__main__":  # one CPU configuration in a child process: JSON spec in, JSON row out
    if len(sys.argv) != 3 or sys.argv[1] != "--child":
        raise SystemExit("usage: python -m metalearn_kit.evaluation.bench_meta_step --child SPEC (run the "
                         "benchmark with `metalearn-kit bench meta-step`)")
    print(json.dumps(run_child(sys.argv[2])))
