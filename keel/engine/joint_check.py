"""Whether several slots' prompts may be prefilled in one llama_decode: the load-time proof.

Prefilled together (Slots.prefill_together), a prompt's rows share their micro-batch
with other sequences' rows: exact only where llama.cpp's kernels compute each row the
same whatever else shares the batch and wherever in it the row sits. SmolLM2's do;
Gemma-3's repacked Q4_K kernels work on blocks of four rows, so a row's result depends on
its neighbours. Each case below prefills the same prompts alone and together, cold and
(where the model may continue anywhere, reuse_check.py) continued from an earlier prompt,
and compares the logits after each prompt and after one more greedy step, bit for bit.
The verdict is remembered per model file and build.
"""

from __future__ import annotations

import json

import numpy as np

from ..file_memo import remembered
from .library import library_files
from .llama import LlamaEngine
from .probes import logits_after_prompt, ordinary_tokens

# slot -> (earlier prompt to continue from, or None for a cold prefill; the prompt)
Case = dict[int, tuple[list[int] | None, list[int]]]


def _cases(engine: LlamaEngine) -> list[Case]:
    """Short and longer cold prompts on some and on all slots, and, where continuing is
    allowed, new tails of different lengths after earlier prompts of different lengths
    (decoded together from the same length back, Slots.prefill_together)."""
    count = engine.slots.count
    cases: list[Case] = [
        {slot: (None, ordinary_tokens(engine, 6, slot)) for slot in range(min(3, count))},
        {slot: (None, ordinary_tokens(engine, 5, 10 + slot)) for slot in range(count)},
        {slot: (None, ordinary_tokens(engine, 40, 20 + slot)) for slot in range(min(4, count))},
    ]
    if engine.slots.reuse.any_position:
        continued: Case = {}
        for slot in range(count):
            earlier = ordinary_tokens(engine, 20 + 7 * slot, 30 + slot)
            kept = len(earlier) - 4
            tail = ordinary_tokens(engine, 3 + slot % 3, 40 + slot)  # shorter ones start earlier
            continued[slot] = (earlier, earlier[:kept] + tail)
        cases.append(continued)
    return cases


def _matches(engine: LlamaEngine, case: Case) -> bool:
    slots = engine.slots
    alone = {}
    slots.reset()
    for slot, (earlier, tokens) in case.items():
        if earlier is not None:
            slots.prefill(earlier, slot)
        slots.prefill(tokens, slot)
        alone[slot] = logits_after_prompt(engine, slot, len(tokens))
    slots.reset()
    for slot, (earlier, _) in case.items():
        if earlier is not None:
            slots.prefill(earlier, slot)
    joined = slots.prefill_together({slot: tokens for slot, (_, tokens) in case.items()})
    if set(joined) != set(case):
        return False  # not all were decoded together: the case proves nothing
    for slot, (_, tokens) in case.items():
        together = logits_after_prompt(engine, slot, len(tokens))
        if not all(np.array_equal(a, b) for a, b in zip(alone[slot], together, strict=True)):
            return False
    return True


def proven_together(engine: LlamaEngine) -> bool:
    """True when prefilling prompts together equals prefilling each alone."""
    if engine.slots.count == 1:
        return False
    kind = (
        "prefill together, continue anywhere "
        f"{engine.slots.reuse.any_position} {json.dumps(engine.context.numerics(), sort_keys=True)}"
    )

    def check() -> str:
        try:
            return "exact" if all(_matches(engine, case) for case in _cases(engine)) else "differs"
        finally:
            engine.slots.reset()

    return remembered(kind, [engine.path, *library_files()], check) == "exact"
