"""Which engine runs a batch's rows: `local` (this process) or `ray` (actors on a Ray
cluster). Both give every row exactly what `keel.generate` gives it alone."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Literal

from .ray_engine import RayEngine, run_ray
from .requests import BatchRequest
from .run import BatchResult, LocalEngine, run_local

Engine = Literal["local", "ray"] | LocalEngine | RayEngine


def run_rows(
    requests: list[BatchRequest], engine: Engine = "local", concurrency: int | None = None
) -> Iterator[BatchResult]:
    """Results as rows finish. `concurrency` is rows in flight per model process (this
    one, or each Ray actor); "local" and "ray" are LocalEngine() and RayEngine()."""
    if engine == "local":
        engine = LocalEngine()
    if isinstance(engine, LocalEngine):
        return run_local(requests, concurrency, engine)
    if engine == "ray":
        engine = RayEngine()
    if not isinstance(engine, RayEngine):
        raise ValueError(
            f"engine must be 'local', 'ray', a LocalEngine or a RayEngine, got {engine!r}"
        )
    if concurrency is not None:
        engine = replace(engine, concurrency=concurrency)
    return run_ray(requests, engine)
