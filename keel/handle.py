"""GenerationHandle: one started generation, consumed by threads or asyncio alike.

Its events come from an EventSource (the model's worker, a replayed cache hit, or the
opt-in stand-in text). Checks (output validation, cache recording) see every event before
the consumer does. Cancelling stops the source at its next step; result() then returns
exactly what the consumer saw.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import closing
from types import TracebackType

from .errors import GenerationError
from .events import (
    COMPLETED,
    Fingerprint,
    FinishReason,
    GenerationResponse,
    GenerationResult,
    collect,
)
from .sources import EventSource
from .structured import CallReader, Constraint, ConstraintKind, OutputValidator

# Called with every event seen so far (the newest last) before that event is released.
Check = Callable[[list[GenerationResponse]], None]


class GenerationHandle:
    def __init__(
        self,
        source: EventSource,
        with_logprobs: bool,
        *,
        checks: list[Check] | None = None,
        constraint: Constraint | None = None,
        fingerprint: Fingerprint | None = None,
        cache_key: str | None = None,
    ) -> None:
        self.constraint = constraint
        self.fingerprint = fingerprint  # known before the first token
        self.cache_key = cache_key  # None when the result cache is not used
        self._source = source
        self._validator = OutputValidator(constraint) if constraint else None
        self._checks: list[Check] = [
            *([self._validator] if self._validator else []),
            *(checks or []),
        ]
        self._with_logprobs = with_logprobs
        calls = constraint is not None and constraint.kind is ConstraintKind.TOOLS
        self._calls = CallReader() if calls else None
        self._seen: list[GenerationResponse] = []
        self._cancelled = False
        self._finished = False

    # -- consuming --------------------------------------------------------------------

    def _with_calls(self, event: GenerationResponse) -> GenerationResponse:
        """Under tools: the calls this event completed, and finish_reason "tool_calls" at
        the end of a reply that made any."""
        assert self._calls is not None
        calls = tuple(self._calls.feed(event.text))
        done = event.finish_reason in COMPLETED and self._calls.count > 0
        if not calls and not done:
            return event
        reason = FinishReason.TOOL_CALLS if done else event.finish_reason
        return dataclasses.replace(event, tool_calls=calls, finish_reason=reason)

    def _accept(self, event: GenerationResponse) -> GenerationResponse:
        if self._calls is not None:
            event = self._with_calls(event)
        self._seen.append(event)
        for check in self._checks:
            check(self._seen)
        if event.finish_reason is not None:
            self._finished = True
        return event

    def __iter__(self) -> Iterator[GenerationResponse]:
        with closing(self):  # a consumer that stops early cancels the generation
            for event in self._source.events():
                yield self._accept(event)
                if self._finished:
                    return

    async def __aiter__(self) -> AsyncIterator[GenerationResponse]:
        with closing(self):
            async for event in self._source.aevents():
                yield self._accept(event)
                if self._finished:
                    return

    # -- control ----------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop generating; the worker lets go of the model at its next step."""
        self._cancelled = True
        self._source.cancel()

    def _outcome(self) -> GenerationResult:
        if not self._finished:
            return collect(self._seen, self._with_logprobs, stopped_early=True)
        result = collect(self._seen, with_logprobs=self._with_logprobs)
        if result.finish_reason == FinishReason.ERROR:
            raise GenerationError(result.error or "generation failed")
        return self._with_value(result)

    def _with_value(self, result: GenerationResult) -> GenerationResult:
        if self._validator is None:
            return result
        if self._calls is not None:  # tools: the calls, not a value
            calls = tuple(self._validator.value or ())
            reason = FinishReason.TOOL_CALLS if calls else result.finish_reason
            return dataclasses.replace(result, tool_calls=calls, finish_reason=reason)
        return dataclasses.replace(result, value=self._validator.value)

    def result(self) -> GenerationResult:
        """Run to the end (or, once cancelled, wait until the model is free) and return
        the result: after cancel(), exactly the events consumed so far. A result that is
        already known (a cache hit not yet iterated) is returned without replaying it."""
        if not self._cancelled and not self._seen:
            known = self._source.known_result()
            if known is not None:
                self.close()
                if self._validator is not None:
                    self._validator.check(known.text, known.finish_reason)
                return self._with_value(known)
        if not self._cancelled and not self._finished:
            for _ in self:
                pass
        self._source.wait_released()
        return self._outcome()

    async def aresult(self) -> GenerationResult:
        if not self._cancelled:
            async for _ in self:
                pass
        await self._source.await_released()
        return self._outcome()

    def close(self) -> None:
        if not self._finished:
            self.cancel()

    def __enter__(self) -> GenerationHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
