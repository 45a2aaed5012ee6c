"""The C objects of one loaded model: the model weights, and one context of several
sequences ("slots") with the batch used to feed it. Each wrapper owns one lifetime."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GenerationError, ModelLoadError
from .compute import COMPUTE
from .library import llama

CHUNK = 512  # n_batch == n_ubatch == prefill chunk; changing it changes outputs

# ggml's type ids (ggml.h) for the KV cache; the bindings export no name for bf16
KV_TYPES = {"f16": 1, "bf16": 30}

# (token, position, slot): one row of a llama_batch
Entry = tuple[int, int, int]


@dataclass(frozen=True)
class ContextSettings:
    """Everything about a context that can change logits. The thread count is not here:
    it does not change results (tested), so outputs stay shareable across core counts."""

    n_ctx: int
    n_batch: int = CHUNK
    n_ubatch: int = CHUNK
    # Flash attention with K and V of different types: llama.cpp's CPU kernel then always
    # takes its one-row path, which reads each query's cells in order on one thread. With
    # equal f16 types it would split a lone query's cells across threads (from 512 cells)
    # and tile prompts of 64+ rows, so logits would depend on thread count and batch.
    # bf16 V keeps f16's size; its sums are kept in f32 (f16 V sums in f16).
    flash_attn: bool = True
    k_type: str = "f16"
    v_type: str = "bf16"
    swa_full: bool = True

    def numerics(self) -> dict[str, Any]:
        return asdict(self)


class LlamaModel:
    """The weights and vocabulary of one GGUF file (CPU only)."""

    def __init__(self, path: Path) -> None:
        lib = self._lib = llama()
        self.path = path
        params = lib.llama_model_default_params()
        params.n_gpu_layers = 0
        self.pointer = lib.llama_model_load_from_file(str(path).encode(), params)
        if not self.pointer:
            raise ModelLoadError(
                f"llama.cpp could not load {str(path)!r}: the file is not a valid GGUF model "
                "(corrupt, truncated or unsupported); fix: re-download or reinstall it"
            )
        self.vocab = lib.llama_model_get_vocab(self.pointer)
        template = lib.llama_model_chat_template(self.pointer, None)
        self.chat_template: str | None = template.decode("utf-8") if template else None

    def close(self) -> None:
        if getattr(self, "pointer", None) and not sys.is_finalizing():
            self._lib.llama_model_free(self.pointer)
            self.pointer = None

    def __del__(self) -> None:
        self.close()


class LlamaContext:
    """One llama.cpp context over a model: `slots` sequences, each with its own KV stream of
    n_ctx cells (kv_unified off), so a sequence computes exactly as it would alone."""

    def __init__(
        self, model: LlamaModel, settings: ContextSettings, n_threads: int, slots: int
    ) -> None:
        lib = self._lib = llama()
        self.model = model  # kept alive as long as the context
        params = lib.llama_context_default_params()
        params.n_ctx = settings.n_ctx * slots
        params.n_batch = settings.n_batch
        params.n_ubatch = settings.n_ubatch
        params.n_seq_max = slots
        params.kv_unified = False  # one KV stream per slot: neighbours never show
        params.n_threads = params.n_threads_batch = self.n_threads = n_threads
        params.flash_attn_type = (
            lib.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if settings.flash_attn
            else lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        params.type_k = KV_TYPES[settings.k_type]
        params.type_v = KV_TYPES[settings.v_type]
        params.swa_full = settings.swa_full
        params.no_perf = True
        self.pointer = lib.llama_init_from_model(model.pointer, params)
        if not self.pointer:
            raise ModelLoadError(
                f"llama.cpp could not create a context for {str(model.path)!r} with "
                f"{settings.numerics()} (models with MLA attention, e.g. DeepSeek, refuse K "
                "and V caches of different types); KEEL_VERBOSE=1 shows llama.cpp's reason"
            )
        self._memory = lib.llama_get_memory(self.pointer)
        # a recurrent state cannot be cut back to a position (llama_memory_seq_rm fails)
        self.rewindable = not (
            lib.llama_model_is_recurrent(model.pointer) or lib.llama_model_is_hybrid(model.pointer)
        )
        self._batch = lib.llama_batch_init(settings.n_batch, 0, 1)
        self.n_ctx: int = lib.llama_n_ctx_seq(self.pointer)  # per slot
        self.n_vocab: int = lib.llama_vocab_n_tokens(model.vocab)
        self._outputs: np.ndarray | None = None  # the last decode's logits, a row an output

    def close(self) -> None:
        if getattr(self, "pointer", None) and not sys.is_finalizing():
            self._lib.llama_batch_free(self._batch)
            self._lib.llama_free(self.pointer)
            self.pointer = None

    def __del__(self) -> None:
        self.close()

    def forget(self, slot: int, start: int = 0) -> bool:
        """Drop the slot's KV from position `start` on; False if llama.cpp could not."""
        return bool(self._lib.llama_memory_seq_rm(self._memory, slot, start, -1))

    def next_position(self, slot: int) -> int:
        """The position of a token appended to the slot's KV: the only one llama.cpp takes."""
        return int(self._lib.llama_memory_seq_pos_max(self._memory, slot)) + 1

    def decode(self, entries: list[Entry], all_logits: bool) -> None:
        """One llama_decode; logits for every row, or for the last row only."""
        self._decode(entries, [all_logits] * (len(entries) - 1) + [True])

    def decode_prompts(self, entries: list[Entry]) -> None:
        """One llama_decode of several slots' prompt pieces, each slot's rows together;
        logits for the last row of each slot, in batch order."""
        slots = [slot for _, _, slot in entries]
        self._decode(entries, [a != b for a, b in pairwise(slots)] + [True])

    def _decode(self, entries: list[Entry], outputs: list[bool]) -> None:
        """One llama_decode, with logits for the rows whose `outputs` flag is set."""
        batch = self._batch
        batch.n_tokens = len(entries)
        for i, (token, position, slot) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = position
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = slot
            batch.logits[i] = outputs[i]
        self._outputs = None
        status = COMPUTE.share(id(self), self.n_threads, partial(self._decode_with, batch))
        if status != 0:
            where = ", ".join(f"slot {slot} position {pos}" for _, pos, slot in entries[:4])
            raise GenerationError(f"llama_decode failed with status {status} at {where}")
        # All output rows in one view, in batch order: a ctypes call per row would let the
        # event loop take the GIL between the rows a worker samples.
        pointer = self._lib.llama_get_logits(self.pointer)
        self._outputs = np.ctypeslib.as_array(pointer, shape=(sum(outputs), self.n_vocab))

    def _decode_with(self, batch: Any, threads: int) -> int:
        # Two ints, but like any ctypes call it lets go of the GIL, and the event loop, woken
        # to send the step's tokens, takes it here and sends them before the decode starts.
        # Skipping the call (the loop then sends during the decode, on its cores) measured
        # no faster (README, "The event loop sends before each decode").
        self._lib.llama_set_n_threads(self.pointer, threads, threads)
        status: int = self._lib.llama_decode(self.pointer, batch)
        return status

    def logits(self, row: int = -1) -> np.ndarray:
        """Zero-copy view of one output row (default: the last); valid until the next decode."""
        if self._outputs is None:
            raise GenerationError("no logits: the last llama_decode failed, or none has run")
        view: np.ndarray = self._outputs[row]
        return view
