"""Where and with how many threads each llama_decode of the process runs.

llama.cpp computes with OpenMP, and libgomp keeps one team of threads per calling thread.
With one worker thread per model, two models that have both run leave two teams on the
cores; libgomp then sees more threads than cores, cuts its spin-wait to almost nothing,
and every team pays a sleep and a wake-up per graph node: decoding ran 3.4x slower in a
process where a second model had ever generated. So every multi-threaded decode runs on
one compute thread, and the process keeps one team however many models it has.

While several contexts compute at once and the threads would not go round (two busy
models on two cores), each instead decodes with one thread on its own caller's thread:
one thread needs no OpenMP team, so the contexts run side by side on their own cores
instead of taking turns on both. Where a one-thread decode of one row is nearly as fast as
a two-thread one (a 2-core AMD EPYC VM), each busy model keeps about 0.9x its solo speed
(bench/multimodel.py) instead of about half; where one thread gives 0.58x of two (a 2-core
Intel Xeon VM), each keeps about that much, which still beats taking turns. The thread
count does not change outputs (tested), nor does the calling thread.

A model's worker hands the compute thread its whole loop of rounds (sample, decode,
sample...) rather than each decode: waking another thread takes 0.1-0.7 ms on a loaded
two-core VM, about 5% of a one-row decode, and a busy stretch then pays it once instead of
once per token. The compute thread hosts one loop at a time and gives it back whenever
another call waits; a loop that finds the compute thread hosting another runs its rounds
on its own thread, where its decodes take one thread beside the other's.

Idle, the compute thread waits on a queue (no CPU), and the team's threads sleep once
their spin-wait runs out.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

# A context whose last decode ended this recently still counts as computing: a busy
# model's worker samples between decodes (well under a millisecond) and a server's
# client takes a few milliseconds to send its next request.
BUSY_WINDOW = 0.05


class _Call:
    __slots__ = ("args", "done", "error", "function", "result")

    def __init__(self, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.function = function
        self.args = args
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class ComputeThread:
    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[_Call] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._last_end: dict[int, float] = {}  # owner -> end of its last decode (inf: now)
        self._hosting = False  # a worker's loop of rounds runs on the compute thread

    def _start(self) -> threading.Thread:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="keel-compute", daemon=True
                )
                self._thread.start()
            return self._thread

    def _serve(self) -> None:
        while True:
            call = self._calls.get()
            try:
                call.result = call.function(*call.args)
            except BaseException as exc:  # handed back to the caller, raised there
                call.error = exc
            call.done.set()

    def run(self, function: Callable[..., T], *args: Any) -> T:
        """function(*args) on the compute thread; the caller waits for its result."""
        thread = self._thread or self._start()
        if threading.current_thread() is thread:
            return function(*args)
        call = _Call(function, args)
        self._calls.put(call)
        call.done.wait()
        if call.error is not None:
            raise call.error
        result: T = call.result
        return result

    def drive(self, rounds: Callable[[], bool]) -> None:
        """Call rounds() until it returns False (nothing left in flight): on the compute
        thread when it hosts no other loop and no call waits, otherwise on this thread
        until the compute thread is free again."""
        more = True
        while more:
            more = self.run(self._hosted, rounds) if self._claim() else self._beside(rounds)

    def _claim(self) -> bool:
        with self._lock:
            if self._hosting or not self._calls.empty():
                return False
            self._hosting = True
            return True

    def _hosted(self, rounds: Callable[[], bool]) -> bool:
        """rounds() on the compute thread until done (False) or another call waits (True)."""
        try:
            while rounds():
                if not self._calls.empty():
                    return True
            return False
        finally:
            self._hosting = False

    def _beside(self, rounds: Callable[[], bool]) -> bool:
        """rounds() on the caller's thread until done (False) or the compute thread is free
        (True)."""
        while rounds():
            if not self._hosting:
                return True
        return False

    def _computing_with(self, owner: int) -> int:
        """How many owners compute now, this one included; marks this one as computing."""
        now = time.monotonic()
        with self._lock:
            for other, end in list(self._last_end.items()):
                if now - end > BUSY_WINDOW:
                    del self._last_end[other]
            self._last_end[owner] = math.inf
            return len(self._last_end)

    def share(self, owner: int, threads: int, compute: Callable[[int], T]) -> T:
        """compute(n) for `owner` (one context) with the n threads it may use now: all of
        `threads` on the compute thread, or 1 on the caller's thread while other owners
        compute too and `threads` would give each at most one (or `threads` is 1)."""
        try:
            if threads // self._computing_with(owner) <= 1:
                return compute(1)
            return self.run(compute, threads)
        finally:
            with self._lock:
                self._last_end[owner] = time.monotonic()


COMPUTE = ComputeThread()
