"""Shared by the benchmarks: the llama-cpp-python baseline with keel's context settings,
and interleaved timing with medians."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

from llama_cpp import Llama

from keel.models import resolve_model

Run = Callable[[], tuple[float, int]]  # returns (tokens per second, tokens produced)


def generation_environment() -> None:
    """What every generation benchmark runs with: 2 threads (keel reads its settings when it
    loads a model) and no result cache, so generation is measured, not cache hits."""
    os.environ["KEEL_THREADS"] = "2"
    os.environ["KEEL_CACHE"] = "0"


def baseline_llama(model: str, n_threads: int = 2) -> Llama:
    """llama-cpp-python's high-level Llama on the same file with keel's context settings."""
    return Llama(
        str(resolve_model(model).path),
        n_ctx=2048,
        n_batch=512,
        n_ubatch=512,
        n_threads=n_threads,
        n_threads_batch=n_threads,
        flash_attn=False,
        swa_full=True,
        verbose=False,
    )


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
