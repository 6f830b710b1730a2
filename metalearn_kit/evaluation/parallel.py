"""Independent benchmark jobs on several cores: :func:`map_in_processes` runs a picklable function over argument
tuples in worker processes (spawned, so no torch state is forked), one torch thread each, the costliest first."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .._checks import check_int

__all__ = ["map_in_processes"]


def _one_thread(function: Callable[..., Any], args: tuple) -> Any:
    import torch

    torch.set_num_threads(1)  # the workers share the cores: intra-op threads would only contend
    return function(*args)


def map_in_processes(function: Callable[..., Any], calls: Sequence[tuple], jobs: int,
                     cost: Callable[[tuple], float] | None = None) -> list[Any]:
    """``[function(*args) for args in calls]``, computed in ``jobs`` worker processes. ``function`` must be a
    module-level function (pickled by name); ``cost(args)`` orders the submissions, highest first, so a long job
    does not start last and hold the others' cores idle. Results come back in the order of ``calls``; a worker's
    exception is raised here."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    jobs = check_int("jobs", jobs, minimum=1)
    order = sorted(range(len(calls)), key=lambda i: -cost(calls[i]) if cost else 0.0)
    results: list[Any] = [None] * len(calls)
    with ProcessPoolExecutor(max_workers=min(jobs, max(1, len(calls))), mp_context=get_context("spawn")) as pool:
        futures = {i: pool.submit(_one_thread, function, tuple(calls[i])) for i in order}
        for i, future in futures.items():
            results[i] = future.result()
    return results
