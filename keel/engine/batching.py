"""Which batch sizes decode bit-identically to solo decoding, and how to group slots by them.

llama.cpp's CPU kernels may pick a different code path for a matrix of B rows than for one
row, so decoding B sequences together can change logits (Gemma-3-270M at 4 sequences does;
SmolLM2-135M does not). At load time each batch size is tried against solo decoding of the
same sequences, at different positions so their KV lengths differ, and only the sizes that
match bit for bit are used. The verdict is remembered per model file and llama.cpp build.
"""

from __future__ import annotations

import json

import numpy as np

from ..file_memo import remembered
from .library import library_files
from .llama import LlamaEngine

# Prompt lengths per slot: varied, one past a 256-cell KV block, so streams differ in length.
_LENGTHS = (3, 260, 17, 45, 60, 9, 30, 33)
_STEPS = 3


def _prompt(engine: LlamaEngine, slot: int) -> list[int]:
    """Deterministic ordinary token ids (away from the special tokens at the start)."""
    span = engine.n_vocab - 1000
    return [1000 + (slot * 7919 + i * 104729) % span for i in range(_LENGTHS[slot % 8])]


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
    prompts = [_prompt(engine, slot) for slot in range(engine.slots.count)]
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


def batch_groups(slots: list[int], sizes: tuple[int, ...]) -> list[list[int]]:
    """Split sorted slots into runs of consecutive ids, each cut into proven sizes (largest
    first), so every group decodes as one micro-batch of a size known to be exact."""
    groups: list[list[int]] = []
    run: list[int] = []
    for slot in slots:
        if run and slot != run[-1] + 1:
            groups.extend(_cut(run, sizes))
            run = []
        run.append(slot)
    groups.extend(_cut(run, sizes))
    return groups


def _cut(run: list[int], sizes: tuple[int, ...]) -> list[list[int]]:
    pieces = []
    while run:
        size = max(s for s in sizes if s <= len(run))
        pieces.append(run[:size])
        run = run[size:]
    return pieces
