"""Batch generation: many requests, each exactly what `keel.generate` gives for it alone,
run concurrently (api: generate_batch / iter_batch; job files and resuming: job.py)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from .engines import Engine, run_rows
from .ray_engine import RayEngine
from .requests import BatchInputError, BatchRequest, batch_requests, read_requests
from .run import BatchResult, LocalEngine

__all__ = [
    "BatchInputError",
    "BatchRequest",
    "BatchResult",
    "Engine",
    "LocalEngine",
    "RayEngine",
    "generate_batch",
    "iter_batch",
    "read_requests",
]


def iter_batch(
    rows: Iterable[Any],
    *,
    engine: Engine = "local",
    concurrency: int | None = None,
    **defaults: Any,
) -> Iterator[BatchResult]:
    """Run every row and yield results as rows finish (`result.index` is the row's
    position). Rows are dicts (`prompt` or `messages`, an optional `id`, any generation
    parameter) or plain prompt strings; `defaults` apply to every row. All rows are
    checked before the first runs (BatchInputError lists every bad one). `engine` is
    "local" or a LocalEngine (this process), "ray" or a RayEngine (actors on a Ray
    cluster); the results are the same."""
    return run_rows(batch_requests(rows, defaults), engine, concurrency)


def generate_batch(
    rows: Iterable[Any],
    *,
    engine: Engine = "local",
    concurrency: int | None = None,
    **defaults: Any,
) -> list[BatchResult]:
    """Run every row; results in input order. A row that fails has `error` set and
    does not stop the others."""
    results = iter_batch(rows, engine=engine, concurrency=concurrency, **defaults)
    return sorted(results, key=lambda result: result.index)
