"""The embedded engine: llama.cpp through llama-cpp-python's low-level C API.

Only prefill and decode live here. Settings that change numerics (batch sizes, KV type,
flash attention, SWA cache) are fixed per model and recorded in the fingerprint; prompts are
always fed in chunks aligned at position 0, so a token's computation never depends on how a
request was scheduled. One context holds several sequences ("slots"), each with its own KV
stream of n_ctx cells, so a sequence computes exactly as it would alone; decoding several
of them in one batch is used only at the batch sizes a self-check proved bit-identical.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import sys
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from ..config import settings
from ..errors import GenerationError, InvalidParameterError, ModelLoadError
from ..memo import remembered
from .chat import render_chat

CHUNK = 512  # n_batch == n_ubatch == prefill chunk; changing it changes outputs


@dataclass(frozen=True)
class ContextSettings:
    """Everything about a context that can change logits. The thread count is not here:
    it does not change results (tested), so outputs stay shareable across core counts."""

    n_ctx: int
    n_batch: int = CHUNK
    n_ubatch: int = CHUNK
    flash_attn: bool = False
    kv_type: str = "f16"
    swa_full: bool = True

    def numerics(self) -> dict:
        return {
            "n_ctx": self.n_ctx,
            "n_batch": self.n_batch,
            "n_ubatch": self.n_ubatch,
            "flash_attn": self.flash_attn,
            "kv_type": self.kv_type,
            "swa_full": self.swa_full,
        }


@cache
def _llama():
    """Import llama_cpp once and initialise its backend, with llama.cpp's log routed
    through keel: silent unless KEEL_VERBOSE=1 (the bindings' own filter misreads
    the current log levels and prints warnings on every load)."""
    import llama_cpp

    llama_cpp.llama_log_set(_log_callback(llama_cpp), ctypes.c_void_p(0))
    llama_cpp.llama_backend_init()
    return llama_cpp


@cache
def _log_callback(llama_cpp):
    verbose = settings().verbose  # read once: the callback also fires at interpreter exit

    def forward(level: int, text: bytes, _user_data) -> None:
        if verbose:
            sys.stderr.write(text.decode("utf-8", "replace"))

    return llama_cpp.llama_log_callback(forward)  # cached: C keeps the pointer


_LIBRARIES = ("libllama.so", "libggml-base.so", "libggml-cpu.so")


def _library_files() -> list[Path]:
    """The shared objects whose build decides the numbers (found without importing them)."""
    spec = importlib.util.find_spec("llama_cpp")
    lib = Path(next(iter(spec.submodule_search_locations))) / "lib"
    return [lib / name for name in _LIBRARIES if (lib / name).exists()]


@cache
def build_info() -> dict:
    """llama.cpp build identity: bindings version and the CPU feature line (AVX2, AVX-512 ...).

    Remembered per library file version, so a fingerprint (and a cache lookup) never has to
    import and initialise llama.cpp.
    """

    def probe() -> str:
        lib = _llama()
        return json.dumps(
            {
                "llama_cpp_python": lib.__version__,
                "system_info": lib.llama_print_system_info().decode("utf-8", "replace").strip(),
            }
        )

    return json.loads(remembered("llama.cpp build", _library_files(), probe))


# (token, position, slot): one row of a llama_batch
Entry = tuple[int, int, int]


class LlamaEngine:
    """One loaded GGUF with one llama.cpp context of `slots` sequences. Not thread-safe:
    the model's worker (keel.scheduler) is its only user once it is loaded."""

    def __init__(
        self, path: Path, context: ContextSettings, n_threads: int, slots: int = 1
    ) -> None:
        lib = _llama()
        self._lib = lib
        self.path = path
        self.context = context
        self.slots = slots
        self.n_threads = n_threads
        model_params = lib.llama_model_default_params()
        model_params.n_gpu_layers = 0
        self._model = lib.llama_model_load_from_file(str(path).encode(), model_params)
        if not self._model:
            raise ModelLoadError(
                f"llama.cpp could not load {str(path)!r}: the file is not a valid GGUF model "
                "(corrupt, truncated or unsupported); fix: re-download or reinstall it"
            )
        ctx_params = lib.llama_context_default_params()
        ctx_params.n_ctx = context.n_ctx * slots
        ctx_params.n_batch = context.n_batch
        ctx_params.n_ubatch = context.n_ubatch
        ctx_params.n_seq_max = slots
        ctx_params.kv_unified = False  # one KV stream per slot: neighbours never show
        ctx_params.n_threads = n_threads
        ctx_params.n_threads_batch = n_threads
        ctx_params.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
        ctx_params.type_k = lib.GGML_TYPE_F16
        ctx_params.type_v = lib.GGML_TYPE_F16
        ctx_params.swa_full = context.swa_full
        ctx_params.no_perf = True
        self._ctx = lib.llama_init_from_model(self._model, ctx_params)
        if not self._ctx:
            lib.llama_model_free(self._model)
            raise ModelLoadError(f"llama.cpp could not create a context for {str(path)!r}")
        self._memory = lib.llama_get_memory(self._ctx)
        self.vocab = lib.llama_model_get_vocab(self._model)
        self.n_vocab = lib.llama_vocab_n_tokens(self.vocab)
        self.n_ctx = lib.llama_n_ctx_seq(self._ctx)
        self.bos = lib.llama_vocab_bos(self.vocab)
        self.add_bos = bool(lib.llama_vocab_get_add_bos(self.vocab))
        self._batch = lib.llama_batch_init(context.n_batch, 0, 1)
        self._pieces: dict[int, bytes] = {}
        self._eog: dict[int, bool] = {}
        self._eog_ids: list[int] | None = None
        # per slot: the last prompt prefilled (its whole chunks can be reused) and the logits
        # of its last token, so the same prompt again (another seed, a retry) needs no
        # prefill at all
        self._prompt: list[list[int]] = [[] for _ in range(slots)]
        self._prompt_logits: list[np.ndarray | None] = [None] * slots
        # None until proven on the first chance to reuse; then True or False for good
        self.prefix_reuse: bool | None = None
        self.batch_sizes: tuple[int, ...] = (1,)  # proven by check_batching()
        template = lib.llama_model_chat_template(self._model, None)
        self.chat_template: str | None = template.decode("utf-8") if template else None

    def close(self) -> None:
        if getattr(self, "_ctx", None) and not sys.is_finalizing():
            self._lib.llama_batch_free(self._batch)
            self._lib.llama_free(self._ctx)
            self._lib.llama_model_free(self._model)
            self._ctx = None

    def __del__(self) -> None:
        self.close()

    # -- text <-> tokens ---------------------------------------------------------------

    def tokenize(self, text: str, *, add_bos: bool, parse_special: bool) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        buffer = (ctypes.c_int32 * capacity)()
        count = self._lib.llama_tokenize(
            self.vocab, data, len(data), buffer, capacity, add_bos, parse_special
        )
        if count < 0:
            raise GenerationError(f"tokenizer needed {-count} slots, had {capacity}")
        return list(buffer[:count])

    def piece(self, token: int) -> bytes:
        """The bytes a token stands for (special tokens render as nothing). Memoised."""
        cached = self._pieces.get(token)
        if cached is None:
            buffer = ctypes.create_string_buffer(64)
            size = self._lib.llama_token_to_piece(self.vocab, token, buffer, 64, 0, False)
            if size < 0:
                buffer = ctypes.create_string_buffer(-size)
                size = self._lib.llama_token_to_piece(self.vocab, token, buffer, -size, 0, False)
            cached = self._pieces[token] = buffer.raw[:size]
        return cached

    def token_text(self, token: int) -> str:
        return self.piece(token).decode("utf-8", "replace")

    def is_eog(self, token: int) -> bool:
        flag = self._eog.get(token)
        if flag is None:
            flag = self._eog[token] = bool(self._lib.llama_vocab_is_eog(self.vocab, token))
        return flag

    def eog_tokens(self) -> list[int]:
        """Every end-of-generation token id (one scan of the vocabulary, then remembered)."""
        if self._eog_ids is None:
            is_eog = self._lib.llama_vocab_is_eog
            self._eog_ids = [t for t in range(self.n_vocab) if is_eog(self.vocab, t)]
        return self._eog_ids

    def special_text(self, token: int) -> str:
        """A special token's written form (e.g. "<|im_start|>"); "" if the model has none."""
        if token < 0:
            return ""
        buffer = ctypes.create_string_buffer(256)
        size = self._lib.llama_token_to_piece(self.vocab, token, buffer, 256, 0, True)
        return buffer.raw[: max(size, 0)].decode("utf-8", "replace")

    def chat_text(self, messages: list[dict]) -> str:
        """The prompt text for a conversation: the model's chat template with the assistant's
        turn opened. A model without a template (a base model) takes one user message as
        plain text, like generate() does; anything more has no faithful rendering."""
        if self.chat_template:
            return render_chat(
                self.chat_template,
                messages,
                bos_token=self.special_text(self.bos),
                eos_token=self.special_text(self._lib.llama_vocab_eos(self.vocab)),
            )
        if len(messages) == 1 and messages[0].get("role") == "user":
            return messages[0].get("content", "")
        raise InvalidParameterError(
            f"{self.path.name} has no chat template, so a chat takes exactly one user "
            "message; send raw text as a completion instead"
        )

    def prompt_tokens(self, prompt: str, *, raw: bool) -> list[int]:
        """Chat-templated for instruct models, raw for base models or when raw=True.

        An empty prompt still starts from BOS so generation has something to condition on.
        """
        text = prompt if raw else self.chat_text([{"role": "user", "content": prompt}])
        tokens = self.tokenize(text, add_bos=self.add_bos, parse_special=True)
        if len(tokens) >= 2 and tokens[0] == tokens[1] == self.bos:
            tokens = tokens[1:]  # the template wrote BOS and the tokenizer added another
        if not tokens:
            if self.bos < 0:
                raise InvalidParameterError(
                    f"{self.path.name} has no BOS token, so an empty raw prompt gives it "
                    "nothing to start from; pass some text"
                )
            tokens = [self.bos]
        return tokens

    # -- prefill and decode -------------------------------------------------------------

    def reset(self) -> None:
        """Forget every slot's KV (so the next prefill is cold)."""
        for slot in range(self.slots):
            self.clear(slot)

    def clear(self, slot: int) -> None:
        self._lib.llama_memory_seq_rm(self._memory, slot, -1, -1)
        self._prompt[slot] = []
        self._prompt_logits[slot] = None

    def rewind(self, slot: int, length: int) -> bool:
        """Drop the slot's KV from `length` on (its generated tokens), keeping the prompt."""
        return bool(self._lib.llama_memory_seq_rm(self._memory, slot, length, -1))

    def _decode(self, entries: list[Entry], all_logits: bool) -> None:
        """One llama_decode; logits for every row, or for the last row only."""
        batch = self._batch
        n = len(entries)
        batch.n_tokens = n
        for i, (token, position, slot) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = position
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = slot
            batch.logits[i] = all_logits
        batch.logits[n - 1] = True
        status = self._lib.llama_decode(self._ctx, batch)
        if status != 0:
            where = ", ".join(f"slot {slot} position {pos}" for _, pos, slot in entries[:4])
            raise GenerationError(f"llama_decode failed with status {status} at {where}")

    def reusable_tokens(self, tokens: list[int], slot: int) -> int:
        """How many leading prompt tokens a prefill on `slot` could take from its KV."""
        if tokens == self._prompt[slot]:
            return len(tokens)
        if self.prefix_reuse is False:
            return 0
        return self._reusable_chunks(tokens, slot) * CHUNK

    def _reusable_chunks(self, tokens: list[int], slot: int) -> int:
        """Leading whole CHUNKs of `tokens` that the slot's last prefill left in its KV.

        Only whole chunks decoded by prefill count (generated tokens were decoded one by
        one, so their numerics differ), and the chunk holding the last prompt token is
        always decoded again because its logits are needed.
        """
        prefilled = self._prompt[slot]  # a partial last chunk never compares equal
        limit = (len(tokens) - 1) // CHUNK
        count = 0
        while count < limit:
            span = slice(count * CHUNK, (count + 1) * CHUNK)
            if tokens[span] != prefilled[span]:
                break
            count += 1
        return count

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
        last = len(tokens)
        for index, start in enumerate(range(first_chunk * CHUNK, last, CHUNK)):
            if index:
                yield
            chunk = tokens[start : start + CHUNK]
            self._decode([(t, start + i, slot) for i, t in enumerate(chunk)], all_logits=False)
        self._prompt[slot] = list(tokens)
        self._prompt_logits[slot] = self.logits().copy()

    def _prefill_from(self, tokens: list[int], first_chunk: int, slot: int) -> None:
        for _ in self._prefill_chunks(tokens, first_chunk, slot):
            pass

    def _prove_reuse(self, tokens: list[int], chunks: int, slot: int) -> bool:
        """Warm prefill must equal cold prefill bit for bit: compare the last logits of a
        cold run with a warm one made after a generated token polluted the cache."""
        self._prefill_from(tokens, 0, slot)
        cold = self.logits().copy()
        self.step(int(np.argmax(cold)), len(tokens), slot)
        self._prefill_from(tokens, chunks, slot)
        return bool(np.array_equal(cold, self.logits()))

    def prefill_steps(self, tokens: list[int], slot: int = 0) -> Generator[None, None, int]:
        """Feed the prompt into `slot` from position 0 in fixed CHUNK-sized, aligned
        pieces, pausing between chunks, and reusing whole chunks already in the slot's KV
        once this model and build have proven that a warm prefill equals a cold one. The
        same whole prompt as the slot's last one is not decoded at all: its KV is kept
        (generated tokens dropped) and its logits were saved. Returns the reused token
        count; prompt_logits() then has the logits."""
        if tokens == self._prompt[slot] and self.rewind(slot, len(tokens)):
            return len(tokens)
        chunks = self._reusable_chunks(tokens, slot) if self.prefix_reuse is not False else 0
        if chunks and self.prefix_reuse is None:
            self.prefix_reuse = (
                remembered(
                    "prefix reuse proof",
                    [self.path, *_library_files()],
                    lambda: "equal" if self._prove_reuse(tokens, chunks, slot) else "differs",
                )
                == "equal"
            )
            chunks = chunks if self.prefix_reuse else 0
        yield from self._prefill_chunks(tokens, chunks, slot)  # failing leaves nothing reusable
        return chunks * CHUNK

    def prefill(self, tokens: list[int], slot: int = 0) -> int:
        """prefill_steps without pauses."""
        steps = self.prefill_steps(tokens, slot)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value

    def prompt_logits(self, slot: int = 0) -> np.ndarray:
        """The logits after the slot's prompt (a copy kept for exact-prompt reuse)."""
        return self._prompt_logits[slot]

    def step(self, token: int, position: int, slot: int = 0) -> None:
        """Decode one generated token at its position."""
        self._decode([(token, position, slot)], all_logits=True)

    def step_batch(self, entries: list[Entry]) -> None:
        """Decode one generated token for each of several slots in one llama_decode; row i
        of the logits belongs to entries[i]. Callers keep to proven `batch_sizes` and
        consecutive slots (llama.cpp splits other sets into several micro-batches)."""
        self._decode(entries, all_logits=True)

    def logits(self, row: int = -1) -> np.ndarray:
        """Zero-copy view of one output row (default: the last); valid until the next decode."""
        pointer = self._lib.llama_get_logits_ith(self._ctx, row)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))
