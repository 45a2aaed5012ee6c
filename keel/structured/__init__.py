"""Structured output: JSON Schema, Pydantic and Python types, regexes and choice lists,
enforced token by token with llguidance masks and validated before they are returned."""

from .constraint import Constraint, build_constraint
from .session import ConstraintSession, open_session
from .validate import OutputValidator, validate_output

__all__ = [
    "Constraint",
    "ConstraintSession",
    "OutputValidator",
    "build_constraint",
    "open_session",
    "validate_output",
]
