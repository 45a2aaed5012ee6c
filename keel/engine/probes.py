"""What the load-time proofs (batching.py, reuse_check.py, joint_check.py) feed an engine
and read back: the same token ids and the same greedy continuation everywhere, so each
proof differs from the others only in what it compares."""

from __future__ import annotations

import numpy as np

from .llama import LlamaEngine


def ordinary_tokens(engine: LlamaEngine, count: int, salt: int) -> list[int]:
    """Deterministic ordinary token ids (away from the special tokens at the start)."""
    span = engine.n_vocab - 1000
    return [1000 + (salt * 7919 + i * 104729) % span for i in range(count)]


def logits_after_prompt(engine: LlamaEngine, slot: int, length: int) -> list[np.ndarray]:
    """The logits after the slot's prompt of `length` tokens, and after one greedy step
    from there."""
    rows = [engine.slots.prompt_logits(slot).copy()]
    engine.step(int(np.argmax(rows[0])), length, slot)
    rows.append(engine.logits().copy())
    return rows
