"""Batch generation: many requests, each exactly what `keel.generate` gives for it alone,
run concurrently (api: generate_batch / iter_batch; job files and resuming: job.py)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from .requests import BatchInputError, BatchRequest, batch_requests, read_requests
from .run import BatchResult, run_local

__all__ = [
    "BatchInputError",
    "BatchRequest",
    "BatchResult",
    "generate_batch",
    "iter_batch",
    "read_requests",
]


def iter_batch(
    rows: Iterable[Any], *, concurrency: int | None = None, **defaults: Any
) -> Iterator[BatchResult]:
    """Run every row and yield results as rows finish (`result.index` is the row's
    position). Rows are dicts (`prompt` or `messages`, an optional `id`, any generation
    parameter) or plain prompt strings; `defaults` apply to every row. All rows are
    checked before the first runs (BatchInputError lists every bad one)."""
    return run_local(batch_requests(rows, defaults), concurrency)


def generate_batch(
    rows: Iterable[Any], *, concurrency: int | None = None, **defaults: Any
) -> list[BatchResult]:
    """Run every row; results in input order. A row that fails has `error` set and
    does not stop the others."""
    return sorted(iter_batch(rows, concurrency=concurrency, **defaults), key=lambda r: r.index)
