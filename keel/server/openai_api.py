"""OpenAI-compatible routes, so the official `openai` client (and tools built on it) work
unchanged. /v1/completions takes the prompt raw, like generate(raw=True); the chat route
renders the messages through the model's own chat template, like generate(prompt) does for
one user message. system_fingerprint is keel's fingerprint digest."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

from fastapi import APIRouter, Request

from ..errors import KeelError
from ..events import Fingerprint, FinishReason, GenerationResponse
from ..handle import GenerationHandle
from ..models import REGISTRY
from ..sampling import TokenLogprob
from ..structured import CALL_OPEN, JsonTagFilter, json_body
from ..summary import stats
from .errors import ERROR_RESPONSES, RequestError, describe
from .gateway import Gateway
from .schemas import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    KeelControls,
    OpenAIRequest,
)
from .sse import event_stream

router = APIRouter()
# OpenAI has no words for a stop string or a cancel: both read as "stop".
_FINISH = {
    FinishReason.STOP: "stop",
    FinishReason.STOP_STRING: "stop",
    FinishReason.LENGTH: "length",
    FinishReason.CANCELLED: "stop",
    FinishReason.TOOL_CALLS: "tool_calls",
}
_STREAMING: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, "text/event-stream": {}}}
}


def _refuse_unsupported(body: OpenAIRequest) -> None:
    if body.n != 1:
        raise RequestError(400, "only n=1 is supported; send one request per seed", "n", "n")


def _response_format(body: OpenAIRequest) -> dict[str, Any] | None:
    if body.response_format is None or body.response_format.type == "text":
        return None
    return body.response_format.model_dump(exclude_none=True)


def _common(
    gateway: Gateway, body: OpenAIRequest, prompt_text: str, max_tokens: int | None
) -> dict[str, Any]:
    _refuse_unsupported(body)
    return {
        "seed": body.seed,
        "temperature": body.temperature,
        "presence_penalty": body.presence_penalty,
        "frequency_penalty": body.frequency_penalty,
        "top_p": body.top_p,
        "stop": body.stop,
        "max_new_tokens": gateway.max_tokens(prompt_text, max_tokens),
        "response_format": _response_format(body),
        **body.model_dump(include=set(KeelControls.model_fields)),
        **_structured_outputs(body),
        **gateway.location(body.model),
    }


def _structured_outputs(body: OpenAIRequest) -> dict[str, Any]:
    outputs = body.structured_outputs
    if outputs is None:
        return {}
    given = {
        "schema": outputs.json_schema,
        "regex": outputs.regex,
        "choices": outputs.choice,
    }
    return {key: value for key, value in given.items() if value is not None}


def _usage(last: GenerationResponse | None) -> dict[str, int]:
    prompt = last.prompt_tokens if last else 0
    completion = last.generation_tokens if last else 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _content(text: str, json_mode: bool) -> str:
    return json_body(text) if json_mode else text


def _chat_logprob(entry: TokenLogprob) -> dict[str, Any]:
    def item(text: str, logprob: float) -> dict[str, Any]:
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    return {
        **item(entry.text, entry.logprob),
        "top_logprobs": [item(alt.text, alt.logprob) for alt in entry.top_logprobs],
    }


def _completion_logprobs(entries: Iterable[TokenLogprob], offset: int = 0) -> dict[str, Any]:
    tokens: list[str] = []
    values: list[float] = []
    tops: list[dict[str, float]] = []
    offsets: list[int] = []
    for entry in entries:
        offsets.append(offset)
        offset += len(entry.text)
        tokens.append(entry.text)
        values.append(entry.logprob)
        tops.append({alt.text: alt.logprob for alt in entry.top_logprobs})
    return {
        "tokens": tokens,
        "token_logprobs": values,
        "top_logprobs": tops,
        "text_offset": offsets,
    }


def _extension(last: GenerationResponse) -> dict[str, Any]:
    """What a keel client checks (the full fingerprint) and what OpenAI's shape loses (a
    stop string is "stop" there)."""
    return {
        "finish_reason": last.finish_reason,
        "stop_string": last.stop_string,
        "fingerprint": last.fingerprint.details if last.fingerprint else None,
    }


def _envelope(kind: str, model: str, fingerprint: Fingerprint | None) -> dict[str, Any]:
    return {
        "id": f"{'chatcmpl' if kind.startswith('chat') else 'cmpl'}-{uuid.uuid4().hex}",
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": fingerprint.digest if fingerprint else None,
    }


class _CallDeltas:
    """Tool calls as OpenAI streams them: a delta with the call's id and name, then one
    with its arguments; the call's own text is not sent as content (a reply that calls
    tools starts with its first call)."""

    def __init__(self) -> None:
        self.count = 0
        self.calling: bool | None = None  # unknown until the first text

    def text(self, text: str) -> str:
        if self.calling is None and text:
            self.calling = text.startswith(CALL_OPEN[0])  # a text reply never starts so
        return "" if self.calling else text

    def deltas(self, event: GenerationResponse) -> list[dict[str, Any]]:
        made = []
        for call in event.tool_calls:
            head = {"index": self.count, "id": call.id, "type": "function"}
            made.append(
                {"tool_calls": [{**head, "function": {"name": call.name, "arguments": ""}}]}
            )
            made.append(
                {"tool_calls": [{"index": self.count, "function": {"arguments": call.arguments}}]}
            )
            self.count += 1
        return made


async def _stream(
    gateway: Gateway, handle: GenerationHandle, model: str, body: OpenAIRequest, chat: bool
) -> AsyncIterator[dict[str, str]]:
    """OpenAI-style SSE: data-only chunks, an optional usage chunk, then [DONE]."""
    head = _envelope(
        "chat.completion.chunk" if chat else "text_completion", model, handle.fingerprint
    )
    with_usage = bool(body.stream_options and body.stream_options.include_usage)
    extra = {"usage": None} if with_usage else {}
    json_mode = _response_format(body) is not None
    tags = JsonTagFilter() if json_mode else None
    offset = 0

    def chunk(
        text: str,
        entry: TokenLogprob | None,
        finish: str | None,
        final: dict[str, Any],
        delta: dict[str, Any] | None = None,
    ) -> dict[str, str]:
        nonlocal offset
        if chat:
            if delta is None:
                delta = {"content": text} if text or finish is None else {}
            logprobs = {"content": [_chat_logprob(entry)]} if entry else None
            choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        else:
            logprobs = _completion_logprobs([entry], offset) if entry else None
            choice = {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}
        offset += len(text)
        return {"data": json.dumps({**head, "choices": [choice], **extra, **final})}

    if chat:
        first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None}
        yield {"data": json.dumps({**head, "choices": [{**first, "finish_reason": None}], **extra})}
    last = None
    calls = _CallDeltas() if getattr(body, "tools", None) else None  # chat requests only
    try:
        async for event in gateway.events(handle, model):
            last = event
            text = tags.feed(event.text) if tags else event.text
            if calls is not None:
                for delta in calls.deltas(event):
                    yield chunk("", None, None, {}, delta)
                text = calls.text(text)
            entry = event.logprobs if event.token >= 0 else None
            finish = _FINISH.get(event.finish_reason) if event.finish_reason else None
            if event.finish_reason == FinishReason.ERROR:
                raise KeelError(event.error or "generation failed")
            if text or entry or finish:
                final = {"keel": _extension(event)} if finish else {}
                yield chunk(text, entry, finish, final)
    except KeelError as exc:
        status, kind, code = describe(exc)
        error = {"message": str(exc), "type": kind, "code": code, "status": status}
        yield {"data": json.dumps({"error": error})}
        return
    if with_usage:
        yield {"data": json.dumps({**head, "choices": [], "usage": _usage(last)})}
    yield {"data": "[DONE]"}


async def _respond(
    gateway: Gateway,
    client: Request,
    body: OpenAIRequest,
    prompt: str | None,
    options: dict[str, Any],
    chat: bool,
) -> Any:
    model = body.model
    if body.stream:
        handle = await gateway.start(prompt, **options)
        return event_stream(gateway, handle, _stream(gateway, handle, model, body, chat))
    outcome = await gateway.run(model, prompt, client, **options)
    result = outcome.result
    content = _content(result.text, options.get("response_format") is not None)
    finish = _FINISH[result.finish_reason]
    if chat:
        logprobs = (
            {"content": [_chat_logprob(entry) for entry in result.logprobs]}
            if result.logprobs is not None
            else None
        )
        message: dict[str, Any] = (
            {"role": "assistant", "content": None, "tool_calls": [c.to_dict() for c in calls]}
            if (calls := result.tool_calls)
            else {"role": "assistant", "content": content}
        )
        choice = {"index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish}
    else:
        logprobs = _completion_logprobs(result.logprobs) if result.logprobs is not None else None
        choice = {"index": 0, "text": content, "logprobs": logprobs, "finish_reason": finish}
    kind = "chat.completion" if chat else "text_completion"
    return {
        **_envelope(kind, model, result.fingerprint),
        "choices": [choice],
        "usage": _usage(outcome.last),
        "keel": {
            "token_ids": list(result.tokens),
            "stats": stats(outcome.last),
            **(_extension(outcome.last) if outcome.last else {}),
        },
    }


@router.post("/v1/completions", responses={**_STREAMING, **ERROR_RESPONSES})
async def completions(body: CompletionRequest, request: Request) -> Any:
    """Text completion of a raw prompt (no chat template)."""
    gateway: Gateway = request.app.state.gateway
    if body.echo:
        raise RequestError(400, "echo is not supported", "unsupported_parameter", "echo")
    options = {"raw": True, **_common(gateway, body, body.prompt, body.max_tokens)}
    if body.logprobs is not None:
        options.update(include_logprobs=True, top_logprobs=body.logprobs)
    return await _respond(gateway, request, body, body.prompt, options, chat=False)


def _message_text(message: ChatMessage) -> str:
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    parts = []
    for part in message.content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise RequestError(
                400, "only text content parts are supported", "unsupported_content", "messages"
            )
        parts.append(part["text"])
    return "".join(parts)


def _message(message: ChatMessage) -> dict[str, Any]:
    """A chat message for the library: text content, and the tool fields it has."""
    made: dict[str, Any] = {"role": message.role, "content": _message_text(message)}
    if message.tool_calls:
        made["tool_calls"] = message.tool_calls
    if message.tool_call_id is not None:
        made["tool_call_id"] = message.tool_call_id
    return made


@router.post("/v1/chat/completions", responses={**_STREAMING, **ERROR_RESPONSES})
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    """Chat completion: the library renders the messages with the model's chat template."""
    gateway: Gateway = request.app.state.gateway
    messages = [_message(m) for m in body.messages]
    options = _common(
        gateway,
        body,
        "".join(m["content"] for m in messages),
        body.max_completion_tokens or body.max_tokens,
    )
    options["messages"] = messages
    given: dict[str, Any] = {"tools": body.tools, "tool_choice": body.tool_choice}
    given["parallel_tool_calls"] = body.parallel_tool_calls
    options.update({key: value for key, value in given.items() if value is not None})
    if body.logprobs:
        options.update(include_logprobs=True, top_logprobs=body.top_logprobs or 0)
    return await _respond(gateway, request, body, None, options, chat=True)


@router.get("/v1/models")
async def models(request: Request) -> dict[str, Any]:
    """The served model first, then the registry's other models (loaded on first use)."""
    gateway: Gateway = request.app.state.gateway
    names = [gateway.served, *(name for name in REGISTRY if name != gateway.served)]
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "keel"} for name in names
        ],
    }
