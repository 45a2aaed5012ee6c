"""Batch generation: a plain loop of `keel.generate` calls against `keel.generate_batch`
on the local engine (rows in flight on the model's slots, decoded in continuous batches)
and on Ray (1 and 2 actors of 1 thread each), each runner in its own process.

BENCH_ROWS rows (default 200) of 64 new tokens on SmolLM2, distinct prompts, greedy and
seeded T=0.7 alternately, 2 threads; one warm-up run each, then BENCH_REPEATS interleaved
runs. Reported: rows/s and tokens/s, with the paired ratio to the plain loop; the limit
row is the bare loop (bench/common.py) over the same prompts, a full set of slots at a
time, prompts aside: the limit of one context of 2 threads, which the local engine's two
lanes of one thread each can pass. A Ray run is
what `keel batch --engine ray` does: start a local Ray, start the actors (each loads the
model), run, shut down; Ray's start-up is also timed on its own, in a fresh process.

Usage: python bench/batch.py   (BENCH_ROWS=N, BENCH_REPEATS=N)
"""

from __future__ import annotations

import os
import time

from common import Run, bare_batch_steps, in_fresh_process, interleaved_processes, main_or_runner

import keel
from keel import RayEngine
from keel.config import settings
from keel.models.registry import DEFAULT_MODEL

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

    def batch_on(engine: keel.batch.Engine) -> Run:
        def run() -> tuple[float, int]:
            started = time.perf_counter()
            tokens = sum(r.generation_tokens for r in keel.generate_batch(batch, engine=engine))
            return tokens / (time.perf_counter() - started), tokens

        return run

    def bare_limit() -> tuple[float, int]:
        """The bare loop over the same prompts, a full set of slots at a time."""
        prompts, slots = [row["prompt"] for row in batch], settings().slots
        seconds = sum(
            sum(bare_batch_steps(DEFAULT_MODEL, prompts[at : at + slots], NEW_TOKENS))
            for at in range(0, ROWS, slots)
        )
        return ROWS * NEW_TOKENS / seconds, ROWS * NEW_TOKENS

    if name == "bare":
        return bare_limit
    engines = {
        "local": "local",
        "local1": keel.LocalEngine(lanes=1),
        "ray1": RayEngine(actors=1),
        "ray2": RayEngine(actors=2),
    }
    return plain_loop if name == "plain" else batch_on(engines[name])


def ray_startup() -> dict[str, float]:
    """Seconds to start a local Ray, and to the first row of a one-row job on it (the
    actor's start and its model load); in this fresh process."""
    import ray

    started = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False)
    initialised = time.perf_counter()
    keel.generate_batch(["Hi"], engine=RayEngine(), max_new_tokens=1)
    first_row = time.perf_counter()
    ray.shutdown()
    return {
        "ray.init": initialised - started,
        "first row (actor + model load)": first_row - initialised,
        "ray.shutdown": time.perf_counter() - first_row,
    }


def main() -> None:
    print("Ray start-up (fresh process, local cluster):")
    for step, seconds in in_fresh_process(__file__, "--startup").items():
        print(f"  {step:<32} {seconds:6.2f} s")
    runners = {
        "plain loop of keel.generate": ["plain"],
        "keel.generate_batch (local)": ["local"],
        "local, 1 lane of 2 threads": ["local1"],
        "ray, 1 actor x 1 thread": ["ray1"],
        "ray, 2 actors x 1 thread": ["ray2"],
        "bare loop, all slots (limit)": ["bare"],
    }
    print(f"{ROWS} rows x {NEW_TOKENS} new tokens, SmolLM2, 2 threads, {REPEATS} interleaved runs")
    print(f"{'runner':<30} {'rows/s':>7} {'tok/s':>7} {'ratio':>7}")
    for label, rate, ratio, tokens in interleaved_processes(__file__, runners, REPEATS):
        print(f"{label:<30} {rate * ROWS / tokens:>7.2f} {rate:>7.1f} {ratio:>6.2f}x")


if __name__ == "__main__":
    main_or_runner(main, runner, one_shots={"--startup": ray_startup})
