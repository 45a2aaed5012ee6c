"""Throughput under concurrent load and prefix reuse, for each bundled model in a process
of its own (the models run one after the other, never side by side).

1. Aggregate tokens/s for 1, 4 and 8 concurrent requests (threads) against the same
   requests run one after another. The model's worker decodes concurrent requests in one
   batch at the sizes its load-time self-check proved exact, and prefills short prompts
   that arrive together in one pass where that is proven exact too. The mean batch size
   the worker achieved is printed too. Requests share one prompt (different seeds: the
   prompt's prefill is kept per slot) or have distinct prompts (every request pays its
   prefill). The limit column is a bare loop on the model's engine decoding one greedy
   token for each of as many distinct prompts per step (bench/common.py), prompts aside.
2. Prefill time of a ~1,500-token prompt cold vs. after another one that shares its first
   1,024 tokens (the KV of that prefix reused), median of REPEATS.

Usage: python bench/concurrency.py   (BENCH_REPEATS=N, BENCH_ROUNDS=N, BENCH_NEW_TOKENS=N)
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from common import bare_batch_rate, generation_environment, in_fresh_process, main_or_runner

import keel
from keel.config import thread_count
from keel.loaded import load_location
from keel.models import resolve_model

REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))  # serial/concurrent pairs per row
MODELS = ["smollm2-135m", "gemma3-270m"]
CONCURRENCY = (1, 4, 8)
PROMPT = "Write a short story about a lighthouse."
NEW_TOKENS = int(os.environ.get("BENCH_NEW_TOKENS", "64"))
TOPICS = ["a lighthouse", "a fox", "the moon", "a train", "a garden", "a storm", "a city", "a ship"]
SENTENCE = "The keeper climbed the stairs and lit the lamp before the storm. "


def request_prompt(index: int, distinct: bool, round_: int) -> str:
    """`distinct` prompts differ per request and per round, so no prefill can be reused;
    otherwise all share PROMPT (and the requests differ by seed)."""
    return f"Write a short story about {TOPICS[index % 8]} ({round_})." if distinct else PROMPT


def request(model: str, index: int, distinct: bool, round_: int = 0) -> int:
    events = keel.stream_generate(
        request_prompt(index, distinct, round_),
        model=model,
        max_new_tokens=NEW_TOKENS,
        seed=index,
        temperature=0.7,
    )
    return sum(1 for _ in events)


def throughput(
    model: str, concurrency: int, distinct: bool, round_: int
) -> tuple[float, float, float]:
    """(serial tokens/s, concurrent tokens/s, mean decode batch) for `concurrency` requests."""
    worker = load_location(resolve_model(model)).lanes[0].worker
    start = time.perf_counter()
    serial_tokens = sum(request(model, i, distinct, 2 * round_) for i in range(concurrency))
    serial = serial_tokens / (time.perf_counter() - start)
    calls, tokens = worker.decode_calls, worker.decoded_tokens
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        concurrent_tokens = sum(
            pool.map(lambda i: request(model, i, distinct, 2 * round_ + 1), range(concurrency))
        )
    concurrent = concurrent_tokens / (time.perf_counter() - start)
    batch = (worker.decoded_tokens - tokens) / max(worker.decode_calls - calls, 1)
    return serial, concurrent, batch


def long_prompt(model: str, tail: str) -> str:
    engine = load_location(resolve_model(model)).engine
    text = SENTENCE * 80
    while len(engine.vocab.prompt_tokens(text, raw=True)) < 1024:
        text += SENTENCE
    while len(engine.vocab.prompt_tokens(text, raw=True)) > 1024:
        text = text[:-1]
    while len(engine.vocab.prompt_tokens(text + tail, raw=True)) < 1500:
        tail += " and then the keeper wrote in the log"
    return text + tail


def prefill_seconds(model: str, prompt: str, warm: bool) -> float:
    engine = load_location(resolve_model(model)).engine
    if not warm:
        engine.slots.reset()
    events = list(keel.stream_generate(prompt, model=model, raw=True, max_new_tokens=1))
    assert (events[-1].prompt_reused > 0) == warm, events[-1].prompt_reused
    return events[-1].prompt_tokens / events[-1].prompt_tps


def model_figures(model: str) -> dict:
    """Both tables' figures for one model, measured in this process (one model per
    process: the other model's context is never loaded beside it)."""
    limits = {  # before the rows, so the rows find the slots as their requests left them
        concurrency: bare_batch_rate(
            model, [request_prompt(i, True, 0) for i in range(concurrency)], NEW_TOKENS
        )
        for concurrency in CONCURRENCY
    }
    request(model, 0, distinct=False)  # warm up
    rows = []
    for distinct in (False, True):
        for concurrency in CONCURRENCY:
            rounds = [throughput(model, concurrency, distinct, r) for r in range(ROUNDS)]
            serial, concurrent, batch = (
                statistics.median(column) for column in zip(*rounds, strict=True)
            )
            ratio = statistics.median(c / s for s, c, _ in rounds)  # paired per round
            rows.append(
                (distinct, concurrency, serial, concurrent, ratio, batch, limits[concurrency])
            )
    first = long_prompt(model, " First question: what did the keeper see")
    second = long_prompt(model, " Second question: who built the tower")
    cold, warm = [], []
    for _ in range(REPEATS):
        cold.append(prefill_seconds(model, first, warm=False))
        warm.append(prefill_seconds(model, second, warm=True))
    return {
        "rows": rows,
        "sizes": list(load_location(resolve_model(model)).engine.batch_sizes),
        "prefill": (statistics.median(cold), statistics.median(warm)),
    }


def main() -> None:
    generation_environment()
    print(
        f"{NEW_TOKENS} new tokens per request, T=0.7, {thread_count()} threads, each model "
        f"in its own process, medians of {ROUNDS} rounds (ratio: median of same-round ratios)"
    )
    print(
        f"{'model':<14} {'prompts':<9} {'requests':>8} {'serial tok/s':>13} {'concurrent':>11} "
        f"{'ratio':>7} {'batch':>6} {'limit':>6} {'proven sizes'}"
    )
    prefills = {}
    for model in MODELS:
        found = in_fresh_process(__file__, f"--{model}")
        for distinct, concurrency, serial, concurrent, ratio, batch, limit in found["rows"]:
            print(
                f"{model:<14} {'distinct' if distinct else 'same':<9} {concurrency:>8} "
                f"{serial:>13.1f} {concurrent:>11.1f} {ratio:>6.2f}x {batch:>6.2f} "
                f"{limit:>6.1f} {tuple(found['sizes'])}",
                flush=True,
            )
        prefills[model] = found["prefill"]
    print(f"\nprefill of a ~1,500-token prompt, median of {REPEATS}")
    print(f"{'model':<14} {'cold s':>8} {'warm s':>8} {'speed-up':>9}")
    for model, (cold, warm) in prefills.items():
        print(f"{model:<14} {cold:>8.2f} {warm:>8.2f} {cold / warm:>8.2f}x")


if __name__ == "__main__":
    main_or_runner(
        main, one_shots={f"--{model}": functools.partial(model_figures, model) for model in MODELS}
    )
