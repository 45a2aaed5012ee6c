"""Chat turn latency: a 10-turn ChatSession on SmolLM2, time to first token per turn, with
keel's prefix reuse (each turn's prompt goes on from the KV the previous turn's prompt left
in its slot) and without it (every turn prefills its whole history). Each runner is its own
process; they run one after the other, BENCH_REPEATS times (default 3), medians per turn.

Usage: python bench/chat.py
"""

from __future__ import annotations

import functools
import os
import statistics

from common import in_fresh_process, main_or_runner

import keel

REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
TURNS = [
    "Hello! I am planning a trip to the coast. What should I pack?",
    "How about food for a two-day hike along the cliffs?",
    "Which of those keeps best without a fridge?",
    "Suggest a simple breakfast I can make on a camping stove.",
    "What if it rains all morning?",
    "Name three card games for two people.",
    "Explain the rules of the first one briefly.",
    "How do I keep score?",
    "What should I do if I get lost on the trail?",
    "Thanks! Summarise your packing advice in one sentence.",
]


def conversation(seed: int) -> list[tuple[int, float]]:
    """(prompt tokens, seconds to first token) per turn."""
    session = keel.ChatSession(seed=seed, max_new_tokens=48, temperature=0.7)
    figures = []
    for text in TURNS:
        first = None
        for event in session.stream(text):
            first = first or event
        assert first is not None
        figures.append((first.prompt_tokens, first.time_to_first_token))
    return figures


def turn_latencies(reuse: bool) -> list[tuple[int, float]]:
    keel.preload_models()
    if not reuse:
        from keel.loaded import loaded_models

        for model in loaded_models():  # a bench-only switch: no prefix is ever reused
            model.engine.slots.reuse.any_position = False
            model.engine.slots.reuse.verdict = False
    conversation(seed=1)  # warm-up
    return conversation(seed=2)


def main() -> None:
    runs: dict[bool, list[list[tuple[int, float]]]] = {True: [], False: []}
    for _ in range(REPEATS):
        for reuse in (True, False):
            runs[reuse].append(in_fresh_process(__file__, FLAGS[reuse]))
    print(f"10-turn ChatSession, SmolLM2, 2 threads, 48 new tokens a turn, median of {REPEATS}")
    header = ("turn", "prompt tokens", "TTFT reuse", "TTFT no reuse", "ratio")
    print("{:>4} {:>13} {:>11} {:>14} {:>6}".format(*header))
    totals = {True: 0.0, False: 0.0}
    for turn in range(len(TURNS)):
        tokens = runs[True][0][turn][0]
        ttft = {reuse: statistics.median(run[turn][1] for run in runs[reuse]) for reuse in runs}
        totals[True] += ttft[True]
        totals[False] += ttft[False]
        print(
            f"{turn + 1:>4} {tokens:>13} {ttft[True] * 1000:>9.1f}ms {ttft[False] * 1000:>12.1f}ms"
            f" {ttft[False] / ttft[True]:>5.2f}x"
        )
    print(
        f"{'all':>4} {'':>13} {totals[True] * 1000:>9.1f}ms {totals[False] * 1000:>12.1f}ms"
        f" {totals[False] / totals[True]:>5.2f}x"
    )


FLAGS = {True: "--with-reuse", False: "--without-reuse"}

if __name__ == "__main__":
    one_shots = {flag: functools.partial(turn_latencies, reuse) for reuse, flag in FLAGS.items()}
    main_or_runner(main, one_shots=one_shots)
