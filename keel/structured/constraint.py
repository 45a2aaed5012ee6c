"""From what the caller passed (schema / regex / choices / response_format) to one
llguidance grammar, checked before any generation starts."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..errors import InvalidConstraintError, InvalidParameterError
from .bounds import bounded_schema
from .tags import JSON_CLOSE, JSON_OPEN

# Small models loop on free whitespace; compact JSON is also fewer tokens.
_JSON_OPTIONS = {"whitespace_flexible": False}
REASONING_CHARS = 400


class ConstraintKind(StrEnum):
    JSON = "json"
    REGEX = "regex"
    CHOICES = "choices"
    TOOLS = "tools"


@dataclass(frozen=True)
class Constraint:
    kind: ConstraintKind
    lark: str  # the whole output's grammar
    key: str  # canonical description, part of the fingerprint
    schema: dict[str, Any] | None = None
    regex: str | None = None
    choices: tuple[str, ...] = ()
    reasoning: bool = False
    tools: tuple[Any, ...] = ()  # the tools a call may name (tools.Tool)
    text_allowed: bool = False  # tools under "auto": the reply may be text instead of calls
    # Parses and validates JSON into the caller's Python type (built once, with the schema).
    adapter: Any = field(default=None, compare=False)


def closed_objects(node: Any) -> Any:
    """Objects without `additionalProperties` get `false`: a Python type has exactly its
    declared fields, and small models otherwise invent keys until the token limit."""
    if isinstance(node, dict):
        node = {key: closed_objects(value) for key, value in node.items()}
        if node.get("type") == "object" and "properties" in node:
            node.setdefault("additionalProperties", False)
        return node
    if isinstance(node, list):
        return [closed_objects(item) for item in node]
    return node


def _schema_of(schema: Any) -> tuple[dict[str, Any], Any]:
    """A JSON Schema dict as is; a Pydantic model or any Python type via TypeAdapter."""
    if isinstance(schema, dict):
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            raise InvalidConstraintError(f"invalid JSON Schema: {exc.message}") from exc
        return schema, None
    from pydantic import TypeAdapter
    from pydantic.errors import PydanticUserError

    try:
        adapter = TypeAdapter(schema)
        return closed_objects(adapter.json_schema()), adapter
    except (PydanticUserError, TypeError) as exc:
        raise InvalidParameterError(
            f"schema must be a JSON Schema dict, a Pydantic model or a Python type; "
            f"{schema!r} is none of these ({exc})"
        ) from exc


def _from_response_format(response_format: Any) -> dict[str, Any]:
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        body = response_format.get("json_schema")
        schema = body.get("schema") if isinstance(body, dict) else None
        if isinstance(schema, dict):
            return schema
    raise InvalidParameterError(
        'response_format must be {"type": "json_object"} or {"type": "json_schema", '
        f'"json_schema": {{"schema": {{...}}}}}}; got {response_format!r}'
    )


def _json_constraint(schema: Any, reasoning: bool) -> Constraint:
    schema_dict, adapter = _schema_of(schema)
    compiled, _ = bounded_schema(schema_dict)  # validation still uses schema_dict
    embedded = {**compiled, "x-guidance": {**compiled.get("x-guidance", {}), **_JSON_OPTIONS}}
    # One bounded paragraph of reasoning, then a newline: bounded so that a model that
    # never stops talking is still led to the answer within the token budget.
    preamble = f'/[^<\\n]{{0,{REASONING_CHARS}}}/ "\\n" ' if reasoning else ""
    lark = (
        f"start: {preamble}{json.dumps(JSON_OPEN)} answer {json.dumps(JSON_CLOSE)}\n"
        f"answer: %json {json.dumps(embedded)}\n"
    )
    key = json.dumps(
        {"json_schema": schema_dict, "compiled": compiled, "reasoning": reasoning}, sort_keys=True
    )
    return Constraint(
        ConstraintKind.JSON, lark, key, schema=schema_dict, reasoning=reasoning, adapter=adapter
    )


def _regex_constraint(regex: Any) -> Constraint:
    if not isinstance(regex, str) or regex == "":
        raise InvalidParameterError(f"regex must be a non-empty str, got {regex!r}")
    try:
        re.compile(regex)
    except re.error as exc:
        raise InvalidConstraintError(f"invalid regex {regex!r}: {exc}") from exc
    from llguidance import regex_to_lark

    # ASCII digits for \d: a subset of Python's Unicode \d, so re.fullmatch still holds,
    # and small models stop wandering into other scripts' digits.
    lark = f"start: /{regex_to_lark(regex, 'd')}/\n"
    return Constraint(ConstraintKind.REGEX, lark, json.dumps({"regex": regex}), regex=regex)


def _choices_constraint(choices: Any) -> Constraint:
    if isinstance(choices, str) or not isinstance(choices, Sequence) or not choices:
        raise InvalidParameterError(f"choices must be a non-empty list of str, got {choices!r}")
    items = tuple(dict.fromkeys(choices))
    for item in items:
        if not isinstance(item, str) or item == "":
            raise InvalidParameterError(f"every choice must be a non-empty str, got {item!r}")
    lark = "start: " + " | ".join(json.dumps(item) for item in items) + "\n"
    return Constraint(ConstraintKind.CHOICES, lark, json.dumps({"choices": items}), choices=items)


def build_constraint(
    schema: Any = None,
    regex: Any = None,
    choices: Any = None,
    response_format: Any = None,
    reasoning: bool = False,
) -> Constraint | None:
    given = [
        name
        for name, value in (
            ("schema", schema),
            ("regex", regex),
            ("choices", choices),
            ("response_format", response_format),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise InvalidParameterError(
            f"give only one of schema, regex, choices, response_format; got {given}"
        )
    if not isinstance(reasoning, bool):
        raise InvalidParameterError(f"reasoning must be bool, got {reasoning!r}")
    if reasoning and given not in (["schema"], ["response_format"]):
        raise InvalidParameterError("reasoning=True needs a schema or response_format")
    if schema is not None:
        return _json_constraint(schema, reasoning)
    if response_format is not None:
        return _json_constraint(_from_response_format(response_format), reasoning)
    if regex is not None:
        return _regex_constraint(regex)
    if choices is not None:
        return _choices_constraint(choices)
    return None
