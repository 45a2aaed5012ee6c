"""keel over HTTP: native JSON/SSE/WebSocket routes and an OpenAI-compatible API."""

from typing import Any

from .config import ServerConfig

__all__ = ["ServerConfig", "create_app"]


def __getattr__(name: str) -> Any:
    """create_app imports FastAPI: only when a server is made, not when the CLI starts."""
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
