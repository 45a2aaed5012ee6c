"""The one generation loop. Every surface (generate, generate_iter, stream_generate, CLI,
later the server and cache) adapts the events it yields, so they cannot disagree."""

from __future__ import annotations

import resource
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from time import perf_counter

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


def run(
    engine: LlamaEngine,
    prompt: Prompt,
    params: GenerationParams,
    fingerprint: Fingerprint,
    constraint: ConstraintSession | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    submitted: float | None = None,
) -> Iterator[GenerationResponse]:
    """Yield one event per sampled token; the last one has `finish_reason` set.

    `cancelled` is polled before every step; when it turns true the run ends with a
    final "cancelled" event. Time to first token counts from `submitted` (default: now).
    """
    tokens, truncated = prompt.tokens, prompt.truncated
    n_prompt = len(tokens)
    started = perf_counter() if submitted is None else submitted
    stats = {
        "prompt_tokens": n_prompt,
        "prompt_tps": 0.0,
        "generation_tps": 0.0,
        "time_to_first_token": 0.0,
        "prompt_reused": 0,
    }

    def event(text, token, logprob, step, finish=None, stop=None, error=None):
        return GenerationResponse(
            text=text,
            token=token,
            logprobs=logprob,
            generation_tokens=step,
            peak_memory=_peak_memory_gb(),
            finish_reason=finish,
            stop_string=stop,
            prompt_truncated=truncated,
            error=error,
            fingerprint=fingerprint if finish else None,
            **stats,
        )

    with engine.lock:
        prefill_start = perf_counter()
        try:
            stats["prompt_reused"] = engine.prefill(tokens)
        except GenerationError as exc:
            yield event("", NO_TOKEN, None, 0, "error", error=str(exc))
            return
        decoding = perf_counter()
        stats["prompt_tps"] = n_prompt / max(decoding - prefill_start, 1e-9)
        utf8 = Utf8Assembler()
        stops = StopMatcher(params.stop_strings)
        position = n_prompt
        for step in range(params.max_new_tokens):
            if cancelled():
                yield event(stops.flush(), NO_TOKEN, None, step, "cancelled")
                return
            logits = engine.logits()
            token = sample(constraint.restrict(logits) if constraint else logits, step, params)
            logprob = (
                token_logprob(logits, token, params.top_logprobs, engine.token_text)
                if params.logprobs
                else None
            )
            finish = None
            if engine.is_eog(token):
                text, stop = stops.flush(), None
                finish = "stop"
            else:
                if constraint:
                    constraint.advance(token)
                text, stop = stops.feed(utf8.feed(engine.piece(token)))
                if stop:
                    finish = "stop_string"
                elif constraint and constraint.finished():
                    text += stops.flush()
                    finish = "stop"
                elif step + 1 == params.max_new_tokens or position >= engine.n_ctx:
                    text += stops.flush()
                    finish = "length"
            now = perf_counter()
            stats["generation_tps"] = (step + 1) / max(now - decoding, 1e-9)
            if step == 0:
                stats["time_to_first_token"] = now - started
            yield event(text, token, logprob, step + 1, finish, stop)
            if finish:
                return
            try:
                engine.step(token, position)
            except GenerationError as exc:
                yield event("", NO_TOKEN, None, step + 1, "error", error=str(exc))
                return
            position += 1
