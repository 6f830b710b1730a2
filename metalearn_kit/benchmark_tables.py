"""The benchmark tables that ship with the kit: the JSON the ``metalearn-kit bench ...`` commands wrote.

They live in ``docs/benchmarks/`` of the repository; ``metalearn_kit/benchmarks_data`` is a link to that folder,
so the files are package data and land in every wheel (``pip install`` from a clone or from git, as on Colab).
:func:`benchmark_table` reads one by name, wherever the package is installed:

>>> table = benchmark_table("restoration_fast")            # doctest: +SKIP
>>> table["profile"], len(table["rows"])                   # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["BENCHMARK_DIR", "benchmark_names", "benchmark_table", "write_table"]

BENCHMARK_DIR = Path(__file__).resolve().parent / "benchmarks_data"


def benchmark_names(prefix: str = "") -> list[str]:
    """Names (file names without ``.json``) of the shipped tables that start with ``prefix``, sorted."""
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str such as 'generation_', got {prefix!r}")
    if not BENCHMARK_DIR.is_dir():
        return []
    return sorted(p.stem for p in BENCHMARK_DIR.glob(f"{prefix}*.json"))


def benchmark_table(name: str) -> dict[str, Any]:
    """The shipped table ``name`` (e.g. ``"restoration_fast"``; ``.json`` may be given) as the JSON dict its
    benchmark command wrote: ``rows``, ``machine``, ``command`` and, where the benchmark has them, ``targets``."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a table name such as 'restoration_fast', got {name!r}")
    stem = name[: -len(".json")] if name.endswith(".json") else name
    path = BENCHMARK_DIR / f"{stem}.json"
    if "/" in stem or "\\" in stem or not path.is_file():
        raise ValueError(f"no shipped benchmark table {name!r}; the kit ships {benchmark_names()} "
                         f"(in {BENCHMARK_DIR}); new ones are made by `metalearn-kit bench ... --json PATH`")
    return json.loads(path.read_text(encoding="utf-8"))


def write_table(path: str | Path, payload: dict[str, Any]) -> None:
    """Write a benchmark's ``payload`` (rows, machine, command, ...) as indented JSON to ``path``, atomically: a
    run stopped while writing leaves the previous table whole, never half a file."""
    from .checkpoints import atomic_write_bytes

    if not isinstance(payload, dict) or "rows" not in payload:
        raise TypeError(f"payload must be a dict with 'rows' (a benchmark's table), got {type(payload).__name__}")
    atomic_write_bytes(Path(path), json.dumps(payload, indent=1, default=str).encode())
