"""Remote providers: where each one lives, which key it takes, what it can be asked for,
and how it enforces structured output. A provider is one small class; api.py never sees
a provider's quirks, only a Request to send and the Shape its answer comes back in.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from ..errors import InvalidParameterError
from ..params import EOS_MARKER, GenerationParams, default
from ..structured import Constraint, ConstraintKind

Tier = Literal["exact", "best-effort"]

# keel's sampling controls that the OpenAI API has no word for, with the value that means
# "off": sent only to providers that take them, refused (not dropped) for the others.
_KEEL_ONLY = {
    "top_k": default("top_k"),
    "min_p": default("min_p"),
    "repetition_penalty": 1.0,
    "repetition_context_size": default("repetition_context_size"),
    "no_repeat_ngram_size": default("no_repeat_ngram_size"),
}
CHOICE_KEY = "choice"  # providers with only JSON Schema answer choices as {"choice": ...}


class Shape(Enum):
    """How a provider's answer becomes keel's text."""

    AS_IS = "as is"  # the content is the output
    JSON = "json"  # bare JSON: keel wraps it in <json-output> tags, as locally
    CHOICE = "choice"  # {"choice": "..."}: keel takes the string out


@dataclass(frozen=True)
class Request:
    """One call: the endpoint, the fields the openai package knows, the ones it does not
    (sent as extra_body), and how to read the answer."""

    chat: bool  # /chat/completions, else /completions (raw prompts)
    fields: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    shape: Shape = Shape.AS_IS

    def described(self) -> dict[str, Any]:
        """Everything sent but the input itself: part of the fingerprint and cache key."""
        sent = {key: value for key, value in self.fields.items() if key not in _INPUTS}
        return {
            "endpoint": "chat" if self.chat else "completions",
            **sent,
            **self.extra,
            "shape": self.shape.value,
        }


_INPUTS = ("messages", "prompt")


@dataclass(frozen=True)
class Structured:
    """A provider's way to ask for a constraint: request fields, extra_body fields, and
    the shape the answer comes back in."""

    shape: Shape
    fields: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def _strict_compatible(node: Any) -> bool:
    """OpenAI's strict mode takes only closed objects whose properties are all required."""
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            closed = node.get("additionalProperties") is False
            if not closed or set(node.get("required", ())) != set(node["properties"]):
                return False
        return all(_strict_compatible(value) for value in node.values())
    if isinstance(node, list):
        return all(_strict_compatible(item) for item in node)
    return True


@dataclass(frozen=True)
class Provider:
    """An OpenAI-style API: keel's own parameters are refused unless listed in `takes`."""

    name: str
    default_url: str | None
    url_variable: str
    key_variable: str | None
    tier: Tier = "best-effort"
    takes: frozenset[str] = frozenset()  # keel-only controls the server understands
    max_stops: int | None = 4  # the API's limit; keel still cuts at every stop string

    def needs_key(self, base_url: str) -> bool:
        """The provider's own service always does; a server elsewhere may not."""
        return self.key_variable is not None and base_url == self.default_url

    def request(
        self, model: str, params: GenerationParams, constraint: Constraint | None
    ) -> Request:
        fields: dict[str, Any] = {"model": model, **self._input(params)}
        fields.update(self.sampling(model, params))
        stops = self.stop_strings(params)
        if stops and (self.max_stops is None or len(stops) <= self.max_stops):
            fields["stop"] = list(stops)
        extra = self._keel_only(params)
        fields.update(self._logprobs(params))
        if constraint is None:
            return Request(not params.raw, fields, extra)
        if constraint.reasoning and self.tier != "exact":
            raise InvalidParameterError(
                f"{self.name}: has no reasoning preamble; use reasoning=False with remote "
                "models other than keel:"
            )
        structured = self.structured(constraint)
        fields.update(structured.fields)
        extra.update(structured.extra)
        return Request(not params.raw, fields, extra, structured.shape)

    @staticmethod
    def _input(params: GenerationParams) -> dict[str, Any]:
        if params.raw:
            return {"prompt": params.prompt}
        if params.messages:
            return {"messages": [{"role": r, "content": c} for r, c in params.messages]}
        return {"messages": [{"role": "user", "content": params.prompt}]}

    def sampling(self, model: str, params: GenerationParams) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": params.seed,
        }
        if params.presence_penalty:
            fields["presence_penalty"] = params.presence_penalty
        if params.frequency_penalty:
            fields["frequency_penalty"] = params.frequency_penalty
        return fields

    def stop_strings(self, params: GenerationParams) -> tuple[str, ...]:
        return params.stop_strings

    def _keel_only(self, params: GenerationParams) -> dict[str, Any]:
        extra = {}
        for name, off in _KEEL_ONLY.items():
            value = getattr(params, name)
            if value == off:
                continue
            if name not in self.takes:
                servers = "vllm:, llamacpp: or keel:" if name in ("top_k", "min_p") else "keel:"
                raise InvalidParameterError(
                    f"{self.name}: servers take no {name}; leave it at {off!r}, or use "
                    f"{servers} for a server that does"
                )
            extra[name] = value
        return extra

    @staticmethod
    def _logprobs(params: GenerationParams) -> dict[str, Any]:
        if not params.logprobs:
            return {}
        if params.raw:
            return {"logprobs": params.top_logprobs}
        return {"logprobs": True, "top_logprobs": params.top_logprobs}

    def structured(self, constraint: Constraint) -> Structured:
        """OpenAI's `json_schema` response format; choices as an enum inside it; a regex
        has no native form, so it is only checked on the way back."""
        if constraint.kind is ConstraintKind.REGEX:
            return Structured(Shape.AS_IS)
        if constraint.kind is ConstraintKind.CHOICES:
            schema: dict[str, Any] = {
                "type": "object",
                "properties": {CHOICE_KEY: {"type": "string", "enum": list(constraint.choices)}},
                "required": [CHOICE_KEY],
                "additionalProperties": False,
            }
            shape = Shape.CHOICE
        else:
            assert constraint.schema is not None
            schema, shape = constraint.schema, Shape.JSON
        response_format = {
            "type": "json_schema",
            "json_schema": {
                "name": "output",
                "schema": schema,
                "strict": _strict_compatible(schema),
            },
        }
        return Structured(shape, fields={"response_format": response_format})


_REASONING_MODEL = re.compile(r"(o\d|gpt-5)")


@dataclass(frozen=True)
class OpenAI(Provider):
    def sampling(self, model: str, params: GenerationParams) -> dict[str, Any]:
        """OpenAI's reasoning models (o1, o3, o4-mini, gpt-5 ...) refuse temperature and
        top_p, and count their hidden reasoning in max_completion_tokens."""
        fields = super().sampling(model, params)
        if self.name == "openai" and _REASONING_MODEL.match(model.rpartition("/")[2]):
            del fields["temperature"], fields["top_p"]
            fields["max_completion_tokens"] = fields.pop("max_tokens")
        return fields


def _gbnf_literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # GBNF literals escape like JSON strings


@dataclass(frozen=True)
class LlamaCpp(Provider):
    """llama.cpp's server and llama-cpp-python's: a JSON Schema under `json_object`, and
    choices as a GBNF grammar."""

    def structured(self, constraint: Constraint) -> Structured:
        if constraint.kind is ConstraintKind.JSON:
            response_format = {"type": "json_object", "schema": constraint.schema}
            return Structured(Shape.JSON, fields={"response_format": response_format})
        if constraint.kind is ConstraintKind.CHOICES:
            grammar = "root ::= " + " | ".join(_gbnf_literal(c) for c in constraint.choices)
            return Structured(Shape.AS_IS, extra={"grammar": grammar})
        return Structured(Shape.AS_IS)


@dataclass(frozen=True)
class Vllm(Provider):
    """vLLM's `structured_outputs` (json, regex, choice), which keel's server takes too."""

    def structured(self, constraint: Constraint) -> Structured:
        if constraint.kind is ConstraintKind.JSON:
            outputs: dict[str, Any] = {"json": constraint.schema}
        elif constraint.kind is ConstraintKind.REGEX:
            outputs = {"regex": constraint.regex}
        else:
            outputs = {"choice": list(constraint.choices)}
        return Structured(self._json_shape(constraint), extra={"structured_outputs": outputs})

    def _json_shape(self, constraint: Constraint) -> Shape:
        return Shape.JSON if constraint.kind is ConstraintKind.JSON else Shape.AS_IS


@dataclass(frozen=True)
class Keel(Vllm):
    """Another keel server: every parameter goes across, the answer keeps its
    <json-output> tags (and any reasoning line), and the server's fingerprint is checked."""

    def stop_strings(self, params: GenerationParams) -> tuple[str, ...]:
        return params.stop  # eos_string travels as itself

    def _keel_only(self, params: GenerationParams) -> dict[str, Any]:
        extra = {name: getattr(params, name) for name in _KEEL_ONLY}
        if params.eos_string != EOS_MARKER:
            extra["eos_string"] = params.eos_string
        return extra

    def structured(self, constraint: Constraint) -> Structured:
        structured = super().structured(constraint)
        if constraint.reasoning:
            structured.extra["reasoning"] = True
        return structured

    def _json_shape(self, constraint: Constraint) -> Shape:
        return Shape.AS_IS


_SAMPLERS = frozenset({"top_k", "min_p", "repetition_penalty"})

PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        OpenAI("openai", "https://api.openai.com/v1", "OPENAI_BASE_URL", "OPENAI_API_KEY"),
        OpenAI(
            "openrouter",
            "https://openrouter.ai/api/v1",
            "OPENROUTER_BASE_URL",
            "OPENROUTER_API_KEY",
        ),
        OpenAI("cerebras", "https://api.cerebras.ai/v1", "CEREBRAS_BASE_URL", "CEREBRAS_API_KEY"),
        Vllm("vllm", None, "VLLM_BASE_URL", "VLLM_API_KEY", takes=_SAMPLERS, max_stops=None),
        LlamaCpp(
            "llamacpp",
            None,
            "LLAMACPP_BASE_URL",
            "LLAMACPP_API_KEY",
            takes=_SAMPLERS,
            max_stops=None,
        ),
        Keel(
            "keel",
            None,
            "KEEL_REMOTE_URL",
            "KEEL_REMOTE_API_KEY",
            tier="exact",
            max_stops=None,
        ),
    )
}
