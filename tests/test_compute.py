"""Every multi-threaded llama_decode of the process runs on one thread (one OpenMP team
however many models have run); contexts computing at once each decode with one thread on
their own caller's thread, with unchanged outputs; a worker's loop of rounds runs on the
compute thread while it is free and gives it back to waiting calls; failures come back to
the caller, and an idle process does not spin."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import keel
from keel.engine.compute import BUSY_WINDOW, COMPUTE, ComputeThread


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


def test_contexts_computing_at_once_each_use_one_thread_on_their_own_thread():
    compute = ComputeThread()
    first_started, second_done = threading.Event(), threading.Event()
    seen: dict[str, tuple[int, int]] = {}

    def first(threads: int) -> None:
        seen["first"] = (threads, threading.get_ident())
        first_started.set()
        assert second_done.wait(5)

    def second(threads: int) -> None:
        seen["second"] = (threads, threading.get_ident())

    alone = threading.Thread(target=compute.share, args=(1, 2, first))
    alone.start()
    assert first_started.wait(5)
    compute.share(2, 2, second)  # while the first still computes
    second_done.set()
    alone.join()
    compute_thread = compute.run(threading.get_ident)
    assert seen["first"] == (2, compute_thread)
    assert seen["second"] == (1, threading.get_ident())
    # the other context ran moments ago: still sharing; once it has been idle, all threads
    assert compute.share(1, 2, lambda threads: threads) == 1
    time.sleep(BUSY_WINDOW * 2)
    assert compute.share(1, 2, lambda threads: (threads, threading.get_ident())) == (
        2,
        compute_thread,
    )
    # four threads for two busy contexts: two each would need two teams; they take turns
    assert compute.share(3, 4, lambda threads: threads) == 4


def test_two_busy_models_give_the_texts_each_gives_alone():
    jobs = [
        dict(model=model, seed=seed, temperature=temperature)
        for model in ("smollm2-135m", "gemma3-270m")
        for seed, temperature in ((1, 0.0), (2, 0.8), (3, 0.8))
    ]

    def run(job: dict) -> str:
        return keel.generate("The river", raw=True, max_new_tokens=24, cache=False, **job)

    alone = [run(job) for job in jobs]
    with ThreadPoolExecutor(len(jobs)) as pool:
        together = list(pool.map(run, jobs))
    assert together == alone


def rounds_until(stop: threading.Event, seen: list[int]):
    """A worker's rounds: record the thread each runs on, until `stop` is set."""

    def one_round() -> bool:
        seen.append(threading.get_ident())
        time.sleep(0.001)
        return not stop.is_set()

    return one_round


def test_a_loop_of_rounds_runs_on_the_compute_thread_and_yields_to_waiting_calls():
    compute = ComputeThread()
    compute_thread = compute.run(threading.get_ident)
    stop, seen = threading.Event(), []
    driver = threading.Thread(target=compute.drive, args=(rounds_until(stop, seen),))
    driver.start()
    while not seen:
        time.sleep(0.001)
    # a call from elsewhere is served while the loop still has rounds to run
    assert compute.run(lambda: "served") == "served"
    stop.set()
    driver.join(5)
    assert not driver.is_alive() and set(seen) == {compute_thread}


def test_a_second_loop_runs_beside_the_hosted_one_then_takes_the_compute_thread():
    compute = ComputeThread()
    compute_thread = compute.run(threading.get_ident)
    first_stop, first_seen = threading.Event(), []
    second_stop, second_seen = threading.Event(), []
    first = threading.Thread(target=compute.drive, args=(rounds_until(first_stop, first_seen),))
    first.start()
    while not first_seen:
        time.sleep(0.001)
    second = threading.Thread(target=compute.drive, args=(rounds_until(second_stop, second_seen),))
    second.start()
    while not second_seen:
        time.sleep(0.001)
    assert second_seen[0] == second.ident  # beside the hosted loop, on its own thread
    first_stop.set()
    first.join(5)
    deadline = time.monotonic() + 5
    while second_seen[-1] != compute_thread and time.monotonic() < deadline:
        time.sleep(0.001)
    second_stop.set()
    second.join(5)
    assert set(first_seen) == {compute_thread}
    assert second_seen[-1] == compute_thread  # moved once the compute thread was free
