"""The event stream every surface adapts, and the result it folds into."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from .sampling import TokenLogprob


@dataclass(frozen=True)
class Fingerprint:
    """Everything that decides an output: model sha256, keel and llama.cpp build,
    context settings and all sampling parameters. `digest` is a short stable hash of it."""

    details: dict = field(compare=False, hash=False)
    digest: str = ""

    @classmethod
    def of(cls, details: dict) -> Fingerprint:
        canonical = json.dumps(details, sort_keys=True, separators=(",", ":"))
        return cls(details, "fp_" + hashlib.sha256(canonical.encode()).hexdigest()[:24])


@dataclass(frozen=True)
class GenerationResponse:
    """One step of generation: one sampled token and the text it made final.

    `text` may be empty while bytes of a split character or a possible stop-string prefix
    are held back; joining all `text` fields always gives the full output.
    """

    text: str
    token: int
    logprobs: TokenLogprob | None
    prompt_tokens: int
    prompt_tps: float
    generation_tokens: int
    generation_tps: float
    peak_memory: float
    time_to_first_token: float = 0.0  # seconds from submission; 0 until the first token
    prompt_reused: int = 0  # prompt tokens whose KV was reused from an earlier prefill
    finish_reason: str | None = None
    stop_string: str | None = None
    prompt_truncated: bool = False
    fallback: bool = False
    error: str | None = None
    cached: bool = False
    fingerprint: Fingerprint | None = None


@dataclass(frozen=True)
class GenerationResult:
    text: str
    tokens: tuple[int, ...]
    logprobs: tuple[TokenLogprob, ...] | None
    finish_reason: str
    stop_string: str | None
    prompt_tokens: int
    prompt_truncated: bool
    fallback: bool
    fingerprint: Fingerprint | None
    error: str | None = None
    cached: bool = False

    def logprobs_dict(self) -> dict | None:
        """The public logprobs shape: one entry per sampled token, in order."""
        if self.logprobs is None:
            return None
        return {"content": [entry.to_dict() for entry in self.logprobs]}


def collect(events, with_logprobs: bool) -> GenerationResult:
    """Fold an event stream into its result (the non-streaming view of the same run)."""
    pieces: list[str] = []
    tokens: list[int] = []
    logprobs: list[TokenLogprob] = []
    last = None
    for event in events:
        pieces.append(event.text)
        if event.token >= 0:
            tokens.append(event.token)
        if event.logprobs is not None:
            logprobs.append(event.logprobs)
        last = event
    if last is None or last.finish_reason is None:
        raise RuntimeError("event stream ended without a final event")
    return GenerationResult(
        text="".join(pieces),
        tokens=tuple(tokens),
        logprobs=tuple(logprobs) if with_logprobs else None,
        finish_reason=last.finish_reason,
        stop_string=last.stop_string,
        prompt_tokens=last.prompt_tokens,
        prompt_truncated=last.prompt_truncated,
        fallback=last.fallback,
        fingerprint=last.fingerprint,
        error=last.error,
    )


def partial_result(events: list[GenerationResponse], reason: str) -> GenerationResult:
    """What a consumer saw before it stopped: its text, tokens and logprobs."""
    last = events[-1] if events else None
    return GenerationResult(
        text="".join(event.text for event in events),
        tokens=tuple(event.token for event in events if event.token >= 0),
        logprobs=tuple(e.logprobs for e in events if e.logprobs is not None) or None,
        finish_reason=reason,
        stop_string=None,
        prompt_tokens=last.prompt_tokens if last else 0,
        prompt_truncated=last.prompt_truncated if last else False,
        fallback=last.fallback if last else False,
        fingerprint=None,
        cached=last.cached if last else False,
    )
