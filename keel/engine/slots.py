"""What each slot's KV holds, and prefilling prompts into it.

Each slot remembers the last prompt prefilled into it and the logits after its last
token, so the same prompt again (another seed, a retry) needs no prefill at all, and a
prompt sharing a prefix with it decodes only the rest, where prefix.py's rules allow.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np

from ..errors import GenerationError
from .context import CHUNK, LlamaContext
from .prefix import PrefixReuse, continuation_start, reusable_chunks


class Slots:
    def __init__(self, context: LlamaContext, count: int, reuse: PrefixReuse) -> None:
        self._context = context
        self.count = count
        self.reuse = reuse
        self._prompt: list[list[int]] = [[] for _ in range(count)]
        self._prompt_logits: list[np.ndarray | None] = [None] * count

    def clear(self, slot: int) -> None:
        self._context.forget(slot)
        self._prompt[slot] = []
        self._prompt_logits[slot] = None

    def reset(self) -> None:
        """Forget every slot's KV (so the next prefill is cold)."""
        for slot in range(self.count):
            self.clear(slot)

    def rewind(self, slot: int, length: int) -> bool:
        """Drop the slot's KV from `length` on (e.g. its generated tokens)."""
        return self._context.forget(slot, length)

    def reusable_tokens(self, tokens: list[int], slot: int) -> int:
        """How many leading prompt tokens a prefill on `slot` could take from its KV."""
        if tokens == self._prompt[slot]:
            return len(tokens)
        return self._continuable(tokens, slot)[0]

    def _continuable(self, tokens: list[int], slot: int) -> tuple[int, bool]:
        """Where a prefill of `tokens` could start on `slot` by prefix.py's rules, and
        whether that rule is proven already."""
        held = self._prompt[slot]
        if self.reuse.any_position and (first := continuation_start(tokens, held)):
            return first, True
        if not self.reuse.allowed:
            return 0, True
        return reusable_chunks(tokens, held) * CHUNK, bool(self.reuse.verdict)

    def prompt_logits(self, slot: int) -> np.ndarray:
        """The logits after the slot's prompt (a copy kept for exact-prompt reuse)."""
        logits = self._prompt_logits[slot]
        if logits is None:
            raise GenerationError(f"slot {slot} holds no prefilled prompt")
        return logits

    def _prefill_chunks(
        self, tokens: list[int], first: int, slot: int
    ) -> Generator[None, None, int]:
        """Decode the prompt from token `first` on (the KV before it is kept, or all of it
        is decoded if llama.cpp cannot cut the KV there) in CHUNKs aligned at position 0,
        the first one cut short at `first`, pausing (yield) between chunks so the worker
        can decode other sequences meanwhile; their KV streams are separate, so the pauses
        change nothing. Returns the first token decoded."""
        if first == 0 or not self.rewind(slot, first):
            self.clear(slot)
            first = 0
        self._prompt[slot] = []  # until the last chunk is in, nothing is reusable
        self._prompt_logits[slot] = None
        starts = [first, *range((first // CHUNK + 1) * CHUNK, len(tokens), CHUNK)]
        for index, start in enumerate(starts):
            if index:
                yield
            chunk = tokens[start : (start // CHUNK + 1) * CHUNK]
            self._context.decode(
                [(t, start + i, slot) for i, t in enumerate(chunk)], all_logits=False
            )
        self._prompt[slot] = list(tokens)
        self._prompt_logits[slot] = self._context.logits().copy()
        return first

    def prefill_from(self, tokens: list[int], first: int, slot: int) -> None:
        """Decode `tokens` from token `first` on, keeping the slot's KV before it (no
        checks: callers are the proofs that decide whether that is exact)."""
        for _ in self._prefill_chunks(tokens, first, slot):
            pass

    def _warm_equals_cold(self, tokens: list[int], chunks: int, slot: int) -> bool:
        """Compare the last logits of a cold prefill with a warm one made after a generated
        token polluted the slot's KV."""
        self.prefill_from(tokens, 0, slot)
        cold = self._context.logits().copy()
        self._context.decode([(int(np.argmax(cold)), len(tokens), slot)], all_logits=True)
        self.prefill_from(tokens, chunks * CHUNK, slot)
        return bool(np.array_equal(cold, self._context.logits()))

    def prefill_steps(self, tokens: list[int], slot: int) -> Generator[None, None, int]:
        """Feed the prompt into `slot` in CHUNKs, pausing between chunks and reusing the
        slot's KV where this model and build proved that exact (prefix.py). The same whole
        prompt as the slot's last one is not decoded at all. Returns the reused token count;
        prompt_logits(slot) then has the logits."""
        if tokens == self._prompt[slot] and self.rewind(slot, len(tokens)):
            return len(tokens)
        first, proven = self._continuable(tokens, slot)
        if first and not proven:
            chunks = first // CHUNK
            if not self.reuse.settle(lambda: self._warm_equals_cold(tokens, chunks, slot)):
                first = 0
        return (yield from self._prefill_chunks(tokens, first, slot))  # a failure keeps nothing

    def prefill(self, tokens: list[int], slot: int) -> int:
        """prefill_steps without pauses."""
        steps = self.prefill_steps(tokens, slot)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                reused: int = done.value
                return reused
