"""RemoteSource: a generation on a remote server as an EventSource, so GenerationHandle
(validation, cache recording, cancelling) treats it exactly like a local one.

The request always streams, so generate() and generate_iter() read the same answer the
same way. A blocking consumer reads the stream on its own thread (no hand-off on the way to
the first token); an asyncio consumer gets a helper thread and a Channel, so the event loop
never blocks. A failure is raised as its typed error where the consumer reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import openai

from ..channel import Channel
from ..config import Settings
from ..errors import KeelError
from ..events import NO_TOKEN, Fingerprint, FinishReason, GenerationResponse, GenerationResult
from ..params import GenerationParams
from .answer import Answer, read_chunk
from .providers import Request
from .target import RemoteTarget
from .transport import api_key, client, translate


@dataclass(frozen=True)
class RemoteCall:
    target: RemoteTarget
    request: Request
    params: GenerationParams
    fingerprint: Fingerprint  # of the request; the result's adds what the server reported
    settings: Settings


_CANCELLED = GenerationResponse(
    text="",
    token=NO_TOKEN,
    logprobs=None,
    prompt_tokens=0,
    prompt_tps=0.0,
    generation_tokens=0,
    generation_tps=0.0,
    peak_memory=0.0,
    finish_reason=FinishReason.CANCELLED,
)


class RemoteSource:
    def __init__(self, call: RemoteCall) -> None:
        self._call = call
        self._cancelled = threading.Event()
        self._released = threading.Event()
        self._began = False  # the request was sent (it is sent when first read)
        self._ended = False  # the consumer has seen the final event (or the failure)
        self._stream: Any = None
        self._lock = threading.Lock()

    # -- producing ---------------------------------------------------------------------

    def _open(self, key: str | None) -> Any:
        call = self._call
        request = call.request
        api = client(call.target, call.settings, key)
        endpoint: Any = api.chat.completions if request.chat else api.completions
        return endpoint.create(
            **request.fields,
            stream=True,
            stream_options={"include_usage": True},
            extra_body=request.extra or None,
        )

    def _answer(self, key: str | None) -> Iterator[GenerationResponse]:
        call = self._call
        answer = Answer(call.target, call.params, call.request.shape, call.fingerprint)
        stream = self._open(key)
        with self._lock:
            self._stream = stream
        if self._cancelled.is_set():
            stream.close()
        with stream:
            for raw in stream:
                yield from answer.feed(read_chunk(raw, call.request.chat))
                if answer.stopped:
                    return
        yield answer.finish()

    def _produce(self) -> Iterator[GenerationResponse]:
        """The answer's events up to the final one; after cancel(), a cancelled final
        event instead of whatever closing the stream broke."""
        self._began = True
        key = None
        try:
            key = api_key(self._call.target)
            for event in self._answer(key):
                if self._cancelled.is_set():
                    break
                yield event
        except KeelError:
            if not self._cancelled.is_set():
                raise
        except Exception as exc:  # the openai package's errors, or a malformed answer
            if not self._cancelled.is_set():
                raise translate(exc, self._call.target, key) from exc
        finally:
            self._released.set()
        if self._cancelled.is_set():
            yield _CANCELLED

    # -- EventSource -------------------------------------------------------------------

    def _release(self, item: GenerationResponse | BaseException) -> GenerationResponse:
        """The item as an event; the end (final event or failure) is remembered, so a
        consumer that comes back for more finds the stream over."""
        if isinstance(item, BaseException):
            self._ended = True
            raise item
        self._ended = item.finish_reason is not None
        return item

    def events(self) -> Iterator[GenerationResponse]:
        if self._ended:
            return
        try:
            for event in self._produce():
                yield self._release(event)
                if self._ended:
                    return
        except KeelError:
            self._ended = True
            raise

    async def aevents(self) -> AsyncIterator[GenerationResponse]:
        if self._ended:
            return
        channel: Channel[GenerationResponse | BaseException] = Channel()

        def pump() -> None:
            try:
                for event in self._produce():
                    channel.put(event)
            except BaseException as exc:  # crosses to the consumer, raised there
                channel.put(exc)

        threading.Thread(target=pump, name="keel-remote", daemon=True).start()
        while not self._ended:
            yield self._release(await channel.aget())

    def cancel(self) -> None:
        """Stop now: closing the response ends a read that is waiting on the server."""
        self._cancelled.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            # Closing from another thread while it reads: that read fails, as meant.
            with contextlib.suppress(OSError, RuntimeError, openai.OpenAIError):
                stream.close()

    def wait_released(self) -> None:
        if self._began:
            self._released.wait()

    async def await_released(self) -> None:
        if self._began and not self._released.is_set():
            await asyncio.to_thread(self._released.wait)

    def known_result(self) -> GenerationResult | None:
        return None
