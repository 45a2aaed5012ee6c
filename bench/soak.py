"""A long run of keel serve under steady load: does anything grow or fail?

One `keel serve` process, 32 streaming clients sending BENCH_REQUESTS requests (default
1,000) back to back: distinct prompts, 64 new tokens, greedy and seeded T=0.7 alternately.
Reported: throughput beside its limit (the bare loop of bench/common.py with a row in each
of the server's slots, in a process of its own before the server starts), time to first
token and inter-token latency (p50/p99), errors, and the server's resident memory, open
file descriptors and threads at start, after a warm-up of one request per client, and at
the end. The goal is no growth after the warm-up beyond 5% of memory (allocator noise) and
none in descriptors or threads.

Usage: python bench/soak.py   (BENCH_REQUESTS=N, BENCH_CLIENTS=N)
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import psutil
from common import in_fresh_process, main_or_runner
from server import (
    NEW_TOKENS,
    Tally,
    bare_load_rate,
    in_threads,
    keel_serve,
    new_client,
    one_request,
    percentile,
    server_process,
)

from keel.config import settings

REQUESTS = int(os.environ.get("BENCH_REQUESTS", "1000"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "32"))


@dataclass(frozen=True)
class Footprint:
    rss_mb: float
    descriptors: int
    threads: int


def footprint(pid: int) -> Footprint:
    process = psutil.Process(pid)
    return Footprint(
        rss_mb=process.memory_info().rss / 2**20,
        descriptors=process.num_fds(),
        threads=process.num_threads(),
    )


def run(url: str, count: int, first_index: int, tally: Tally) -> float:
    """`count` requests from CLIENTS clients; returns the seconds taken."""
    indices = iter(range(first_index, first_index + count))
    lock = threading.Lock()

    def client_loop() -> None:
        with new_client() as client:
            while True:
                with lock:
                    index = next(indices, None)
                if index is None:
                    return
                one_request(client, url, index, tally)

    return in_threads(CLIENTS, client_loop)


def measure_limit() -> float:
    """tok/s of the bare loop (bench/common.py) with a row in every slot of keel serve:
    the most the server could stream to its busy slots, prompts and HTTP aside. Run in a
    process of its own before the server starts."""
    return bare_load_rate(settings().slots)


def main() -> None:
    limit = float(in_fresh_process(__file__, "--limit"))
    command, env = keel_serve()
    with server_process(command, env) as (url, process):
        start = footprint(process.pid)
        run(url, CLIENTS, 10**8, Tally())
        warm = footprint(process.pid)
        tally = Tally()
        elapsed = run(url, REQUESTS, 0, tally)
        end = footprint(process.pid)
    load = f"{REQUESTS} requests, {CLIENTS} streaming clients, {NEW_TOKENS} new tokens"
    print(f"keel serve soak: {load}")
    print(
        f"{tally.requests} ok, {tally.errors} errors in {elapsed:.1f} s: "
        f"{tally.tokens / elapsed:.1f} tok/s ({tally.tokens / elapsed / limit:.2f}x the limit), "
        f"{tally.requests / elapsed:.2f} req/s"
    )
    slots = settings().slots
    print(f"limit: the bare loop with a row in each of the {slots} slots, {limit:.1f} tok/s")
    print(
        f"TTFT p50 {percentile(tally.first_token, 50) * 1000:.0f} ms, "
        f"p99 {percentile(tally.first_token, 99) * 1000:.0f} ms; "
        f"ITL p50 {percentile(tally.gaps, 50) * 1000:.1f} ms, "
        f"p99 {percentile(tally.gaps, 99) * 1000:.1f} ms"
    )
    print(f"{'':<12} {'RSS MB':>8} {'fds':>5} {'threads':>8}")
    for label, seen in (("start", start), ("warm", warm), ("end", end)):
        print(f"{label:<12} {seen.rss_mb:>8.1f} {seen.descriptors:>5} {seen.threads:>8}")
    growth = end.rss_mb / warm.rss_mb - 1
    print(
        f"growth after warm-up: RSS {growth:+.1%}, fds {end.descriptors - warm.descriptors:+d}, "
        f"threads {end.threads - warm.threads:+d}"
    )


if __name__ == "__main__":
    main_or_runner(main, one_shots={"--limit": measure_limit})
