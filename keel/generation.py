"""One generation as a state machine the model's worker steps. Every surface (generate,
generate_iter, stream_generate, CLI, server, cache) adapts the events it yields, so they
cannot disagree."""

from __future__ import annotations

import resource
from collections.abc import Generator
from time import perf_counter
from typing import Any

import numpy as np

from .detok import StopMatcher, Utf8Assembler
from .engine.context import Entry
from .engine.llama import LlamaEngine
from .errors import GenerationError
from .events import NO_TOKEN, Fingerprint, FinishReason, GenerationResponse
from .params import GenerationParams
from .penalties import Penalties
from .prompt import Prompt
from .sampling import TokenLogprob, sample, token_logprob
from .structured.session import ConstraintSession

# Within this many tokens of the budget's end, a constrained generation checks each token
# against the shortest completion (a walk on the grammar, no model work).
CLOSING_WINDOW = 64


def _peak_memory_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


class Generation:
    """One generation between decode steps: the model's worker prefills it into a slot,
    then alternates decoding its pending token (alone or batched with other generations)
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
        self._penalties = Penalties(params)
        self._started = perf_counter()
        self._decoding = self._started
        self._stats: dict[str, Any] = {
            "prompt_tokens": len(prompt.tokens),
            "prompt_tps": 0.0,
            "generation_tps": 0.0,
            "time_to_first_token": 0.0,
            "prompt_reused": 0,
        }

    def _event(
        self,
        text: str,
        token: int,
        logprob: TokenLogprob | None,
        finish: FinishReason | None = None,
        stop: str | None = None,
        error: str | None = None,
    ) -> GenerationResponse:
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
        self, slot: int, submitted: float, started: float | None = None
    ) -> Generator[None, None, GenerationResponse | None]:
        """Feed the prompt into `slot`, pausing between chunks; returns None when ready to
        sample, else the final error event. Time to first token counts from `submitted`;
        the prefill's own time from `started` if it began before this is first advanced
        (prefilled together with others: Slots.prefill_together)."""
        self._started = submitted
        prefill_start = perf_counter() if started is None else started
        try:
            self._stats["prompt_reused"] = yield from self.engine.slots.prefill_steps(
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
        params, vocab, constraint, stops = (
            self.params,
            self.engine.vocab,
            self.constraint,
            self._stops,
        )
        token = self._within_budget(sample(self._scores(logits), self.steps, params))
        if self._penalties.active:
            self._penalties.accept(token)
        logprob = (
            token_logprob(logits, token, params.top_logprobs, vocab.token_text)
            if params.logprobs
            else None
        )
        finish = stop = None
        if vocab.is_eog(token):
            text = stops.flush()
            finish = FinishReason.STOP
        else:
            if constraint:
                constraint.advance(token)
            text, stop = stops.feed(self._utf8.feed(vocab.piece(token)))
            if stop:
                finish = FinishReason.STOP_STRING
            elif constraint and constraint.finished():
                text += stops.flush()
                finish = FinishReason.STOP
            elif self.steps + 1 == params.max_new_tokens or self.position >= self.engine.n_ctx:
                text += stops.flush()
                finish = FinishReason.LENGTH
        self.steps += 1
        now = perf_counter()
        self._stats["generation_tps"] = self.steps / max(now - self._decoding, 1e-9)
        if self.steps == 1:
            self._stats["time_to_first_token"] = now - self._started
        self.pending = None if finish else token
        return self._event(text, token, logprob, finish, stop)

    def _within_budget(self, token: int) -> int:
        """Under a constraint, near the end of the budget (max_new_tokens, or the context),
        take the sampled token only if the output can still be completed after it within
        what is left; otherwise the first token of the shortest completion. Both depend
        only on the grammar state and the budget, so this is as deterministic as sampling."""
        constraint = self.constraint
        if constraint is None or self.engine.vocab.is_eog(token):
            return token
        left = min(self.params.max_new_tokens - self.steps, self.engine.n_ctx - self.position + 1)
        if left > CLOSING_WINDOW:
            return token
        if constraint.completion_after(token, left - 1) is not None:
            return token
        closing = constraint.completion(CLOSING_WINDOW)
        if closing == []:  # the output is complete already: end it here
            return self.engine.vocab.eos
        return closing[0] if closing else token

    def _scores(self, logits: np.ndarray) -> np.ndarray:
        """What the sampler chooses from: the logits after the repetition controls and the
        constraint mask. Should the n-gram ban (the one control that forbids tokens) leave no
        token the constraint allows, the constraint wins (the output must stay valid)."""
        penalties, constraint = self._penalties, self.constraint
        scores = penalties.apply(logits) if penalties.active else logits
        if constraint is None:
            return scores
        allowed = constraint.restrict(scores)
        if penalties.bans and not np.isfinite(allowed).any():
            allowed = constraint.restrict(logits)
        return allowed

    def entry(self, slot: int) -> Entry:
        """The batch row that decodes the pending token in `slot`."""
        if self.pending is None:
            raise GenerationError("no token is waiting to be decoded")
        return self.pending, self.position, slot

    def decoded(self) -> None:
        """The pending token is in the KV now."""
        self.pending = None
        self.position += 1

    def cancelled(self) -> GenerationResponse:
        return self._event(self._stops.flush(), NO_TOKEN, None, FinishReason.CANCELLED)

    def failed(self, exc: BaseException) -> GenerationResponse:
        return self._event("", NO_TOKEN, None, FinishReason.ERROR, error=str(exc))
