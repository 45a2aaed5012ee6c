"""keel's own routes: JSON in/out, SSE with token ids (event: token / complete / error),
and a WebSocket that streams tokens and takes a cancel message."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from time import perf_counter
from typing import Any

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from pydantic import ValidationError
from sse_starlette import EventSourceResponse

from ..errors import GenerationError, KeelError
from ..events import COMPLETED, FinishReason, GenerationResponse
from ..handle import GenerationHandle
from ..summary import stats, summary
from .errors import ERROR_RESPONSES, RequestError, describe, first_invalid
from .gateway import Gateway
from .schemas import GenerateRequest
from .sse import event_stream

router = APIRouter()
log = logging.getLogger("keel.server")

_HINTS = {
    "structured_output_failed": [
        "raise max_new_tokens",
        "bound string and number sizes in the schema (maxLength, maximum)",
    ],
    "generation_failed": ["retry the request", "shorten the prompt"],
}
_REASONS = {
    FinishReason.STOP: "the model ended its answer",
    FinishReason.STOP_STRING: "a stop string was generated",
    FinishReason.LENGTH: "max_new_tokens reached",
    FinishReason.CANCELLED: "cancelled",
    FinishReason.ERROR: "the engine failed",
}


def _options(gateway: Gateway, body: GenerateRequest) -> tuple[str, dict[str, Any]]:
    """(model name for metrics, keyword arguments for keel.start_generation)."""
    options = body.model_dump(
        exclude={"prompt", "max_new_tokens", "model", "size", "logprobs", "json_schema"}
    )
    if body.messages is None:
        del options["messages"]
    if body.json_schema is not None:
        options["schema"] = body.json_schema
    options["include_logprobs"] = body.logprobs
    options["max_new_tokens"] = gateway.max_tokens(body.input_text, body.max_new_tokens)
    location = gateway.location(body.model, body.size)
    options.update(location)
    return str(location.get("model") or location.get("size")), options


@router.post("/v1/generate", responses=ERROR_RESPONSES)
async def generate(body: GenerateRequest, request: Request) -> dict[str, Any]:
    """Generate to the end; the text, token ids, logprobs, stats and fingerprint."""
    gateway: Gateway = request.app.state.gateway
    model, options = _options(gateway, body)
    outcome = await gateway.run(model, body.prompt, request, **options)
    return summary(outcome.result, outcome.last)


def _error_payload(exc: BaseException, tokens: int) -> dict[str, Any]:
    code = describe(exc)[2]
    return {
        "error_type": code,
        "message": str(exc),
        "recovery_hints": _HINTS.get(code, []),
        "tokens_before_error": tokens,
    }


def _complete(last: GenerationResponse, started: float) -> dict[str, Any]:
    return {
        "total_tokens": last.generation_tokens,
        "prompt_tokens": last.prompt_tokens,
        "total_time_ms": round((perf_counter() - started) * 1000, 3),
        "tokens_per_second": round(last.generation_tps, 3),
        "time_to_first_token_ms": round(last.time_to_first_token * 1000, 3),
        "finish_reason": last.finish_reason,
        "stop_string": last.stop_string,
        "completed_normally": last.finish_reason in COMPLETED,
        "completion_reason": _REASONS[last.finish_reason] if last.finish_reason else None,
        "cached": last.cached,
        "fingerprint": last.fingerprint.digest if last.fingerprint else None,
        "fingerprint_details": last.fingerprint.details if last.fingerprint else None,
    }


async def _sse_events(
    gateway: Gateway, handle: GenerationHandle, model: str, with_logprobs: bool
) -> AsyncIterator[dict[str, str]]:
    started = perf_counter()
    tokens = 0
    try:
        async for event in gateway.events(handle, model):
            if event.token >= 0:
                tokens += 1
                data = {
                    "token": event.text,
                    "token_id": event.token,
                    "position": event.generation_tokens,
                    "cumulative_time_ms": round((perf_counter() - started) * 1000, 3),
                }
                if with_logprobs and event.logprobs is not None:
                    data["logprobs"] = event.logprobs.to_dict()
                yield {"event": "token", "data": json.dumps(data)}
            if event.finish_reason == FinishReason.ERROR:
                failure = GenerationError(event.error or "generation failed")
                yield {"event": "error", "data": json.dumps(_error_payload(failure, tokens))}
            elif event.finish_reason is not None:
                yield {"event": "complete", "data": json.dumps(_complete(event, started))}
    except KeelError as exc:  # e.g. the output failed its constraint at the end
        yield {"event": "error", "data": json.dumps(_error_payload(exc, tokens))}


@router.post(
    "/v1/stream",
    responses={200: {"content": {"text/event-stream": {}}}, **ERROR_RESPONSES},
    response_class=EventSourceResponse,
)
async def stream(body: GenerateRequest, request: Request) -> EventSourceResponse:
    """Server-sent events: one `token` event per sampled token, then `complete` (or
    `error`). Closing the connection cancels the generation."""
    gateway: Gateway = request.app.state.gateway
    model, options = _options(gateway, body)
    handle = await gateway.start(body.prompt, **options)  # refusals are plain JSON errors
    return event_stream(gateway, handle, _sse_events(gateway, handle, model, body.logprobs))


# -- WebSocket ----------------------------------------------------------------------------


_NOT_JSON = object()  # a client message that did not parse: answered with an error


async def _receive(websocket: WebSocket) -> Any:
    try:
        return json.loads(await websocket.receive_text())
    except json.JSONDecodeError:
        return _NOT_JSON


def _is_cancel(message: Any) -> bool:
    return isinstance(message, dict) and message.get("type") == "cancel"


async def _watch(
    websocket: WebSocket, handle: GenerationHandle, backlog: asyncio.Queue[Any]
) -> None:
    """Read client messages during a generation: cancel it, or keep the next request (up
    to the backlog's size; more are refused one by one). A client that goes away cancels
    it too."""
    try:
        while True:
            message = await _receive(websocket)
            if _is_cancel(message):
                handle.cancel()
            elif backlog.full():
                await _send_error(
                    websocket,
                    "too_many_requests",
                    f"{backlog.maxsize} requests already wait on this socket; send the next "
                    "one after an answer ends",
                )
            else:
                backlog.put_nowait(message)
    except (WebSocketDisconnect, RuntimeError):
        handle.cancel()


async def _send_error(websocket: WebSocket, code: str, message: str) -> None:
    await websocket.send_json({"type": "error", "code": code, "message": message})


async def _serve_one(
    websocket: WebSocket, gateway: Gateway, message: Any, backlog: asyncio.Queue[Any]
) -> None:
    if message is _NOT_JSON:
        return await _send_error(websocket, "invalid_json", "the message is not JSON")
    try:
        body = GenerateRequest.model_validate(message)
        model, options = _options(gateway, body)
        handle = await gateway.start(body.prompt, **options)
    except ValidationError as exc:
        return await _send_error(websocket, "invalid_request", first_invalid(exc.errors())[1])
    except (KeelError, RequestError) as exc:
        return await _send_error(websocket, describe(exc)[2], str(exc))
    watcher = asyncio.create_task(_watch(websocket, handle, backlog))
    try:
        async for event in gateway.events(handle, model):
            reply: dict[str, Any] = {
                "type": "token",
                "text": event.text,
                "token_id": event.token if event.token >= 0 else None,
            }
            if body.logprobs and event.logprobs is not None:
                reply["logprob"] = event.logprobs.to_dict()
            if event.finish_reason is not None:
                reply["finish_reason"] = event.finish_reason
                reply["stats"] = stats(event)
                reply["fingerprint"] = event.fingerprint.digest if event.fingerprint else None
            async with asyncio.timeout(gateway.config.send_timeout):  # no task per token
                await websocket.send_json(reply)
    except KeelError as exc:
        await _send_error(websocket, describe(exc)[2], str(exc))
    finally:
        watcher.cancel()
        handle.close()


@router.websocket("/v1/ws")
async def websocket_route(websocket: WebSocket) -> None:
    """Send a JSON request (the /v1/generate body); receive one message per token, the last
    with finish_reason. Send {"type": "cancel"} to stop; then send the next request."""
    await websocket.accept()
    gateway: Gateway = websocket.app.state.gateway
    backlog: asyncio.Queue[Any] = asyncio.Queue(maxsize=gateway.config.ws_backlog)
    try:
        while True:
            message = backlog.get_nowait() if not backlog.empty() else None
            if message is None:
                message = await _receive(websocket)
            if not _is_cancel(message):  # a cancel with nothing running has nothing to do
                await _serve_one(websocket, gateway, message, backlog)
    except (WebSocketDisconnect, RuntimeError, OSError):
        return  # the client went away
    except TimeoutError:  # it stopped reading: its buffers are full
        log.warning(
            "closed a WebSocket whose client read nothing for %g s", gateway.config.send_timeout
        )
