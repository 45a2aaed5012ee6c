"""Streams that come and go leave gaps between a model's busy slots; filler rows keep the
rest one micro-batch. How much that is worth, in one process, on one context.

llama.cpp decodes the KV streams of a batch as one micro-batch only when their sequence
ids are consecutive; a gap (a slot whose request ended, or that waits for one) splits the
step into two passes over the weights. keel bridges a gap with a throwaway row in the idle
slot (engine.filler_rows) where that saves a pass. Here CLIENTS threads stream requests of
varied lengths, each pausing a varied time between requests (people reading a reply), and
the same worker runs in rounds of two windows: with filler rows, and with them switched
off; the order alternates every round. The two modes share the context and never run at
the same time, so they cannot slow each other.

1. Per mode: tokens/s (median window), the mean rows per llama_decode of generated
   tokens (fillers not counted) and the decode time per generated token, which is what
   the fillers change (tokens/s also depends on the clients' pauses); ratios are medians
   of the same round's ratios.
2. Per gap layout, the time of one decode step in a bare loop (median of STEPS, modes
   interleaved): the cost the fillers avoid.

Usage: python bench/gaps.py   (BENCH_ROUNDS=N, BENCH_SECONDS=S, BENCH_CLIENTS=N)
"""

from __future__ import annotations

import itertools
import os
import statistics
import threading
import time

from common import generation_environment

import keel
from keel.engine.compute import COMPUTE
from keel.loaded import load_location
from keel.models import resolve_model

MODEL = os.environ.get("BENCH_MODEL", "smollm2-135m")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "10"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "8"))
STEPS = 40
LENGTHS = (16, 40, 64, 24, 56, 32, 48)  # new tokens, cycled per client
PAUSES = (0.0, 0.15, 0.05, 0.3, 0.1)  # seconds between a client's requests, cycled
TOPICS = ["a lighthouse", "a fox", "the moon", "a train", "a garden", "a storm", "a city", "a ship"]


def window(fillers: bool, first: int) -> tuple[float, float, float]:
    """(tokens/s, rows per decode, decode seconds per token) of CLIENTS clients for
    SECONDS, filler rows on or off."""
    lane = load_location(resolve_model(MODEL)).lanes[0]
    if fillers:
        vars(lane.engine).pop("filler_rows", None)
    else:
        lane.engine.filler_rows = lambda decoding: {}
    worker = lane.worker
    calls, rows, spent = worker.decode_calls, worker.decoded_tokens, worker.decode_seconds
    counter = itertools.count(first)
    tokens = [0] * CLIENTS
    stop_at = time.perf_counter() + SECONDS

    def client(me: int) -> None:
        while time.perf_counter() < stop_at:
            index = next(counter)
            prompt = f"Write a short story about {TOPICS[index % 8]} (#{index})."
            events = keel.stream_generate(
                prompt,
                model=MODEL,
                max_new_tokens=LENGTHS[index % len(LENGTHS)],
                seed=index,
                temperature=0.7,
            )
            tokens[me] += sum(1 for _ in events)
            time.sleep(PAUSES[index % len(PAUSES)])

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(me,)) for me in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    vars(lane.engine).pop("filler_rows", None)
    decoded = max(worker.decoded_tokens - rows, 1)
    per_call = decoded / max(worker.decode_calls - calls, 1)
    return sum(tokens) / elapsed, per_call, (worker.decode_seconds - spent) / decoded


def layouts() -> dict[str, list[list[int | str]]]:
    """Decode steps of one token per listed slot; "f3" is a filler row in slot 3."""
    return {
        "8 rows": [[0, 1, 2, 3, 4, 5, 6, 7]],
        "7 rows, gap at 3, 2 passes": [[0, 1, 2], [4, 5, 6, 7]],
        "7 rows, gap at 3 filled": [[0, 1, 2, "f3", 4, 5, 6, 7]],
        "5 rows, 3 runs, 3 passes": [[0], [2, 3], [5, 6]],
        "5 rows, 3 runs filled": [[0, "f1", 2, 3, "f4", 5, 6]],
    }


def step_times() -> dict[str, float]:
    """Median seconds of one step per layout, on a lane of its own with 8 short prompts."""
    engine = load_location(resolve_model(MODEL)).engine.another_lane()
    prompts = [engine.vocab.prompt_tokens(f"A story about {t}.", raw=True) for t in TOPICS]
    for slot, prompt in enumerate(prompts):
        engine.slots.prefill(prompt, slot)

    def step(groups: list[list[int | str]]) -> float:
        started = time.perf_counter()
        for group in groups:
            slots = [int(str(slot).lstrip("f")) for slot in group]
            fillers = {int(slot[1:]) for slot in group if isinstance(slot, str)}
            decoding = {slot: len(prompts[slot]) for slot in slots if slot not in fillers}
            rows = engine.filler_rows(decoding)
            engine.step_batch(
                [rows[slot] if slot in fillers else (1000, decoding[slot], slot) for slot in slots],
                fillers,
            )
            for slot in decoding:
                engine.slots.rewind(slot, len(prompts[slot]))
        return time.perf_counter() - started

    def measure() -> dict[str, float]:
        times: dict[str, list[float]] = {name: [] for name in layouts()}
        for repeat in range(STEPS + 3):
            for name, groups in layouts().items():
                seconds = step(groups)
                if repeat >= 3:  # warm-up
                    times[name].append(seconds)
        return {name: statistics.median(values) for name, values in times.items()}

    return COMPUTE.run(measure)  # where a worker's decodes run


def main() -> None:
    generation_environment()
    keel.generate("Warm up.", model=MODEL, max_new_tokens=8)
    results: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}
    for round_ in range(ROUNDS):
        for fillers in (True, False) if round_ % 2 == 0 else (False, True):
            results[fillers].append(window(fillers, first=10**5 * (2 * round_ + fillers)))
    print(
        f"{MODEL}, {CLIENTS} streaming clients in one process, {len(LENGTHS)} request lengths "
        f"({min(LENGTHS)}-{max(LENGTHS)} tokens), pauses of 0-{max(PAUSES)} s, T=0.7; "
        f"{ROUNDS} rounds of a {SECONDS:.0f} s window per mode"
    )
    print(
        f"{'mode':<22} {'tok/s':>7} {'ratio':>6} {'rows a decode':>14} "
        f"{'decode ms a token':>18} {'ratio':>6}"
    )
    off = results[False]
    for fillers, name in ((False, "gaps split the step"), (True, "filler rows")):
        on = results[fillers]
        columns = [statistics.median(column) for column in zip(*on, strict=True)]
        rate = statistics.median(a[0] / b[0] for a, b in zip(on, off, strict=True))
        decode = statistics.median(a[2] / b[2] for a, b in zip(on, off, strict=True))
        print(
            f"{name:<22} {columns[0]:>7.1f} {rate:>5.2f}x {columns[1]:>14.2f} "
            f"{columns[2] * 1000:>18.2f} {decode:>5.2f}x"
        )
    print(f"\none decode step, median of {STEPS} (bare loop, layouts interleaved)")
    times = step_times()
    base = times["8 rows"]
    for name, seconds in times.items():
        print(f"{name:<28} {seconds * 1000:>7.2f} ms {seconds / base:>5.2f}x")


if __name__ == "__main__":
    main()
