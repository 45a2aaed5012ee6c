"""Structured output: JSON Schema, Pydantic and Python types, regexes and choice lists,
enforced token by token with llguidance masks and validated before they are returned."""

from .constraint import Constraint, ConstraintKind, build_constraint
from .session import ConstraintSession, open_session
from .tags import JsonTagFilter, json_body
from .tools import (
    CALL_OPEN,
    CallReader,
    Tool,
    call_text,
    plain_messages,
    read_calls,
    tool_constraint,
    tools_from,
    tools_prompt,
    with_tools_prompt,
)
from .validate import OutputValidator, validate_output

__all__ = [
    "CALL_OPEN",
    "CallReader",
    "Constraint",
    "ConstraintKind",
    "ConstraintSession",
    "JsonTagFilter",
    "OutputValidator",
    "Tool",
    "build_constraint",
    "call_text",
    "json_body",
    "open_session",
    "plain_messages",
    "read_calls",
    "tool_constraint",
    "tools_from",
    "tools_prompt",
    "validate_output",
    "with_tools_prompt",
]
