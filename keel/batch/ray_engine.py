"""Running a batch on a Ray cluster: Ray Data hands blocks of rows to a pool of actors,
each a process holding its own loaded model, and each row is generated there exactly as
on this machine (the same `run_local`), so the output does not depend on how the rows
were split. Ray is an optional extra: keel-text[ray]."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import MissingExtraError
from .requests import BatchRequest
from .run import BatchResult, require_positive_int, run_local


@dataclass(frozen=True)
class RayEngine:
    """Where and how wide a batch runs on Ray.

    address: an existing cluster ("auto", "ray://host:10001", ...); None starts a local
    Ray for the job (or uses the one this process already started).
    actors: model processes; cpus_per_actor: Ray CPUs each reserves, which is also its
    llama.cpp thread count. batch_size: rows handed to an actor at once; concurrency:
    rows in flight inside an actor (default: the model's slots)."""

    address: str | None = None
    actors: int = 1
    cpus_per_actor: int = 1
    batch_size: int = 16
    concurrency: int | None = None

    def __post_init__(self) -> None:
        for name in ("actors", "cpus_per_actor", "batch_size"):
            require_positive_int(name, getattr(self, name))
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise MissingExtraError("the ray engine", "ray") from exc
    return ray


def _keel_environment() -> dict[str, str]:
    """keel's settings go with the rows: an actor on another machine reads the same
    KEEL_* variables the job was started with."""
    return {name: value for name, value in os.environ.items() if name.startswith("KEEL_")}


class RowGenerator:
    """One Ray actor: a process with keel's worker for the models its rows name (its
    thread count is the KEEL_THREADS it was started with). Rows go back one at a time as
    they finish, so the job's log and progress keep up."""

    def __call__(
        self, batch: dict[str, Any], concurrency: int | None
    ) -> Iterator[dict[str, list[Any]]]:
        from ray import cloudpickle

        requests = [cloudpickle.loads(data) for data in batch["request"]]
        for result in run_local(requests, concurrency):
            yield {"index": [result.index], "result": [json.dumps(result.to_json())]}


def run_ray(requests: Iterable[BatchRequest], engine: RayEngine) -> Iterator[BatchResult]:
    """Results as rows finish (not in input order)."""
    ray = _import_ray()
    from ray import cloudpickle

    # cloudpickle: a row's schema may be a Pydantic class defined in the caller's script
    pickled: Callable[[BatchRequest], bytes] = cloudpickle.dumps
    items = [{"index": request.index, "request": pickled(request)} for request in requests]
    if not items:
        return
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=engine.address,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # keel draws its own
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # and says how the job went
    try:
        dataset = ray.data.from_items(items).map_batches(
            RowGenerator,
            fn_kwargs={"concurrency": engine.concurrency},
            batch_size=engine.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=engine.actors),
            num_cpus=engine.cpus_per_actor,
            runtime_env={
                "env_vars": _keel_environment() | {"KEEL_THREADS": str(engine.cpus_per_actor)}
            },
        )
        for row in dataset.iter_rows():
            data = json.loads(row["result"])
            yield BatchResult(index=int(row["index"]), **data)
    finally:
        if started_here:
            ray.shutdown()
