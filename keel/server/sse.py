"""The server-sent-event responses of every streaming route: keep-alive pings, a send
deadline for clients that stop reading, and the generation released however the stream
ends."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse
from sse_starlette.sse import SendTimeoutError
from starlette.background import BackgroundTask
from starlette.types import Message, Receive, Scope, Send

from ..handle import GenerationHandle
from .gateway import Gateway

log = logging.getLogger("keel.server")


class _BoundedEventSource(EventSourceResponse):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:  # its socket buffers are full: it has stopped reading
            log.warning("closed a stream whose client read nothing for %g s", self.send_timeout)

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        # sse-starlette's hook for every message, with its deadline kept by asyncio instead
        # of an anyio cancel scope: a stream sends a message a token, and under load the
        # scope's set-up was a sixth of the event loop's time (py-spy), on the cores the
        # model decodes with.
        try:
            async with asyncio.timeout(self.send_timeout):
                await send(message)
        except TimeoutError as exc:
            raise SendTimeoutError from exc


def event_stream(
    gateway: Gateway, handle: GenerationHandle, events: AsyncIterator[dict[str, Any]]
) -> EventSourceResponse:
    config = gateway.config
    return _BoundedEventSource(
        events,
        ping=config.keepalive_seconds,
        send_timeout=config.send_timeout,
        background=BackgroundTask(handle.close),  # also if the stream never started
    )
