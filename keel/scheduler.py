"""One worker thread per loaded model owns its llama.cpp context; callers submit jobs.

The worker keeps up to `engine.slots` generations in flight. Each round it gives queued
jobs free slots, prefills about one chunk of prompt tokens, then decodes the pending tokens
of all running sequences, batched in groups of proven sizes, and pushes each event into
its job's channel. Consumers in any thread or
event loop read at their own pace; a consumer that stops early cancels its job, which ends
before its next token and frees the slot.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import deque
from collections.abc import Generator, Iterator
from time import perf_counter

from .config import positive_int
from .engine.batching import batch_groups
from .engine.llama import CHUNK, LlamaEngine
from .errors import GenerationError, QueueFullError
from .events import GenerationResponse
from .loop import Sequence

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


class Job:
    """One submitted generation, run by the worker as a Sequence."""

    def __init__(self, sequence: Sequence) -> None:
        self.sequence = sequence
        self.channel = Channel()
        self.cancelled = threading.Event()
        self.done = threading.Event()  # set once the worker has let go of the engine
        self.submitted = perf_counter()

    def cancel(self) -> None:
        self.cancelled.set()

    def emit(self, event: GenerationResponse) -> bool:
        """Hand an event to the consumer; True when it was the last one."""
        self.channel.put(event)
        return event.finish_reason is not None

    def end(self, error: BaseException | None = None) -> None:
        if error is not None:
            self.channel.put(error)  # the consumer re-raises it
        self.done.set()
        self.channel.put(_END)

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
    def __init__(self, engine: LlamaEngine, name: str) -> None:
        self.engine = engine
        self._queue: queue.Queue[Job] = queue.Queue()
        self._submit_lock = threading.Lock()
        self._active: dict[int, Job] = {}  # slot -> job (prefilling or decoding)
        self._prefills: dict[int, Generator] = {}  # slot -> its paused prefill, oldest first
        self.decode_calls = 0  # generated-token decodes, and the tokens they carried:
        self.decoded_tokens = 0  # their ratio is the mean batch size
        self._thread = threading.Thread(target=self._serve, name=f"keel-{name}", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> int:
        """Generations in flight (an estimate, read from another thread)."""
        return len(self._active)

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def submit(self, sequence: Sequence) -> Job:
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
            job = Job(sequence)
            self._queue.put(job)
        return job

    def _serve(self) -> None:
        while True:
            try:
                self._admit()
                for slot, job in list(self._active.items()):
                    if job.cancelled.is_set():
                        self._finish(slot, job.sequence.cancelled())
                self._prefill_round()
                self._step()
            except BaseException as exc:  # a bug: fail what is running, never hang callers
                for slot in list(self._active):
                    self._finish(slot, error=exc)

    def _admit(self) -> None:
        """Give queued jobs free slots; wait for one when nothing is running."""
        while len(self._active) < self.engine.slots:
            try:
                job = self._queue.get(block=not self._active)
            except queue.Empty:
                return
            if job.cancelled.is_set():
                job.end()  # cancelled while waiting: not even a prefill
                continue
            slot = self._pick_slot(job.sequence)
            self._active[slot] = job
            self._prefills[slot] = job.sequence.prefill(slot, job.submitted)

    def _prefill_round(self) -> None:
        """Prefill about one chunk's worth of prompt tokens, oldest prompt first: several
        short prompts finish together (and then decode in one batch), while a long prompt
        advances one chunk, so the streams already running pause for one chunk at most."""
        budget = CHUNK
        while self._prefills and budget > 0:
            slot = next(iter(self._prefills))
            size = len(self._active[slot].sequence.prompt.tokens)
            budget -= size if self._prefill_step(slot) else CHUNK

    def _prefill_step(self, slot: int) -> bool:
        """Advance one prefill by one chunk; True when it finished (and sampled its first
        token, or ended)."""
        steps = self._prefills[slot]
        job = self._active[slot]
        try:
            next(steps)
            return False
        except StopIteration as done:
            failure = done.value
        except BaseException as exc:  # a bug, not a model failure: tell the consumer
            self._finish(slot, error=exc)
            return True
        del self._prefills[slot]
        if failure is not None:
            self._finish(slot, failure)
        elif job.emit(job.sequence.advance(self.engine.prompt_logits(slot))):
            self._finish(slot)
        return True

    def _pick_slot(self, sequence: Sequence) -> int:
        """The free slot that can reuse most of the prompt's KV; else the lowest free one,
        which keeps running slots consecutive so they batch together."""
        free = [slot for slot in range(self.engine.slots) if slot not in self._active]
        tokens = sequence.prompt.tokens
        return max(free, key=lambda slot: (self.engine.reusable_tokens(tokens, slot), -slot))

    def _step(self) -> None:
        """Decode every pending token, in groups of proven batch sizes, then sample."""
        active = self._active
        pending = sorted(slot for slot, job in active.items() if job.sequence.pending is not None)
        for group in batch_groups(pending, self.engine.batch_sizes):
            sequences = [active[slot].sequence for slot in group]
            try:
                entries = zip(group, sequences, strict=True)
                self.engine.step_batch([(seq.pending, seq.position, slot) for slot, seq in entries])
            except GenerationError as exc:
                for slot, seq in zip(group, sequences, strict=True):
                    self._finish(slot, seq.failed(exc))
                continue
            self.decode_calls += 1
            self.decoded_tokens += len(group)
            for row, slot in enumerate(group):
                job = active[slot]
                try:
                    job.sequence.decoded()
                    if job.emit(job.sequence.advance(self.engine.logits(row))):
                        self._finish(slot)
                except BaseException as exc:
                    self._finish(slot, error=exc)

    def _finish(
        self, slot: int, event: GenerationResponse | None = None, error: BaseException | None = None
    ) -> None:
        job = self._active.pop(slot)
        steps = self._prefills.pop(slot, None)
        if steps is not None:
            steps.close()
        if event is not None:
            job.emit(event)
        job.end(error)


def queue_depth() -> int:
    return positive_int("KEEL_QUEUE_DEPTH", DEFAULT_QUEUE_DEPTH)
