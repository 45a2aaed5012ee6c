"""Checking a finished output against its constraint; invalid output is never returned."""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import StructuredOutputError
from .constraint import JSON_CLOSE, JSON_OPEN, Constraint


def json_body(text: str) -> str:
    """The JSON between the tags (after any reasoning preamble)."""
    start = text.find(JSON_OPEN)
    if start < 0 or not text.endswith(JSON_CLOSE):
        raise ValueError(f"output is not wrapped in {JSON_OPEN}...{JSON_CLOSE}")
    return text[start + len(JSON_OPEN) : len(text) - len(JSON_CLOSE)]


def _parse_json(constraint: Constraint, text: str) -> Any:
    body = json_body(text)
    if constraint.python_type is not None:
        from pydantic import TypeAdapter

        return TypeAdapter(constraint.python_type).validate_json(body)
    from jsonschema import Draft202012Validator, FormatChecker

    value = json.loads(body)
    Draft202012Validator(constraint.schema, format_checker=FormatChecker()).validate(value)
    return value


def validate_output(constraint: Constraint, text: str, finish_reason: str) -> Any:
    """Return the parsed value (JSON value, Pydantic instance, or the text itself)."""
    try:
        if constraint.kind == "json":
            return _parse_json(constraint, text)
        if constraint.kind == "regex":
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
            if finish_reason == "length"
            else ""
        )
        raise StructuredOutputError(
            f"{constraint.kind} output is invalid{hint}: {exc}", partial_text=text
        ) from exc


class OutputValidator:
    """A GenerationHandle check: raises StructuredOutputError at the final event if the
    whole output is invalid, so an invalid final event is never released."""

    def __init__(self, constraint: Constraint) -> None:
        self._constraint = constraint

    def __call__(self, events) -> None:
        reason = events[-1].finish_reason
        if reason not in (None, "error", "cancelled"):
            validate_output(self._constraint, "".join(e.text for e in events), reason)
