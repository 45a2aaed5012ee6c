"""What a decode does to the Python that follows it: per-token operations timed right
after a real llama_decode and again at once, warm.

A decode streams the whole model (93 MB for SmolLM2) through the caches, larger than the
L2 and the L3 here, so the worker's Python between two decodes starts on cold caches and
a cold TLB: its objects, the interpreter's code and the page tables come back from
memory. That is why bench/budget.py's stages cost several times what a warm
micro-benchmark of the same call says, and why the per-token path's footprint (how much
code and data it touches), not its instruction count, sets its price.

One operation per decode step, in rotation, on keel's engine on its compute thread (the
bare loop of bench/common.py, one row): the first call after the decode (cold), then the
same call again (warm); median over steps. `call` is an empty function, the floor any
first Python call pays.

Usage: python bench/cold.py   (BENCH_STEPS=240, BENCH_MODEL=name)
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import numpy as np
from common import generation_environment, prefilled_cold
from server import MODEL, request_body

from keel.channel import Channel
from keel.engine.compute import COMPUTE
from keel.events import GenerationResponse
from keel.generation import Generation, _peak_memory_gb
from keel.loaded import load_location
from keel.models import resolve_model
from keel.params import make_params
from keel.prompt import Prompt
from keel.sampling import sample

STEPS = int(os.environ.get("BENCH_STEPS", "240"))


def operations(
    logits: Callable[[], np.ndarray], generation: Generation
) -> dict[str, Callable[[], object]]:
    """What the worker does for every token, each on its own, through keel's own calls."""
    channel: Channel[GenerationResponse] = Channel()
    seeded = make_params("x", temperature=0.7, seed=7)
    handed = generation._event(" a", 1, None)
    return {
        "call": lambda: None,
        "argmax of the logits row": lambda: int(np.argmax(logits())),
        "T > 0 choice (noise)": lambda: sample(logits(), 3, seeded),
        "event (peak memory too)": lambda: generation._event(" a", 1, None),
        "peak memory (getrusage)": _peak_memory_gb,
        "hand to a channel": lambda: channel.put(handed),
    }


def timed(operation: Callable[[], object]) -> float:
    start = time.perf_counter()
    operation()
    return time.perf_counter() - start


def measure() -> dict[str, tuple[float, float]]:
    """(cold, warm) seconds per operation, medians over the steps that ran it."""

    def rounds() -> dict[str, tuple[float, float]]:
        loaded = load_location(resolve_model(MODEL))
        engine = loaded.engine
        prompts = [request_body(0)["prompt"]]
        row = prefilled_cold(engine, prompts)[0]
        params = make_params(prompts[0])
        prompt = Prompt(engine.vocab.prompt_tokens(prompts[0], raw=True), truncated=False)
        generation = Generation(engine, prompt, params, loaded.identity.fingerprint(params))
        ops = operations(lambda: engine.logits(0), generation)
        names = list(ops)
        cold: dict[str, list[float]] = {name: [] for name in names}
        warm: dict[str, list[float]] = {name: [] for name in names}
        for step in range(STEPS):
            if row[1] + 1 >= engine.n_ctx:  # start again before the context is full
                row = prefilled_cold(engine, prompts)[0]
            engine.step_batch([row])
            name = names[step % len(names)]
            cold[name].append(timed(ops[name]))
            warm[name].append(timed(ops[name]))
            row = (int(np.argmax(engine.logits(0))), row[1] + 1, 0)
        return {
            name: (statistics.median(cold[name]), statistics.median(warm[name])) for name in names
        }

    return COMPUTE.run(rounds)


def main() -> None:
    generation_environment()
    figures = measure()
    print(f"{MODEL}, 2 threads, {STEPS} decode steps, one operation a step after the decode")
    print(f"{'operation':<26} {'cold (µs)':>10} {'warm (µs)':>10} {'cold / warm':>12}")
    for name, (cold, warm) in figures.items():
        print(f"{name:<26} {cold * 1e6:>10.1f} {warm * 1e6:>10.1f} {cold / warm:>11.1f}x")


if __name__ == "__main__":
    main()
