"""Shared by the benchmarks: the llama-cpp-python baseline with keel's context settings,
runners in processes of their own, and interleaved timing with medians.

Two llama.cpp contexts in one process can disturb each other: each thread that calls
llama_decode gets its own OpenMP team, which keel avoids (engine/compute.py) and
llama-cpp-python's Llama does not, and even keel's contexts share caches and the GIL. A
ratio between runners sharing a process can then look perfect while every absolute figure
is slowed alike. Every runner therefore lives in its own process, loads only what it
measures, and waits idle (no CPU) while the others run."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from llama_cpp import Llama

from keel.engine.batching import batch_groups
from keel.engine.compute import COMPUTE
from keel.engine.context import KV_TYPES, ContextSettings, Entry
from keel.engine.llama import LlamaEngine
from keel.loaded import load_location
from keel.models import resolve_model

Run = Callable[[], tuple[float, int]]  # returns (tokens per second, tokens produced)


def generation_environment() -> None:
    """What every generation benchmark runs with: 2 threads (keel reads its settings when it
    loads a model) and no result cache, so generation is measured, not cache hits."""
    os.environ["KEEL_THREADS"] = "2"
    os.environ["KEEL_CACHE"] = "0"


def baseline_llama(model: str, n_threads: int = 2) -> Llama:
    """llama-cpp-python's high-level Llama on the same file with keel's context settings."""
    keel_context = ContextSettings(n_ctx=2048)
    return Llama(
        str(resolve_model(model).path),
        n_ctx=keel_context.n_ctx,
        n_batch=keel_context.n_batch,
        n_ubatch=keel_context.n_ubatch,
        n_threads=n_threads,
        n_threads_batch=n_threads,
        flash_attn=keel_context.flash_attn,
        type_k=KV_TYPES[keel_context.k_type],
        type_v=KV_TYPES[keel_context.v_type],
        swa_full=keel_context.swa_full,
        verbose=False,
    )


def bare_loop(model: str, prompt: str, new_tokens: int) -> int:
    """The limit row of one generation, timed whole by its caller (rate_of): bare_batch_steps
    with one prompt, prefilled cold. Returns the tokens made."""
    bare_batch_steps(model, [prompt], new_tokens)
    return new_tokens


def prefilled_cold(engine: LlamaEngine, prompts: list[str]) -> dict[int, Entry]:
    """Every slot emptied, then prefilled(): a cold prefill, like the runs it bounds."""
    engine.slots.reset()
    return prefilled(engine, [engine.vocab.prompt_tokens(prompt, raw=True) for prompt in prompts])


def prefilled(engine: LlamaEngine, prompts: list[list[int]]) -> dict[int, Entry]:
    """Prompt i prefilled into slot i (keel's chunked prefill; a slot that holds the same
    prompt decodes none of it); slot -> the row that decodes its first greedy token (argmax
    of the prompt's logits, at the position after it). Call it on the compute thread."""
    rows = {}
    for slot, tokens in enumerate(prompts):
        engine.slots.prefill(tokens, slot)
        rows[slot] = (int(np.argmax(engine.slots.prompt_logits(slot))), len(tokens), slot)
    return rows


def greedy_steps(engine: LlamaEngine, rows: dict[int, Entry], new_tokens: int) -> list[float]:
    """`new_tokens` rounds that decode one greedy token (argmax) for every row, in the
    engine's batch groups, with no sampler, no events and no worker. Returns each round's
    seconds. Call it on the compute thread."""
    seconds = []
    for _ in range(new_tokens):
        start = time.perf_counter()
        for group in batch_groups(list(rows), engine.batch_sizes):
            engine.step_batch([rows[slot] for slot in group])
            for row, slot in enumerate(group):
                rows[slot] = (int(np.argmax(engine.logits(row))), rows[slot][1] + 1, slot)
        seconds.append(time.perf_counter() - start)
    return seconds


def bare_batch_steps(model: str, prompts: list[str], new_tokens: int) -> list[float]:
    """The limit of concurrent generations: each prompt prefilled cold into its own slot,
    then greedy_steps() in keel's proven batch groups, on the compute thread where keel's
    rounds run (the model's worker must be idle). Returns each round's seconds (decode and
    argmax only; prompts are not counted)."""

    def rounds() -> list[float]:
        engine = load_location(resolve_model(model)).engine
        return greedy_steps(engine, prefilled_cold(engine, prompts), new_tokens)

    return COMPUTE.run(rounds)


def bare_batch_rate(model: str, prompts: list[str], new_tokens: int) -> float:
    """bare_batch_steps as tokens/s: the most a server can stream to len(prompts) clients."""
    return len(prompts) / statistics.median(bare_batch_steps(model, prompts, new_tokens))


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """A confidence interval of the median that assumes nothing about the values' spread
    (a shared machine's drift skews it): the two order statistics whose ranks bracket the
    median with at least `confidence`, taken from the binomial(n, 1/2) count of values
    below it. None when there are too few values for that confidence (fewer than 6 at
    95%). A ratio whose interval excludes 1 is a difference the run resolved."""
    count, tail = len(values), (1 - confidence) / 2
    rank, below = 0, 0.0  # below = P(Bin(count, 1/2) < rank)
    while rank < count and (through := below + math.comb(count, rank) / 2**count) <= tail:
        below, rank = through, rank + 1
    if rank == 0:
        return None
    ordered = sorted(values)
    return ordered[rank - 1], ordered[count - rank]


def rate_of(produce: Callable[[], int]) -> tuple[float, int]:
    """Whole-call tokens per second of produce(), which returns how many tokens it made."""
    start = time.perf_counter()
    produced = produce()
    return produced / (time.perf_counter() - start), produced


def interleaved(runs: dict[str, Run], repeats: int) -> list[tuple[str, float, float, int]]:
    """One warm-up each, then `repeats` rounds in a rotating order (so no runner always
    follows the same neighbour). Returns (name, median rate, median ratio to the first
    runner within the same round, tokens) per runner: the paired ratio cancels the slow
    drift of a shared machine that separate medians would keep."""
    for run in runs.values():
        run()
    rates: dict[str, list[float]] = {name: [] for name in runs}
    counts: dict[str, int] = {}
    names = list(runs)
    for repeat in range(repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            rate, counts[name] = runs[name]()
            rates[name].append(rate)
    baseline = rates[names[0]]
    return [
        (
            name,
            statistics.median(values),
            statistics.median(v / b for v, b in zip(values, baseline, strict=True)),
            counts[name],
        )
        for name, values in rates.items()
    ]


class RunnerProcess:
    """`python SCRIPT --runner NAME ARGS...` kept alive: each call is one run in that
    process, answered as a JSON line (rate, tokens). See serve_runner()."""

    def __init__(self, script: str, name: str, *args: str) -> None:
        self._process = subprocess.Popen(
            [sys.executable, script, "--runner", name, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )

    def __call__(self) -> tuple[float, int]:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write("run\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"runner exited with {self._process.wait()}")
        rate, tokens = json.loads(line)
        return rate, tokens

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.wait(timeout=60)


def serve_runner(run: Run) -> None:
    """The runner's side: one run per line on stdin, its result on stdout."""
    for _ in sys.stdin:
        print(json.dumps(run()), flush=True)


def main_or_runner(
    main: Callable[[], None],
    runner: Callable[..., Run] | None = None,
    one_shots: dict[str, Callable[[], Any]] | None = None,
) -> None:
    """A bench script's entry point: `--runner NAME ARGS...` serves runner(NAME, ARGS...)
    in this process (see RunnerProcess); a flag of `one_shots` prints its function's
    result as JSON (see in_fresh_process); otherwise main() runs the bench."""
    if len(sys.argv) >= 3 and sys.argv[1] == "--runner" and runner is not None:
        generation_environment()
        serve_runner(runner(*sys.argv[2:]))
    elif len(sys.argv) == 2 and sys.argv[1] in (one_shots or {}):
        generation_environment()
        print(json.dumps(one_shots[sys.argv[1]]()))  # type: ignore[index]
    else:
        main()


def in_fresh_process(script: str, flag: str) -> Any:
    """What `python SCRIPT FLAG` measures alone in a new process (one of its one_shots)."""
    out = subprocess.run([sys.executable, script, flag], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def interleaved_processes(
    script: str, runners: dict[str, list[str]], repeats: int
) -> list[tuple[str, float, float, int]]:
    """interleaved() over runners that each live in their own process."""
    processes = {label: RunnerProcess(script, *args) for label, args in runners.items()}
    try:
        return interleaved(dict(processes), repeats)
    finally:
        for process in processes.values():
            process.close()
