"""Structured output: JSON Schema, Pydantic and Python types, regexes and choice lists,
enforced token by token with llguidance masks and validated before they are returned."""

from .constraint import Constraint, ConstraintKind, build_constraint
from .session import ConstraintSession, open_session
from .tags import JsonTagFilter, json_body
from .validate import OutputValidator, validate_output

__all__ = [
    "Constraint",
    "ConstraintKind",
    "ConstraintSession",
    "JsonTagFilter",
    "OutputValidator",
    "build_constraint",
    "json_body",
    "open_session",
    "validate_output",
]
