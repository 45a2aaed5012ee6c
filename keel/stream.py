"""GenerationHandle: one started generation, consumed by threads or asyncio alike.

Its events come from the model's worker (a Job) or, for a cache hit or the opt-in
fallback, from a plain generator. Checks (output validation, cache recording) see every
event before the consumer does. Cancelling stops the worker at its next step; result()
then returns exactly what the consumer saw.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import closing

from .errors import GenerationError
from .events import Fingerprint, GenerationResponse, GenerationResult, collect
from .record import Record
from .scheduler import Job
from .structured import Constraint

# Called with every event seen so far (the newest last) before that event is released.
Check = Callable[[list[GenerationResponse]], None]


class GenerationHandle:
    def __init__(
        self,
        source: Iterator[GenerationResponse] | Job,
        checks: list[Check],
        with_logprobs: bool,
        *,
        constraint: Constraint | None = None,
        cache_key: str | None = None,
        record: Record | None = None,
        fingerprint: Fingerprint | None = None,
    ) -> None:
        self.constraint = constraint
        self.fingerprint = fingerprint  # known before the first token
        self.cache_key = cache_key
        self.record = record  # the cache hit being replayed, if any
        self._job = source if isinstance(source, Job) else None
        self._iterator = None if self._job else source
        self._checks = checks
        self._with_logprobs = with_logprobs
        self._seen: list[GenerationResponse] = []
        self._cancelled = False
        self._finished = False

    # -- consuming --------------------------------------------------------------------

    def _accept(self, event: GenerationResponse) -> GenerationResponse:
        self._seen.append(event)
        for check in self._checks:
            check(self._seen)
        if event.finish_reason is not None:
            self._finished = True
        return event

    def __iter__(self) -> Iterator[GenerationResponse]:
        source = self._job.events() if self._job else self._iterator
        with closing(self):  # a consumer that stops early cancels the generation
            for event in source:
                if self._cancelled and self._job is None:
                    break
                yield self._accept(event)
                if self._finished:
                    return

    async def __aiter__(self):
        if self._job is None:  # a replay or stand-in: nothing to wait for
            for event in self:
                yield event
            return
        with closing(self):
            async for event in self._job.aevents():
                yield self._accept(event)
                if self._finished:
                    return

    # -- control ----------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop generating; the worker lets go of the model at its next step."""
        self._cancelled = True
        if self._job is not None:
            self._job.cancel()
        elif self._iterator is not None and hasattr(self._iterator, "close"):
            self._iterator.close()

    def _outcome(self) -> GenerationResult:
        if self._finished:
            result = collect(self._seen, with_logprobs=self._with_logprobs)
            if result.finish_reason == "error":
                raise GenerationError(result.error or "generation failed")
            return result
        return collect(self._seen, self._with_logprobs, stopped_early=True)

    def result(self) -> GenerationResult:
        """Run to the end (or, once cancelled, wait until the model is free) and return
        the result: after cancel(), exactly the events consumed so far."""
        if not self._cancelled:
            for _ in self:
                pass
        if self._job is not None:
            self._job.done.wait()
        return self._outcome()

    async def aresult(self) -> GenerationResult:
        if not self._cancelled:
            async for _ in self:
                pass
        if self._job is not None and not self._job.done.is_set():
            await asyncio.to_thread(self._job.done.wait)
        return self._outcome()

    def close(self) -> None:
        if not self._finished:
            self.cancel()

    def __enter__(self) -> GenerationHandle:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
