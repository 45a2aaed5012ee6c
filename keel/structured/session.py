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
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..engine.llama import LlamaEngine
from ..errors import GenerationError, InvalidConstraintError, StructuredOutputError
from .constraint import Constraint

if TYPE_CHECKING:
    from llguidance import LLMatcher

_COMPILED_PER_MODEL = 64


# Text that closes structures: quotes, brackets, separators, and the newline that ends a
# reasoning preamble. Completions keel steers to prefer tokens made of these alone.
_CLOSING_BYTES = frozenset(b'"]},\n')


def _structural_rank(piece: bytes) -> int:
    """Between values: brackets close structures, a quote may be needed, a comma opens
    another item; a newline ends a reasoning preamble (allowed nowhere else)."""
    if b"\n" in piece:
        return 100
    closes = piece.count(b"}") + piece.count(b"]")
    return 2 * closes + piece.count(b'"') - 3 * piece.count(b",")


@dataclass(frozen=True)
class ClosingTokens:
    """Per model, the tokens a shortest completion prefers, best first (ties: shorter, then
    lower id, so the order is fixed): `structural` between values, `in_text` inside a
    string or preamble, where only a closing quote (or the preamble's newline) ends it."""

    structural: np.ndarray
    in_text: np.ndarray

    @classmethod
    def of(cls, engine: LlamaEngine) -> ClosingTokens:
        vocab = engine.vocab
        structural, in_text = [], []
        for token in range(engine.n_vocab):
            piece = vocab.piece(token)
            if not piece or not set(piece) <= _CLOSING_BYTES or vocab.is_eog(token):
                continue
            rank = _structural_rank(piece)
            structural.append((-rank, len(piece), token))
            if piece[:1] in (b'"', b"\n"):
                in_text.append((-rank, len(piece), token))
        return cls(_ids(structural), _ids(in_text))


def _ids(ranked: list[tuple[int, int, int]]) -> np.ndarray:
    return np.array([token for *_, token in sorted(ranked)], dtype=np.int64)


class _ModelCache:
    """llguidance state for one loaded model: its tokenizer, compiled grammars and the
    tokens completions are steered to."""

    def __init__(self, engine: LlamaEngine) -> None:
        import llguidance.llamacpp

        with warnings.catch_warnings():  # it calls a deprecated binding once per token
            warnings.simplefilter("ignore", DeprecationWarning)
            self.tokenizer = llguidance.llamacpp.lltokenizer_from_vocab(
                engine.vocab.handle, eos_token=engine.vocab.eog_tokens()
            )
        self.compiled: OrderedDict[str, LLMatcher] = OrderedDict()
        self.closing = ClosingTokens.of(engine)


_lock = threading.Lock()
_caches: weakref.WeakKeyDictionary[LlamaEngine, _ModelCache] = weakref.WeakKeyDictionary()


def _compiled_matcher(engine: LlamaEngine, constraint: Constraint) -> tuple[LLMatcher, _ModelCache]:
    """Compile once per (model, grammar); invalid grammars fail here, before generation."""
    from llguidance import LLMatcher

    with _lock:
        cache = _caches.get(engine)
        if cache is None:
            cache = _caches[engine] = _ModelCache(engine)
        matcher = cache.compiled.get(constraint.lark)
        if matcher is not None:
            cache.compiled.move_to_end(constraint.lark)
            return matcher, cache
    matcher = LLMatcher(cache.tokenizer, LLMatcher.grammar_from_lark(constraint.lark), log_level=0)
    if matcher.is_error():
        raise InvalidConstraintError(
            f"the {constraint.kind} constraint cannot be compiled: {matcher.get_error()}"
        )
    with _lock:
        cache.compiled[constraint.lark] = matcher
        while len(cache.compiled) > _COMPILED_PER_MODEL:
            cache.compiled.popitem(last=False)
    return matcher, cache


class ConstraintSession:
    """The grammar state of one generation."""

    def __init__(self, matcher: LLMatcher, n_vocab: int, closing: ClosingTokens) -> None:
        self._matcher = matcher
        self._n_vocab = n_vocab
        self._closing = closing
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

    # -- finishing within a budget ------------------------------------------------------

    def completion(self, limit: int) -> list[int] | None:
        """The tokens of the shortest completion keel finds from here to an output the
        grammar accepts (None: none within `limit` tokens). A greedy walk on the grammar
        alone: forced tokens, else the preferred closing token, else the lowest allowed
        id; the matcher is rolled back afterwards."""
        matcher, closing = self._matcher, self._closing
        path: list[int] = []
        consumed = 0
        try:
            while True:
                if len(path) > limit:  # forced tokens come in runs
                    return None
                if matcher.is_accepting():
                    return path
                if len(path) == limit:
                    return None
                forced = matcher.compute_ff_tokens()
                if forced:
                    if not matcher.consume_tokens(forced):
                        return None
                    consumed += len(forced)
                    path.extend(forced)
                    continue
                allowed = self.allowed()
                # Inside free text most of the vocabulary is allowed; between values few are.
                in_text = int(np.count_nonzero(allowed)) > self._n_vocab // 4
                preferred = closing.in_text if in_text else closing.structural
                hits = preferred[allowed[preferred]]
                token = int(hits[0]) if hits.size else int(np.argmax(allowed))
                if not allowed[token] or not matcher.consume_token(token):
                    return None
                consumed += 1
                path.append(token)
        finally:
            if consumed:
                matcher.rollback(consumed)

    def require_budget(self, max_new_tokens: int) -> None:
        """Refuse, before generating, a budget too small for any output keel can find."""
        if self.completion(max_new_tokens) is not None:
            return
        longer = self.completion(max(4 * max_new_tokens, 256))
        needs = f"needs {len(longer)} tokens" if longer else "needs more"
        raise StructuredOutputError(
            f"the output cannot be completed within max_new_tokens={max_new_tokens}: the "
            f"shortest completion keel found {needs}; raise max_new_tokens"
        )

    def completion_after(self, token: int, limit: int) -> list[int] | None:
        """completion() as it would be once `token` is taken."""
        if not self._matcher.consume_token(token):
            return None
        try:
            return self.completion(limit)
        finally:
            self._matcher.rollback(1)


def open_session(engine: LlamaEngine, constraint: Constraint) -> ConstraintSession:
    matcher, cache = _compiled_matcher(engine, constraint)
    return ConstraintSession(matcher.deep_copy(), engine.n_vocab, cache.closing)
