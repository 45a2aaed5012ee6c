"""Checking a finished output against its constraint, once; invalid output is never
returned, and the parsed value travels on with the result."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from ..errors import StructuredOutputError
from ..events import COMPLETED, FinishReason, GenerationResponse, ToolCall
from .constraint import Constraint, ConstraintKind
from .tags import json_body
from .tools import read_calls


def _parse_json(constraint: Constraint, text: str) -> Any:
    body = json_body(text)
    if constraint.adapter is not None:
        return constraint.adapter.validate_json(body)
    from jsonschema import Draft202012Validator, FormatChecker

    value = json.loads(body)
    Draft202012Validator(constraint.schema, format_checker=FormatChecker()).validate(value)
    return value


def _checked_calls(constraint: Constraint, text: str) -> list[ToolCall] | None:
    """The reply's calls, each checked against its tool's schema; None for a text reply
    (only "auto" allows one)."""
    from jsonschema import Draft202012Validator

    calls = read_calls(text)
    if not calls:
        if not constraint.text_allowed:
            raise ValueError("the reply holds no tool call")
        return None
    schemas = {tool.name: tool.parameters for tool in constraint.tools}
    for call in calls:
        if call.name not in schemas:
            raise ValueError(f"call to unknown tool {call.name!r}")
        Draft202012Validator(schemas[call.name]).validate(call.args)
    return calls


def validate_output(constraint: Constraint, text: str, finish_reason: FinishReason) -> Any:
    """Return the parsed value (JSON value, Pydantic instance, the text itself, or the
    tool calls)."""
    try:
        if constraint.kind is ConstraintKind.JSON:
            return _parse_json(constraint, text)
        if constraint.kind is ConstraintKind.TOOLS:
            return _checked_calls(constraint, text)
        if constraint.kind is ConstraintKind.REGEX:
            assert constraint.regex is not None
            if re.fullmatch(constraint.regex, text) is None:
                raise ValueError(f"output does not match {constraint.regex!r}")
            return text
        if text not in constraint.choices:
            raise ValueError("output is not one of the choices")
        return text
    except Exception as exc:  # jsonschema, pydantic and json errors have no common base
        hint = (
            " (max_new_tokens reached: raise it; small models can repeat digits or letters "
            "forever where a schema leaves length open, so bound strings with maxLength and "
            "numbers with multipleOf/maximum)"
            if finish_reason == FinishReason.LENGTH
            else ""
        )
        raise StructuredOutputError(
            f"{constraint.kind} output is invalid{hint}: {exc}", partial_text=text
        ) from exc


class OutputValidator:
    """A GenerationHandle check: validates the whole output at a final event that
    completed normally, keeping the parsed value, or raises StructuredOutputError so an
    invalid final event is never released."""

    def __init__(self, constraint: Constraint) -> None:
        self._constraint = constraint
        self.value: Any = None

    def __call__(self, events: Sequence[GenerationResponse]) -> None:
        reason = events[-1].finish_reason
        if reason in COMPLETED:
            self.check("".join(e.text for e in events), reason)

    def check(self, text: str, reason: FinishReason) -> None:
        self.value = validate_output(self._constraint, text, reason)
