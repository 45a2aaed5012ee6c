"""Per-step token masks from llguidance, applied to the logits before keel samples.

The llguidance tokenizer is built once per loaded model (about 0.4 s for SmolLM2's 49k
vocabulary, 2.5 s for Gemma's 262k) and each grammar is compiled once per model; a
generation gets a cheap deep copy of the compiled matcher.
"""

from __future__ import annotations

import threading
import warnings
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np

from ..engine.llama import LlamaEngine
from ..errors import GenerationError, InvalidConstraintError
from .constraint import Constraint

if TYPE_CHECKING:
    from llguidance import LLMatcher

_COMPILED_PER_MODEL = 64


class _ModelCache:
    """llguidance state for one loaded model: its tokenizer and compiled grammars."""

    def __init__(self, engine: LlamaEngine) -> None:
        import llguidance.llamacpp

        with warnings.catch_warnings():  # it calls a deprecated binding once per token
            warnings.simplefilter("ignore", DeprecationWarning)
            self.tokenizer = llguidance.llamacpp.lltokenizer_from_vocab(
                engine.vocab.handle, eos_token=engine.vocab.eog_tokens()
            )
        self.compiled: OrderedDict[str, LLMatcher] = OrderedDict()


_lock = threading.Lock()
_caches: weakref.WeakKeyDictionary[LlamaEngine, _ModelCache] = weakref.WeakKeyDictionary()


def _compiled_matcher(engine: LlamaEngine, constraint: Constraint) -> LLMatcher:
    """Compile once per (model, grammar); invalid grammars fail here, before generation."""
    from llguidance import LLMatcher

    with _lock:
        cache = _caches.get(engine)
        if cache is None:
            cache = _caches[engine] = _ModelCache(engine)
        matcher = cache.compiled.get(constraint.lark)
        if matcher is not None:
            cache.compiled.move_to_end(constraint.lark)
            return matcher
    matcher = LLMatcher(cache.tokenizer, LLMatcher.grammar_from_lark(constraint.lark), log_level=0)
    if matcher.is_error():
        raise InvalidConstraintError(
            f"the {constraint.kind} constraint cannot be compiled: {matcher.get_error()}"
        )
    with _lock:
        cache.compiled[constraint.lark] = matcher
        while len(cache.compiled) > _COMPILED_PER_MODEL:
            cache.compiled.popitem(last=False)
    return matcher


class ConstraintSession:
    """The grammar state of one generation."""

    def __init__(self, matcher: LLMatcher, n_vocab: int) -> None:
        self._matcher = matcher
        self._n_vocab = n_vocab
        self._mask = np.zeros((n_vocab + 31) // 32, dtype=np.int32)

    def allowed(self) -> np.ndarray:
        """Boolean view over the vocabulary: which tokens keep the output valid."""
        self._matcher.unsafe_compute_mask_ptr(self._mask.ctypes.data, self._mask.nbytes)
        bits = np.unpackbits(self._mask.view(np.uint8), bitorder="little", count=self._n_vocab)
        return bits.view(np.bool_)

    def restrict(self, logits: np.ndarray) -> np.ndarray:
        """Logits with every disallowed token at -inf (a new array; logits is untouched)."""
        return np.where(self.allowed(), logits, np.float32(-np.inf))

    def advance(self, token: int) -> None:
        if not self._matcher.consume_token(token):
            raise GenerationError(f"constraint rejected token {token}: {self._matcher.get_error()}")

    def finished(self) -> bool:
        """The grammar is complete and nothing but an end token could follow."""
        return bool(self._matcher.is_stopped())


def open_session(engine: LlamaEngine, constraint: Constraint) -> ConstraintSession:
    return ConstraintSession(_compiled_matcher(engine, constraint).deep_copy(), engine.n_vocab)
