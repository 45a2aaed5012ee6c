"""keel over HTTP: native JSON/SSE/WebSocket routes and an OpenAI-compatible API. Its
libraries are the `server` extra: pip install 'keel-text[server]'."""

import importlib.util
from typing import Any

from ..errors import MissingExtraError
from .config import ServerConfig

__all__ = ["ServerConfig", "create_app", "require_server_extra"]
SERVER_MODULES = ("fastapi", "uvicorn", "sse_starlette", "websockets", "prometheus_client")


def require_server_extra() -> None:
    """Fail with the install command when a library of the server extra is missing."""
    if any(importlib.util.find_spec(module) is None for module in SERVER_MODULES):
        raise MissingExtraError("keel serve", "server")


def __getattr__(name: str) -> Any:
    """create_app imports FastAPI: only when a server is made, not when the CLI starts."""
    if name == "create_app":
        require_server_extra()
        from .app import create_app

        return create_app
    raise AttributeError(name)
