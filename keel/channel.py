"""A thread-safe FIFO that blocking threads and asyncio tasks can both wait on: the way
events cross from a model's worker thread to consumers in any thread or event loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


# An asyncio consumer waiting for an item: its loop, and the future it awaits.
Waiter = tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]


class Channel(Generic[T]):
    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._waiter: Waiter | None = None

    def put(self, item: T, later: list[Waiter] | None = None) -> None:
        """Add an item; an asyncio consumer waiting for it is woken now, or, given `later`,
        added to it for wake_all."""
        with self._cond:
            self._items.append(item)
            self._cond.notify()
            waiter, self._waiter = self._waiter, None
        if waiter is None:
            return
        if later is None:
            wake_all([waiter])
        else:
            later.append(waiter)

    def get(self) -> T:
        with self._cond:
            while not self._items:
                self._cond.wait()
            return self._items.popleft()

    async def aget(self) -> T:
        while True:
            with self._cond:
                if self._items:
                    return self._items.popleft()
                loop = asyncio.get_running_loop()
                future: asyncio.Future[None] = loop.create_future()
                self._waiter = (loop, future)
            await future


def wake_all(waiters: list[Waiter]) -> None:
    """Wake many waiters with one call into each event loop: the loop then sends all their
    items in one turn instead of waking, and taking the GIL from the producer, for each."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for loop, future in waiters:
        by_loop.setdefault(loop, []).append(future)
    for loop, futures in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits there now
            loop.call_soon_threadsafe(_wake_each, futures)


def _wake_each(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)
