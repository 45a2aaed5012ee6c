"""A finished generation as data: stored by the cache, replayed as the same event stream.

Pieces are kept per token, so replaying a hit through generate_iter or stream_generate
yields exactly the pieces the original run yielded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..events import COMPLETED, Fingerprint, FinishReason, GenerationResponse, GenerationResult
from ..sampling import TokenLogprob

FORMAT = 1


@dataclass(frozen=True)
class Record:
    pieces: tuple[str, ...]
    tokens: tuple[int, ...]
    logprobs: tuple[dict[str, Any], ...] | None
    finish_reason: FinishReason
    stop_string: str | None
    prompt_tokens: int
    prompt_truncated: bool
    fingerprint: dict[str, Any]

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def logprobs_dict(self) -> dict[str, Any] | None:
        return None if self.logprobs is None else {"content": list(self.logprobs)}

    def to_json(self) -> bytes:
        data = {
            "format": FORMAT,
            "pieces": self.pieces,
            "tokens": self.tokens,
            "logprobs": self.logprobs,
            "finish_reason": self.finish_reason,
            "stop_string": self.stop_string,
            "prompt_tokens": self.prompt_tokens,
            "prompt_truncated": self.prompt_truncated,
            "fingerprint": self.fingerprint,
        }
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_events(cls, events: Sequence[GenerationResponse]) -> Record:
        """Only for a run that completed (its final event has a reason and fingerprint)."""
        final = events[-1]
        assert final.finish_reason is not None and final.fingerprint is not None
        return cls(
            pieces=tuple(event.text for event in events),
            tokens=tuple(event.token for event in events),
            logprobs=tuple(e.logprobs.to_dict() for e in events if e.logprobs is not None)
            if final.logprobs is not None
            else None,
            finish_reason=final.finish_reason,
            stop_string=final.stop_string,
            prompt_tokens=final.prompt_tokens,
            prompt_truncated=final.prompt_truncated,
            fingerprint=final.fingerprint.details,
        )

    @classmethod
    def from_json(cls, raw: bytes) -> Record:
        data = json.loads(raw)
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown record format {data.get('format')!r}")
        logprobs = data["logprobs"]
        return cls(
            pieces=tuple(data["pieces"]),
            tokens=tuple(data["tokens"]),
            logprobs=None if logprobs is None else tuple(logprobs),
            finish_reason=FinishReason(data["finish_reason"]),
            stop_string=data["stop_string"],
            prompt_tokens=data["prompt_tokens"],
            prompt_truncated=data["prompt_truncated"],
            fingerprint=data["fingerprint"],
        )

    def result(self) -> GenerationResult:
        """The non-streaming view, without building the per-token events."""
        return GenerationResult(
            text=self.text,
            tokens=self.tokens,
            logprobs=None
            if self.logprobs is None
            else tuple(TokenLogprob.from_dict(entry) for entry in self.logprobs),
            finish_reason=self.finish_reason,
            stop_string=self.stop_string,
            prompt_tokens=self.prompt_tokens,
            prompt_truncated=self.prompt_truncated,
            fallback=False,
            fingerprint=Fingerprint.of(self.fingerprint),
            cached=True,
        )

    def replay(self) -> Iterator[GenerationResponse]:
        """The original events again, marked cached (speeds are 0: nothing was computed)."""
        last = len(self.tokens) - 1
        fingerprint = Fingerprint.of(self.fingerprint)
        for index, (piece, token) in enumerate(zip(self.pieces, self.tokens, strict=True)):
            final = index == last
            yield GenerationResponse(
                text=piece,
                token=token,
                logprobs=TokenLogprob.from_dict(self.logprobs[index]) if self.logprobs else None,
                prompt_tokens=self.prompt_tokens,
                prompt_tps=0.0,
                generation_tokens=index + 1,
                generation_tps=0.0,
                peak_memory=0.0,
                finish_reason=self.finish_reason if final else None,
                stop_string=self.stop_string if final else None,
                prompt_truncated=self.prompt_truncated,
                cached=True,
                fingerprint=fingerprint if final else None,
            )


class Recorder:
    """A GenerationHandle check: hands a Record to store() when a cacheable final event
    arrives (before it is released, so a consumer that stops at the final event still
    caches it). Cancelled, errored and stand-in (fallback) runs are never recorded."""

    def __init__(self, store: Callable[[Record], None]) -> None:
        self._store = store

    def __call__(self, events: Sequence[GenerationResponse]) -> None:
        final = events[-1]
        if final.finish_reason in COMPLETED and not final.fallback:
            self._store(Record.from_events(events))
