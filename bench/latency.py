"""Time a token takes to stream from keel serve and from llama-server, one request at a
time, greedy and at T=0.7 apart: a finer comparison than bench/server.py's windows.

The servers run at once, each in its own process (bench/server.py's commands, 2 threads,
BENCH_FEW's set: keel, its twin if BENCH_TWIN is set, llama-server -np 8). Each round
sends the same streamed request (bench/server.py's prompt for that round, 64 new tokens)
to every server in turn, greedy and at T=0.7, rotating the order of servers and of the
two temperatures; nothing else runs meanwhile, and back-to-back requests see the machine
in the same state. Its noise floor is still about ±5%: two identical keel servers
(BENCH_TWIN=1) came out 1.05x / 0.99x and then 1.01x / 0.99x apart, greedy / at T=0.7,
over 48 requests a run (AMD Zen 5 VM, 2026-12-02).

Per server and temperature: the time a token takes (first to last streamed piece of text over
the usage's completion tokens minus one), median over requests; its ratio to llama-server's
for the same request, median over requests; and time to first token. T=0.7 apart from
greedy shows what keel's sampler costs a stream (greedy streams are the same text on
both servers; sampled ones are not, since llama-server's sampler is not keel's).

The limit row is the bare loop of bench/common.py on the first round's prompt (greedy, one
row, in a process of its own before the servers start); its ratio is to llama-server's
median greedy figure, not paired.

Each request is also sent whole, not streamed, and both kinds are timed from sending to
the end of the response, per completion token: what streaming adds is the difference,
and the not-streamed ratio to llama-server is what the two engines' per-token paths take
without any SSE (each server still runs its HTTP layer once a request).

Usage: python bench/latency.py   (BENCH_REQUESTS=48, BENCH_TWIN=0|1|<checkout>,
BENCH_MODEL=name, BENCH_THREADS=2)
"""

from __future__ import annotations

import os
import statistics
import time
from collections import defaultdict
from contextlib import ExitStack

from common import in_fresh_process, main_or_runner
from server import (
    FEW_NAMES,
    MODEL,
    THREADS,
    TWIN_NAME,
    Tally,
    bare_load_rate,
    new_client,
    one_request,
    request_body,
    servers,
    serving,
)

from keel.models import resolve_model

REQUESTS = int(os.environ.get("BENCH_REQUESTS", "48"))
TEMPERATURES = (0.0, 0.7)
ANCHOR = "llama-server -np 8"


def one_stream(url: str, index: int, temperature: float) -> tuple[float, float, float]:
    """(seconds to the first token, seconds a token after it, whole seconds a token) for
    one streamed request, timed as bench/server.py times its streams."""
    tally = Tally()
    start = time.perf_counter()
    with new_client() as client:
        one_request(client, url, index, tally, extra={"temperature": temperature})
    whole = time.perf_counter() - start
    if tally.errors or tally.tokens < 2:
        raise RuntimeError(f"{url}: request {index} failed or streamed under two tokens")
    return tally.first_token[0], sum(tally.gaps) / (tally.tokens - 1), whole / tally.tokens


def one_whole(url: str, index: int, temperature: float) -> float:
    """Whole seconds a token of the same request, not streamed."""
    body = {**request_body(index), "temperature": temperature, "stream": False}
    body.pop("stream_options")
    start = time.perf_counter()
    with new_client() as client:
        response = client.post(f"{url}/v1/completions", json=body)
        response.raise_for_status()
        tokens = response.json()["usage"]["completion_tokens"]
    return (time.perf_counter() - start) / tokens


def rotated(items: list, by: int) -> list:
    return items[by % len(items) :] + items[: by % len(items)]


def paired(times: list[float], base: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(times, base, strict=True))


def limit_seconds() -> float:
    """Seconds a greedy token takes in the bare loop (bench/common.py) on the first round's
    prompt, one row: the least a streamed token could take, sampler and HTTP aside. Run
    in a process of its own before the servers start."""
    return 1 / bare_load_rate(1)


def main() -> None:
    path = str(resolve_model(MODEL).path)
    chosen = {name: run for name, run in servers(path).items() if name in FEW_NAMES}
    if ANCHOR not in chosen:
        raise SystemExit("bench/latency.py compares with llama-server: build it first")
    limit = float(in_fresh_process(__file__, "--limit"))
    names = list(chosen)
    # (what, server, temperature) -> one figure per request: "first" (time to first
    # token), "token" (ms a streamed token), "streamed" and "whole" (whole request, a token)
    times: defaultdict[tuple[str, str, float], list[float]] = defaultdict(list)

    def stream(url: str, name: str, index: int, temperature: float) -> None:
        ttft, per_token, whole = one_stream(url, index, temperature)
        for what, value in (("first", ttft), ("token", per_token), ("streamed", whole)):
            times[what, name, temperature].append(value)

    def whole(url: str, name: str, index: int, temperature: float) -> None:
        times["whole", name, temperature].append(one_whole(url, index, temperature))

    with ExitStack() as stack:
        urls = {name: stack.enter_context(serving(*chosen[name])) for name in names}
        for name in names:  # warm-up
            for temperature in TEMPERATURES:
                one_stream(urls[name], 10**8, temperature)
                one_whole(urls[name], 10**8, temperature)
        for index in range(REQUESTS):
            # the first request of a round pays for the prompt (the others reuse its KV):
            # every temperature and kind goes first as often
            kinds = rotated([stream, whole], index // 2)
            for name in rotated(names, index):
                for temperature in rotated(list(TEMPERATURES), index):
                    for kind in kinds:
                        kind(urls[name], name, index, temperature)
    print(
        f"{MODEL}, {THREADS} threads, {REQUESTS} requests a server and temperature, one at a "
        f"time; ratio = median over requests of ms a token / {ANCHOR}'s for the same request"
    )
    print(f"{'server':<20} {'T':>4} {'ms a token':>11} {'ratio':>6} {'TTFT p50 (ms)':>14}")
    for name in names:
        for temperature in TEMPERATURES:
            tokens = times["token", name, temperature]
            ratio = paired(tokens, times["token", ANCHOR, temperature])
            first = statistics.median(times["first", name, temperature])
            print(
                f"{name:<20} {temperature:>4} {statistics.median(tokens) * 1e3:>11.3f} "
                f"{ratio:>5.3f}x {first * 1e3:>14.1f}"
            )
    anchor = statistics.median(times["token", ANCHOR, 0.0])
    print(f"{'bare loop (limit)':<20} {0.0:>4} {limit * 1e3:>11.3f} {limit / anchor:>5.3f}x")
    print(
        "\nwhole requests, sending to the end of the response, ms a completion token; "
        "ratio as above"
    )
    print(
        f"{'server':<20} {'T':>4} {'streamed':>9} {'ratio':>6} {'not streamed':>13} "
        f"{'ratio':>6} {'streaming adds':>15}"
    )
    for name in names:
        for temperature in TEMPERATURES:
            streamed, unstreamed = (
                times["streamed", name, temperature],
                times["whole", name, temperature],
            )
            added = [a - b for a, b in zip(streamed, unstreamed, strict=True)]
            print(
                f"{name:<20} {temperature:>4} {statistics.median(streamed) * 1e3:>9.3f} "
                f"{paired(streamed, times['streamed', ANCHOR, temperature]):>5.3f}x "
                f"{statistics.median(unstreamed) * 1e3:>13.3f} "
                f"{paired(unstreamed, times['whole', ANCHOR, temperature]):>5.3f}x "
                f"{statistics.median(added) * 1e3:>15.3f}"
            )
    if TWIN_NAME in names:  # above 1: the twin streams faster
        for temperature in TEMPERATURES:
            ratio = paired(
                times["token", "keel serve", temperature], times["token", TWIN_NAME, temperature]
            )
            print(f"keel serve / its twin at T={temperature}: {ratio:.3f}x the time a token")


if __name__ == "__main__":
    main_or_runner(main, one_shots={"--limit": limit_seconds})
