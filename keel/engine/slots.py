"""What each slot's KV holds, and prefilling prompts into it.

Each slot remembers the last prompt prefilled into it and the logits after its last
token, so the same prompt again (another seed, a retry) needs no prefill at all, and a
prompt sharing whole leading chunks with it decodes only the rest (see prefix.py).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

import numpy as np

from ..errors import GenerationError
from .context import CHUNK, LlamaContext
from .prefix import PrefixReuse, reusable_chunks


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
        """Drop the slot's KV from `length` on (its generated tokens), keeping the prompt."""
        return self._context.forget(slot, length)

    def reusable_tokens(self, tokens: list[int], slot: int) -> int:
        """How many leading prompt tokens a prefill on `slot` could take from its KV."""
        if tokens == self._prompt[slot]:
            return len(tokens)
        if not self.reuse.allowed:
            return 0
        return reusable_chunks(tokens, self._prompt[slot]) * CHUNK

    def prompt_logits(self, slot: int) -> np.ndarray:
        """The logits after the slot's prompt (a copy kept for exact-prompt reuse)."""
        logits = self._prompt_logits[slot]
        if logits is None:
            raise GenerationError(f"slot {slot} holds no prefilled prompt")
        return logits

    def _prefill_chunks(self, tokens: list[int], first_chunk: int, slot: int) -> Iterator[None]:
        """Decode the prompt from `first_chunk` on, pausing (yield) between chunks so the
        worker can decode other sequences meanwhile; their KV streams are separate, so the
        pauses change nothing."""
        if first_chunk == 0:
            self.clear(slot)
        else:
            self.rewind(slot, first_chunk * CHUNK)
        self._prompt[slot] = []  # until the last chunk is in, nothing is reusable
        self._prompt_logits[slot] = None
        for index, start in enumerate(range(first_chunk * CHUNK, len(tokens), CHUNK)):
            if index:
                yield
            chunk = tokens[start : start + CHUNK]
            self._context.decode(
                [(t, start + i, slot) for i, t in enumerate(chunk)], all_logits=False
            )
        self._prompt[slot] = list(tokens)
        self._prompt_logits[slot] = self._context.logits().copy()

    def _prefill_from(self, tokens: list[int], first_chunk: int, slot: int) -> None:
        for _ in self._prefill_chunks(tokens, first_chunk, slot):
            pass

    def _warm_equals_cold(self, tokens: list[int], chunks: int, slot: int) -> bool:
        """Compare the last logits of a cold prefill with a warm one made after a generated
        token polluted the slot's KV."""
        self._prefill_from(tokens, 0, slot)
        cold = self._context.logits().copy()
        self._context.decode([(int(np.argmax(cold)), len(tokens), slot)], all_logits=True)
        self._prefill_from(tokens, chunks, slot)
        return bool(np.array_equal(cold, self._context.logits()))

    def prefill_steps(self, tokens: list[int], slot: int) -> Generator[None, None, int]:
        """Feed the prompt into `slot` in fixed, aligned CHUNKs, pausing between chunks and
        reusing whole chunks already in the slot's KV where this model and build proved that
        safe. The same whole prompt as the slot's last one is not decoded at all. Returns
        the reused token count; prompt_logits(slot) then has the logits."""
        if tokens == self._prompt[slot] and self.rewind(slot, len(tokens)):
            return len(tokens)
        chunks = reusable_chunks(tokens, self._prompt[slot]) if self.reuse.allowed else 0
        if chunks and not self.reuse.settle(lambda: self._warm_equals_cold(tokens, chunks, slot)):
            chunks = 0
        yield from self._prefill_chunks(tokens, chunks, slot)  # failing leaves nothing reusable
        return chunks * CHUNK

    def prefill(self, tokens: list[int], slot: int) -> int:
        """prefill_steps without pauses."""
        steps = self.prefill_steps(tokens, slot)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                reused: int = done.value
                return reused
