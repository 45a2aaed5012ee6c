"""Every llama_decode of the process runs on one thread (one OpenMP team however many models
have run), failures come back to the caller, and an idle process does not spin."""

from __future__ import annotations

import threading
import time

import pytest

import keel
from keel.engine.compute import COMPUTE


def test_every_caller_computes_on_the_same_thread():
    seen = []

    def ask() -> None:
        seen.append(COMPUTE.run(threading.get_ident))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen)) == 1 and seen[0] not in {t.ident for t in threads}
    assert COMPUTE.run(threading.get_ident) == seen[0]


def test_a_failure_is_raised_in_the_caller():
    with pytest.raises(ZeroDivisionError):
        COMPUTE.run(lambda: 1 / 0)
    assert COMPUTE.run(lambda: 2) == 2  # and the thread lives on


def test_two_models_that_ran_leave_an_idle_process_idle():
    for model in ("smollm2-135m", "gemma3-270m"):
        keel.generate("The river", model=model, raw=True, max_new_tokens=8)
    time.sleep(0.5)  # the OpenMP threads' spin-wait runs out
    cpu, wall = time.process_time(), time.perf_counter()
    time.sleep(1.0)
    used = (time.process_time() - cpu) / (time.perf_counter() - wall)
    assert used < 0.05, f"an idle process used {used:.0%} of a core"
