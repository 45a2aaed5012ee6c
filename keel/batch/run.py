"""Running a batch on this machine: up to `concurrency` rows in flight at once, spread
over `lanes` contexts of the model whose workers each decode their rows in continuous
batches (each row's output is what it would be alone: batching is exact, and so is the
thread count a busy lane decodes with), and a row that fails is reported, not fatal."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from typing import Any

from ..api import start_generation
from ..config import settings, thread_count
from ..errors import KeelError
from ..loaded import lanes_wanted
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


@dataclass(frozen=True)
class LocalEngine:
    """A batch in this process. lanes: contexts per model, each with its own worker
    (default: one per llama.cpp thread; while several are busy each decodes with one
    thread, which gets more rows through a few cores than one context with all of them).
    Each lane holds its own KV cache of KEEL_N_CTX x KEEL_SLOTS tokens."""

    lanes: int | None = None

    def __post_init__(self) -> None:
        if self.lanes is not None:
            require_positive_int("lanes", self.lanes)


def require_positive_int(name: str, value: object) -> None:
    """An engine setting's check (a bool is not a count)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def run_local(
    requests: Iterable[BatchRequest],
    concurrency: int | None = None,
    engine: LocalEngine = LocalEngine(),
) -> Iterator[BatchResult]:
    """Results as rows finish (not in input order); at most `concurrency` rows in flight
    (default: every slot of every lane)."""
    lanes = thread_count() if engine.lanes is None else engine.lanes
    limit = settings().slots * lanes if concurrency is None else concurrency
    if limit < 1:
        raise ValueError(f"concurrency must be at least 1, got {limit}")
    pending = iter(requests)
    with (
        lanes_wanted(lanes),
        ThreadPoolExecutor(max_workers=limit, thread_name_prefix="keel-batch") as pool,
    ):
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
