"""Who may call and how much they may send, checked before any route runs (pure ASGI, so
WebSockets and streaming bodies are covered too)."""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Iterable
from urllib.parse import parse_qs

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

OPEN_PATHS = {"/health", "/"}  # the playground page holds no data; its calls need the key
OPEN_PREFIXES = ("/ui/",)  # and neither do its scripts and styles


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


async def _reply(
    send: Send,
    status: int,
    message: str,
    code: str,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    body = json.dumps(
        {"error": {"message": message, "type": "invalid_request_error", "code": code}}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _presented_key(scope: Scope) -> str | None:
    headers: dict[bytes, bytes] = dict(scope.get("headers") or [])
    authorization = headers.get(b"authorization", b"").decode("latin-1")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    if scope["type"] == "websocket":  # browsers cannot set headers on a WebSocket
        keys = parse_qs(scope.get("query_string", b"").decode()).get("api_key")
        return str(keys[0]) if keys else None
    return None


class GuardMiddleware:
    def __init__(
        self, app: ASGIApp, api_key: str | None, max_body_bytes: int, body_timeout: float
    ) -> None:
        self.app, self.api_key = app, api_key
        self.max_body_bytes, self.body_timeout = max_body_bytes, body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        if self.api_key and not is_open(scope["path"]):
            key = _presented_key(scope)
            if key is None or not hmac.compare_digest(key.encode(), self.api_key.encode()):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008, "reason": "bad API key"})
                    return
                message = "missing or wrong API key: send 'Authorization: Bearer <key>'"
                return await _reply(
                    send, 401, message, "invalid_api_key", [(b"www-authenticate", b"Bearer")]
                )
        if scope["type"] == "websocket":
            return await self.app(scope, receive, send)
        return await self._limit_body(scope, receive, send)

    async def _limit_body(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.max_body_bytes
        too_large = f"request body is larger than {limit} bytes"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return await _reply(send, 413, too_large, "body_too_large")
        received = 0
        started = False
        body_done = False
        deadline = asyncio.get_running_loop().time() + self.body_timeout
        too_slow = f"the request body did not arrive within {self.body_timeout:g} s"

        async def counted() -> Message:
            """The body's parts, within the size limit and the body deadline (after the
            body, receive() only waits for a disconnect, for as long as a stream runs)."""
            nonlocal received, body_done
            if body_done:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(408, too_slow) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > limit:  # FastAPI passes HTTPException through body parsing
                    raise HTTPException(413, too_large)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except HTTPException as exc:
            if started or exc.status_code not in (408, 413):
                raise
            if exc.status_code == 408:
                await _reply(send, 408, too_slow, "body_timeout", [(b"connection", b"close")])
            else:
                await _reply(send, 413, too_large, "body_too_large")
