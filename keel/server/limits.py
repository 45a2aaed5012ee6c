"""Bounds on what one request may ask for beyond its prompt and max_tokens (gateway.py
checks those): stop strings, schemas, regexes, choices, chat messages and tools. keel itself
would accept larger ones; a server shared by many clients refuses them up front with a
400 naming the limit, so no single request can make compiling or matching expensive."""

from __future__ import annotations

import json
from typing import Any

from .errors import RequestError

MAX_STOP_STRINGS = 16
MAX_STOP_CHARS = 256
MAX_SCHEMA_BYTES = 64_000
MAX_SCHEMA_DEPTH = 32
MAX_REGEX_CHARS = 4_000
MAX_CHOICES = 1_024
MAX_CHOICE_CHARS = 1_000
MAX_MESSAGES = 512
MAX_TOOLS = 128


def _refuse(message: str, param: str) -> RequestError:
    return RequestError(400, message, "limit_exceeded", param)


def _depth(value: Any) -> int:
    """Nesting depth of JSON data, without recursion (a hostile schema may be deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        stack.extend((child, level + 1) for child in children)
    return deepest


def _check_stop(stop: Any) -> None:
    strings = [stop] if isinstance(stop, str) else list(stop or ())
    if len(strings) > MAX_STOP_STRINGS:
        raise _refuse(f"{len(strings)} stop strings; at most {MAX_STOP_STRINGS}", "stop")
    longest = max((len(s) for s in strings if isinstance(s, str)), default=0)
    if longest > MAX_STOP_CHARS:
        raise _refuse(f"a stop string has {longest} characters; at most {MAX_STOP_CHARS}", "stop")


def _check_schema(schema: Any, param: str) -> None:
    size = len(json.dumps(schema))
    if size > MAX_SCHEMA_BYTES:
        raise _refuse(f"the schema is {size} bytes of JSON; at most {MAX_SCHEMA_BYTES}", param)
    depth = _depth(schema)
    if depth > MAX_SCHEMA_DEPTH:
        raise _refuse(f"the schema nests {depth} levels; at most {MAX_SCHEMA_DEPTH}", param)


def _check_choices(choices: Any) -> None:
    if not isinstance(choices, list):
        return  # keel reports the type itself
    if len(choices) > MAX_CHOICES:
        raise _refuse(f"{len(choices)} choices; at most {MAX_CHOICES}", "choices")
    longest = max((len(c) for c in choices if isinstance(c, str)), default=0)
    if longest > MAX_CHOICE_CHARS:
        raise _refuse(f"a choice has {longest} characters; at most {MAX_CHOICE_CHARS}", "choices")


def check_limits(options: dict[str, Any]) -> None:
    """Raise RequestError (400, code limit_exceeded) for the first bound a request breaks."""
    _check_stop(options.get("stop"))
    if options.get("schema") is not None:
        _check_schema(options["schema"], "schema")
    response_format = options.get("response_format")
    if isinstance(response_format, dict):
        _check_schema(response_format, "response_format")
    regex = options.get("regex")
    if isinstance(regex, str) and len(regex) > MAX_REGEX_CHARS:
        raise _refuse(f"the regex has {len(regex)} characters; at most {MAX_REGEX_CHARS}", "regex")
    _check_choices(options.get("choices"))
    messages = options.get("messages")
    if isinstance(messages, list) and len(messages) > MAX_MESSAGES:
        raise _refuse(f"{len(messages)} messages; at most {MAX_MESSAGES}", "messages")
    tools = options.get("tools")
    if isinstance(tools, list):
        if len(tools) > MAX_TOOLS:
            raise _refuse(f"{len(tools)} tools; at most {MAX_TOOLS}", "tools")
        _check_schema(tools, "tools")  # every tool's schema is compiled into one grammar
