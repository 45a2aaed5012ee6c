"""The one generation loop, as a state machine the model's worker steps. Every surface
(generate, generate_iter, stream_generate, CLI, server, cache) adapts the events it yields,
so they cannot disagree."""

from __future__ import annotations

import resource
import warnings
from collections.abc import Generator
from dataclasses import dataclass
from time import perf_counter

import numpy as np

from .detok import StopMatcher, Utf8Assembler
from .engine.llama import LlamaEngine
from .errors import GenerationError, KeelWarning
from .events import Fingerprint, GenerationResponse
from .params import GenerationParams
from .sampling import sample, token_logprob
from .structured.session import ConstraintSession

NO_TOKEN = -1  # token id of a final event that sampled nothing (cancelled, engine error)


def fit_context(
    tokens: list[int], n_ctx: int, max_new_tokens: int, bos: int
) -> tuple[list[int], bool]:
    """Keep the prompt's tail so that min(max_new_tokens, n_ctx // 2) tokens still fit.

    The leading BOS survives truncation because models condition on it.
    """
    budget = n_ctx - min(max_new_tokens, n_ctx // 2)
    if len(tokens) <= budget:
        return tokens, False
    head = [bos] if tokens[0] == bos else []
    return head + tokens[len(tokens) - (budget - len(head)) :], True


def _peak_memory_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


@dataclass(frozen=True)
class Prompt:
    tokens: list[int]
    truncated: bool


def prepare_prompt(engine: LlamaEngine, params: GenerationParams) -> Prompt:
    """Template, tokenize and fit the prompt, in the caller's thread (so a truncation
    warning points at the caller; tokenizing only reads the vocabulary)."""
    tokens = engine.prompt_tokens(params.prompt, raw=params.raw)
    tokens, truncated = fit_context(tokens, engine.n_ctx, params.max_new_tokens, engine.bos)
    if truncated:
        warnings.warn(
            f"prompt truncated to its last {len(tokens)} tokens to fit n_ctx={engine.n_ctx}",
            KeelWarning,
            stacklevel=4,
        )
    return Prompt(tokens, truncated)


class Sequence:
    """One generation between decode steps: the model's worker prefills it into a slot,
    then alternates decoding its pending token (alone or batched with other sequences)
    and `advance` with the resulting logits, which samples and yields one event."""

    def __init__(
        self,
        engine: LlamaEngine,
        prompt: Prompt,
        params: GenerationParams,
        fingerprint: Fingerprint,
        constraint: ConstraintSession | None = None,
    ) -> None:
        self.engine = engine
        self.prompt = prompt
        self.params = params
        self.fingerprint = fingerprint
        self.constraint = constraint
        self.position = len(prompt.tokens)  # where the pending token goes
        self.pending: int | None = None  # sampled, not yet decoded
        self.steps = 0
        self._utf8 = Utf8Assembler()
        self._stops = StopMatcher(params.stop_strings)
        self._started = perf_counter()
        self._decoding = self._started
        self._stats = {
            "prompt_tokens": len(prompt.tokens),
            "prompt_tps": 0.0,
            "generation_tps": 0.0,
            "time_to_first_token": 0.0,
            "prompt_reused": 0,
        }

    def _event(self, text, token, logprob, finish=None, stop=None, error=None):
        return GenerationResponse(
            text=text,
            token=token,
            logprobs=logprob,
            generation_tokens=self.steps,
            peak_memory=_peak_memory_gb(),
            finish_reason=finish,
            stop_string=stop,
            prompt_truncated=self.prompt.truncated,
            error=error,
            fingerprint=self.fingerprint if finish else None,
            **self._stats,
        )

    def prefill(
        self, slot: int, submitted: float
    ) -> Generator[None, None, GenerationResponse | None]:
        """Feed the prompt into `slot`, pausing between chunks; returns None when ready to
        sample, else the final error event. Time to first token counts from `submitted`."""
        self._started = submitted
        prefill_start = perf_counter()
        try:
            self._stats["prompt_reused"] = yield from self.engine.prefill_steps(
                self.prompt.tokens, slot
            )
        except GenerationError as exc:
            return self.failed(exc)
        self._decoding = perf_counter()
        elapsed = max(self._decoding - prefill_start, 1e-9)
        self._stats["prompt_tps"] = len(self.prompt.tokens) / elapsed
        return None

    def advance(self, logits: np.ndarray) -> GenerationResponse:
        """Sample the next token from `logits` and describe it; unless the event is final,
        `pending` is the token to decode before the next call."""
        params, engine, constraint, stops = self.params, self.engine, self.constraint, self._stops
        token = sample(constraint.restrict(logits) if constraint else logits, self.steps, params)
        logprob = (
            token_logprob(logits, token, params.top_logprobs, engine.token_text)
            if params.logprobs
            else None
        )
        finish = stop = None
        if engine.is_eog(token):
            text = stops.flush()
            finish = "stop"
        else:
            if constraint:
                constraint.advance(token)
            text, stop = stops.feed(self._utf8.feed(engine.piece(token)))
            if stop:
                finish = "stop_string"
            elif constraint and constraint.finished():
                text += stops.flush()
                finish = "stop"
            elif self.steps + 1 == params.max_new_tokens or self.position >= engine.n_ctx:
                text += stops.flush()
                finish = "length"
        self.steps += 1
        now = perf_counter()
        self._stats["generation_tps"] = self.steps / max(now - self._decoding, 1e-9)
        if self.steps == 1:
            self._stats["time_to_first_token"] = now - self._started
        self.pending = None if finish else token
        return self._event(text, token, logprob, finish, stop)

    def decoded(self) -> None:
        """The pending token is in the KV now."""
        self.pending = None
        self.position += 1

    def cancelled(self) -> GenerationResponse:
        return self._event(self._stops.flush(), NO_TOKEN, None, "cancelled")

    def failed(self, exc: Exception) -> GenerationResponse:
        return self._event("", NO_TOKEN, None, "error", error=str(exc))
