"""Many models in one process: a model's decode speed alone, and in a process where the
other bundled model is loaded and has generated; then both models decoding at once.

Each runner lives in its own process (bench/common.py). T=0.7, raw prompt, 128 new
tokens, 2 threads, median of REPEATS after a warm-up, interleaved; the limit row is a bare
greedy argmax loop on the model's engine, alone, and a last row runs keel alone with one
thread: a model's share of two cores. The next table runs both models at once from two
threads of one process for BUSY_SECONDS and reports each model's tokens/s beside its
speed alone (goal: each at least 0.9x; taking turns on the cores would give shares that
add up to about 1), then beside its one-thread speed alone. Its limit: the bare loops of
both models at once, each in a process of its own with the one thread keel gives each of
two busy models, beside their two-thread speed alone; no scheduling can keep more of a
model's speed than this on the machine. The same limit beside each bare loop with one
thread alone shows what is left once the cores are shared: how much the two models
disturb each other through the memory and caches they share. The same again through one
`keel serve` process: one streaming client per model (bench/server.py's requests), each model alone,
then both at once.

Usage: python bench/multimodel.py   (BENCH_REPEATS=N, BENCH_BUSY_SECONDS=S)
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable

from common import (
    Run,
    RunnerProcess,
    bare_loop,
    generation_environment,
    in_fresh_process,
    interleaved_processes,
    main_or_runner,
    rate_of,
)
from server import keel_serve, load, serving

import keel

PROMPT = "The history of the city began when"
NEW_TOKENS = 128
REPEATS = int(os.environ.get("BENCH_REPEATS", "7"))
BUSY_SECONDS = float(os.environ.get("BENCH_BUSY_SECONDS", "20"))
MODELS = ["smollm2-135m", "gemma3-270m"]


def generate(model: str, seed: int = 0) -> int:
    events = keel.stream_generate(
        PROMPT, model=model, raw=True, max_new_tokens=NEW_TOKENS, seed=seed, temperature=0.7
    )
    return sum(1 for _ in events)


def runner(name: str, model: str, start_at: str = "") -> Run:
    if name == "bare, one thread, timed":
        return one_thread_bare(model, float(start_at))
    if name == "bare":
        return lambda: rate_of(lambda: bare_loop(model, PROMPT, NEW_TOKENS))
    if name == "alone, one thread":
        os.environ["KEEL_THREADS"] = "1"  # read when the model loads, at the first run
    if name == "after other":
        for other in MODELS:
            if other != model:
                generate(other)  # loaded, and has computed: its OpenMP team (if any) exists
    return lambda: rate_of(lambda: generate(model))


def one_thread_bare(model: str, start_at: float) -> Run:
    """Bare loops with one thread from the wall-clock time `start_at` for BUSY_SECONDS, so
    that runners in other processes can start at the same moment. Loads and warms up now,
    before the start."""
    os.environ["KEEL_THREADS"] = "1"
    bare_loop(model, PROMPT, 8)

    def run() -> tuple[float, int]:
        late = time.time() - start_at
        if late > 1.0:
            raise RuntimeError(f"{model}: loading overran the common start by {late:.1f} s")
        time.sleep(max(0.0, -late))
        tokens, started = 0, time.perf_counter()
        while time.perf_counter() - started < BUSY_SECONDS:
            tokens += bare_loop(model, PROMPT, NEW_TOKENS)
        return tokens / (time.perf_counter() - started), tokens

    return run


def each_model_at_once(work: Callable[[str], None]) -> None:
    """work(model) for every model, each in a thread of its own, all at the same time."""
    threads = [threading.Thread(target=work, args=(model,)) for model in MODELS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def one_thread_bare_rates(side_by_side: bool) -> dict[str, float]:
    """Tokens/s of each model's bare one-thread loop, each in its own process: all models
    at once (the most two busy models can keep on this machine), or one after another
    (each model with the core that is its share of two, and nothing beside it)."""
    rates: dict[str, float] = {}

    def measure(model: str, start_at: float) -> None:
        process = RunnerProcess(__file__, "bare, one thread, timed", model, str(start_at))
        try:
            rates[model] = process()[0]
        finally:
            process.close()

    if side_by_side:
        start_at = time.time() + 20  # time to load and warm up
        each_model_at_once(lambda model: measure(model, start_at))
    else:
        for model in MODELS:
            measure(model, time.time() + 20)
    if len(rates) != len(MODELS):
        raise RuntimeError("a one-thread runner failed (its error is above)")
    return rates


def both_busy() -> dict[str, float]:
    """Tokens/s of each model while both generate continuously from their own threads."""
    for model in MODELS:
        generate(model)  # load and warm up
    counts = dict.fromkeys(MODELS, 0)
    deadline = time.perf_counter() + BUSY_SECONDS

    def keep_busy(model: str) -> None:
        seed = 1
        while time.perf_counter() < deadline:
            counts[model] += generate(model, seed)
            seed += 1

    started = time.perf_counter()
    each_model_at_once(keep_busy)
    elapsed = time.perf_counter() - started
    return {model: count / elapsed for model, count in counts.items()}


def served_both_busy() -> tuple[dict[str, float], dict[str, float]]:
    """Output tokens/s per model from one keel serve: each alone, then both at once."""
    command, env = keel_serve()
    with serving(command, env) as url:
        for model in MODELS:
            load(url, 1, 0, model, seconds=2)  # load and warm up
        alone = {}
        for number, model in enumerate(MODELS, start=1):
            tally, elapsed = load(url, 1, number * 10**6, model, seconds=BUSY_SECONDS)
            alone[model] = tally.tokens / elapsed
        rates: dict[str, float] = {}

        def keep_busy(model: str) -> None:
            first_index = MODELS.index(model) * 10**7
            tally, elapsed = load(url, 1, first_index, model, seconds=BUSY_SECONDS)
            rates[model] = tally.tokens / elapsed

        each_model_at_once(keep_busy)
    return alone, rates


def print_shares(title: str, busy: dict[str, float], alone: dict[str, float]) -> None:
    print()
    print(title)
    print(f"{'model':<14} {'tok/s':>8} {'alone':>8} {'ratio':>7}")
    for model in MODELS:
        share = busy[model] / alone[model]
        print(f"{model:<14} {busy[model]:>8.1f} {alone[model]:>8.1f} {share:>7.3f}")
    total = statistics.fsum(busy[m] / alone[m] for m in MODELS)
    print(f"{'sum of ratios':<14} {'':>8} {'':>8} {total:>7.3f}")


def main() -> None:
    generation_environment()
    print(f"{NEW_TOKENS} new tokens at T=0.7, 2 threads, median of {REPEATS} after warm-up")
    print(f"{'model':<14} {'process':<28} {'tok/s':>8} {'vs alone':>9}")
    labels = {
        "alone": "alone",
        "after other": "other model ran first",
        "bare": "bare argmax loop (limit)",
        "alone, one thread": "alone, one thread",
    }
    rates: dict[str, dict[str, float]] = {name: {} for name in labels}  # runner -> model -> tok/s
    for model in MODELS:
        runners = {label: [name, model] for name, label in labels.items()}
        results = interleaved_processes(__file__, runners, REPEATS)
        for name, (label, rate, ratio, _) in zip(labels, results, strict=True):
            rates[name][model] = rate
            print(f"{model:<14} {label:<28} {rate:>8.1f} {ratio:>8.3f}x")
    alone, bare_alone, one_thread_alone = rates["alone"], rates["bare"], rates["alone, one thread"]
    busy = in_fresh_process(__file__, "--busy")
    print_shares(f"both models busy for {BUSY_SECONDS:.0f} s in one process", busy, alone)
    print_shares(
        "the same against each alone with one thread (its share of two cores)",
        busy,
        one_thread_alone,
    )
    limit = one_thread_bare_rates(side_by_side=True)
    print_shares(
        "limit: both bare loops at once, one thread each, own processes (vs bare, 2 threads)",
        limit,
        bare_alone,
    )
    print_shares(
        "the same limit against each bare loop with one thread alone (its core, undisturbed)",
        limit,
        one_thread_bare_rates(side_by_side=False),
    )
    served_alone, served_busy = served_both_busy()
    print_shares(
        f"one keel serve, a streaming client per model ({BUSY_SECONDS:.0f} s each phase)",
        served_busy,
        served_alone,
    )


if __name__ == "__main__":
    main_or_runner(main, runner, one_shots={"--busy": both_busy})
