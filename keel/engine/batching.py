"""Which batch sizes decode bit-identically to solo decoding, and how to group slots by them.

llama.cpp's CPU kernels may pick a different code path for a matrix of B rows than for one
row, so decoding B sequences together can change logits (Gemma-3-270M at 4 sequences does;
SmolLM2-135M does not). At load time each batch size is tried against solo decoding of the
same sequences, at different positions so their KV lengths differ, and only the sizes that
match bit for bit are used. The verdict is remembered per model file and llama.cpp build.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection

import numpy as np

from ..file_memo import remembered
from .library import library_files
from .llama import LlamaEngine
from .probes import ordinary_tokens

# Prompt lengths per slot: varied, one past a 256-cell KV block, so streams differ in length.
_LENGTHS = (3, 260, 17, 45, 60, 9, 30, 33)
_STEPS = 3


def _solo_logits(engine: LlamaEngine, slot: int, prompt: list[int]) -> list[np.ndarray]:
    """Greedy run of _STEPS decode steps on `slot` alone; the slot is rewound afterwards
    to its prefilled prompt."""
    rows = [engine.slots.prompt_logits(slot)]
    for step in range(_STEPS):
        engine.step(int(np.argmax(rows[-1])), len(prompt) + step, slot)
        rows.append(engine.logits().copy())
    engine.slots.rewind(slot, len(prompt))
    return rows


def _batched_matches(
    engine: LlamaEngine, size: int, prompts: list[list[int]], solo: list[list[np.ndarray]]
) -> bool:
    for step in range(_STEPS):
        engine.step_batch(
            [
                (int(np.argmax(solo[slot][step])), len(prompts[slot]) + step, slot)
                for slot in range(size)
            ]
        )
        for slot in range(size):
            if not np.array_equal(engine.logits(slot), solo[slot][step + 1]):
                return False
    return True


def _check(engine: LlamaEngine) -> list[int]:
    prompts = [
        ordinary_tokens(engine, _LENGTHS[slot % 8], slot) for slot in range(engine.slots.count)
    ]
    solo = []
    for slot, prompt in enumerate(prompts):
        engine.slots.prefill(prompt, slot)
        solo.append(_solo_logits(engine, slot, prompt))
    passed = [1]
    for size in range(2, engine.slots.count + 1):
        if _batched_matches(engine, size, prompts, solo):
            passed.append(size)
        for slot in range(size):
            engine.slots.rewind(slot, len(prompts[slot]))
    engine.slots.reset()
    return passed


def proven_batch_sizes(engine: LlamaEngine) -> tuple[int, ...]:
    """The batch sizes (always including 1) at which batched decode equals solo decode."""
    if engine.slots.count == 1:
        return (1,)
    kind = f"batch invariance {json.dumps(engine.context.numerics(), sort_keys=True)}"
    verdict = remembered(
        f"{kind} slots={engine.slots.count}",
        [engine.path, *library_files()],
        lambda: json.dumps(_check(engine)),
    )
    return tuple(json.loads(verdict))


class StepCosts:
    """What a decode step of n rows has been taking here: a moving average per row count,
    so that grouping can weigh a filler row against a pass of its own. A step's time is far
    from proportional to its rows and differs by machine and model (SmolLM2 on 2 AMD cores:
    1 row 6.3 ms, 2 rows 12.6, 3 or 4 rows 16.8, 7 rows 25.8, 8 rows 24.8)."""

    def __init__(self) -> None:
        self._seconds: dict[int, float] = {}

    def observe(self, rows: int, seconds: float) -> None:
        known = self._seconds.get(rows)
        self._seconds[rows] = seconds if known is None else known + 0.1 * (seconds - known)

    def estimate(self, rows: int) -> float:
        """Seconds for a step of `rows` rows, at most the best time per row of any smaller
        step: one slow step (a new batch shape's first) must never make a run look
        cheaper cut in pieces, so only filler rows are weighed against passes."""
        return rows * min(self._guess(n) / n for n in range(1, rows + 1))

    def _guess(self, rows: int) -> float:
        """The time seen; between two row counts seen, on the line between them; past the
        largest or below the smallest seen, its time per row; nothing seen, a unit a row
        (so a filler row never pays)."""
        seconds = self._seconds
        if rows in seconds:
            return seconds[rows]
        below = max((n for n in seconds if n < rows), default=None)
        above = min((n for n in seconds if n > rows), default=None)
        if below is not None and above is not None:
            share = (rows - below) / (above - below)
            return seconds[below] + share * (seconds[above] - seconds[below])
        nearest = below if below is not None else above
        return float(rows) if nearest is None else seconds[nearest] * rows / nearest


def one_run(slots: list[int], sizes: tuple[int, ...]) -> bool:
    """Whether the sorted slots are consecutive and of a proven size: one micro-batch."""
    return bool(slots) and len(slots) in sizes and slots[-1] - slots[0] == len(slots) - 1


def batch_groups(
    slots: list[int],
    sizes: tuple[int, ...],
    fillers: Collection[int] = (),
    cost: Callable[[int], float] = lambda rows: 1.0,
) -> list[list[int]]:
    """Cover the sorted `slots` with runs of consecutive slot ids, each of a proven size,
    at the least total `cost` (of each run's row count; by default the number of runs),
    then in the fewest runs, with the fewest fillers, larger runs first.

    A run is one micro-batch: llama.cpp splits a batch over separate KV streams wherever
    its sequence ids are not consecutive (llama_batch_allocr::split_equal), and each
    micro-batch is a pass over the weights of its own (bench/gaps.py: 7 rows with a gap
    took 1.31x the time of 8 rows without one). A run may bridge a gap with slots from
    `fillers`, slots with nothing to decode where the caller puts a throwaway row."""
    if one_run(slots, sizes):
        return [slots]  # nothing is cheaper (the costs of StepCosts are subadditive)
    if not slots:
        return []
    wanted = set(slots)
    usable = wanted | set(fillers)
    start, end = min(usable), max(usable) + 1
    largest_first = sorted(sizes, reverse=True)
    # best[i]: the cheapest cover of the wanted slots from i on: (cost, runs, fillers), plan
    best: dict[int, tuple[tuple[float, int, int], list[list[int]]]] = {end: ((0.0, 0, 0), [])}
    for i in range(end - 1, start - 1, -1):
        options = []
        for size in largest_first:
            run = list(range(i, i + size))
            if i + size <= end and usable.issuperset(run):
                (spent, runs, filled), plan = best[i + size]
                score = (spent + cost(size), runs + 1, filled + len(set(run) - wanted))
                options.append((score, [run, *plan]))
        if i not in wanted:
            options.append(best[i + 1])
        best[i] = min(options, key=lambda option: option[0])  # the first of equals
    return best[start][1]
