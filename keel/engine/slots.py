"""What each slot's KV holds, and prefilling prompts into it.

Each slot remembers the last prompt prefilled into it and the logits after its last
token, so the same prompt again (another seed, a retry) needs no prefill at all, and a
prompt sharing a prefix with it decodes only the rest, where prefix.py's rules allow.
Short prompts that arrive together may be prefilled in one llama_decode, where
joint_check.py proved that exact.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np

from ..errors import GenerationError
from .context import CHUNK, Entry, LlamaContext
from .prefix import PrefixReuse, continuation_start, reusable_chunks

# The most tokens a prompt decodes beyond what it needs to join others in one pass: a
# pass of its own costs about as much as seven more rows in a shared one (7 prompts of 5
# tokens on SmolLM2: 135 ms one by one, 90 ms together).
PAD_ROWS = 6


class Slots:
    def __init__(self, context: LlamaContext, count: int, reuse: PrefixReuse) -> None:
        self._context = context
        self.count = count
        self.reuse = reuse
        self._prompt: list[list[int]] = [[] for _ in range(count)]
        self._prompt_logits: list[np.ndarray | None] = [None] * count
        self.together = False  # proven by joint_check.py: prefill_together() is exact
        # slot -> tokens reused by a prefill_together() not yet taken up by prefill_steps()
        self._joined: dict[int, int] = {}

    def clear(self, slot: int) -> None:
        self._context.forget(slot)
        self._prompt[slot] = []
        self._prompt_logits[slot] = None
        self._joined.pop(slot, None)

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

    def _cut(self, slot: int, first: int) -> int:
        """Drop the slot's KV from `first` on, or all of it if `first` is 0 or llama.cpp
        cannot cut there; returns where the prefill starts. Until the prefill is in,
        nothing of the slot is reusable."""
        if first == 0 or not self.rewind(slot, first):
            self.clear(slot)
            first = 0
        self._prompt[slot] = []
        self._prompt_logits[slot] = None
        return first

    def _prefill_chunks(
        self, tokens: list[int], first: int, slot: int
    ) -> Generator[None, None, int]:
        """Decode the prompt from token `first` on (the KV before it is kept, or all of it
        is decoded if llama.cpp cannot cut the KV there) in CHUNKs aligned at position 0,
        the first one cut short at `first`, pausing (yield) between chunks so the worker
        can decode other sequences meanwhile; their KV streams are separate, so the pauses
        change nothing. Returns the first token decoded."""
        first = self._cut(slot, first)
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

    def prefill_together(self, prompts: dict[int, list[int]]) -> dict[int, int]:
        """Prefill several slots' prompts (slot -> tokens) in one llama_decode per run of
        consecutive slots that decode the same number of tokens (at least 2), each its
        prompt's last piece of an aligned chunk: llama.cpp decodes exactly such a run as
        one micro-batch, and any other set in uneven pieces. A slot that may continue
        anywhere (prefix.py) starts a few tokens earlier to join a run. Up to one chunk's
        rows in all; the other prompts are left alone. Returns slot -> tokens reused for
        the slots prefilled; their prefill_steps() then returns at once. No checks: exact
        only where joint_check.py proved it."""
        needed: dict[int, int] = {}  # slot -> tokens it needs to decode
        most: dict[int, int] = {}  # slot -> tokens it may decode (starting earlier)
        for slot, tokens in sorted(prompts.items()):
            first, proven = self._continuable(tokens, slot)
            chunk_start = (len(tokens) - 1) // CHUNK * CHUNK
            if tokens != self._prompt[slot] and (proven or not first) and first >= chunk_start:
                needed[slot] = len(tokens) - first
                earliest = chunk_start if first and self.reuse.any_position else first
                most[slot] = len(tokens) - earliest
        joined: dict[int, int] = {}
        rows = 0  # one chunk's rows at most, like a prefill of one prompt
        for run, length in _runs(needed, most):
            if rows + len(run) * length > CHUNK:
                continue
            rows += len(run) * length
            starts = {slot: len(prompts[slot]) - length for slot in run}
            if all(self._cut(slot, first) == first for slot, first in starts.items()):
                joined.update(self._decode_run({s: (prompts[s], starts[s]) for s in run}))
        return joined

    def _decode_run(self, run: dict[int, tuple[list[int], int]]) -> dict[int, int]:
        """One llama_decode of the run (slot -> (prompt, first token to decode)). If it
        fails, the run's slots are left empty: each is then prefilled alone, and that
        reports whatever is wrong with its prompt."""
        entries: list[Entry] = [
            (token, first + i, slot)
            for slot, (tokens, first) in run.items()
            for i, token in enumerate(tokens[first:])
        ]
        try:
            self._context.decode_prompts(entries)
        except GenerationError:
            for slot in run:
                self.clear(slot)
            return {}
        for row, (slot, (tokens, first)) in enumerate(run.items()):
            self._prompt[slot] = list(tokens)
            self._prompt_logits[slot] = self._context.logits(row).copy()
            self._joined[slot] = first
        return {slot: first for slot, (_, first) in run.items()}

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
        joined = self._joined.pop(slot, None)
        if joined is not None and tokens == self._prompt[slot]:
            return joined
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


def _runs(needed: dict[int, int], most: dict[int, int]) -> list[tuple[list[int], int]]:
    """Runs of two or more consecutive slots that can all decode the same number of
    tokens (slot -> at least `needed`, at most `most`, no more than PAD_ROWS extra), each
    within one chunk's rows, with that number."""
    runs: list[tuple[list[int], int]] = []
    run: list[int] = []
    length = 0
    for slot in sorted(needed):
        target = max(length, needed[slot])
        fits = (
            run
            and slot == run[-1] + 1
            and (len(run) + 1) * target <= CHUNK
            and all(target <= min(most[s], needed[s] + PAD_ROWS) for s in (*run, slot))
        )
        if fits:
            run.append(slot)
            length = target
        else:
            runs.append((run, length))
            run, length = [slot], needed[slot]
    runs.append((run, length))
    return [(run, length) for run, length in runs if len(run) > 1 and length > 1]
