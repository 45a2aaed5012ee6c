"""Where a handle's events come from, behind one interface: the model's worker (a Job),
a cache hit being replayed, or the opt-in stand-in text. GenerationHandle consumes any of
them the same way."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Protocol

from .events import GenerationResponse, GenerationResult


class EventSource(Protocol):
    def events(self) -> Iterator[GenerationResponse]:
        """Blocking iteration; leaving it early cancels the source."""
        ...

    def aevents(self) -> AsyncIterator[GenerationResponse]:
        """The same events for asyncio, never blocking the event loop."""
        ...

    def cancel(self) -> None:
        """Stop producing; the model (if any) is let go at its next step."""
        ...

    def wait_released(self) -> None:
        """Block until the source holds no model resources any more."""
        ...

    async def await_released(self) -> None: ...

    def known_result(self) -> GenerationResult | None:
        """The whole result without producing the events, if it is already known."""
        ...


class Precomputed:
    """Events that need no model: a replayed cache record, or stand-in text. Cancelling
    stops the iteration; nothing is ever held."""

    def __init__(
        self,
        events: Iterator[GenerationResponse],
        result: Callable[[], GenerationResult] | None = None,
    ) -> None:
        self._events = events
        self._result = result
        self._cancelled = False

    def events(self) -> Iterator[GenerationResponse]:
        for event in self._events:
            if self._cancelled:
                return
            yield event

    async def aevents(self) -> AsyncIterator[GenerationResponse]:
        for event in self.events():
            yield event

    def cancel(self) -> None:
        self._cancelled = True

    def wait_released(self) -> None:
        return None

    async def await_released(self) -> None:
        return None

    def known_result(self) -> GenerationResult | None:
        return self._result() if self._result is not None else None
