"""A remote answer, chunk by chunk, as keel's events: the same stop-string hold-back as a
local run, the answer's shape turned back into keel's text, and a final event whose
fingerprint says what decided it (checked against the request when the server is keel)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from ..detok import StopMatcher
from ..errors import RemoteResponseError
from ..events import NO_TOKEN, Fingerprint, FinishReason, GenerationResponse
from ..params import GenerationParams
from ..sampling import TokenAlternative, TokenLogprob
from ..structured.tags import JSON_CLOSE, JSON_OPEN
from .providers import CHOICE_KEY, Shape
from .target import RemoteTarget

_FINISH = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH}


def _malformed(target: RemoteTarget, what: str) -> RemoteResponseError:
    return RemoteResponseError(
        f"{target.label} at {target.base_url} sent a malformed answer: {what}",
        target.provider.name,
    )


@dataclass
class Chunk:
    """What keel reads from one streamed chunk, whichever endpoint sent it."""

    text: str = ""
    refusal: str = ""  # OpenAI's structured outputs may decline, in place of content
    entries: list[TokenLogprob] = field(default_factory=list)
    finish: str | None = None
    usage: Any = None
    system_fingerprint: str | None = None
    keel: dict[str, Any] | None = None  # a keel server's extension (on its final chunk)


def _alternative(text: Any, logprob: Any) -> TokenAlternative:
    return TokenAlternative(NO_TOKEN, str(text), float(logprob))


def _chat_entries(logprobs: Any) -> list[TokenLogprob]:
    return [
        TokenLogprob(
            NO_TOKEN,
            str(item.token),
            float(item.logprob),
            tuple(_alternative(alt.token, alt.logprob) for alt in item.top_logprobs or ()),
        )
        for item in getattr(logprobs, "content", None) or ()
    ]


def _completion_entries(logprobs: Any) -> list[TokenLogprob]:
    tokens = logprobs.tokens or []
    values = logprobs.token_logprobs or []
    tops = logprobs.top_logprobs or [{}] * len(tokens)
    return [
        TokenLogprob(
            NO_TOKEN,
            str(token),
            float(value),
            tuple(_alternative(text, lp) for text, lp in (top or {}).items()),
        )
        for token, value, top in zip(tokens, values, tops, strict=True)
    ]


def read_chunk(raw: Any, chat: bool) -> Chunk:
    """Raises AttributeError/TypeError/ValueError on a shape no server should send."""
    extension = (raw.model_extra or {}).get("keel")
    chunk = Chunk(
        usage=raw.usage,
        system_fingerprint=getattr(raw, "system_fingerprint", None),
        keel=extension if isinstance(extension, dict) else None,
    )
    if not raw.choices:
        return chunk
    choice = raw.choices[0]
    text = (choice.delta.content if chat else choice.text) or ""
    if not isinstance(text, str):
        raise TypeError(f"content is {type(text).__name__}, not text")
    chunk.text = text
    chunk.refusal = str(getattr(choice.delta, "refusal", None) or "") if chat else ""
    chunk.finish = choice.finish_reason
    if choice.logprobs is not None:
        chunk.entries = (_chat_entries if chat else _completion_entries)(choice.logprobs)
    return chunk


class Answer:
    """Folds chunks into events. Call feed() per chunk, then finish() at the end of the
    stream; `stopped` turns true when a stop string ended the output early."""

    def __init__(
        self,
        target: RemoteTarget,
        params: GenerationParams,
        shape: Shape,
        fingerprint: Fingerprint,
    ) -> None:
        self._target = target
        self._params = params
        self._shape = shape
        self._request = fingerprint
        self._stops = StopMatcher(params.stop_strings)
        self._opening = JSON_OPEN if shape is Shape.JSON else ""
        self._choice_body: list[str] = []
        self._finish: str | None = None
        self._refusal = ""
        self._usage: Any = None
        self._system_fingerprint: str | None = None
        self._keel: dict[str, Any] | None = None
        self._started = perf_counter()
        self._first: float | None = None
        self._count = 0
        self.stopped = False

    def _event(self, text: str, entry: TokenLogprob | None, **final: Any) -> GenerationResponse:
        now = perf_counter()
        if self._first is None:
            self._first = now
        elapsed = now - self._first
        return GenerationResponse(
            text=text,
            token=NO_TOKEN,
            logprobs=entry,
            prompt_tokens=getattr(self._usage, "prompt_tokens", 0) or 0,
            prompt_tps=0.0,
            generation_tokens=self._count,
            generation_tps=self._count / elapsed if elapsed > 0 else 0.0,
            peak_memory=0.0,
            time_to_first_token=self._first - self._started,
            **final,
        )

    def feed(self, chunk: Chunk) -> Iterator[GenerationResponse]:
        self._usage = chunk.usage or self._usage
        self._system_fingerprint = chunk.system_fingerprint or self._system_fingerprint
        self._keel = chunk.keel or self._keel
        self._finish = chunk.finish or self._finish
        self._refusal += chunk.refusal
        if not chunk.text and not chunk.entries:
            return
        self._count += max(1, len(chunk.entries))
        if self._shape is Shape.CHOICE:
            self._choice_body.append(chunk.text)  # shown once whole: it is one value
            text = ""
        else:
            text, self._opening = self._opening + chunk.text, ""
        safe, stop = self._stops.feed(text)
        if stop is not None:
            self.stopped = True
            yield self._final(safe, FinishReason.STOP_STRING, stop)
            return
        entries: list[TokenLogprob | None] = list(chunk.entries) or [None]
        for index, entry in enumerate(entries):
            last = index == len(entries) - 1
            yield self._event(safe if last else "", entry)

    def finish(self) -> GenerationResponse:
        """The final event once the stream ended on its own."""
        reason = _FINISH.get(self._finish or "")
        if self._refusal:
            raise RemoteResponseError(
                f"{self._target.label} declined to answer: {self._refusal[:500]}",
                self._target.provider.name,
            )
        if self._finish is None:
            raise _malformed(self._target, "the stream ended without a finish reason")
        if reason is None:  # content_filter, tool_calls ...: not an answer keel can give
            raise RemoteResponseError(
                f"{self._target.label} ended its answer with finish_reason={self._finish!r}",
                self._target.provider.name,
            )
        stop_string = None
        if self._keel is not None and self._keel.get("finish_reason") == "stop_string":
            reason, stop_string = FinishReason.STOP_STRING, self._keel.get("stop_string")
        tail = self._closing()
        safe, stop = self._stops.feed(tail)
        if stop is not None:
            return self._final(safe, FinishReason.STOP_STRING, stop)
        return self._final(safe + self._stops.flush(), reason, stop_string)

    def _closing(self) -> str:
        if self._shape is Shape.JSON:
            return self._opening + JSON_CLOSE  # the opening too, if the answer was empty
        if self._shape is Shape.CHOICE:
            body = "".join(self._choice_body)
            try:
                value = json.loads(body)[CHOICE_KEY]
            except (ValueError, TypeError, KeyError):
                return body  # the validator refuses it, with the raw text
            return value if isinstance(value, str) else body
        return ""

    def _final(self, text: str, reason: FinishReason, stop: str | None) -> GenerationResponse:
        return self._event(
            text,
            None,
            finish_reason=reason,
            stop_string=stop,
            fingerprint=self._result_fingerprint(),
        )

    def _result_fingerprint(self) -> Fingerprint:
        details = dict(self._request.details)
        details["remote"] = {**details["remote"], "system_fingerprint": self._system_fingerprint}
        if self._target.provider.tier == "exact":
            details["server"] = self._checked_server()
        return Fingerprint.of(details)

    def _checked_server(self) -> dict[str, Any]:
        """A keel server's own fingerprint, checked: it must hash to the digest the server
        reported and hold exactly the sampling parameters that were asked for."""
        server = (self._keel or {}).get("fingerprint")
        if not isinstance(server, dict):
            raise _malformed(self._target, "no keel fingerprint (is it a keel server?)")
        if Fingerprint.of(server).digest != self._system_fingerprint:
            raise _malformed(self._target, "its fingerprint does not match its digest")
        asked = self._params.sampling_dict()
        used = server.get("sampling") or {}
        differing = sorted(k for k in asked.keys() | used.keys() if asked.get(k) != used.get(k))
        if differing:
            raise _malformed(
                self._target, f"it generated with other parameters than asked: {differing}"
            )
        return server
