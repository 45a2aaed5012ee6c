"""asyncio surfaces. Model work runs on the model's worker thread and preparation (which
may load a model) on a helper thread, so the event loop never blocks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Unpack

from .api import GenerationOptions, StreamOptions, piece_of, start_generation
from .events import GenerationResponse


async def astream_generate(
    prompt: str | None = None, **options: Unpack[StreamOptions]
) -> AsyncIterator[GenerationResponse]:
    """Async iterator of GenerationResponse events (see stream_generate)."""
    handle = await asyncio.to_thread(start_generation, prompt, **options)
    with handle:
        async for event in handle:
            yield event


async def agenerate_iter(
    prompt: str | None = None,
    include_logprobs: bool = False,
    **options: Unpack[GenerationOptions],
) -> AsyncIterator[Any]:
    """Async text pieces (see generate_iter); joined, they equal agenerate()."""
    async for event in astream_generate(prompt, include_logprobs=include_logprobs, **options):
        piece = piece_of(event, include_logprobs)
        if piece is not None:
            yield piece


async def agenerate(
    prompt: str | None = None,
    return_logprobs: bool = False,
    **options: Unpack[GenerationOptions],
) -> Any:
    """Async generate(): the same text (or, with tools, the same calls), without blocking
    the event loop."""
    handle = await asyncio.to_thread(
        start_generation, prompt, include_logprobs=return_logprobs, **options
    )
    with handle:
        result = await handle.aresult()  # structured output was validated on the way
    reply: Any = list(result.tool_calls) if result.tool_calls else result.text
    return (reply, result.logprobs_dict()) if return_logprobs else reply
