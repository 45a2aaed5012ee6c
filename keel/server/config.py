"""What a server operator decides: which model, who may call, and how big a request may be."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import api_key
from ..models.registry import DEFAULT_MODEL


@dataclass(frozen=True)
class ServerConfig:
    model: str = DEFAULT_MODEL  # served when a request names none; loaded at startup
    api_key: str | None = None  # Bearer token required on every route but /health
    max_prompt_chars: int = 32_000
    max_tokens: int = 2048  # the most new tokens one request may ask for
    max_body_bytes: int = 1_000_000
    keepalive_seconds: float = 15.0  # SSE comment interval on idle streams
    head_timeout: float = 10.0  # a request's line and headers must arrive within this
    body_timeout: float = 30.0  # and its body within this
    send_timeout: float = 30.0  # a client that reads nothing this long is dropped
    max_connections: int = 1024  # beyond it, new requests get 503
    ws_backlog: int = 8  # requests one WebSocket may queue behind the running one
    unsafe_mode: bool = False  # may serve a best-effort remote model (or KEEL_UNSAFE_MODE=1)
    ui: bool = True  # the playground page at /

    @classmethod
    def from_env(cls, **overrides: Any) -> ServerConfig:
        """Defaults, then KEEL_API_KEY, then explicit (non-None) overrides."""
        values: dict[str, Any] = {"api_key": api_key()}
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)
