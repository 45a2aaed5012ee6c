"""Batch generation on one machine: `keel.generate_batch` (rows in flight on the model's
slots, decoded in continuous batches) against a plain loop of `keel.generate` calls over
the same rows, each runner in its own process.

BENCH_ROWS rows (default 200) of 64 new tokens on SmolLM2, distinct prompts, greedy and
seeded T=0.7 alternately, 2 threads; one warm-up run each, then BENCH_REPEATS interleaved
runs. Reported: rows/s and tokens/s, with the paired ratio to the plain loop.

Usage: python bench/batch.py   (BENCH_ROWS=N, BENCH_REPEATS=N)
"""

from __future__ import annotations

import os
import time

from common import Run, interleaved_processes, main_or_runner

import keel

ROWS = int(os.environ.get("BENCH_ROWS", "200"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "2"))
NEW_TOKENS = 64
TOPICS = ["a lighthouse", "a fox", "the moon", "a train", "a garden", "a storm", "a city"]


def rows() -> list[dict]:
    made = []
    for i in range(ROWS):
        row = {
            "prompt": f"Write about {TOPICS[i % len(TOPICS)]} (#{i}).",
            "max_new_tokens": NEW_TOKENS,
        }
        made.append(row | ({"temperature": 0.7, "seed": i} if i % 2 else {}))
    return made


def runner(name: str) -> Run:
    batch = rows()

    def plain_loop() -> tuple[float, int]:
        started = time.perf_counter()
        tokens = 0
        for row in batch:
            options = dict(row)
            # what keel.generate runs, keeping the result for its token count
            tokens += len(keel.start_generation(options.pop("prompt"), **options).result().tokens)
        return tokens / (time.perf_counter() - started), tokens

    def local_batch() -> tuple[float, int]:
        started = time.perf_counter()
        tokens = sum(r.generation_tokens for r in keel.generate_batch(batch))
        return tokens / (time.perf_counter() - started), tokens

    return {"plain": plain_loop, "local": local_batch}[name]


def main() -> None:
    runners = {"plain loop of keel.generate": ["plain"], "keel.generate_batch (local)": ["local"]}
    print(f"{ROWS} rows x {NEW_TOKENS} new tokens, SmolLM2, 2 threads, {REPEATS} interleaved runs")
    print(f"{'runner':<30} {'rows/s':>7} {'tok/s':>7} {'ratio':>7}")
    for label, rate, ratio, tokens in interleaved_processes(__file__, runners, REPEATS):
        print(f"{label:<30} {rate * ROWS / tokens:>7.2f} {rate:>7.1f} {ratio:>6.2f}x")


if __name__ == "__main__":
    main_or_runner(main, runner)
