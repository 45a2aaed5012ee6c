"""Whether a model's KV may be continued from any position: the load-time proof.

Continuing a prompt from a position inside the slot's KV decodes the first chunk after it
cut short, so its rows are computed beside fewer rows than in a cold prefill. That is exact
only where llama.cpp's kernels compute each row the same whatever else of its sequence
shares the batch, which prefix.continuation_start relies on; the chunks after it are the
cold prefill's own. Each case below builds the same
final sequence twice, cold and continued, and compares the logits after it and after one
more greedy step, bit for bit. A model passes only if every case matches; the verdict is
remembered per model file and build, so a process pays for it once (about a second for SmolLM2).
"""

from __future__ import annotations

import json

import numpy as np

from ..file_memo import remembered
from .library import library_files
from .llama import LlamaEngine
from .probes import logits_after_prompt, ordinary_tokens

SLOT = 0


def _cold(engine: LlamaEngine, tokens: list[int]) -> list[np.ndarray]:
    engine.slots.clear(SLOT)
    engine.slots.prefill_from(tokens, 0, SLOT)
    return logits_after_prompt(engine, SLOT, len(tokens))


def _continued(
    engine: LlamaEngine, earlier: list[int], tokens: list[int], first: int
) -> list[np.ndarray]:
    """`earlier` prefilled, then `tokens` (equal to it up to `first`) from `first` on."""
    engine.slots.clear(SLOT)
    engine.slots.prefill_from(earlier, 0, SLOT)
    engine.slots.prefill_from(tokens, first, SLOT)
    return logits_after_prompt(engine, SLOT, len(tokens))


def _cases(engine: LlamaEngine) -> list[tuple[list[int], list[int], int]]:
    """(earlier prompt, final tokens, first continued position): the shortest
    continuations the rule allows at short and long positions, and a long one after a
    different tail."""
    earlier = ordinary_tokens(engine, 100, 1)
    return [
        (earlier[:8], earlier[:6] + ordinary_tokens(engine, 2, 3), 6),
        (earlier, earlier[:90] + ordinary_tokens(engine, 2, 4), 90),
        (earlier, earlier[:57] + ordinary_tokens(engine, 3, 5), 57),
        (earlier[:20], earlier[:17] + ordinary_tokens(engine, 60, 6), 17),
    ]


def _check(engine: LlamaEngine) -> bool:
    try:
        for earlier, tokens, first in _cases(engine):
            warm = _continued(engine, earlier, tokens, first)
            cold = _cold(engine, tokens)
            if not all(np.array_equal(a, b) for a, b in zip(warm, cold, strict=True)):
                return False
        return True
    finally:
        engine.slots.reset()


def proven_any_position(engine: LlamaEngine) -> bool:
    """True when continuing from any position of a slot's KV equals a cold prefill."""
    kind = (
        f"continue anywhere, aligned chunks {json.dumps(engine.context.numerics(), sort_keys=True)}"
    )
    verdict = remembered(
        kind, [engine.path, *library_files()], lambda: "exact" if _check(engine) else "differs"
    )
    return verdict == "exact"
