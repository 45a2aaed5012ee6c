"""uvicorn's HTTP/1.1 protocol with a deadline for each request head.

uvicorn times out idle keep-alive connections but not a client that sends its request
line and headers a byte at a time (slowloris): such a connection would stay open for good,
and enough of them exhaust the server's file descriptors. Here every request head must
arrive whole within `head_timeout` seconds of its first byte (or of the connection), else
the connection is closed.

The deadline goes on httptools' protocol (a C parser) where httptools is installed, else on
h11's (pure Python): streaming, the server writes one chunk per token, and with httptools
on uvloop the event loop spent 0.23 ms of CPU per streamed token instead of 0.32 (8 clients
of bench/server.py's load; README, server figures).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    _BASE: type[asyncio.Protocol] = HttpToolsProtocol
except ImportError:  # httptools is optional (no wheel for the platform)
    _BASE = H11Protocol


class HeadDeadline:
    """Mixed into uvicorn's h11 or httptools protocol (both keep `cycle`, `loop` and
    `transport`)."""

    head_timeout = 10.0
    _head_deadline: asyncio.TimerHandle | None = None  # armed while a head is awaited
    cycle: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._between_requests():
            self._arm()
        super().data_received(data)  # type: ignore[misc]
        if not self._between_requests():
            self._disarm()

    def handle_websocket_upgrade(self, *event: Any) -> None:
        self._disarm()  # the WebSocket protocol takes the connection over
        super().handle_websocket_upgrade(*event)  # type: ignore[misc]

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self._between_requests() and not self.transport.is_closing():
            self.transport.close()


def deadline_protocol(
    head_timeout: float, base: type[asyncio.Protocol] = _BASE
) -> type[asyncio.Protocol]:
    """The protocol class for uvicorn's `http=` with this server's head timeout."""
    return type("HeadDeadlineProtocol", (HeadDeadline, base), {"head_timeout": head_timeout})
