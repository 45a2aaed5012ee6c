"""One thread makes every llama_decode call of the process, whichever model it is for.

llama.cpp computes with OpenMP, and libgomp keeps one team of threads per calling thread.
With one worker thread per model, two models that have both run leave two teams on the
cores; libgomp then sees more threads than cores, cuts its spin-wait to almost nothing,
and every team pays a sleep and a wake-up per graph node: decoding ran 3.4x slower in a
process where a second model had ever generated. Funnelling every decode through this
thread keeps one team whatever the number of models. The thread count does not change
outputs (tested), and neither does the calling thread.

Idle, the thread waits on a queue (no CPU), and the team's threads sleep once their
spin-wait runs out.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


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


COMPUTE = ComputeThread()
