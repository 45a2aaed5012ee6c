"""The embedded engine: llama.cpp through llama-cpp-python's low-level C API.

Only prefill and single-token decode live here. Settings that change numerics (batch sizes,
KV type, flash attention, SWA cache) are fixed per model and recorded in the fingerprint;
prompts are always fed in chunks aligned at position 0, so a token's computation never
depends on how a request was scheduled.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import sys
import threading
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


class LlamaEngine:
    """One loaded GGUF with one llama.cpp context. Not thread-safe: the model's worker
    (keel.scheduler) is its only user during generation, holding `lock`."""

    def __init__(self, path: Path, context: ContextSettings, n_threads: int) -> None:
        lib = _llama()
        self._lib = lib
        self.path = path
        self.context = context
        self.lock = threading.Lock()
        model_params = lib.llama_model_default_params()
        model_params.n_gpu_layers = 0
        self._model = lib.llama_model_load_from_file(str(path).encode(), model_params)
        if not self._model:
            raise ModelLoadError(
                f"llama.cpp could not load {str(path)!r}: the file is not a valid GGUF model "
                "(corrupt, truncated or unsupported); fix: re-download or reinstall it"
            )
        ctx_params = lib.llama_context_default_params()
        ctx_params.n_ctx = context.n_ctx
        ctx_params.n_batch = context.n_batch
        ctx_params.n_ubatch = context.n_ubatch
        ctx_params.n_seq_max = 1
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
        self.n_ctx = lib.llama_n_ctx(self._ctx)
        self.bos = lib.llama_vocab_bos(self.vocab)
        self.add_bos = bool(lib.llama_vocab_get_add_bos(self.vocab))
        self._batch = lib.llama_batch_init(context.n_batch, 0, 1)
        self._pieces: dict[int, bytes] = {}
        self._eog: dict[int, bool] = {}
        self._eog_ids: list[int] | None = None
        self._prefilled: list[int] = []  # prompt tokens whose KV came from whole-chunk prefill
        # None until proven on the first chance to reuse; then True or False for good
        self.prefix_reuse: bool | None = None
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

    def prompt_tokens(self, prompt: str, *, raw: bool) -> list[int]:
        """Chat-templated for instruct models, raw for base models or when raw=True.

        An empty prompt still starts from BOS so generation has something to condition on.
        """
        if self.chat_template and not raw:
            text = render_chat(
                self.chat_template,
                [{"role": "user", "content": prompt}],
                bos_token=self.special_text(self.bos),
                eos_token=self.special_text(self._lib.llama_vocab_eos(self.vocab)),
            )
        else:
            text = prompt
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
        self._lib.llama_memory_clear(self._memory, True)
        self._prefilled = []

    def _decode(self, tokens: list[int], start: int, want_logits: bool) -> None:
        batch = self._batch
        n = len(tokens)
        batch.n_tokens = n
        for i, token in enumerate(tokens):
            batch.token[i] = token
            batch.pos[i] = start + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = False
        batch.logits[n - 1] = want_logits
        status = self._lib.llama_decode(self._ctx, batch)
        if status != 0:
            raise GenerationError(f"llama_decode failed with status {status} at position {start}")

    def _reusable_chunks(self, tokens: list[int]) -> int:
        """Leading whole CHUNKs of `tokens` that the last prefill left in the KV cache.

        Only whole chunks decoded by prefill count (generated tokens were decoded one by
        one, so their numerics differ), and the chunk holding the last prompt token is
        always decoded again because its logits are needed.
        """
        limit = (len(tokens) - 1) // CHUNK
        count = 0
        while count < limit:
            span = slice(count * CHUNK, (count + 1) * CHUNK)
            if tokens[span] != self._prefilled[span]:
                break
            count += 1
        return count

    def _prefill_from(self, tokens: list[int], first_chunk: int) -> None:
        if first_chunk == 0 or not self._lib.llama_memory_seq_rm(
            self._memory, 0, first_chunk * CHUNK, -1
        ):
            first_chunk = 0
            self.reset()
        self._prefilled = []
        last = len(tokens)
        for start in range(first_chunk * CHUNK, last, CHUNK):
            self._decode(tokens[start : start + CHUNK], start, want_logits=start + CHUNK >= last)
        self._prefilled = tokens[: (last // CHUNK) * CHUNK]

    def _prove_reuse(self, tokens: list[int], chunks: int) -> bool:
        """Warm prefill must equal cold prefill bit for bit: compare the last logits of a
        cold run with a warm one made after a generated token polluted the cache."""
        self._prefill_from(tokens, 0)
        cold = self.logits().copy()
        self.step(int(np.argmax(cold)), len(tokens))
        self._prefill_from(tokens, chunks)
        return bool(np.array_equal(cold, self.logits()))

    def prefill(self, tokens: list[int]) -> int:
        """Feed the prompt from position 0 in fixed CHUNK-sized, aligned pieces, reusing
        whole chunks already in the cache once this model and build have proven that a
        warm prefill equals a cold one. Returns how many prompt tokens were reused."""
        chunks = self._reusable_chunks(tokens) if self.prefix_reuse is not False else 0
        if chunks and self.prefix_reuse is None:
            self.prefix_reuse = (
                remembered(
                    "prefix reuse proof",
                    [self.path, *_library_files()],
                    lambda: "equal" if self._prove_reuse(tokens, chunks) else "differs",
                )
                == "equal"
            )
            chunks = chunks if self.prefix_reuse else 0
        self._prefill_from(tokens, chunks)  # a failed decode leaves nothing marked reusable
        return chunks * CHUNK

    def step(self, token: int, position: int) -> None:
        """Decode one generated token at its position."""
        self._decode([token], position, want_logits=True)

    def logits(self) -> np.ndarray:
        """Zero-copy view of the last output row; valid until the next decode."""
        pointer = self._lib.llama_get_logits_ith(self._ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))
