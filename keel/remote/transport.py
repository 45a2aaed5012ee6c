"""Talking to a remote server through the `openai` package (connection pool, SSE, retries
with backoff that honour Retry-After), and turning its failures into keel's typed errors
without ever repeating the API key."""

from __future__ import annotations

import threading
from typing import Any

import openai

from ..config import Settings, secret
from ..errors import (
    RemoteAuthError,
    RemoteError,
    RemoteModelNotFoundError,
    RemoteRateLimitError,
    RemoteResponseError,
    RemoteTimeoutError,
    RemoteUnavailableError,
)
from .target import RemoteTarget

_NO_KEY = "no-key"  # servers without auth still get a Bearer header from the client
_MESSAGE_LIMIT = 500  # characters of the server's own error message kept

_clients: dict[tuple[Any, ...], openai.OpenAI] = {}
_clients_lock = threading.Lock()


def api_key(target: RemoteTarget) -> str | None:
    variable = target.provider.key_variable
    key = secret(variable) if variable else None
    if key is None and target.provider.needs_key(target.base_url):
        raise RemoteAuthError(
            f"{target.label} needs an API key: set {variable}", target.provider.name
        )
    return key


def client(target: RemoteTarget, current: Settings, key: str | None) -> openai.OpenAI:
    """One client (and connection pool) per server, key (from api_key()) and limits, kept
    for reuse."""
    key = key or _NO_KEY
    read, connect = current.remote_read_timeout, current.remote_connect_timeout
    identity = (target.base_url, key, current.remote_retries, read, connect)
    with _clients_lock:
        found = _clients.get(identity)
        if found is None:
            found = _clients[identity] = openai.OpenAI(
                base_url=target.base_url,
                api_key=key,
                max_retries=current.remote_retries,
                timeout=openai.Timeout(read, connect=connect),
            )
        return found


def _server_message(body: object) -> str:
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            body = inner.get("message") or inner.get("detail") or inner
        else:
            body = inner
    return str(body)[:_MESSAGE_LIMIT]


def _retry_after(response: Any) -> float | None:
    headers = getattr(response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            return float(headers[name]) / scale
        except (KeyError, TypeError, ValueError):
            continue
    return None


def translate(exc: Exception, target: RemoteTarget, key: str | None) -> RemoteError:
    """The typed error for a failure of the openai package (or of the answer's shape)."""
    provider, where = target.provider.name, f"{target.label} at {target.base_url}"
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        detail = f"HTTP {status}: {_server_message(exc.body)}"
        if status in (401, 403):
            hint = f"check {target.provider.key_variable}" if key else "no API key was set"
            error: RemoteError = RemoteAuthError(
                f"{where} refused the request ({hint}); {detail}", provider, status
            )
        elif status == 404:
            error = RemoteModelNotFoundError(
                f"{where}: the server does not know this model; {detail}", provider, status
            )
        elif status == 429:
            retry_after = _retry_after(exc.response)
            error = RemoteRateLimitError(
                f"{where} is rate limiting this key (retried as configured by "
                f"KEEL_REMOTE_RETRIES); retry after {retry_after or 'a while'} s; {detail}",
                provider,
                retry_after,
            )
        elif status >= 500:
            error = RemoteUnavailableError(f"{where} failed; {detail}", provider, status)
        else:
            error = RemoteResponseError(f"{where} rejected the request; {detail}", provider, status)
    elif isinstance(exc, openai.APITimeoutError):
        error = RemoteTimeoutError(
            f"{where} timed out (KEEL_REMOTE_CONNECT_TIMEOUT / KEEL_REMOTE_READ_TIMEOUT)",
            provider,
        )
    elif isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        error = RemoteUnavailableError(f"{where} could not be reached: {cause}", provider)
    elif isinstance(exc, openai.APIError):  # an error event in the middle of the stream
        error = RemoteResponseError(
            f"{where} failed during the answer: {_server_message(exc.body)}", provider
        )
    else:
        error = RemoteResponseError(f"{where} sent a malformed answer: {exc}", provider)
    return _redacted(error, key)


def _redacted(error: RemoteError, key: str | None) -> RemoteError:
    if key and key in str(error):
        error.args = (str(error).replace(key, "[redacted]"),)
    return error
