"""One worker thread per loaded model owns its llama.cpp context; callers submit jobs.

The worker keeps up to `slots` generations in flight. Each round it gives queued jobs
free slots, prefills about one chunk of prompt tokens (short prompts admitted together in
one llama_decode where that is proven exact), then decodes the pending tokens of
all running generations, batched in groups of proven sizes, and pushes each event into its
job's channel. While generations are in flight, the rounds run on the process's compute
thread if it is free (engine/compute.py), so a decode needs no hand-over between threads.
Consumers in any thread or event loop read at their own pace; a consumer that stops early
cancels its job, which ends before its next token and frees the slot.
"""

from __future__ import annotations

import asyncio
import inspect
import queue
import threading
from collections.abc import AsyncIterator, Generator, Iterator
from time import perf_counter

from .channel import Channel, Waiter, wake_all
from .config import settings
from .engine.batching import StepCosts, batch_groups, one_run
from .engine.compute import COMPUTE
from .engine.context import CHUNK, Entry
from .engine.llama import LlamaEngine
from .engine.slots import Slots
from .errors import GenerationError, QueueFullError
from .events import GenerationResponse, GenerationResult
from .generation import Generation


class _End:
    """Marks the end of a job's channel."""


_END = _End()
Item = GenerationResponse | BaseException | _End


class Job:
    """One submitted generation, run by the worker; an EventSource for its handle."""

    def __init__(self, generation: Generation) -> None:
        self.generation = generation
        self.channel: Channel[Item] = Channel()
        self.cancelled = threading.Event()
        self.done = threading.Event()  # set once the worker has let go of the engine
        self.submitted = perf_counter()

    def cancel(self) -> None:
        self.cancelled.set()

    def emit(self, event: GenerationResponse, later: list[Waiter] | None = None) -> bool:
        """Hand an event to the consumer (waking it at once, or through `later`, see
        Channel.put); True when it was the last one."""
        self.channel.put(event, later)
        return event.finish_reason is not None

    def end(self, error: BaseException | None = None) -> None:
        if error is not None:
            self.channel.put(error)  # the consumer re-raises it
        self.done.set()
        self.channel.put(_END)

    def events(self) -> Iterator[GenerationResponse]:
        try:
            while not isinstance(item := self.channel.get(), _End):
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.cancel()

    async def aevents(self) -> AsyncIterator[GenerationResponse]:
        try:
            while not isinstance(item := await self.channel.aget(), _End):
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.cancel()

    def wait_released(self) -> None:
        self.done.wait()

    async def await_released(self) -> None:
        if not self.done.is_set():
            await asyncio.to_thread(self.done.wait)

    def known_result(self) -> GenerationResult | None:
        return None


def best_slot(
    tokens: list[int], busy: set[int], slots: Slots, sizes: tuple[int, ...], placing: int
) -> int:
    """The free slot for a prompt, one of `placing` jobs (itself included) still to place:
    the slot that keeps the busy slots in the fewest decode groups (another group costs a
    whole llama_decode at every step), then the one whose KV the prompt can reuse most, then
    the lowest. When the jobs being placed fill every slot, the busy slots end up one run
    whichever each takes, so reuse alone decides; otherwise a new request would often take
    the slot beside the running ones and lose its prefix."""
    fills_every_slot = len(busy) + placing >= slots.count

    def cost(slot: int) -> tuple[int, int, int]:
        groups = 0 if fills_every_slot else len(batch_groups(sorted(busy | {slot}), sizes))
        return groups, -slots.reusable_tokens(tokens, slot), slot

    return min((slot for slot in range(slots.count) if slot not in busy), key=cost)


class Worker:
    def __init__(self, engine: LlamaEngine, name: str) -> None:
        self.engine = engine
        self._queue: queue.Queue[Job] = queue.Queue()
        self._submit_lock = threading.Lock()
        self._active: dict[int, Job] = {}  # slot -> job (prefilling or decoding)
        # slot -> its paused prefill, oldest first
        self._prefills: dict[int, Generator[None, None, GenerationResponse | None]] = {}
        self._step_costs = StepCosts()  # what filler rows are weighed against
        self.decode_calls = 0  # generated-token decodes, and the tokens they carried:
        self.decoded_tokens = 0  # their ratio is the mean batch size
        self.decode_seconds = 0.0  # and the time they took
        self.prompts_together = 0  # prompts prefilled in one llama_decode with others
        self._thread = threading.Thread(target=self._serve, name=f"keel-{name}", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> int:
        """Generations in flight (an estimate, read from another thread)."""
        return len(self._active)

    @property
    def waiting(self) -> int:
        return self._queue.qsize()

    def submit(self, generation: Generation) -> Job:
        """Queue a job, unless KEEL_QUEUE_DEPTH jobs already wait (read now, so a change
        applies to models that are already loaded)."""
        depth = settings().queue_depth
        with self._submit_lock:
            if self._queue.qsize() >= depth:
                raise QueueFullError(
                    f"{depth} requests are already waiting for this model; retry shortly "
                    "(KEEL_QUEUE_DEPTH raises the limit)",
                    retry_after=1.0,
                )
            job = Job(generation)
            self._queue.put(job)
        return job

    def _serve(self) -> None:
        while True:
            try:
                self._admit()  # waits while nothing runs
                if self._active:  # not when every job taken was cancelled or failed to place
                    COMPUTE.drive(self._round)
            except BaseException as exc:  # a bug: fail what is running, never hang callers
                for slot in list(self._active):
                    self._finish(slot, error=exc)

    def _round(self) -> bool:
        """End cancelled jobs, prefill, decode and sample, then admit queued jobs without
        waiting; True while generations are in flight."""
        for slot, job in list(self._active.items()):
            if job.cancelled.is_set():
                self._finish(slot, job.generation.cancelled())
        self._prefill_round()
        self._step()
        if self._active:
            self._admit()
        return bool(self._active)

    def _admit(self) -> None:
        """Give queued jobs free slots; wait for one when nothing is running."""
        jobs = self._take_queued()
        for placed, job in enumerate(jobs):
            try:
                slot = self._pick_slot(job.generation, len(jobs) - placed)
            except BaseException as exc:  # not yet in _active: end it here, or it hangs
                job.end(error=exc)
                continue
            self._active[slot] = job
            self._prefills[slot] = job.generation.prefill(slot, job.submitted)

    def _take_queued(self) -> list[Job]:
        """All the queued jobs that fit in the free slots (waiting for one when nothing
        runs), so jobs that arrived together are placed knowing of each other."""
        jobs: list[Job] = []
        while len(self._active) + len(jobs) < self.engine.slots.count:
            try:
                job = self._queue.get(block=not self._active and not jobs)
            except queue.Empty:
                break
            if job.cancelled.is_set():
                job.end()  # cancelled while waiting: not even a prefill
                continue
            jobs.append(job)
        return jobs

    def _prefill_round(self) -> None:
        """Prefill about one chunk's worth of prompt tokens, oldest prompt first: several
        short prompts finish together (and then decode in one batch), while a long prompt
        advances one chunk, so the streams already running pause for one chunk at most."""
        budget = CHUNK - self._prefill_together()
        while self._prefills and budget > 0:
            slot = next(iter(self._prefills))
            size = len(self._active[slot].generation.prompt.tokens)
            budget -= size if self._prefill_step(slot) else CHUNK

    def _prefill_together(self) -> int:
        """Prefill in one llama_decode the prompts not yet started that Slots can decode
        together (several requests that arrived at once: one pass instead of one each),
        where the model proved that exact; returns their tokens."""
        slots = self.engine.slots
        if not slots.together or len(self._prefills) < 2:
            return 0
        fresh = {
            slot: self._active[slot].generation.prompt.tokens
            for slot, steps in self._prefills.items()
            if inspect.getgeneratorstate(steps) == inspect.GEN_CREATED
        }
        if len(fresh) < 2:
            return 0
        started = perf_counter()
        joined = slots.prefill_together(fresh)
        self.prompts_together += len(joined)
        for slot in joined:  # their prefill takes its time from the shared decode
            job = self._active[slot]
            self._prefills[slot] = job.generation.prefill(slot, job.submitted, started)
            self._prefill_step(slot)
        return sum(len(fresh[slot]) for slot in joined)

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
        elif job.emit(job.generation.advance(self.engine.slots.prompt_logits(slot))):
            self._finish(slot)
        return True

    def _pick_slot(self, generation: Generation, placing: int) -> int:
        engine = self.engine
        busy = set(self._active)
        return best_slot(generation.prompt.tokens, busy, engine.slots, engine.batch_sizes, placing)

    def _groups(self) -> tuple[list[list[int]], dict[int, Entry]]:
        """The pending slots in groups of proven batch sizes, and the throwaway rows of the
        other slots that may bridge gaps between them: used where the decode times seen so
        far say a filler row costs less than the pass it saves."""
        active = self._active
        decoding = {
            slot: job.generation.position
            for slot, job in active.items()
            if job.generation.pending is not None
        }
        pending, sizes = sorted(decoding), self.engine.batch_sizes
        if one_run(pending, sizes):
            return [pending], {}
        fillers = self.engine.filler_rows(decoding)
        costs = {rows: self._step_costs.estimate(rows) for rows in sizes}
        return batch_groups(pending, sizes, fillers, costs.__getitem__), fillers

    def _step(self) -> None:
        """Decode every pending token, in groups of proven batch sizes, then sample."""
        active = self._active
        groups, fillers = self._groups()
        for group in groups:
            rows = [slot for slot in group if slot not in fillers]
            generations = [active[slot].generation for slot in rows]
            started = perf_counter()
            try:
                self.engine.step_batch(
                    [
                        fillers[slot] if slot in fillers else active[slot].generation.entry(slot)
                        for slot in group
                    ],
                    fillers,
                )
            except GenerationError as exc:
                for slot, gen in zip(rows, generations, strict=True):
                    self._finish(slot, gen.failed(exc))
                continue
            elapsed = perf_counter() - started
            self._step_costs.observe(len(group), elapsed)
            self.decode_calls += 1
            self.decoded_tokens += len(rows)
            self.decode_seconds += elapsed
            later: list[Waiter] = []  # the group's streams are woken once all are sampled
            for row, slot in enumerate(group):
                if slot in fillers:
                    continue
                job = active[slot]
                try:
                    job.generation.decoded()
                    event = job.generation.advance(self.engine.logits(row))
                    if job.emit(event, later):
                        self._finish(slot)
                except BaseException as exc:
                    self._finish(slot, error=exc)
            wake_all(later)

    def _finish(
        self,
        slot: int,
        event: GenerationResponse | None = None,
        error: BaseException | None = None,
    ) -> None:
        job = self._active.pop(slot)
        steps = self._prefills.pop(slot, None)
        if steps is not None:
            steps.close()
        if event is not None:
            job.emit(event)
        job.end(error)
