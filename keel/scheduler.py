"""One worker thread per loaded model owns its llama.cpp context; callers submit jobs.

The worker runs one generation at a time and pushes its events into the job's channel,
so consumers in any thread or event loop read at their own pace, and a consumer that
stops early cancels the job, which ends at the next decode step.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from time import perf_counter

from .config import positive_int
from .errors import QueueFullError
from .events import GenerationResponse

_END = object()
DEFAULT_QUEUE_DEPTH = 64


class Channel:
    """A thread-safe FIFO that blocking threads and asyncio tasks can both wait on."""

    def __init__(self) -> None:
        self._items: deque = deque()
        self._cond = threading.Condition()
        self._waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future] | None = None

    def put(self, item) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify()
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            loop, future = waiter
            loop.call_soon_threadsafe(_wake, future)

    def get(self):
        with self._cond:
            while not self._items:
                self._cond.wait()
            return self._items.popleft()

    async def aget(self):
        while True:
            with self._cond:
                if self._items:
                    return self._items.popleft()
                loop = asyncio.get_running_loop()
                future = loop.create_future()
                self._waiter = (loop, future)
            await future


def _wake(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


Produce = Callable[[Callable[[], bool], float], Iterator[GenerationResponse]]


class Job:
    """One submitted generation: produce(cancelled, submitted_at) runs on the worker."""

    def __init__(self, produce: Produce) -> None:
        self.produce = produce
        self.channel = Channel()
        self.cancelled = threading.Event()
        self.done = threading.Event()  # set once the worker has let go of the engine
        self.submitted = perf_counter()

    def cancel(self) -> None:
        self.cancelled.set()

    def events(self) -> Iterator[GenerationResponse]:
        """Blocking iteration; cancels the job if the consumer stops early."""
        try:
            while (item := self.channel.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.cancel()

    async def aevents(self):
        try:
            while (item := await self.channel.aget()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.cancel()


class Worker:
    def __init__(self, name: str) -> None:
        self._queue: queue.Queue[Job] = queue.Queue()
        self._submit_lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name=f"keel-{name}", daemon=True)
        self._thread.start()

    def submit(self, produce: Produce) -> Job:
        """Queue a job, unless KEEL_QUEUE_DEPTH jobs already wait (read now, so a change
        applies to models that are already loaded)."""
        depth = queue_depth()
        with self._submit_lock:
            if self._queue.qsize() >= depth:
                raise QueueFullError(
                    f"{depth} requests are already waiting for this model; retry shortly "
                    "(KEEL_QUEUE_DEPTH raises the limit)",
                    retry_after=1.0,
                )
            job = Job(produce)
            self._queue.put(job)
        return job

    def _serve(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job.cancelled.is_set():
                    continue  # cancelled while waiting: not even a prefill
                for event in job.produce(job.cancelled.is_set, job.submitted):
                    job.channel.put(event)
            except BaseException as exc:  # handed to the consumer, who re-raises it
                job.channel.put(exc)
            finally:
                job.done.set()
                job.channel.put(_END)


def queue_depth() -> int:
    return positive_int("KEEL_QUEUE_DEPTH", DEFAULT_QUEUE_DEPTH)
