"""Every failure as a JSON body in the OpenAI error shape, with the status it deserves:
what the client can fix is 4xx, a full queue is 429 with Retry-After, and only a fault of
keel's own is 500."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from ..errors import (
    GenerationError,
    InvalidConstraintError,
    InvalidParameterError,
    KeelError,
    ModelNotAvailableError,
    QueueFullError,
    RemoteError,
    RemoteRateLimitError,
    RemoteTimeoutError,
    StructuredOutputError,
    UnknownModelError,
)


class ErrorBody(BaseModel):
    message: str
    type: str
    code: str | None = None
    param: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class RequestError(Exception):
    """A request the server refuses before generating (limits, unknown model ...)."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.param = status, code, param


def error_json(
    status: int, message: str, kind: str, code: str | None = None, param: str | None = None
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "code": code, "param": param}}
    return JSONResponse(body, status_code=status)


# Most specific first: UnknownModelError is an InvalidParameterError, ModelLoadError a
# ModelNotAvailableError, and an invalid schema or regex (the client's mistake) both an
# InvalidParameterError and a StructuredOutputError.
_STATUS = (
    (QueueFullError, 429, "rate_limit_error", "queue_full"),
    # A proxied remote model's failures: the upstream server's, not the client's.
    (RemoteRateLimitError, 429, "rate_limit_error", "upstream_rate_limited"),
    (RemoteTimeoutError, 504, "server_error", "upstream_timeout"),
    (RemoteError, 502, "server_error", "upstream_error"),
    (UnknownModelError, 404, "invalid_request_error", "model_not_found"),
    (InvalidConstraintError, 400, "invalid_request_error", "invalid_constraint"),
    (StructuredOutputError, 422, "invalid_request_error", "structured_output_failed"),
    (InvalidParameterError, 400, "invalid_request_error", "invalid_parameter"),
    (ModelNotAvailableError, 503, "server_error", "model_not_available"),
    (GenerationError, 500, "server_error", "generation_failed"),
)


def describe(exc: BaseException) -> tuple[int, str, str]:
    """(status, type, code) for a keel error or a server refusal."""
    if isinstance(exc, RequestError):
        return exc.status, "invalid_request_error", exc.code
    for kind, status, error_type, code in _STATUS:
        if isinstance(exc, kind):
            return status, error_type, code
    return 500, "server_error", "internal_error"


# Documented on every generation route, so clients and schema-driven tests know them.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in (
        (400, "Invalid parameters or a limit exceeded"),
        (401, "Missing or wrong API key"),
        (404, "Unknown model"),
        (413, "Request body too large"),
        (422, "Structured output could not be produced within the limits"),
        (429, "Queue full (or a proxied remote model rate limited); retry after Retry-After"),
        (502, "A proxied remote model's server failed or refused"),
        (504, "A proxied remote model's server timed out"),
    )
}


def _keel_error(_request: Request, exc: KeelError) -> JSONResponse:
    status, kind, code = describe(exc)
    response = error_json(status, str(exc), kind, code)
    retry_after = getattr(exc, "retry_after", None)  # a full queue, or the upstream's hint
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return response


def _request_error(_request: Request, exc: RequestError) -> JSONResponse:
    status, kind, code = describe(exc)
    return error_json(status, str(exc), kind, code, exc.param)


def first_invalid(errors: Sequence[Any]) -> tuple[str, str]:
    """(where, message) for the first of pydantic's validation errors."""
    first = errors[0] if errors else {}
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    message = str(first.get("msg", "invalid request"))
    return where, f"{where}: {message}" if where else message


def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    where, message = first_invalid(exc.errors())
    return error_json(400, message, "invalid_request_error", "invalid_request", where or None)


def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
    response = error_json(exc.status_code, str(exc.detail), "invalid_request_error")
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


def _internal_error(_request: Request, exc: Exception) -> JSONResponse:
    logging.getLogger("keel.server").error("unhandled error", exc_info=exc)
    return error_json(500, f"internal error: {type(exc).__name__}", "server_error")


def install(app: FastAPI) -> None:
    # The decorator form: it takes handlers typed for their own exception class.
    app.exception_handler(KeelError)(_keel_error)
    app.exception_handler(RequestError)(_request_error)
    app.exception_handler(RequestValidationError)(_validation_error)
    app.exception_handler(HTTPException)(_http_error)
    app.exception_handler(Exception)(_internal_error)
