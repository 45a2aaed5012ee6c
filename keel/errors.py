"""Typed errors and warnings: every failure a caller can fix names what was asked and how
to fix it, and every warning points at the caller's line, not at keel's."""

from __future__ import annotations

import os
import sys
import warnings


class KeelError(Exception):
    """Base class for keel's own errors."""


class InvalidParameterError(KeelError, ValueError):
    """A generation parameter is out of range or of the wrong type.

    Subclasses ValueError so callers that validate input generically still catch it.
    """


class ModelNotAvailableError(KeelError):
    """No model could be found or loaded for the request; the message says how to fix it."""


class ModelLoadError(ModelNotAvailableError):
    """A model file exists but llama.cpp could not load it (corrupt or unsupported GGUF)."""


class GenerationError(KeelError):
    """The engine failed during prefill or decode."""


class UnsafeModeRequiredError(InvalidParameterError):
    """A best-effort remote backend was asked for without opting in to its weaker
    guarantee (unsafe_mode=True or KEEL_UNSAFE_MODE=1)."""


class RemoteError(KeelError):
    """A remote backend failed. `provider` and `status` (HTTP status, when there was a
    response) say where; the message never contains the API key."""

    def __init__(self, message: str, provider: str, status: int | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.status = status


class RemoteAuthError(RemoteError):
    """No API key was configured, or the server refused it (401/403)."""


class RemoteModelNotFoundError(RemoteError):
    """The server does not know the model (404)."""


class RemoteRateLimitError(RemoteError):
    """Still rate limited (429) after the configured retries; `retry_after` is the
    server's hint in seconds, when it gave one."""

    def __init__(self, message: str, provider: str, retry_after: float | None) -> None:
        super().__init__(message, provider, 429)
        self.retry_after = retry_after


class RemoteTimeoutError(RemoteError):
    """Connecting, or waiting for the next piece of the answer, took longer than allowed."""


class RemoteUnavailableError(RemoteError):
    """The server could not be reached (connection refused, DNS) or failed (5xx)."""


class RemoteResponseError(RemoteError):
    """The server answered with something keel cannot use: a malformed body, a stream
    that ended without a finish reason, a rejected request (4xx), or (for keel servers)
    a fingerprint that does not match what was asked for."""


class KeelWarning(UserWarning):
    """Something was adjusted on the caller's behalf (e.g. a truncated prompt)."""


class UnknownModelError(InvalidParameterError):
    """The model name or size is not one keel knows (a typo never falls back silently)."""


class StructuredOutputError(KeelError):
    """A constraint could not be compiled, or the output does not satisfy it (e.g. the
    token limit cut the JSON short). `partial_text` holds what was generated."""

    def __init__(self, message: str, partial_text: str = "") -> None:
        super().__init__(message)
        self.partial_text = partial_text


class InvalidConstraintError(StructuredOutputError, InvalidParameterError):
    """The schema, regex or choice list itself is invalid (the caller's mistake, found
    before generating), as opposed to output that could not be finished."""


class QueueFullError(KeelError):
    """Too many requests are waiting for this model; try again after `retry_after` s."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MissingExtraError(KeelError, ImportError):
    """A feature needs an optional part of keel that is not installed; the message names
    the pip command that installs it."""

    def __init__(self, feature: str, extra: str) -> None:
        super().__init__(f"{feature} needs keel-text[{extra}]: pip install 'keel-text[{extra}]'")
        self.extra = extra


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_caller(message: str, category: type[Warning] = KeelWarning) -> None:
    """Warn at the first frame outside keel, so the warning names the caller's line, and
    identical warnings from different call sites each show (the default filter shows a
    warning once per location)."""
    frame = sys._getframe(1)
    level = 2
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
