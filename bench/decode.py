"""Decode speed: keel.generate vs llama-cpp-python's Llama.__call__ vs a bare argmax loop.

All three use the same GGUF, 2 threads, n_ctx 2048, n_batch = n_ubatch = 512, keel's
attention settings (flash attention, f16 K and bf16 V caches), the same raw prompt, greedy,
128 new tokens. Each runner lives in its own process (bench/common.py says why); runs are
interleaved in a rotating order, after one warm-up each, and the median of REPEATS is
reported. The bare loop (argmax over keel's engine, no sampler, no events) is the limit row.

Usage: python bench/decode.py   (BENCH_REPEATS=N to change the repeat count)
"""

from __future__ import annotations

import os

from common import (
    Run,
    bare_loop,
    baseline_llama,
    generation_environment,
    interleaved_processes,
    main_or_runner,
    rate_of,
)
from llama_cpp import Llama

import keel

PROMPT = "The history of the city began when"
NEW_TOKENS = 128
REPEATS = int(os.environ.get("BENCH_REPEATS", "7"))
MODELS = ["smollm2-135m", "gemma3-270m"]


# Every repetition control on at once: the cost of keel.penalties per token.
PENALTIES = dict(
    repetition_penalty=1.1, presence_penalty=0.5, frequency_penalty=0.5, no_repeat_ngram_size=3
)


def keel_run(model: str, temperature: float, **options: float) -> int:
    events = keel.stream_generate(
        PROMPT,
        model=model,
        raw=True,
        max_new_tokens=NEW_TOKENS,
        temperature=temperature,
        **options,
    )
    return sum(1 for _ in events)


def llama_cpp_run(llm: Llama) -> int:
    out = llm(PROMPT, max_tokens=NEW_TOKENS, temperature=0.0)
    return out["usage"]["completion_tokens"]


def runner(name: str, model: str) -> Run:
    """One runner, built in its own process (only its model is loaded there)."""
    if name == "bare":
        return lambda: rate_of(lambda: bare_loop(model, PROMPT, NEW_TOKENS))
    if name == "llama-cpp-python":
        llm = baseline_llama(model)
        return lambda: rate_of(lambda: llama_cpp_run(llm))
    temperature, options = {
        "keel T=0": (0.0, {}),
        "keel T=0.7": (0.7, {}),
        "keel T=0.7 + penalties": (0.7, PENALTIES),
    }[name]
    return lambda: rate_of(lambda: keel_run(model, temperature, **options))


RUNNERS = {
    "bare argmax loop": "bare",
    "keel generate T=0": "keel T=0",
    "llama-cpp-python Llama()": "llama-cpp-python",
    "keel generate T=0.7": "keel T=0.7",
    "keel T=0.7 + penalties": "keel T=0.7 + penalties",
}


def bench_model(model: str) -> list[tuple[str, float, float, int]]:
    runners = {label: [name, model] for label, name in RUNNERS.items()}
    return interleaved_processes(__file__, runners, REPEATS)


def main() -> None:
    generation_environment()
    print(
        f"{NEW_TOKENS} new tokens, 2 threads, median of {REPEATS} after warm-up; "
        "ratios are medians of same-round ratios"
    )
    print(f"{'model':<14} {'runner':<26} {'tokens':>6} {'tok/s':>8} {'vs bare':>8}")
    for model in MODELS:
        for name, rate, ratio, produced in bench_model(model):
            print(f"{model:<14} {name:<26} {produced:>6} {rate:>8.1f} {ratio:>7.3f}x")


if __name__ == "__main__":
    main_or_runner(main, runner)
