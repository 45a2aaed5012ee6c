"""Running a batch on this machine: up to `concurrency` rows in flight at once, so the
model's worker decodes them in continuous batches (each row's output is what it would be
alone: batching is exact), and a row that fails is reported, not fatal."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from typing import Any

from ..api import start_generation
from ..config import settings
from ..errors import KeelError
from .requests import BatchRequest


@dataclass(frozen=True)
class BatchResult:
    """One row's outcome, as written to a batch job's output (JSON-ready)."""

    index: int
    id: str
    text: str | None
    value: Any
    finish_reason: str | None
    prompt_tokens: int
    generation_tokens: int
    fingerprint: str | None
    cached: bool
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        row = asdict(self)
        del row["index"]
        return row


def run_request(request: BatchRequest) -> BatchResult:
    """Generate one row to the end; keel's own errors become the row's `error`."""
    try:
        result = start_generation(request.prompt, **request.options).result()
    except KeelError as exc:
        return BatchResult(
            request.index, request.id, None, None, None, 0, 0, None, False, error=str(exc)
        )
    value = result.value
    if hasattr(value, "model_dump"):  # a Pydantic instance: its JSON data
        value = value.model_dump(mode="json")
    return BatchResult(
        request.index,
        request.id,
        result.text,
        value,
        str(result.finish_reason),
        result.prompt_tokens,
        len(result.tokens),
        result.fingerprint.digest if result.fingerprint else None,
        result.cached,
        result.error,
    )


def run_local(
    requests: Iterable[BatchRequest], concurrency: int | None = None
) -> Iterator[BatchResult]:
    """Results as rows finish (not in input order); at most `concurrency` rows in flight
    (default: the model's slot count)."""
    limit = concurrency or settings().slots
    if limit < 1:
        raise ValueError(f"concurrency must be at least 1, got {limit}")
    pending = iter(requests)
    with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="keel-batch") as pool:
        running: set[Future[BatchResult]] = set()
        while True:
            for request in pending:
                running.add(pool.submit(run_request, request))
                if len(running) >= limit:
                    break
            if not running:
                return
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
