"""What keel's invariant attention costs: its KV types (f16 K, bf16 V) against llama.cpp's
default (f16 K and V), in the same bare batched decode loop, each in a process of its own.

With K and V of equal f16 type, llama.cpp's CPU flash attention splits a lone query's KV
cells across threads from 512 cells on and tiles prompts of 64 rows or more, so logits
then depend on the thread count and on what else is in the batch. keel's types keep every
query on the one-row kernel, which converts each bf16 V row to f32 before adding it in.
This bench measures what keel's kernel costs a decode step, at the short contexts of
bench/server.py's load and at a long one (where a lone query is split across threads by
the default), and shows the variance it buys off: one row's logits at the long context
decoded with 1 and with 2 threads, per kernel.

Usage: python bench/attention.py   (BENCH_REPEATS=N, BENCH_MODEL=name)
"""

from __future__ import annotations

import os

import numpy as np
from common import (
    Run,
    RunnerProcess,
    greedy_steps,
    in_fresh_process,
    interleaved,
    main_or_runner,
    prefilled,
)

from keel.engine.compute import COMPUTE
from keel.engine.context import ContextSettings
from keel.engine.llama import LlamaEngine
from keel.engine.probes import ordinary_tokens
from keel.models import resolve_model

MODEL = os.environ.get("BENCH_MODEL", "smollm2-135m")
REPEATS = int(os.environ.get("BENCH_REPEATS", "8"))
KERNELS = {"keel (f16 K, bf16 V)": "bf16", "llama.cpp default (f16 K, f16 V)": "f16"}
CONTEXTS = {"short": 16, "long": 700}  # prompt tokens; 64 tokens are decoded after them
ROWS = (1, 8)
NEW_TOKENS = 64


def open_engine(v_type: str, threads: int, slots: int) -> LlamaEngine:
    """keel's engine with these KV types, decoding all its slots in one call whether or
    not that is proven exact: a kernel is timed here, nothing is served."""
    settings = ContextSettings(n_ctx=2048, v_type=v_type)
    engine = LlamaEngine(resolve_model(MODEL).path, settings, threads, slots)
    engine.batch_sizes = tuple(range(1, slots + 1))
    return engine


def prompts(engine: LlamaEngine, rows: int, length: int) -> list[list[int]]:
    """Ordinary token ids, different in every slot."""
    return [ordinary_tokens(engine, length, slot) for slot in range(rows)]


def runner(v_type: str, rows: str, length: str) -> Run:
    """Decode NEW_TOKENS greedy steps of `rows` rows after `length`-token prompts; a run
    returns (tokens/s of the steps alone, tokens)."""
    engine = open_engine(v_type, 2, max(ROWS))
    batch = prompts(engine, int(rows), int(length))

    def steps() -> tuple[float, int]:
        seconds = greedy_steps(engine, prefilled(engine, batch), NEW_TOKENS)
        return len(batch) * NEW_TOKENS / sum(seconds), len(batch) * NEW_TOKENS

    return lambda: COMPUTE.run(steps)


def thread_invariance() -> dict[str, bool]:
    """Per kernel: whether one row at the long context decodes to the same logits with 1
    thread as with 2 (each an engine of its own)."""
    found = {}
    for label, v_type in KERNELS.items():
        logits = []
        for threads in (1, 2):
            engine = open_engine(v_type, threads, 1)
            rows = prefilled(engine, prompts(engine, 1, CONTEXTS["long"]))
            engine.step_batch(list(rows.values()))
            logits.append(engine.logits().copy())
        found[label] = bool(np.array_equal(*logits))
    return found


def main() -> None:
    script = os.path.abspath(__file__)
    print(f"{MODEL}, 2 threads, {NEW_TOKENS} greedy steps after each prompt, {REPEATS} rounds")
    print(f"{'rows':>4} {'context':<16} {'kernel':<34} {'tok/s':>7} {'ms a step':>9} {'ratio':>6}")
    for rows in ROWS:
        for context, length in CONTEXTS.items():
            runs = {
                label: RunnerProcess(script, v_type, str(rows), str(length))
                for label, v_type in KERNELS.items()
            }
            try:
                results = interleaved(dict(runs), REPEATS)
            finally:
                for run in runs.values():
                    run.close()
            cells = f"{context} ({length}+{NEW_TOKENS})"
            for label, rate, ratio, _ in results:
                step = rows / rate * 1000
                print(f"{rows:>4} {cells:<16} {label:<34} {rate:>7.1f} {step:>9.2f} {ratio:>5.3f}x")
    print("ratio: median of the same round's tok/s over keel's kernel's (above 1: faster)")
    print()
    print(f"one row at {CONTEXTS['long']} cells, logits with 1 thread == with 2:")
    for label, same in in_fresh_process(script, "--invariance").items():
        print(f"  {label:<34} {'identical' if same else 'DIFFERENT'}")


if __name__ == "__main__":
    main_or_runner(main, runner, one_shots={"--invariance": thread_invariance})
