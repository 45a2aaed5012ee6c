"""Constrained decoding cost: unconstrained keel vs keel JSON-schema vs llama-cpp-python GBNF,
with a bare argmax loop on keel's engine as the limit row.

Same GGUF, 2 threads, same raw prompt, greedy, each runner in its own process, one run
each for warm-up and then the median of REPEATS (rotating order). Reports decode tokens/s
from the first streamed token to the last (so prefill, identical for all, does not favour
longer outputs) and, for keel, the median time per token spent computing and applying the
llguidance mask (replayed over the generated tokens, in this process).

Usage: python bench/structured.py   (BENCH_REPEATS=N to change the repeat count)
"""

from __future__ import annotations

import json
import os
import statistics
import time

from common import (
    Run,
    bare_batch_rate,
    baseline_llama,
    generation_environment,
    interleaved_processes,
    main_or_runner,
)
from llama_cpp import Llama, LlamaGrammar

import keel
from keel.loaded import load_location
from keel.models import resolve_model
from keel.structured import build_constraint, open_session

REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))
MAX_TOKENS = 96
MODELS = ["smollm2-135m", "gemma3-270m"]
PROMPT = "Here is a JSON record of a person with a name, an age and three hobbies:\n"
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "hobbies": {
            "type": "array",
            "items": {"type": "string", "maxLength": 16},
            "minItems": 3,
            "maxItems": 3,
        },
    },
    "required": ["name", "age", "hobbies"],
    "additionalProperties": False,
}


def decode_rate(stream) -> tuple[float, int]:
    """Tokens per second between the first and the last streamed item, and the count."""
    stamps = [time.perf_counter() for _ in stream]
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]), len(stamps)


def keel_run(model: str, schema: dict | None) -> tuple[float, int]:
    return decode_rate(
        keel.stream_generate(
            PROMPT, model=model, raw=True, max_new_tokens=MAX_TOKENS, schema=schema
        )
    )


def gbnf_run(llm: Llama, grammar: LlamaGrammar) -> tuple[float, int]:
    return decode_rate(
        llm(PROMPT, max_tokens=MAX_TOKENS, temperature=0.0, grammar=grammar, stream=True)
    )


def mask_time_per_token(model: str) -> float:
    """Median seconds per token for mask + apply + advance, replaying a real output."""
    engine = load_location(resolve_model(model)).engine
    constraint = build_constraint(schema=SCHEMA)
    tokens = [
        e.token
        for e in keel.stream_generate(
            PROMPT, model=model, raw=True, max_new_tokens=MAX_TOKENS, schema=SCHEMA
        )
        if not engine.vocab.is_eog(e.token)
    ]
    logits = engine.logits().copy()
    samples = []
    for _ in range(REPEATS):
        session = open_session(engine, constraint)
        for token in tokens:
            start = time.perf_counter()
            session.restrict(logits)
            session.advance(token)
            samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def runner(name: str, model: str) -> Run:
    """One runner, built in its own process (only its model is loaded there)."""
    if name == "gbnf":
        llm = baseline_llama(model)
        grammar = LlamaGrammar.from_json_schema(json.dumps(SCHEMA), verbose=False)
        return lambda: gbnf_run(llm, grammar)
    if name == "bare":
        return lambda: (bare_batch_rate(model, [PROMPT], MAX_TOKENS), MAX_TOKENS)
    schema = SCHEMA if name == "schema" else None
    return lambda: keel_run(model, schema)


RUNNERS = {
    "keel unconstrained": "free",
    "keel JSON schema": "schema",
    "llama-cpp-python GBNF": "gbnf",
    "bare argmax loop (limit)": "bare",
}


def bench_model(model: str) -> list[tuple[str, float, float, int]]:
    runners = {label: [name, model] for label, name in RUNNERS.items()}
    return interleaved_processes(__file__, runners, REPEATS)


def main() -> None:
    generation_environment()
    print(f"greedy, max {MAX_TOKENS} tokens, 2 threads, median of {REPEATS} after warm-up")
    print(f"{'model':<14} {'runner':<24} {'tokens':>6} {'tok/s':>8} {'vs free':>8}")
    for model in MODELS:
        for name, rate, ratio, produced in bench_model(model):
            print(f"{model:<14} {name:<24} {produced:>6} {rate:>8.1f} {ratio:>7.3f}x")
        print(
            f"{model:<14} {'keel mask per token':<24} {'':>6} "
            f"{mask_time_per_token(model) * 1e6:>7.0f}us"
        )


if __name__ == "__main__":
    main_or_runner(main, runner)
