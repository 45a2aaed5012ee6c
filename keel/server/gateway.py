"""What every generation route shares: map a request onto keel's own options, enforce the
operator's limits, start the generation off the event loop, and fold its events, recording
metrics as it goes. Routes only translate shapes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from ..api import start_generation
from ..config import settings
from ..errors import UnknownModelError
from ..events import FinishReason, GenerationResponse, GenerationResult
from ..handle import GenerationHandle
from ..models import REGISTRY, resolve_model
from ..params import DEFAULT_MAX_NEW_TOKENS
from ..remote.target import is_remote, remote_target, require_opt_in
from .config import ServerConfig
from .errors import RequestError
from .limits import check_limits
from .metrics import Metrics


@dataclass
class Outcome:
    result: GenerationResult  # with the parsed value under a constraint
    last: GenerationResponse | None


class Gateway:
    def __init__(self, config: ServerConfig, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.served = self._served(config)  # the id /v1/models lists

    @staticmethod
    def _served(config: ServerConfig) -> str:
        """The served model's name; a remote one is checked now, so a server that could
        never answer (no opt-in for a best-effort backend, no URL) does not start."""
        if not is_remote(config.model):
            return resolve_model(config.model).name
        target = remote_target(config.model, None, settings())
        require_opt_in(target, config.unsafe_mode, settings())
        return config.model

    def location(self, model: str | None, size: str | None = None) -> dict[str, Any]:
        """Library location options for a request's model name. Clients may name the
        served model or a registry model, never a file path."""
        if model is None:
            return {"size": size} if size is not None else self._served_location()
        if size is not None:
            return {"model": model, "size": size}  # keel rejects the pair with a clear error
        if model == self.served:
            return self._served_location()
        if model in REGISTRY:
            return {"model": model}
        known = ", ".join(sorted({self.served, *REGISTRY}))
        raise UnknownModelError(f"unknown model {model!r}; this server has: {known}")

    def _served_location(self) -> dict[str, Any]:
        if is_remote(self.config.model):  # only the operator's own choice is proxied
            return {"model": self.config.model, "unsafe_mode": self.config.unsafe_mode}
        return {"model": self.config.model}

    def max_tokens(self, prompt: str, requested: int | None) -> int:
        """The operator's limits: prompt length, and how many new tokens may be asked for."""
        if len(prompt) > self.config.max_prompt_chars:
            raise RequestError(
                400,
                f"prompt has {len(prompt)} characters; this server accepts at most "
                f"{self.config.max_prompt_chars}",
                "prompt_too_long",
                "prompt",
            )
        if requested is None:
            return min(DEFAULT_MAX_NEW_TOKENS, self.config.max_tokens)
        if requested > self.config.max_tokens:
            raise RequestError(
                400,
                f"max_tokens={requested} is above this server's limit of {self.config.max_tokens}",
                "max_tokens_too_large",
                "max_tokens",
            )
        return requested

    async def start(self, prompt: str | None, **options: Any) -> GenerationHandle:
        """Validate, look up the cache and queue, off the event loop (it may load a model)."""
        check_limits(options)
        return await asyncio.to_thread(start_generation, prompt, **options)

    async def events(
        self, handle: GenerationHandle, label: str
    ) -> AsyncIterator[GenerationResponse]:
        """The handle's events; leaving early (a client gone) cancels the generation."""
        last = None
        try:
            async for event in handle:
                last = event
                yield event
        finally:
            handle.close()
            reason = last.finish_reason if last and last.finish_reason else FinishReason.CANCELLED
            self.metrics.generation(label, last, reason)

    async def run(
        self, label: str, prompt: str | None, client: Request | None = None, **options: Any
    ) -> Outcome:
        """Generate to the end; `label` names the model in metrics. If `client` goes away
        first (it waits for a whole answer, so nothing else would notice), the generation
        is cancelled, or skipped if it was still waiting for a slot."""
        handle = await self.start(prompt, **options)
        watcher = asyncio.create_task(_cancel_when_gone(client, handle)) if client else None
        last = None
        try:
            async for event in self.events(handle, label):
                last = event
        finally:
            if watcher is not None:
                watcher.cancel()
        return Outcome(await handle.aresult(), last)


async def _cancel_when_gone(client: Request, handle: GenerationHandle) -> None:
    """The body is read, so the next message is the disconnect, whenever it happens."""
    while (await client.receive())["type"] != "http.disconnect":
        pass
    handle.cancel()
