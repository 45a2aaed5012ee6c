"""The event stream every surface adapts, and the result it folds into."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from importlib.metadata import version
from typing import Any

from .sampling import TokenLogprob


class FinishReason(StrEnum):
    """Why a generation ended. A str, so `reason == "stop"` and JSON output work as is."""

    STOP = "stop"  # the model's end token (or a constraint completed)
    STOP_STRING = "stop_string"
    LENGTH = "length"  # max_new_tokens or the context filled up
    CANCELLED = "cancelled"
    ERROR = "error"
    TOOL_CALLS = "tool_calls"  # the reply is calls to the caller's tools


KEEL_VERSION = version("keel-text")  # in every fingerprint
NO_TOKEN = -1  # token id of a final event that sampled nothing (cancelled, engine error)

# The runs that finished by themselves: cacheable, and "completed normally" on the server.
COMPLETED = frozenset(
    {FinishReason.STOP, FinishReason.STOP_STRING, FinishReason.LENGTH, FinishReason.TOOL_CALLS}
)


@dataclass(frozen=True)
class ToolCall:
    """A call the model made to one of the caller's tools. `arguments` is the JSON text it
    generated (valid against the tool's schema); `args` is that JSON parsed."""

    id: str
    name: str
    arguments: str

    @property
    def args(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.arguments)
        return parsed

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI shape, as assistant messages and the chat route carry it."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True)
class Fingerprint:
    """Everything that decides an output: model sha256, keel and llama.cpp build,
    context settings and all sampling parameters. `digest` is a short stable hash of it."""

    details: dict[str, Any] = field(compare=False, hash=False)
    digest: str = ""

    @property
    def tier(self) -> str:
        """ "exact" where keel decided the output (here, or a keel server whose fingerprint
        was checked); "best-effort" for other remote backends, steady only through the cache."""
        remote = self.details.get("remote")
        return str(remote["tier"]) if isinstance(remote, dict) else "exact"

    @classmethod
    def of(cls, details: dict[str, Any]) -> Fingerprint:
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
    finish_reason: FinishReason | None = None
    stop_string: str | None = None
    prompt_truncated: bool = False
    fallback: bool = False
    error: str | None = None
    cached: bool = False
    fingerprint: Fingerprint | None = None
    tool_calls: tuple[ToolCall, ...] = ()  # the calls whose closing tag this step wrote


@dataclass(frozen=True)
class GenerationResult:
    """A whole run. `value` is the parsed, validated output under a constraint (a JSON
    value, a Pydantic instance, or the matching text), else None."""

    text: str
    tokens: tuple[int, ...]
    logprobs: tuple[TokenLogprob, ...] | None
    finish_reason: FinishReason
    stop_string: str | None
    prompt_tokens: int
    prompt_truncated: bool
    fallback: bool
    fingerprint: Fingerprint | None
    error: str | None = None
    cached: bool = False
    value: Any = None
    tool_calls: tuple[ToolCall, ...] = ()

    def logprobs_dict(self) -> dict[str, Any] | None:
        """The public logprobs shape: one entry per sampled token, in order."""
        if self.logprobs is None:
            return None
        return {"content": [entry.to_dict() for entry in self.logprobs]}


def collect(
    events: list[GenerationResponse], with_logprobs: bool, stopped_early: bool = False
) -> GenerationResult:
    """Fold events into their result (the non-streaming view of the same run). With
    stopped_early the consumer cancelled: the result is what it saw, reason "cancelled"."""
    last = events[-1] if events else None
    if not stopped_early and (last is None or last.finish_reason is None):
        raise RuntimeError("event stream ended without a final event")
    final = last if not stopped_early else None
    return GenerationResult(
        text="".join(event.text for event in events),
        tokens=tuple(event.token for event in events if event.token >= 0),
        logprobs=tuple(e.logprobs for e in events if e.logprobs is not None)
        if with_logprobs
        else None,
        finish_reason=final.finish_reason
        if final and final.finish_reason
        else FinishReason.CANCELLED,
        stop_string=final.stop_string if final else None,
        prompt_tokens=last.prompt_tokens if last else 0,
        prompt_truncated=last.prompt_truncated if last else False,
        fallback=last.fallback if last else False,
        fingerprint=final.fingerprint if final else None,
        error=final.error if final else None,
        cached=last.cached if last else False,
        tool_calls=tuple(call for event in events for call in event.tool_calls),
    )
