"""The embedded engine: one loaded GGUF, driven through llama-cpp-python's low-level C API.

It puts together the parts with one job each: the C objects (context.py), the vocabulary
(vocab.py) and the slots' KV bookkeeping with prefix reuse (slots.py, prefix.py). Settings
that change numerics are fixed per model and recorded in the fingerprint; prompts are
always fed in chunks aligned at position 0. Several sequences ("slots") share one context,
each with its own KV stream; decoding several of them in one batch is used only at the
batch sizes a self-check proved bit-identical (batching.py).
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np

from ..errors import GenerationError
from .context import ContextSettings, Entry, LlamaContext, LlamaModel
from .library import library_files
from .prefix import PrefixReuse
from .slots import Slots
from .vocab import Vocabulary

# llama.cpp attends over each batch's longest KV rounded up to this many cells
# (llama_kv_cache::get_n_kv), whatever each row's own length
KV_PADDING = 256


def _padded(cells: int) -> int:
    return -(-cells // KV_PADDING) * KV_PADDING


class LlamaEngine:
    """Not thread-safe: the model's worker (keel.scheduler) is its only user once loaded."""

    def __init__(
        self,
        path: Path,
        context: ContextSettings,
        n_threads: int,
        slots: int = 1,
        weights: LlamaModel | None = None,
        reuse: PrefixReuse | None = None,
    ) -> None:
        self.path = path
        self.context = context
        self.n_threads = n_threads
        self._model = weights or LlamaModel(path)
        self._llama = LlamaContext(self._model, context, n_threads, slots)
        self.vocab = Vocabulary(self._model)
        self.slots = Slots(self._llama, slots, reuse or PrefixReuse([path, *library_files()]))
        self.n_ctx = self._llama.n_ctx  # per slot
        self.n_vocab = self._llama.n_vocab
        self.batch_sizes: tuple[int, ...] = (1,)  # proven by batching.proven_batch_sizes()

    def another_lane(self) -> LlamaEngine:
        """A second context on the same weights (not loaded twice) that keeps what was
        proven for this one: the proofs are about the model file and build, so they hold
        for every context with these settings."""
        lane = LlamaEngine(
            self.path,
            self.context,
            self.n_threads,
            self.slots.count,
            weights=self._model,
            reuse=self.slots.reuse,
        )
        lane.batch_sizes = self.batch_sizes
        lane.slots.together = self.slots.together
        return lane

    def step(self, token: int, position: int, slot: int = 0) -> None:
        """Decode one generated token at its position."""
        self._llama.decode([(token, position, slot)], all_logits=True)

    def step_batch(self, entries: list[Entry], fillers: Collection[int] = ()) -> None:
        """Decode one generated token for each of several slots in one llama_decode; row i
        of the logits belongs to entries[i]. Callers keep to proven `batch_sizes` and
        consecutive slots (llama.cpp splits other sets into several micro-batches). The
        rows of the slots in `fillers` are throwaway rows from filler_rows(): their KV cells
        are cut off again afterwards, so those slots hold what they held before."""
        try:
            self._llama.decode(entries, all_logits=True)
        finally:
            for _, position, slot in entries:
                if slot in fillers and not self.slots.rewind(slot, position):
                    raise GenerationError(f"llama.cpp could not drop the filler row of slot {slot}")

    def filler_rows(self, decoding: dict[int, int]) -> dict[int, Entry]:
        """A throwaway row for each other slot that may bridge a gap between the slots in
        `decoding` (slot -> position of its next token), so they decode as one micro-batch
        (batching.batch_groups): token 0 at the end of the slot's KV. A slot whose KV
        reaches further than the longest decoding one, in llama.cpp's padding of the KV a
        batch attends over (KV_PADDING), gets none: every row would attend over it."""
        if not self._llama.rewindable or not decoding:
            return {}
        reach = _padded(max(decoding.values()) + 1)
        rows: dict[int, Entry] = {}
        for slot in range(self.slots.count):
            if slot not in decoding:
                position = self._llama.next_position(slot)
                if position < self.n_ctx and _padded(position + 1) <= reach:
                    rows[slot] = (0, position, slot)
        return rows

    def logits(self, row: int = -1) -> np.ndarray:
        """Zero-copy view of one output row (default: the last); valid until the next decode."""
        return self._llama.logits(row)
