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
`keel serve` process: one streaming client per model (bench/server.py's requests), each
model alone, then both at once; and last, each model alone through a keel serve that
decodes with one thread, its share of two cores, which the goal's "each getting its
share" reads against.

Where two runners are busy at once, both count only the tokens made inside one window of
BUSY_SECONDS, and both keep working to its end: a model that went on to finish its last
generation after the other had stopped would have run that tail alone, with the machine
to itself, and would have taken the other's rate down with it when both were timed to the
end of the slower one.

Usage: python bench/multimodel.py   (BENCH_REPEATS=N, BENCH_BUSY_SECONDS=S)
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import threading
import time
from collections.abc import Callable

from common import (
    Run,
    RunnerProcess,
    bare_batch_steps,
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


def generate(model: str, seed: int = 0, until: float = math.inf) -> int:
    """The tokens of one generation made before `until` (perf_counter); a generation still
    running then is cancelled there."""
    events = keel.stream_generate(
        PROMPT, model=model, raw=True, max_new_tokens=NEW_TOKENS, seed=seed, temperature=0.7
    )
    made = 0
    with contextlib.closing(events):
        for _ in events:
            if time.perf_counter() >= until:
                break
            made += 1
    return made


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
    """Bare loops with one thread through the BUSY_SECONDS from the wall-clock time
    `start_at`, so that runners in other processes share the window; only the steps that
    end inside it count (the loop running at its end finishes outside it). Loads and warms
    up now, before the start."""
    os.environ["KEEL_THREADS"] = "1"
    bare_loop(model, PROMPT, 8)

    def run() -> tuple[float, int]:
        late = time.time() - start_at
        if late > 1.0:
            raise RuntimeError(f"{model}: loading overran the common start by {late:.1f} s")
        time.sleep(max(0.0, -late))
        tokens, until = 0, time.perf_counter() + BUSY_SECONDS
        while time.perf_counter() < until:
            seconds = bare_batch_steps(model, [PROMPT], NEW_TOKENS)
            step_end = time.perf_counter()
            for step in reversed(seconds):  # the steps' ends, the last one first
                tokens += step_end <= until
                step_end -= step
        return tokens / BUSY_SECONDS, tokens

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
    """Tokens/s of each model while both generate continuously from their own threads,
    counted over the same BUSY_SECONDS: neither model finishes a generation alone."""
    for model in MODELS:
        generate(model)  # load and warm up
    counts = dict.fromkeys(MODELS, 0)
    until = time.perf_counter() + BUSY_SECONDS

    def keep_busy(model: str) -> None:
        seed = 1
        while time.perf_counter() < until:
            counts[model] += generate(model, seed, until)
            seed += 1

    each_model_at_once(keep_busy)
    return {model: count / BUSY_SECONDS for model, count in counts.items()}


def served_alone(url: str) -> dict[str, float]:
    """Output tokens/s per model from the keel serve at `url`, one model at a time (each
    loaded and warmed up first)."""
    for model in MODELS:
        load(url, 1, 0, model, seconds=2)
    return {
        model: served_rate(url, model, number * 10**6) for number, model in enumerate(MODELS, 1)
    }


def served_rate(url: str, model: str, first_index: int) -> float:
    """Output tokens/s of one streaming client of the keel serve at `url`, sending
    requests back to back: what streamed inside BUSY_SECONDS (the request running at
    their end finishes outside them, so a model busy beside another stays busy till then)."""
    tally, _ = load(url, 1, first_index, model, seconds=BUSY_SECONDS)
    if tally.errors:  # a rate over failed requests would only look slow
        raise RuntimeError(f"{model}: {tally.errors} of the served requests failed")
    return tally.in_window / BUSY_SECONDS


def served_alone_one_thread() -> dict[str, float]:
    """Each model alone through a keel serve that decodes with one thread: a served
    model's share of two cores, the goal's baseline for two busy models."""
    command, env = keel_serve()
    with serving(command, {**env, "KEEL_THREADS": "1"}) as url:
        return served_alone(url)


def served_both_busy() -> tuple[dict[str, float], dict[str, float]]:
    """Output tokens/s per model from one keel serve: each alone, then both at once."""
    command, env = keel_serve()
    with serving(command, env) as url:
        alone = served_alone(url)
        rates: dict[str, float] = {}

        def keep_busy(model: str) -> None:
            rates[model] = served_rate(url, model, MODELS.index(model) * 10**7)

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
    served_two_threads, served_busy = served_both_busy()
    print_shares(
        f"one keel serve, a streaming client per model ({BUSY_SECONDS:.0f} s each phase)",
        served_busy,
        served_two_threads,
    )
    print_shares(
        "the same against each model alone through a keel serve with one thread (its share)",
        served_busy,
        served_alone_one_thread(),
    )


if __name__ == "__main__":
    main_or_runner(main, runner, one_shots={"--busy": both_busy})
